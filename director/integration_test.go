package director_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/allocation"
	"github.com/kumi-dev/kumi/director/pool"
	"github.com/kumi-dev/kumi/gameserver/client"
)

// TestChatGroupsPlacedTogether: 500 players in 100 chat groups, arriving in three waves (so most
// members are late arrivals to a live session), all placed; each group in one session on one
// server; no server over capacity; every token is for the right server and session.
func TestChatGroupsPlacedTogether(t *testing.T) {
	e := newEnv(t)
	const capacity = 30
	f := e.startFleet(fleetOpts{name: "groups", capacity: capacity, buffer: 2, max: 10})
	cfg := e.directorConfig()
	d, _ := e.startDirector(e.ctx, cfg, f)

	ts := e.tickets()
	var got []*assignment
	waves := [][2]int{{0, 1}, {1, 3}, {3, 5}} // member index ranges per group
	for _, w := range waves {
		n := 0
		for m := w[0]; m < w[1]; m++ {
			for g := range 100 {
				ts.create(fmt.Sprintf("p%d-%d", g, m), fmt.Sprintf("chat-%d", g))
				n++
			}
		}
		got = append(got, ts.await(n, 60*time.Second)...)
	}
	if len(got) != 500 {
		t.Fatalf("%d assignments", len(got))
	}

	type place struct{ conn, session string }
	groups := map[string]place{}
	sessionsPerServer := map[string]map[string]bool{}
	for _, a := range got {
		p := place{a.conn, a.session}
		if p.conn == "" || p.session == "" || a.token == "" {
			t.Fatalf("incomplete assignment %+v", a)
		}
		if old, ok := groups[a.group]; ok && old != p {
			t.Fatalf("group %s split: %v and %v", a.group, old, p)
		}
		groups[a.group] = p
		if sessionsPerServer[p.conn] == nil {
			sessionsPerServer[p.conn] = map[string]bool{}
		}
		sessionsPerServer[p.conn][p.session] = true
		srv, ok := d.Pool().SessionServer(a.session)
		if !ok {
			t.Fatalf("session %s unknown to the director", a.session)
		}
		claims, err := e.signer.Verifier("", 0).VerifyServerToken(a.token, srv)
		if err != nil || claims.SessionID != a.session || claims.PlayerID != a.player {
			t.Fatalf("token of %s: %+v %v", a.player, claims, err)
		}
	}
	if len(groups) != 100 {
		t.Fatalf("%d groups placed", len(groups))
	}
	for conn, ss := range sessionsPerServer {
		if len(ss) > capacity {
			t.Fatalf("server %s holds %d sessions, capacity %d", conn, len(ss), capacity)
		}
	}
	t.Logf("100 groups on %d servers (%d sessions each at most)", len(sessionsPerServer), capacity)

	// The tokens open the real game servers: one member per group joins.
	joined := 0
	for _, a := range got {
		if a.player[len(a.player)-2:] != "-0" {
			continue
		}
		c, err := client.Dial(e.ctx, a.conn, a.token, client.Default())
		if err != nil {
			t.Fatalf("join %s at %s: %v", a.player, a.conn, err)
		}
		defer c.Close()
		joined++
	}
	if joined != 100 {
		t.Fatalf("%d joined", joined)
	}
}

// TestWarmPoolHidesAllocationLatency: no placement waits for an allocation. Once the warm pool is
// full, allocations are held at a gate, so none can complete; a burst of as many sessions as the
// pool keeps free is then placed in full, with no match released for want of room and no
// placement waiting for a refill (kumi_director_placement_waits_total), while the refill has
// already asked for servers in the background; opening the gate refills the pool. The property is
// asserted from events, so it holds however slow the machine is; the latency it buys is a figure
// (BenchmarkWarmPool, BENCHMARKS.md).
func TestWarmPoolHidesAllocationLatency(t *testing.T) {
	e := newEnv(t)
	f := e.startFleet(fleetOpts{name: "slow", capacity: 60, buffer: 3, max: 8, allocWait: 500 * time.Millisecond})
	g := newGatedBackend(f)
	cfg := e.directorConfig()
	const warm = 100
	cfg.Pool.MinFreeSlots = warm
	cfg.Pool.RateShare = 0 // the target stays at the warm size while the burst runs
	d, _ := e.startDirector(e.ctx, cfg, g)
	backend := f.Name()
	waitFor(t, "warm pool", 60*time.Second, func() bool { return d.Pool().Free(backend, time.Now()) >= warm })
	g.shut()

	ts := e.tickets()
	for i := range warm {
		ts.create(fmt.Sprintf("p%d", i), fmt.Sprintf("solo-%d", i))
	}
	ts.await(warm, 60*time.Second)
	if n := e.counter("kumi_director_unplaced_matches_total"); n != 0 {
		t.Fatalf("%v matches released for want of room: the warm pool did not hold the burst", n)
	}
	if n := e.counter("kumi_director_placement_waits_total"); n != 0 {
		t.Fatalf("%v placements waited for a refill", n)
	}
	waitFor(t, "the refill asking for servers in the background", 60*time.Second, func() bool { return g.waiting() > 0 })
	g.open()
	waitFor(t, "pool refilled once allocations complete", 60*time.Second, func() bool { return d.Pool().Free(backend, time.Now()) >= warm })
}

// gatedBackend holds every Allocate at a gate while it is shut (a test's stand-in for an
// allocator that has not answered yet); everything else is the wrapped backend's.
type gatedBackend struct {
	allocation.Backend
	mu     sync.Mutex
	gate   chan struct{} // closed while open
	queued int
}

func newGatedBackend(b allocation.Backend) *gatedBackend {
	g := &gatedBackend{Backend: b, gate: make(chan struct{})}
	close(g.gate)
	return g
}

func (g *gatedBackend) shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.gate:
		g.gate = make(chan struct{})
	default:
	}
}

func (g *gatedBackend) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.gate:
	default:
		close(g.gate)
	}
}

// waiting is the number of Allocate calls held at the gate now.
func (g *gatedBackend) waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.queued
}

func (g *gatedBackend) Allocate(ctx context.Context, spec allocation.Spec) (allocation.Status, error) {
	g.mu.Lock()
	gate := g.gate
	g.queued++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.queued--
		g.mu.Unlock()
	}()
	select {
	case <-gate:
	case <-ctx.Done():
		return allocation.Status{}, ctx.Err()
	}
	return g.Backend.Allocate(ctx, spec)
}

type warmPoolResult struct {
	p50, p99, max time.Duration
	unplaced      float64
	waits         float64
	servers       int
}

// warmPoolMeasure offers 100 new sessions per second for 3 s (more than the warm pool alone
// holds) to a fleet whose allocations take allocWait, with minFree slots kept warm (0: none, and no
// rate-based target either), and measures ticket→assignment latency as the client sees it.
func warmPoolMeasure(tb testing.TB, allocWait time.Duration, minFree int) warmPoolResult {
	e := newEnv(tb)
	// Enough Ready processes up front that no game-server process starts during the measurement.
	f := e.startFleet(fleetOpts{name: "slow", capacity: 60, buffer: 8, max: 10, allocWait: allocWait})
	cfg := e.directorConfig()
	cfg.Pool.MinFreeSlots = minFree
	if minFree == 0 {
		// Cold: no slots kept ahead of the load at all (the rate term would warm the pool too), so
		// a placement that finds no free slot waits for an allocation rather than releasing.
		cfg.Pool.RateShare = 0
	}
	cfg.PlaceWait = 10 * time.Second
	d, stop := e.startDirector(e.ctx, cfg, f)
	defer stop()
	backend := f.Name()
	if minFree > 0 {
		waitFor(tb, "warm pool", 60*time.Second, func() bool { return d.Pool().Free(backend, time.Now()) >= minFree })
	}
	waitFor(tb, "fleet's Ready buffer up", 120*time.Second, func() bool {
		l, _ := f.List(e.ctx, nil)
		ready := 0
		for _, gs := range l {
			if gs.State == "Ready" || gs.State == "Allocated" {
				ready++
			}
		}
		return ready >= 8
	})

	ts := e.tickets()
	const n = 300
	start := time.Now()
	for i := range n {
		if wait := time.Until(start.Add(time.Duration(i) * 10 * time.Millisecond)); wait > 0 {
			time.Sleep(wait) // open-loop pacing of the offered load
		}
		ts.create(fmt.Sprintf("p%d", i), fmt.Sprintf("solo-%d", i))
	}
	got := ts.await(n, 120*time.Second)
	lat := make([]time.Duration, len(got))
	for i, a := range got {
		lat[i] = a.latency
	}
	return warmPoolResult{p50: percentile(lat, 0.5), p99: percentile(lat, 0.99), max: percentile(lat, 1),
		unplaced: e.counter("kumi_director_unplaced_matches_total"), waits: e.counter("kumi_director_placement_waits_total"),
		servers: len(d.Pool().Snapshot(time.Now()).Servers)}
}

// TestRestartMidLoad: the director is stopped and a new one started while tickets keep coming and
// players keep joining; no ticket is lost or assigned twice, and every chat group stays in one
// session (the new director learns the groups' sessions from the servers' reports). "abrupt" cuts
// the FetchMatches stream at once (no grace), so matches Open Match already marked pending come
// back only after its pending timeout: still none lost.
func TestRestartMidLoad(t *testing.T) {
	for _, tc := range []struct {
		name  string
		grace time.Duration
	}{{"graceful", 5 * time.Second}, {"abrupt", 0}} {
		t.Run(tc.name, func(t *testing.T) { restartMidLoad(t, tc.grace) })
	}
}

func restartMidLoad(t *testing.T, grace time.Duration) {
	e := newEnv(t)
	f := e.startFleet(fleetOpts{name: "restart", capacity: 40, buffer: 2, max: 8})
	cfg := e.directorConfig()
	cfg1 := cfg
	cfg1.ShutdownGrace = grace
	ctx1, cancel1 := context.WithCancel(e.ctx)
	defer cancel1()
	_, stop1 := e.startDirector(ctx1, cfg1, f)

	ts := e.tickets()
	joined := make(chan error, 1000)
	var conns []*client.Conn
	join := func(a *assignment) {
		c, err := client.Dial(e.ctx, a.conn, a.token, client.Default())
		if err == nil {
			conns = append(conns, c)
		}
		joined <- err
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	const groups, perGroup = 60, 4
	created := 0
	restarted := false
	for m := range perGroup {
		for g := range groups {
			ts.create(fmt.Sprintf("p%d-%d", g, m), fmt.Sprintf("chat-%d", g))
			created++
			if !restarted && created == groups*perGroup/2 {
				// Kill the director mid-stream; tickets keep coming while none runs.
				cancel1()
				stop1()
				restarted = true
				e.startDirector(e.ctx, cfg, f)
			}
		}
		for _, a := range ts.await(groups, 60*time.Second) {
			join(a)
		}
	}
	for range groups * perGroup {
		if err := <-joined; err != nil {
			t.Fatalf("join: %v", err)
		}
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	sessionOf := map[string]string{}
	for _, a := range ts.all {
		if a.count != 1 {
			t.Fatalf("ticket %s assigned %d times", a.ticket, a.count)
		}
		if s, ok := sessionOf[a.group]; ok && s != a.session {
			t.Fatalf("group %s split over sessions %s and %s across the restart", a.group, s, a.session)
		}
		sessionOf[a.group] = a.session
	}
	if len(ts.all) != groups*perGroup {
		t.Fatalf("%d tickets", len(ts.all))
	}
}

// TestTrafficWeights: two fleets weighted 90/10 get new sessions in that ratio, each session on the
// backend the weights chose for its id even when a burst outruns a warm pool; moving all weight to one fleet through the admin API sends every new session there
// at once, while a live group on the other fleet keeps receiving its late arrivals.
func TestTrafficWeights(t *testing.T) {
	e := newEnv(t)
	fa := e.startFleet(fleetOpts{name: "a", capacity: 100, buffer: 2, max: 6})
	fb := e.startFleet(fleetOpts{name: "b", capacity: 100, buffer: 1, max: 4})
	cfg := e.directorConfig()
	cfg.Weights = fa.Name() + "=90," + fb.Name() + "=10"
	cfg.Pool.MinFreeSlots = 100
	d, _ := e.startDirector(e.ctx, cfg, fa, fb)
	waitFor(t, "warm pools", 30*time.Second, func() bool {
		now := time.Now()
		return d.Pool().Free(fa.Name(), now) >= 90 && d.Pool().Free(fb.Name(), now) >= 10
	})
	backendOf := func(session string) string {
		srv, ok := d.Pool().SessionServer(session)
		if !ok {
			t.Fatalf("session %s unknown", session)
		}
		for _, s := range d.Pool().Snapshot(time.Now()).Servers {
			if s.Name == srv {
				return s.Backend
			}
		}
		t.Fatalf("server %s unknown", srv)
		return ""
	}

	ts := e.tickets()
	const n = 300
	for i := range n {
		ts.create(fmt.Sprintf("p%d", i), fmt.Sprintf("solo-%d", i))
	}
	count := map[string]int{}
	for _, a := range ts.await(n, 60*time.Second) {
		// The weights cap each backend's share: a burst that outruns fleet a's warm pool waits
		// for a's refill (or is released and comes back, choosing a again), never spilling onto b.
		got := backendOf(a.session)
		if want := d.Pool().Choose(pool.ChoiceKeyOf([]string{a.player})); got != want {
			t.Fatalf("session %s chosen for %s placed on %s", a.session, want, got)
		}
		count[got]++
	}
	if n := e.counter("kumi_director_failovers_total"); n != 0 {
		t.Fatalf("%v failovers with the default policy none", n)
	}
	// b's share is Binomial(300, 0.1): mean 30, sd 5.2; accept ±4 sd (the session ids are random).
	if b := count[fb.Name()]; b < 30-21 || b > 30+21 {
		t.Fatalf("fleet b got %d of %d new sessions at weight 10 %% (counts %v)", b, n, count)
	}
	t.Logf("90/10 weights: %v", count)

	// A live room on b.
	var room *assignment
	for room == nil || backendOf(room.session) != fb.Name() {
		i := len(ts.all)
		ts.create(fmt.Sprintf("r%d", i), fmt.Sprintf("room-%d", i))
		room = ts.await(1, 60*time.Second)[0]
	}

	// Roll back: all new sessions to a, at once.
	body := fmt.Sprintf(`{"weights": {%q: 100, %q: 0}}`, fa.Name(), fb.Name())
	req, _ := http.NewRequestWithContext(e.ctx, http.MethodPut, "http://"+d.AdminAddr()+"/weights", strings.NewReader(body))
	adminHeaders(req)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("PUT /weights: %s", res.Status)
	}
	for i := range 50 {
		ts.create(fmt.Sprintf("q%d", i), fmt.Sprintf("after-%d", i))
	}
	for _, a := range ts.await(50, 60*time.Second) {
		if b := backendOf(a.session); b != fa.Name() {
			t.Fatalf("new session on %s after its weight went to 0", b)
		}
	}
	ts.create("late", room.group)
	if late := ts.await(1, 60*time.Second)[0]; late.session != room.session {
		t.Fatalf("late arrival of a live room on the weight-0 fleet went to %s, want its session %s", late.session, room.session)
	}

	// Bad weights are refused with the reason and change nothing.
	req, _ = http.NewRequestWithContext(e.ctx, http.MethodPut, "http://"+d.AdminAddr()+"/weights",
		strings.NewReader(fmt.Sprintf(`{"weights": {%q: 0.001}}`, fa.Name())))
	adminHeaders(req)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(msg), "0.01") {
		t.Fatalf("bad weight answered %s %s", res.Status, msg)
	}
	if w := d.Pool().Weights(); w[fa.Name()] != 10000 || w[fb.Name()] != 0 {
		t.Fatalf("weights after a refused change: %v", w)
	}
}

// TestScaleInUnderLoad: when most sessions end, free slots stay above the watermark and the
// director drains the least-loaded servers; their live sessions move as units to other servers
// and every remaining player follows the MOVE: no session is dropped.
func TestScaleInUnderLoad(t *testing.T) {
	e := newEnv(t)
	f := e.startFleet(fleetOpts{name: "scale", capacity: 20, buffer: 2, max: 8})
	cfg := e.directorConfig()
	cfg.Pool.MinFreeSlots = 10
	cfg.Pool.RateShare = 0
	cfg.Pool.HighWatermark = 5
	cfg.Pool.ScaleInAfter = 500 * time.Millisecond
	d, _ := e.startDirector(e.ctx, cfg, f)

	ts := e.tickets()
	const sessions = 45
	for i := range sessions {
		ts.create(fmt.Sprintf("p%d", i), fmt.Sprintf("room-%d", i))
	}
	got := ts.await(sessions, 60*time.Second)
	conns := map[string]*client.Conn{}
	for _, a := range got {
		c, err := client.Dial(e.ctx, a.conn, a.token, client.Default())
		if err != nil {
			t.Fatalf("join %s: %v", a.player, err)
		}
		t.Cleanup(func() { c.Close() })
		conns[a.session] = c
	}
	serversBefore := len(d.Pool().Snapshot(time.Now()).Servers)

	// Load drops: all but one session per server end; the rest stay connected.
	keep := map[string]*assignment{}
	for _, a := range got {
		if _, ok := keep[a.conn]; !ok {
			keep[a.conn] = a
			continue
		}
		if err := conns[a.session].Leave(); err != nil {
			t.Fatal(err)
		}
		delete(conns, a.session)
	}
	if len(keep) < 2 {
		t.Fatalf("sessions packed on %d server(s); the test needs at least 2", len(keep))
	}
	// Every remaining player must stay in a session: moved, never told to reconnect or lost.
	type outcome struct {
		session string
		ev      client.Event
	}
	events := make(chan outcome, 100)
	for s, c := range conns {
		go func() {
			for {
				ev, err := c.Recv(e.ctx)
				if err != nil {
					return
				}
				events <- outcome{s, ev}
			}
		}()
	}
	moved := map[string]bool{}
	deadline := time.After(60 * time.Second)
	for {
		snap := d.Pool().Snapshot(time.Now())
		if len(snap.Servers) < serversBefore && len(moved) > 0 {
			break
		}
		select {
		case o := <-events:
			switch o.ev.Kind {
			case client.EventMoved:
				if o.ev.Err != nil {
					t.Fatalf("session %s: rejoin after MOVE failed: %v", o.session, o.ev.Err)
				}
				moved[o.session] = true
			case client.EventReconnect, client.EventLost:
				t.Fatalf("session %s dropped: %s %s", o.session, o.ev.Kind, o.ev.Text)
			}
		case <-deadline:
			t.Fatalf("no scale-in within 60 s (servers %d → %d, moved %d)", serversBefore, len(snap.Servers), len(moved))
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Each remaining session lives on a server the director still pools, where its player is.
	waitFor(t, "moved sessions reported at their new homes", 60*time.Second, func() bool {
		for s, c := range conns {
			srv, ok := d.Pool().SessionServer(s)
			if !ok || srv == "" {
				return false
			}
			addr := ""
			for _, st := range d.Pool().Snapshot(time.Now()).Servers {
				if st.Name == srv {
					addr = st.Address
				}
			}
			if addr != c.Server() {
				return false
			}
		}
		return true
	})
	for drained := false; !drained; {
		select {
		case o := <-events:
			if o.ev.Kind == client.EventReconnect || o.ev.Kind == client.EventLost || (o.ev.Kind == client.EventMoved && o.ev.Err != nil) {
				t.Fatalf("session %s dropped after the move: %s %s %v", o.session, o.ev.Kind, o.ev.Text, o.ev.Err)
			}
			if o.ev.Kind == client.EventMoved {
				moved[o.session] = true
			}
		default:
			drained = true
		}
	}
	t.Logf("%d servers → %d; %d of %d live sessions moved, none dropped", serversBefore,
		len(d.Pool().Snapshot(time.Now()).Servers), len(moved), len(conns))
}

// TestIdlePolling: with nothing to match the director polls at idle-fetch-gap, not
// min-fetch-gap — five FetchMatches take at least four idle gaps, a lower bound a loaded machine
// only makes easier to meet, where at min-fetch-gap they would take a few tens of milliseconds —
// and tickets filed while it idles are still matched and placed.
func TestIdlePolling(t *testing.T) {
	e := newEnv(t)
	f := e.startFleet(fleetOpts{name: "idle", capacity: 4, buffer: 1, max: 1})
	cfg := e.directorConfig()
	cfg.IdleFetchGap = 150 * time.Millisecond
	t0 := time.Now()
	e.startDirector(e.ctx, cfg, f)
	waitFor(t, "five FetchMatches calls", 60*time.Second, func() bool { return e.counter("kumi_director_fetches_total") >= 5 })
	if took, least := time.Since(t0), 4*cfg.IdleFetchGap; took < least {
		t.Errorf("five FetchMatches calls within %s of start, less than four idle gaps (%s)", took, least)
	}
	ts := e.tickets()
	ts.create("p0", "room-idle")
	if got := ts.await(1, 60*time.Second); len(got) != 1 || got[0].conn == "" {
		t.Fatalf("assignments after idling: %+v", got)
	}
}
