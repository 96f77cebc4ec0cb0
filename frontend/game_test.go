package frontend

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"testing"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/matchfunction"
	"github.com/prometheus/client_golang/prometheus"
)

// TestGameAttributeGroupsPerGame: with the default attributes a client names the game (an
// uploaded build's project) it queues for, and the match function's game profiles match players
// of the same game only. Tickets go in through the frontend's HTTP API; matches come from the real
// Open Match core and match function.
func TestGameAttributeGroupsPerGame(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		attrs, err := ParseAttributes(DefaultAttributes)
		if err != nil {
			t.Fatal(err)
		}
		c.Attributes = attrs
	})
	games := map[string]string{"a1": "Duel", "b1": "Brawl", "a2": "Duel", "b2": "Brawl", "a3": "Duel"}
	ticketOf := map[string]string{} // ticket id -> game
	for _, p := range slices.Sorted(func(yield func(string) bool) {
		for p := range games {
			if !yield(p) {
				return
			}
		}
	}) {
		code, _, b := e.do("POST", "/v1/tickets", p, `{"attributes":{"game":"`+games[p]+`"}}`)
		if code != http.StatusCreated {
			t.Fatalf("%s: create: %d %s", p, code, b)
		}
		ticketOf[decodeTicket(t, b).GetId()] = games[p]
	}
	// A game name that is not a string is refused, naming the attribute.
	if code, _, b := e.do("POST", "/v1/tickets", "x", `{"attributes":{"game":7}}`); code != http.StatusBadRequest {
		t.Errorf("numeric game: %d %s, want 400", code, b)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mcfg := matchfunction.Default()
	mcfg.ListenAddr, mcfg.QueryAddr = "127.0.0.1:0", e.core.QueryAddr()
	profiles := []matchfunction.Profile{matchfunction.GameProfile("Duel", 2), matchfunction.GameProfile("Brawl", 2)}
	mcfg.Profiles = profiles
	mmf, err := matchfunction.Start(ctx, testLog(t), mcfg, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = mmf.Wait() })
	host, port, _ := net.SplitHostPort(mmf.Addr())
	p, _ := strconv.Atoi(port)
	fc := &pb.FunctionConfig{Host: host, Port: int32(p), Type: pb.FunctionConfig_GRPC}

	for _, prof := range profiles {
		game := prof.Pools[0].StringEquals[matchfunction.GameAttribute]
		stream, err := e.backend.FetchMatches(ctx, &pb.FetchMatchesRequest{Config: fc, Profile: prof.MatchProfile()})
		if err != nil {
			t.Fatal(err)
		}
		matches := 0
		for {
			r, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", game, err)
			}
			matches++
			m := r.GetMatch()
			if len(m.GetTickets()) != 2 {
				t.Errorf("%s match has %d tickets, want 2", game, len(m.GetTickets()))
			}
			for _, tk := range m.GetTickets() {
				if ticketOf[tk.GetId()] != game || tk.GetSearchFields().GetStringArgs()[matchfunction.GameAttribute] != game {
					t.Errorf("%s match holds ticket %s of game %q", game, tk.GetId(), ticketOf[tk.GetId()])
				}
			}
		}
		if matches != 1 {
			t.Errorf("%s: %d matches, want 1 (Duel's third player waits)", game, matches)
		}
	}
}
