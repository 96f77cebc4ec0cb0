package client_test

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/client"
	"github.com/kumi-dev/kumi/internal/teststack"
)

func TestMain(m *testing.M) {
	teststack.RunChildIfAsked() // the local fleet's game-server processes are this binary
	os.Exit(m.Run())
}

type joinedLeg struct {
	player string
	leg    client.Leg
}

// TestWholeProduct runs players through all of kumi with nothing stood in: the embedded core, the
// match function, the frontend, the director and a local fleet of game-server processes. Each chat
// group lands in one session; draining the server of one group's session moves the whole session
// (MOVE to every member) and the players follow it without a new ticket.
func TestWholeProduct(t *testing.T) {
	p := teststack.StartProduct(t)
	joined := make(chan joinedLeg, 64)
	var assignedMu sync.Mutex
	assigned := map[string]client.Leg{} // first assignment per player, seen before its join
	// The players talk until every one has received a frame on its final server (after the move,
	// for room-a), not for a fixed time a loaded machine could use up before the moved members
	// rejoin; Talk only bounds it.
	heard := make(chan joinedLeg, 64)
	stop := make(chan struct{})
	cfg := func(id, group string) client.Config {
		c := client.Default()
		c.Frontend, c.Key, c.Player = p.Frontend.GRPCAddr(), p.KeyFile, id
		c.Attributes = client.Attributes{"mode": "voice", "chat_group": group}
		c.Talk, c.AssignTimeout, c.Stop = 60*time.Second, 20*time.Second, stop
		c.OnJoined = func(pl string, l client.Leg) { joined <- joinedLeg{pl, l} }
		c.OnFirstFrame = func(pl string, l client.Leg) { heard <- joinedLeg{pl, l} }
		c.OnAssigned = func(pl string, l client.Leg) {
			assignedMu.Lock()
			defer assignedMu.Unlock()
			if _, ok := assigned[pl]; !ok {
				assigned[pl] = l
			}
		}
		return c
	}
	res := runPlayers(t.Context(), cfg("a1", "room-a"), cfg("a2", "room-a"), cfg("a3", "room-a"), cfg("b1", "room-b"), cfg("b2", "room-b"))

	// Wait until all five joined, then drain the server hosting room-a's session.
	sessions := map[string]string{} // player → session
	servers := map[string]string{}  // player → first server
	timeout := time.After(30 * time.Second)
	for len(sessions) < 5 {
		select {
		case j := <-joined:
			sessions[j.player] = j.leg.SessionID
			servers[j.player] = j.leg.Address
			assignedMu.Lock()
			a, ok := assigned[j.player]
			assignedMu.Unlock()
			if !ok || a.SessionID != j.leg.SessionID || a.TicketToAssignment <= 0 {
				t.Errorf("%s joined session %s; OnAssigned before it saw %+v (ok=%v)", j.player, j.leg.SessionID, a, ok)
			}
		case <-timeout:
			t.Fatalf("only %d players joined: %v", len(sessions), sessions)
		}
	}
	if sessions["a1"] != sessions["a2"] || sessions["a1"] != sessions["a3"] || sessions["b1"] != sessions["b2"] || sessions["a1"] == sessions["b1"] {
		t.Fatalf("sessions by player: %v; want room-a together, room-b together, apart", sessions)
	}
	p.DrainSession(t, sessions["a1"])
	timeout = time.After(60 * time.Second)
	// Every player on the drained server (room-a's, and room-b's too when it shares the server)
	// must hear a frame after its move; the others any frame.
	final := map[string]bool{}
wait:
	for len(final) < 5 {
		select {
		case h := <-heard:
			if servers[h.player] != servers["a1"] || h.leg.Cause == "move" {
				final[h.player] = true
			}
		case <-timeout:
			t.Errorf("only %v of 5 players received a frame on their final server", final)
			break wait
		}
	}
	close(stop)

	for _, ch := range res {
		r := <-ch
		if r.err != nil {
			t.Fatalf("player: %v (legs %+v)", r.err, r.rep.Legs)
		}
		legs := r.rep.Legs
		last := legs[len(legs)-1]
		if last.Ended != "done" || last.FramesReceived == 0 {
			t.Errorf("%s: last leg %+v", r.rep.Player, last)
		}
		for _, l := range legs {
			if l.SessionID != legs[0].SessionID {
				t.Errorf("%s: session changed %s → %s (a move keeps the session)", r.rep.Player, legs[0].SessionID, l.SessionID)
			}
		}
		if r.rep.Player[0] == 'a' {
			if r.rep.Moves() != 1 || len(legs) != 2 || legs[1].Address == legs[0].Address || legs[1].AssignmentToAccept <= 0 {
				t.Errorf("%s: want one move to another server, got %+v", r.rep.Player, legs)
			}
		}
		if r.rep.Reconnects() != 0 {
			t.Errorf("%s: %d reconnects, want 0", r.rep.Player, r.rep.Reconnects())
		}
	}
}
