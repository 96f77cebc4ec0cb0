package director_test

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/allocation"
	"github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/director"
	"github.com/kumi-dev/kumi/gameserver/localfleet"
	"github.com/kumi-dev/kumi/gameserver/sdk"
	"github.com/kumi-dev/kumi/internal/omext"
	"github.com/kumi-dev/kumi/internal/token"
	"github.com/kumi-dev/kumi/matchfunction"
	"github.com/prometheus/client_golang/prometheus"
)

// TestDedicatedVersions: a game's matches go one per server to warm servers of the version the
// traffic weights pick; moving the weights to a new version moves the next matches at once, and so
// does rolling back. The versions' servers are real game-server processes of two local fleets.
func TestDedicatedVersions(t *testing.T) {
	r := newDedicatedRig(t, nil)
	d, prof := r.d, r.prof
	r.check("v1 at 100%", "v1", r.play(2))
	if err := d.SetDedicatedWeights(prof, map[string]int{"v1": 0, "v2": 100}); err != nil {
		t.Fatal(err)
	}
	r.check("v2 at 100%", "v2", r.play(2))
	if err := d.SetDedicatedWeights(prof, map[string]int{"v1": 100, "v2": 0}); err != nil {
		t.Fatal(err)
	}
	r.check("rolled back", "v1", r.play(1))

	for _, bad := range []map[string]int{{"v1": 0, "v2": 0}, {"v1": -5, "v2": 100}, {"v3": 100}} {
		if err := d.SetDedicatedWeights(prof, bad); err == nil {
			t.Errorf("weights %v accepted", bad)
		}
	}

	// The director stops while the context the game was served with lives on: the game's loops
	// end with the director (Wait returns; it once waited for the env's 5-minute timeout), and a
	// stopped director serves no new game.
	stopped := make(chan struct{})
	go func() { r.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(time.Minute):
		t.Fatal("the director did not stop while a dedicated game's context was live")
	}
	err := d.ServeDedicated(r.e.ctx, director.DedicatedGame{Game: "Other", Profile: "game-Other-2", Warm: 1,
		Versions: []director.DedicatedVersion{{Version: "v1", Weight: 100, Backend: r.v1}}})
	if err == nil {
		t.Error("a stopped director accepted a dedicated game")
	}
}

// TestDedicatedServersReclaimed: one match per server and no server leaked. Each of n matches gets
// a server of its own; when its match ends (the server shuts itself down through its SDK, as the
// wrapper does when the build exits) the director forgets it and the fleet replaces it. A warm
// server lost before use is never handed a match. No match lands on a server that held one (or was
// lost), and once every match ended, every server the fleets hold allocated is a warm one the
// director knows, the warm pool back at its target.
func TestDedicatedServersReclaimed(t *testing.T) {
	r := newDedicatedRig(t, nil)
	const n = 3
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("director's servers %v; fleets v1 %v v2 %v; reclaimed %v, warm_lost %v, reuse_refused %v",
				r.d.DedicatedServers(r.prof), r.v1.Servers(), r.v2.Servers(), r.outcome("reclaimed"), r.outcome("warm_lost"), r.outcome("reuse_refused"))
		}
	})
	r.check("first matches", "v1", r.play(n))
	first := r.playing()
	if len(first) != n {
		t.Fatalf("%d servers hold a match, want %d: %v", len(first), n, r.d.DedicatedServers(r.prof))
	}
	gone := map[string]bool{}
	for srv := range first {
		gone[srv] = true
		r.endMatch(srv)
	}
	// Reclaimed by the director, and shut down: the fleet runs them no more.
	waitFor(t, "the ended matches' servers reclaimed and stopped", time.Minute, func() bool {
		for _, s := range r.v1.Servers() {
			if gone[s.Name] {
				return false
			}
		}
		return len(r.playing()) == 0 && r.outcome("reclaimed") == n
	})

	// A warm v1 server shuts down before any match reached it: the director drops it.
	lost := ""
	waitFor(t, "a warm v1 server again", time.Minute, func() bool {
		for srv, session := range r.d.DedicatedServers(r.prof) {
			if session == "" && r.fleetOf(srv) == "v1" {
				lost = srv
			}
		}
		return lost != ""
	})
	gone[lost] = true
	r.endMatch(lost)
	waitFor(t, "the lost warm server dropped", time.Minute, func() bool {
		_, held := r.d.DedicatedServers(r.prof)[lost]
		return !held && r.outcome("warm_lost") >= 1 // more if a warm server failed its health checks meanwhile
	})

	again := r.play(2)
	r.check("after reclaim", "v1", again)
	for _, a := range again {
		if _, srv := r.server(a); gone[srv] {
			t.Errorf("player %s placed on %s, which held a match or was lost", a.player, srv)
		}
	}
	for srv := range r.playing() {
		r.endMatch(srv)
	}
	waitFor(t, "no allocated server without a match, warm pools at their target", time.Minute, func() bool {
		held := r.d.DedicatedServers(r.prof)
		for _, session := range held {
			if session != "" {
				return false
			}
		}
		alloc := map[string]bool{}
		for _, f := range []*localfleet.Fleet{r.v1, r.v2} {
			gss, err := f.List(r.e.ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, gs := range gss {
				if gs.State == allocation.StateAllocated {
					alloc[gs.Name] = true
				}
			}
		}
		if len(alloc) != len(held) {
			return false
		}
		for srv := range held {
			if !alloc[srv] {
				return false
			}
		}
		return r.d.WarmDedicated(r.prof, "v1") == 1 && r.d.WarmDedicated(r.prof, "v2") == 1
	})
	if got := r.outcome("reclaimed"); got != n+2 {
		t.Errorf("%v servers reclaimed, want %d", got, n+2)
	}
	if got := r.outcome("reuse_refused"); got != 0 {
		t.Errorf("%v used servers allocated again", got)
	}
}

// dedicatedRig is a director serving the 2-player game "Duel" on dedicated servers of two
// versions, v1 (starting weight 100) and v2 (0), each a local fleet of real game-server processes.
type dedicatedRig struct {
	t      *testing.T
	e      *env
	d      *director.Director
	prof   string
	stop   func() // stops the director and waits for it
	v1, v2 *localfleet.Fleet
	n      int
	ts     *tickets
	verify *token.Verifier
}

const rigGame, rigPlayers = "Duel", 2

// newDedicatedRig starts the rig; traffic, when set, is the game's weights source.
func newDedicatedRig(t *testing.T, traffic *director.TrafficSource) *dedicatedRig {
	e := newEnv(t)
	prof := matchfunction.GameProfile(rigGame, rigPlayers)
	// A match function serving both the env's voice profile and the game's.
	mfCfg := matchfunction.Default()
	mfCfg.ListenAddr, mfCfg.QueryAddr = "127.0.0.1:0", e.om.QueryAddr()
	mfCfg.Profiles = []matchfunction.Profile{prof}
	ctx, cancel := context.WithCancel(e.ctx)
	mmf, err := matchfunction.Start(ctx, testLog(t), mfCfg, prometheus.NewRegistry())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = mmf.Wait() })

	voice := e.startFleet(fleetOpts{name: "voice", capacity: 4, buffer: 1, max: 2})
	v1 := e.startFleet(fleetOpts{name: "v1", capacity: 1, buffer: 2, max: 12})
	v2 := e.startFleet(fleetOpts{name: "v2", capacity: 1, buffer: 2, max: 12})
	cfg := e.directorConfig()
	host, port, _ := net.SplitHostPort(mmf.Addr())
	cfg.MMFHost = host
	cfg.MMFPort, _ = strconv.Atoi(port)
	cfg.Profiles = []string{"unused"} // the voice loop finds no profile here; only the game's matters
	cfg.PlaceWait = 30 * time.Second
	d, stop := e.startDirector(ctx, cfg, voice)
	if err := d.ServeDedicated(ctx, director.DedicatedGame{Game: rigGame, Profile: prof.Name, Warm: 1, Traffic: traffic,
		Versions: []director.DedicatedVersion{{Version: "v1", Weight: 100, Backend: v1}, {Version: "v2", Weight: 0, Backend: v2}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a warm v1 server", time.Minute, func() bool { return d.WarmDedicated(prof.Name, "v1") == 1 })
	waitFor(t, "a warm v2 server", time.Minute, func() bool { return d.WarmDedicated(prof.Name, "v2") == 1 })
	verifier, err := token.NewVerifier(ctx, token.VerifierConfig{Keys: []token.PublicKey{e.signer.PublicKey()}, Issuer: token.DefaultIssuer,
		AnyAudience: true, MaxTokenBytes: 8192, Leeway: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return &dedicatedRig{t: t, e: e, d: d, prof: prof.Name, stop: stop, v1: v1, v2: v2, ts: e.tickets(), verify: verifier}
}

// play files the tickets of that many matches and waits for their assignments.
func (r *dedicatedRig) play(matches int) []*assignment {
	for range matches * rigPlayers {
		r.n++
		createGameTicket(r.t, r.e, r.ts, "p"+strconv.Itoa(r.n), rigGame)
	}
	return r.ts.await(matches*rigPlayers, 2*time.Minute)
}

// playing is the director's servers holding a match: server -> session.
func (r *dedicatedRig) playing() map[string]string {
	out := map[string]string{}
	for srv, session := range r.d.DedicatedServers(r.prof) {
		if session != "" {
			out[srv] = session
		}
	}
	return out
}

// fleetOf is the fleet ("v1", "v2" or "none") running the named server.
func (r *dedicatedRig) fleetOf(name string) string {
	for fname, f := range map[string]*localfleet.Fleet{"v1": r.v1, "v2": r.v2} {
		for _, s := range f.Servers() {
			if s.Name == name {
				return fname
			}
		}
	}
	return "none"
}

// endMatch ends the named server's life as a wrapped build's does when the game exits: SDK
// Shutdown through its own SDK endpoint.
func (r *dedicatedRig) endMatch(name string) {
	t := r.t
	t.Helper()
	for _, f := range []*localfleet.Fleet{r.v1, r.v2} {
		for _, s := range f.Servers() {
			if s.Name != name {
				continue
			}
			c, err := sdk.Dial(r.e.ctx, s.SDKAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Shutdown(r.e.ctx); err != nil {
				t.Fatalf("shut down %s: %v", name, err)
			}
			return
		}
	}
	t.Fatalf("no server %s in the fleets", name)
}

// outcome is the director's count of dedicated servers let go with that outcome.
func (r *dedicatedRig) outcome(outcome string) float64 {
	mfs, err := r.e.reg.Gather()
	if err != nil {
		r.t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "kumi_director_dedicated_servers_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// server returns the fleet ("v1", "v2" or "none") and server name holding an assignment's address.
func (r *dedicatedRig) server(a *assignment) (string, string) {
	_, p, _ := net.SplitHostPort(a.conn)
	for name, f := range map[string]*localfleet.Fleet{"v1": r.v1, "v2": r.v2} {
		for _, s := range f.Servers() {
			if strconv.Itoa(s.Port) == p {
				return name, s.Name
			}
		}
	}
	return "none", ""
}

// check asserts that every assignment is on version want, one match per server, with a token for
// that server and session.
func (r *dedicatedRig) check(step, want string, got []*assignment) {
	t := r.t
	t.Helper()
	perServer := map[string]map[string]bool{} // conn -> sessions
	perSession := map[string]int{}
	for _, a := range got {
		f, srv := r.server(a)
		if f != want {
			t.Errorf("%s: player %s placed on %s (%s), want %s", step, a.player, f, a.conn, want)
		}
		// The token is for the server the match landed on, and its session.
		c, err := r.verify.VerifyServerToken(a.token, srv)
		if err != nil || c.SessionID != a.session || c.PlayerID != a.player {
			t.Errorf("%s: player %s token for %s: %+v, %v", step, a.player, srv, c, err)
		}
		if perServer[a.conn] == nil {
			perServer[a.conn] = map[string]bool{}
		}
		perServer[a.conn][a.session] = true
		perSession[a.session]++
	}
	for conn, ss := range perServer {
		if len(ss) != 1 {
			t.Errorf("%s: server %s holds %d matches, want 1", step, conn, len(ss))
		}
	}
	for s, k := range perSession {
		if k != rigPlayers {
			t.Errorf("%s: session %s has %d players, want %d", step, s, k, rigPlayers)
		}
	}
}

// createGameTicket files a sealed ticket naming the game (as kumi's frontend does for
// game=<game>) and sends its first assignment to ts.
func createGameTicket(t *testing.T, e *env, ts *tickets, player, game string) {
	t.Helper()
	ext := omext.PutString(nil, omext.Player, player)
	sf := &openmatch.SearchFields{StringArgs: map[string]string{matchfunction.GameAttribute: game}}
	testSealer.Seal(ext, player, sf, time.Now())
	tk, err := e.fe.CreateTicket(e.ctx, &openmatch.CreateTicketRequest{Ticket: &openmatch.Ticket{SearchFields: sf, Extensions: ext}})
	if err != nil {
		t.Fatalf("create ticket: %v", err)
	}
	ws, err := e.fe.WatchAssignments(e.ctx, &openmatch.WatchAssignmentsRequest{TicketId: tk.GetId()})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	go func() {
		res, err := ws.Recv()
		if err != nil {
			return
		}
		as := res.GetAssignment()
		a := &assignment{ticket: tk.GetId(), player: player, conn: as.GetConnection(),
			session: str(as.GetExtensions(), omext.Session), token: str(as.GetExtensions(), omext.ServerToken)}
		ts.mu.Lock()
		ts.all = append(ts.all, a)
		ts.mu.Unlock()
		ts.done <- a
	}()
}
