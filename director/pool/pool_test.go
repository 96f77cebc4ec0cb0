package pool

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func testConfig() Config {
	c := DefaultConfig()
	c.MinFreeSlots = 4
	c.RateShare = 1
	c.LeadTime = time.Second
	c.ReservationTTL = 30 * time.Second
	c.HighWatermark = 2
	c.ScaleInAfter = time.Minute
	c.ReportTimeout = 10 * time.Second
	return c
}

func mustPlace(t *testing.T, p *Pool, group string, players []string, maxMembers int, now time.Time) Placement {
	t.Helper()
	pl, err := p.Place(Request{SessionID: NewSessionID(group), Group: group, Players: players, MaxMembers: maxMembers}, now)
	if err != nil {
		t.Fatalf("place %v (group %q): %v", players, group, err)
	}
	return pl
}

func TestPackingFullestFirst(t *testing.T) {
	tests := []struct {
		name    string
		servers []ServerInfo
		want    []string // servers of successive placements
		wantErr int      // placement index that must fail with ErrNoRoom (-1: none)
	}{
		{
			name:    "fullest server with room first",
			servers: []ServerInfo{{Name: "a", Capacity: 4, Used: 1}, {Name: "b", Capacity: 4, Used: 2}, {Name: "c", Capacity: 4}},
			want:    []string{"b", "b", "a", "a", "a", "c"},
			wantErr: -1,
		},
		{
			name:    "full server skipped, then nothing left",
			servers: []ServerInfo{{Name: "a", Capacity: 2, Used: 2}, {Name: "b", Capacity: 2, Used: 1}},
			want:    []string{"b", ""},
			wantErr: 1,
		},
		{
			name:    "draining server never used",
			servers: []ServerInfo{{Name: "a", Capacity: 3, Used: 2, Draining: true}, {Name: "b", Capacity: 3}},
			want:    []string{"b", "b", "b", ""},
			wantErr: 3,
		},
		{
			name:    "ties broken by name",
			servers: []ServerInfo{{Name: "z", Capacity: 2}, {Name: "m", Capacity: 2}},
			want:    []string{"m", "m", "z"},
			wantErr: -1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := New(testConfig())
			for _, s := range tc.servers {
				s.Backend = "local"
				s.Address = "127.0.0.1:7000"
				p.AddServer(s, t0)
			}
			for i, want := range tc.want {
				pl, err := p.Place(Request{SessionID: NewSessionID(""), Players: []string{fmt.Sprint("p", i)}}, t0)
				if i == tc.wantErr {
					if !errors.Is(err, ErrNoRoom) {
						t.Fatalf("placement %d: err %v, want ErrNoRoom", i, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("placement %d: %v", i, err)
				}
				if pl.Server != want {
					t.Fatalf("placement %d on %q, want %q", i, pl.Server, want)
				}
			}
		})
	}
}

func TestGroupsStayTogether(t *testing.T) {
	p := New(testConfig())
	p.AddServer(ServerInfo{Address: "127.0.0.1:7000", Name: "a", Backend: "local", Capacity: 10}, t0)
	p.AddServer(ServerInfo{Address: "127.0.0.1:7000", Name: "b", Backend: "local", Capacity: 10}, t0)

	first := mustPlace(t, p, "room-1", []string{"u1", "u2"}, 4, t0)
	if first.Joined {
		t.Fatal("first match of a group joined an existing session")
	}
	late := mustPlace(t, p, "room-1", []string{"u3"}, 4, t0.Add(time.Second))
	if !late.Joined || late.SessionID != first.SessionID || late.Server != first.Server {
		t.Fatalf("late arrival placed %+v, want session %s on %s", late, first.SessionID, first.Server)
	}
	// The same player again does not take a second member slot.
	again := mustPlace(t, p, "room-1", []string{"u3", "u4"}, 4, t0.Add(2*time.Second))
	if again.SessionID != first.SessionID {
		t.Fatalf("u4 went to %s, want %s (the session has room for 4)", again.SessionID, first.SessionID)
	}
	// Full (4 members): the next arrival opens the group's next session, which becomes its session.
	over := mustPlace(t, p, "room-1", []string{"u5"}, 4, t0.Add(3*time.Second))
	if over.Joined || over.SessionID == first.SessionID {
		t.Fatalf("overflow %+v joined the full session", over)
	}
	if id, _ := p.GroupSession("room-1"); id != over.SessionID {
		t.Fatalf("group session %s, want the overflow session %s", id, over.SessionID)
	}
	other := mustPlace(t, p, "room-2", []string{"v1"}, 4, t0)
	if other.SessionID == first.SessionID || other.SessionID == over.SessionID {
		t.Fatal("another group shares a session")
	}
	if groupOfSession(first.SessionID) != GroupKey("room-1") {
		t.Fatalf("session id %s does not carry the group digest", first.SessionID)
	}
}

func TestGroupMappingDroppedWhenSessionEnds(t *testing.T) {
	p := New(testConfig())
	p.AddServer(ServerInfo{Address: "127.0.0.1:7000", Name: "a", Backend: "local", Capacity: 10}, t0)
	first := mustPlace(t, p, "g", []string{"u1"}, 0, t0)
	now := t0.Add(time.Second)
	p.Report(Report{Server: "a", Capacity: 10, Sessions: []SessionLoad{{ID: first.SessionID, Players: []string{"u1"}}}}, now)
	res := p.Report(Report{Server: "a", Capacity: 10, Ended: []string{first.SessionID}}, now)
	if len(res.Ended) != 1 || res.Ended[0] != first.SessionID {
		t.Fatalf("ended %v", res.Ended)
	}
	if _, ok := p.GroupSession("g"); ok {
		t.Fatal("group mapping kept after its session ended")
	}
	next := mustPlace(t, p, "g", []string{"u2"}, 0, now)
	if next.Joined || next.SessionID == first.SessionID {
		t.Fatalf("placed into the ended session: %+v", next)
	}
}

func TestReportsAndReservations(t *testing.T) {
	cfg := testConfig()
	tests := []struct {
		name string
		run  func(t *testing.T, p *Pool)
	}{
		{"unreported reservation holds its slot until it expires", func(t *testing.T, p *Pool) {
			pl := mustPlace(t, p, "", []string{"u1"}, 0, t0)
			if got := p.Free("local", t0); got != 1 {
				t.Fatalf("free %d, want 1", got)
			}
			// A report that does not list the reservation yet leaves it alone.
			p.Report(Report{Server: "a", Capacity: 2}, t0.Add(time.Second))
			if _, ok := p.SessionServer(pl.SessionID); !ok {
				t.Fatal("reservation dropped by a report that predates the join")
			}
			if gone := p.Sweep(t0.Add(cfg.ReservationTTL - time.Second)); len(gone) != 0 {
				t.Fatalf("swept early: %v", gone)
			}
			gone := p.Sweep(t0.Add(cfg.ReservationTTL))
			if len(gone) != 1 || gone[0] != pl.SessionID {
				t.Fatalf("swept %v, want %s", gone, pl.SessionID)
			}
			p.Report(Report{Server: "a", Capacity: 2}, t0.Add(cfg.ReservationTTL))
			if got := p.Free("local", t0.Add(cfg.ReservationTTL)); got != 2 {
				t.Fatalf("free %d after expiry, want 2", got)
			}
		}},
		{"confirmed session left out of a report has ended", func(t *testing.T, p *Pool) {
			pl := mustPlace(t, p, "", []string{"u1"}, 0, t0)
			p.Report(Report{Server: "a", Capacity: 2, Sessions: []SessionLoad{{ID: pl.SessionID, Players: []string{"u1"}}}}, t0)
			res := p.Report(Report{Server: "a", Capacity: 2}, t0.Add(time.Second))
			if len(res.Ended) != 1 {
				t.Fatalf("ended %v", res.Ended)
			}
			if _, ok := p.SessionServer(pl.SessionID); ok {
				t.Fatal("session kept")
			}
			// Confirmed sessions never expire by time.
		}},
		{"confirmed sessions never expire", func(t *testing.T, p *Pool) {
			pl := mustPlace(t, p, "", []string{"u1"}, 0, t0)
			p.Report(Report{Server: "a", Capacity: 2, Sessions: []SessionLoad{{ID: pl.SessionID, Players: []string{"u1"}}}}, t0)
			if gone := p.Sweep(t0.Add(time.Hour)); len(gone) != 0 {
				t.Fatalf("swept a live session: %v", gone)
			}
		}},
		{"unknown sessions in a report are adopted with their group", func(t *testing.T, p *Pool) {
			id := NewSessionID("chat-9")
			res := p.Report(Report{Server: "a", Capacity: 2, Sessions: []SessionLoad{{ID: id, Players: []string{"x"}}}}, t0)
			if len(res.Adopted) != 1 {
				t.Fatalf("adopted %v", res.Adopted)
			}
			late := mustPlace(t, p, "chat-9", []string{"y"}, 0, t0)
			if !late.Joined || late.SessionID != id {
				t.Fatalf("late arrival after restart went to %+v, want session %s", late, id)
			}
		}},
		{"server without an address takes no sessions", func(t *testing.T, p *Pool) {
			p.AddServer(ServerInfo{Name: "b", Backend: "local", Capacity: 5}, t0)
			p.Report(Report{Server: "a", State: Draining, Capacity: 2}, t0)
			if _, err := p.Place(Request{SessionID: "n", Players: []string{"u"}}, t0); !errors.Is(err, ErrNoRoom) {
				t.Fatalf("placed on a server without address: %v", err)
			}
			p.Report(Report{Server: "b", Address: "127.0.0.1:7777", Capacity: 5}, t0)
			if pl := mustPlace(t, p, "", []string{"u"}, 0, t0); pl.Address != "127.0.0.1:7777" {
				t.Fatalf("placement %+v", pl)
			}
		}},
		{"report from a server not in the pool is ignored", func(t *testing.T, p *Pool) {
			res := p.Report(Report{Server: "stranger", Capacity: 5}, t0)
			if res.Known || p.HasServer("stranger") {
				t.Fatal("unknown server entered the pool through a report")
			}
		}},
		{"full report takes the server out at once", func(t *testing.T, p *Pool) {
			p.Report(Report{Server: "a", Capacity: 2, Sessions: []SessionLoad{{ID: "s1"}, {ID: "s2"}}}, t0)
			if _, err := p.Place(Request{SessionID: "n", Players: []string{"u"}}, t0); !errors.Is(err, ErrNoRoom) {
				t.Fatalf("placed on a full server: %v", err)
			}
		}},
		{"draining report takes the server out at once", func(t *testing.T, p *Pool) {
			p.Report(Report{Server: "a", State: Draining, Capacity: 2}, t0)
			if _, err := p.Place(Request{SessionID: "n", Players: []string{"u"}}, t0); !errors.Is(err, ErrNoRoom) {
				t.Fatalf("placed on a draining server: %v", err)
			}
		}},
		{"silent server takes no sessions until it reports again", func(t *testing.T, p *Pool) {
			p.Report(Report{Server: "a", Capacity: 2}, t0)
			late := t0.Add(cfg.ReportTimeout)
			if _, err := p.Place(Request{SessionID: "n", Players: []string{"u"}}, late); !errors.Is(err, ErrNoRoom) {
				t.Fatalf("placed on a silent server: %v", err)
			}
			p.Report(Report{Server: "a", Capacity: 2}, late)
			mustPlace(t, p, "", []string{"u"}, 0, late)
		}},
		{"members who never join free their member slot", func(t *testing.T, p *Pool) {
			pl := mustPlace(t, p, "g", []string{"u1", "u2"}, 2, t0)
			p.Report(Report{Server: "a", Capacity: 2, Sessions: []SessionLoad{{ID: pl.SessionID, Players: []string{"u1"}}}}, t0.Add(time.Second))
			// u2 is still reserved: a third member does not fit yet.
			if pl3 := mustPlace(t, p, "g", []string{"u3"}, 2, t0.Add(2*time.Second)); pl3.SessionID == pl.SessionID {
				t.Fatal("third member squeezed into a 2-member session")
			}
			p.Report(Report{Server: "a", Capacity: 2, Sessions: []SessionLoad{{ID: pl.SessionID, Players: []string{"u1"}}}}, t0.Add(cfg.ReservationTTL+time.Second))
			// The group's session is now the overflow one; the original has room again for a mover.
			if _, err := p.Move("a", pl.SessionID, []string{"u1"}, t0.Add(cfg.ReservationTTL+time.Second)); !errors.Is(err, ErrNoRoom) {
				t.Fatalf("move with a single server: %v, want ErrNoRoom", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := New(cfg)
			p.AddServer(ServerInfo{Address: "127.0.0.1:7000", Name: "a", Backend: "local", Capacity: 2}, t0)
			tc.run(t, p)
		})
	}
}

func TestTargetAndDeficit(t *testing.T) {
	tests := []struct {
		name       string
		placements int // new sessions in the last RateWindow
		allocLat   time.Duration
		weights    map[string]int
		want       map[string]int
	}{
		{"idle: absolute floor", 0, 0, nil, map[string]int{"local": 4}},
		// 100 sessions over the last 5 s: 10/s over the 10 s window, but 20/s over the current
		// and previous second, which wins (fast attack); lead max(1s, 0) = 1s; share 1 → 4 + 20.
		{"rate times lead", 100, 0, nil, map[string]int{"local": 24}},
		// measured latency 3 s > configured 1 s.
		{"measured lead time", 100, 3 * time.Second, nil, map[string]int{"local": 64}},
		{"split by weight, small share still gets a slot", 100, 0, map[string]int{"local": 9999, "agones": 1}, map[string]int{"local": 24, "agones": 1}},
		{"weight 0 wants nothing", 0, 0, map[string]int{"local": 10000, "agones": 0}, map[string]int{"local": 4, "agones": 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := New(testConfig())
			p.AddBackend("local")
			p.AddBackend("agones")
			if tc.weights == nil {
				tc.weights = map[string]int{"local": 10000}
			}
			if err := p.SetWeights(tc.weights); err != nil {
				t.Fatal(err)
			}
			p.AddServer(ServerInfo{Address: "127.0.0.1:7000", Name: "big", Backend: "local", Capacity: 1000}, t0)
			p.AddServer(ServerInfo{Address: "127.0.0.1:7000", Name: "big2", Backend: "agones", Capacity: 1000}, t0)
			for i := range tc.placements {
				mustPlace(t, p, "", []string{fmt.Sprint(i)}, 0, t0.Add(time.Duration(i)*50*time.Millisecond))
			}
			if tc.allocLat > 0 {
				p.ObserveAllocation("local", tc.allocLat)
			}
			now := t0.Add(5 * time.Second)
			for b, want := range tc.want {
				if got := p.Target(b, now); got != want {
					t.Errorf("target(%s) = %d, want %d", b, got, want)
				}
			}
		})
	}
	// A burst moves the target within half a second: 50 sessions in 0.5 s → 50 / 1.5 s.
	burst := New(testConfig())
	burst.AddServer(ServerInfo{Address: "127.0.0.1:7000", Name: "big", Backend: "local", Capacity: 1000}, t0)
	for i := range 50 {
		mustPlace(t, burst, "", []string{fmt.Sprint(i)}, 0, t0.Add(time.Duration(i)*10*time.Millisecond))
	}
	if got := burst.Rate(t0.Add(500 * time.Millisecond)); math.Abs(got-50/1.5) > 0.01 {
		t.Fatalf("rate after a half-second burst %.2f/s, want %.2f/s", got, 50/1.5)
	}
	// A lull lowers it slowly: 8 s later only the window average (50 in 10 s) is left.
	if got := burst.Rate(t0.Add(8 * time.Second)); got != 5 {
		t.Fatalf("rate 8 s after the burst %.2f/s, want 5/s", got)
	}

	p := New(testConfig())
	p.AddServer(ServerInfo{Address: "127.0.0.1:7000", Name: "a", Backend: "local", Capacity: 3}, t0)
	if d := p.Deficit("local", t0); d != 1 {
		t.Fatalf("deficit %d, want 1 (target 4, free 3)", d)
	}
}

func TestScaleIn(t *testing.T) {
	cfg := testConfig() // target 4 when idle, high watermark 2 → drain above 6 free
	tests := []struct {
		name    string
		servers []ServerInfo
		hold    time.Duration
		want    []string
	}{
		{"not held long enough", []ServerInfo{{Name: "a", Capacity: 10}, {Name: "b", Capacity: 10, Used: 5}}, 30 * time.Second, nil},
		{"least-loaded first, keep target", []ServerInfo{{Name: "a", Capacity: 10, Used: 1}, {Name: "b", Capacity: 10, Used: 5}, {Name: "c", Capacity: 10, Used: 8}}, time.Minute, []string{"a"}},
		{"several while above the watermark", []ServerInfo{{Name: "a", Capacity: 4}, {Name: "b", Capacity: 4}, {Name: "c", Capacity: 4}, {Name: "d", Capacity: 4, Used: 3}}, time.Minute, []string{"a", "b"}},
		{"never below target", []ServerInfo{{Name: "a", Capacity: 8}}, time.Minute, nil},
		{"at the watermark nothing", []ServerInfo{{Name: "a", Capacity: 6}}, time.Hour, nil},
		// a has 6 free and b 4: 10 free is above the watermark, but a's 4 sessions moving to b
		// would leave 0 free, so the refill would allocate a server while a drains.
		{"the others must take its sessions and keep target", []ServerInfo{{Name: "a", Capacity: 10, Used: 4}, {Name: "b", Capacity: 10, Used: 6}}, time.Hour, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := New(cfg)
			for _, s := range tc.servers {
				s.Backend = "local"
				s.Address = "127.0.0.1:7000"
				p.AddServer(s, t0)
			}
			if got := p.ScaleIn(t0); len(got) != 0 {
				t.Fatalf("drained at once: %v", got)
			}
			// Servers keep reporting so they stay accepting.
			at := t0.Add(tc.hold)
			for _, s := range tc.servers {
				sess := make([]SessionLoad, s.Used)
				for i := range sess {
					sess[i] = SessionLoad{ID: fmt.Sprintf("%s-%d", s.Name, i)}
				}
				p.Report(Report{Server: s.Name, Capacity: s.Capacity, Sessions: sess}, at)
			}
			got := p.ScaleIn(at)
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("drained %v, want %v", got, tc.want)
			}
			for _, name := range got {
				if res := p.Report(Report{Server: name, Capacity: 10}, at); !res.Drain {
					t.Fatalf("%s not told to drain on its next report", name)
				}
				for range 3 {
					if pl, err := p.Place(Request{SessionID: NewSessionID(""), Players: []string{"x"}}, at); err == nil && pl.Server == name {
						t.Fatalf("new session placed on draining %s", name)
					}
				}
			}
		})
	}
}

func TestMove(t *testing.T) {
	p := New(testConfig())
	p.AddServer(ServerInfo{Address: "127.0.0.1:7000", Name: "a", Backend: "local", Capacity: 4}, t0)
	p.AddServer(ServerInfo{Address: "127.0.0.1:7000", Name: "b", Backend: "local", Capacity: 1}, t0)
	p.AddServer(ServerInfo{Address: "127.0.0.1:7000", Name: "c", Backend: "local", Capacity: 4}, t0)
	pl := mustPlace(t, p, "voice", []string{"u1", "u2"}, 0, t0) // b: fullest with room (1 free)
	if pl.Server != "b" {
		t.Fatalf("placed on %s, want b", pl.Server)
	}
	p.Report(Report{Server: "b", State: Draining, Capacity: 1, Sessions: []SessionLoad{{ID: pl.SessionID, Players: []string{"u1", "u2"}}}}, t0)
	mv, err := p.Move("b", pl.SessionID, []string{"u1", "u2"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if mv.Server == "b" || mv.SessionID != pl.SessionID {
		t.Fatalf("moved to %+v", mv)
	}
	// Asked again (lost reply): same answer, no second slot.
	free := p.Free("local", t0)
	mv2, err := p.Move("b", pl.SessionID, []string{"u1", "u2"}, t0)
	if err != nil || mv2.Server != mv.Server || p.Free("local", t0) != free {
		t.Fatalf("repeated move: %+v %v (free %d → %d)", mv2, err, free, p.Free("local", t0))
	}
	// The draining server still lists the session and then ends it: the group stays mapped.
	p.Report(Report{Server: "b", State: Draining, Capacity: 1, Sessions: []SessionLoad{{ID: pl.SessionID, Players: []string{"u1"}}}}, t0)
	p.Report(Report{Server: "b", State: Stopping, Capacity: 1, Ended: []string{pl.SessionID}}, t0)
	if srv, ok := p.SessionServer(pl.SessionID); !ok || srv != mv.Server {
		t.Fatalf("session on %q (%v) after the old home ended it, want %s", srv, ok, mv.Server)
	}
	late := mustPlace(t, p, "voice", []string{"u3"}, 0, t0)
	if late.Server != mv.Server || late.SessionID != pl.SessionID {
		t.Fatalf("late arrival after the move went to %+v", late)
	}

	// A late arrival whose session is on a draining server joins it there (the game server admits
	// members of its live sessions during the drain grace and moves the session with all of them),
	// so the group is never split; a stopping server's sessions take no one.
	p.AddServer(ServerInfo{Address: "127.0.0.1:7000", Name: "d", Backend: "local", Capacity: 4}, t0)
	chat := mustPlace(t, p, "chat", []string{"c1"}, 0, t0)
	p.Report(Report{Server: chat.Server, Capacity: 4, Sessions: []SessionLoad{{ID: chat.SessionID, Players: []string{"c1"}}}}, t0)
	if !p.Drain(chat.Server) {
		t.Fatal("drain")
	}
	if late := mustPlace(t, p, "chat", []string{"c2"}, 0, t0); late.SessionID != chat.SessionID || late.Server != chat.Server {
		t.Fatalf("late arrival to a draining session: %+v (was %+v)", late, chat)
	}
	p.Report(Report{Server: chat.Server, State: Stopping, Capacity: 4, Sessions: []SessionLoad{{ID: chat.SessionID, Players: []string{"c1"}}}}, t0)
	if late := mustPlace(t, p, "chat", []string{"c3"}, 0, t0); late.SessionID == chat.SessionID {
		t.Fatalf("late arrival joined a session on a stopping server: %+v", late)
	}

	// Nowhere with room.
	q := New(testConfig())
	q.AddServer(ServerInfo{Address: "127.0.0.1:7000", Name: "only", Backend: "local", Capacity: 4}, t0)
	one := mustPlace(t, q, "", []string{"u"}, 0, t0)
	if _, err := q.Move("only", one.SessionID, []string{"u"}, t0); !errors.Is(err, ErrNoRoom) {
		t.Fatalf("move with no other server: %v", err)
	}
	if _, err := q.Move("ghost", "x", nil, t0); !errors.Is(err, ErrUnknownSession) {
		t.Fatalf("move from unknown server: %v", err)
	}
}

func TestWeights(t *testing.T) {
	p := New(testConfig())
	p.AddBackend("local")
	p.AddBackend("agones")
	for _, tc := range []struct {
		w    map[string]int
		want string
	}{
		{map[string]int{"nope": 1}, `unknown backend "nope"`},
		{map[string]int{"local": -1}, "0..10000"},
		{map[string]int{"local": 10001}, "0..10000"},
		{map[string]int{"local": 0, "agones": 0}, "above 0"},
	} {
		if err := p.SetWeights(tc.w); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SetWeights(%v) = %v, want error containing %q", tc.w, err, tc.want)
		}
	}
	if w := p.Weights(); w["local"] != 5000 || w["agones"] != 5000 {
		t.Fatalf("bad input changed the weights: %v", w)
	}

	// Statistical: 200k keys, shares within 5 standard deviations of the binomial expectation.
	const n = 200000
	for _, tc := range []map[string]int{
		{"local": 9999, "agones": 1},   // 0.01 %
		{"local": 9990, "agones": 10},  // 0.1 %
		{"local": 9900, "agones": 100}, // 1 %
		{"local": 5000, "agones": 5000},
		{"local": 0, "agones": 10000},
	} {
		if err := p.SetWeights(tc); err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for range n {
			got[p.Choose(NewSessionID(""))]++
		}
		for b, w := range tc {
			share := float64(w) / 10000
			mean := n * share
			sd := math.Sqrt(n * share * (1 - share))
			if math.Abs(float64(got[b])-mean) > 5*sd+1 {
				t.Errorf("weights %v: %s chosen %d times, want %.0f ± %.0f", tc, b, got[b], mean, 5*sd)
			}
		}
	}
	// Deterministic.
	first := p.Choose("same-key")
	for range 10 {
		if got := p.Choose("same-key"); got != first {
			t.Fatalf("choice not deterministic: %s then %s", first, got)
		}
	}
}

func TestWeightZeroStopsNewSessionsOnly(t *testing.T) {
	p := New(testConfig())
	p.AddServer(ServerInfo{Address: "127.0.0.1:7000", Name: "k1", Backend: "agones", Capacity: 100}, t0)
	p.AddServer(ServerInfo{Address: "127.0.0.1:7000", Name: "l1", Backend: "local", Capacity: 100}, t0)
	if err := p.SetWeights(map[string]int{"agones": 10000, "local": 0}); err != nil {
		t.Fatal(err)
	}
	room := mustPlace(t, p, "room", []string{"u1"}, 0, t0)
	if room.Backend != "agones" {
		t.Fatalf("placed on %s", room.Backend)
	}
	// Roll back: agones to 0. New sessions go local at once; the live room keeps its late arrivals.
	if err := p.SetWeights(map[string]int{"agones": 0, "local": 10000}); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if pl := mustPlace(t, p, "", []string{fmt.Sprint(i)}, 0, t0); pl.Backend != "local" {
			t.Fatalf("new session on weight-0 backend %s", pl.Backend)
		}
	}
	if late := mustPlace(t, p, "room", []string{"u2"}, 0, t0); late.SessionID != room.SessionID {
		t.Fatalf("late arrival left its live session on the weight-0 backend: %+v", late)
	}
	if p.Target("agones", t0) != 0 {
		t.Fatal("weight-0 backend still wants free slots")
	}
	// When the heavier backend is full, a new session goes to the other backend only when asked
	// (Failover); otherwise the caller learns which backend is short.
	if err := p.SetWeights(map[string]int{"agones": 1, "local": 9999}); err != nil {
		t.Fatal(err)
	}
	p.Report(Report{Server: "l1", Capacity: 1, Sessions: []SessionLoad{{ID: "x"}}}, t0)
	id := NewSessionID("")
	for p.Choose(id) != "local" {
		id = NewSessionID("")
	}
	changed := p.Changed()
	var short *ShortError
	if _, err := p.Place(Request{SessionID: id, Players: []string{"z"}}, t0); !errors.As(err, &short) || short.Backend != "local" || !errors.Is(err, ErrNoRoom) {
		t.Fatalf("place on a full chosen backend: %v, want ShortError{local}", err)
	}
	pl, err := p.Place(Request{SessionID: id, Players: []string{"z"}, Failover: true}, t0)
	if err != nil || pl.Backend != "agones" || pl.FailedOver != "local" {
		t.Fatalf("failover placement %+v %v", pl, err)
	}
	select {
	case <-changed:
		t.Fatal("Changed fired without new room")
	default:
	}
	p.Report(Report{Server: "l1", Capacity: 2, Sessions: []SessionLoad{{ID: "x"}}}, t0)
	select {
	case <-changed:
	default:
		t.Fatal("a report that freed a slot did not fire Changed")
	}
}

// TestWeightsCapBursts: a burst larger than the heavy backend's free slots never moves the
// light backend above its share: each new session goes to the backend its id chose, or gets a
// ShortError naming it. Deterministic: the count on the light backend is exactly the number of
// placed ids the weights gave it.
func TestWeightsCapBursts(t *testing.T) {
	p := New(testConfig())
	p.AddServer(ServerInfo{Address: "127.0.0.1:7000", Name: "a1", Backend: "a", Capacity: 50}, t0)
	p.AddServer(ServerInfo{Address: "127.0.0.1:7001", Name: "b1", Backend: "b", Capacity: 1000}, t0)
	if err := p.SetWeights(map[string]int{"a": 9000, "b": 1000}); err != nil {
		t.Fatal(err)
	}
	for burst := range 3 {
		placed, short := map[string]int{}, 0
		chosen := map[string]int{}
		for i := range 300 {
			id := NewSessionID("")
			want := p.Choose(id)
			pl, err := p.Place(Request{SessionID: id, Players: []string{fmt.Sprint(burst, "-", i)}}, t0)
			var se *ShortError
			switch {
			case errors.As(err, &se):
				if se.Backend != want || want != "a" {
					t.Fatalf("short %q for an id the weights gave %q", se.Backend, want)
				}
				short++
				continue
			case err != nil:
				t.Fatal(err)
			}
			if pl.Backend != want {
				t.Fatalf("burst %d: session chosen for %s placed on %s", burst, want, pl.Backend)
			}
			placed[pl.Backend]++
			chosen[want]++
		}
		if placed["b"] != chosen["b"] || placed["b"] > 300/10+21 {
			t.Fatalf("burst %d: b got %d (chosen %d) of 300", burst, placed["b"], chosen["b"])
		}
		if burst == 0 && (placed["a"] != 50 || short == 0) {
			t.Fatalf("burst 0: a got %d of its 50 slots, %d short", placed["a"], short)
		}
		if burst > 0 && placed["a"] != 0 {
			t.Fatalf("burst %d: a full, yet got %d", burst, placed["a"])
		}
	}
}

// TestRetriedMatchKeepsItsChoice: a match released because its chosen backend was short comes back
// with a fresh session id but the same players; it chooses the same backend however often it is
// retried, so retries never tip sessions onto the lighter backend.
func TestRetriedMatchKeepsItsChoice(t *testing.T) {
	p := New(testConfig())
	p.AddServer(ServerInfo{Address: "127.0.0.1:7000", Name: "a1", Backend: "a", Capacity: 1}, t0)
	p.AddServer(ServerInfo{Address: "127.0.0.1:7001", Name: "b1", Backend: "b", Capacity: 1000}, t0)
	if err := p.SetWeights(map[string]int{"a": 9000, "b": 1000}); err != nil {
		t.Fatal(err)
	}
	p.Report(Report{Server: "a1", Capacity: 1, Sessions: []SessionLoad{{ID: "x"}}}, t0) // a is full
	for _, tc := range []struct {
		name    string
		players []string
	}{
		{"solo", []string{"p1"}},
		{"duel", []string{"p2", "p3"}},
		{"duel, other order", []string{"p3", "p2"}},
	} {
		want := p.Choose(ChoiceKeyOf(tc.players))
		for retry := range 50 {
			pl, err := p.Place(Request{SessionID: NewSessionID(""), ChoiceKey: ChoiceKeyOf(tc.players), Players: tc.players}, t0)
			var short *ShortError
			switch {
			case errors.As(err, &short):
				if short.Backend != want {
					t.Fatalf("%s retry %d: short on %s, chose %s", tc.name, retry, short.Backend, want)
				}
				continue
			case err != nil:
				t.Fatalf("%s retry %d: %v", tc.name, retry, err)
			}
			if pl.Backend != want || want != "b" {
				t.Fatalf("%s retry %d: placed on %s, its players chose %s", tc.name, retry, pl.Backend, want)
			}
		}
	}
}

func TestBadInput(t *testing.T) {
	p := New(testConfig())
	p.AddServer(ServerInfo{Address: "127.0.0.1:7000", Name: "a", Backend: "local", Capacity: 4}, t0)
	if _, err := p.Place(Request{SessionID: "s"}, t0); err == nil {
		t.Fatal("match without players accepted")
	}
	if _, err := p.Place(Request{Players: []string{"u"}}, t0); err == nil {
		t.Fatal("new session without id accepted")
	}
	mustPlace(t, p, "", []string{"u"}, 0, t0)
	pl, _ := p.Place(Request{SessionID: "dup", Players: []string{"u"}}, t0)
	if _, err := p.Place(Request{SessionID: pl.SessionID, Players: []string{"v"}}, t0); err == nil {
		t.Fatal("duplicate session id accepted")
	}
	if err := (Config{}).Validate(); err == nil {
		t.Fatal("zero config valid")
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	if got := p.RemoveServer("a"); len(got) != 2 {
		t.Fatalf("removing a server dropped %v", got)
	}
	if p.Snapshot(t0).Sessions != 0 {
		t.Fatal("sessions left after their server was removed")
	}
}

// A late member of a group whose session sits on a draining server joins that session (the game
// server admits it during the drain grace and moves it with the session); once the session has
// moved, late members follow it to its new home; a stopping server takes nobody.
func TestGroupLateMemberDuringDrain(t *testing.T) {
	p := New(testConfig())
	p.AddServer(ServerInfo{Address: "127.0.0.1:7000", Name: "a", Backend: "local", Capacity: 10}, t0)
	first := mustPlace(t, p, "room", []string{"u1", "u2"}, 8, t0)
	p.AddServer(ServerInfo{Address: "127.0.0.1:7001", Name: "b", Backend: "local", Capacity: 10}, t0)
	now := t0.Add(time.Second)
	load := []SessionLoad{{ID: first.SessionID, Players: []string{"u1", "u2"}}}
	p.Report(Report{Server: first.Server, Address: "127.0.0.1:7000", Capacity: 10, State: Draining, Sessions: load}, now)

	late := mustPlace(t, p, "room", []string{"u3"}, 8, now)
	if !late.Joined || late.SessionID != first.SessionID || late.Server != first.Server {
		t.Fatalf("late member during the drain grace placed %+v, want session %s on %s", late, first.SessionID, first.Server)
	}
	fresh := mustPlace(t, p, "other", []string{"v1"}, 8, now)
	if fresh.Server == first.Server {
		t.Fatal("a new session went to the draining server")
	}
	moved, err := p.Move(first.Server, first.SessionID, []string{"u1", "u2", "u3"}, now)
	if err != nil {
		t.Fatal(err)
	}
	later := mustPlace(t, p, "room", []string{"u4"}, 8, now.Add(time.Second))
	if later.SessionID != first.SessionID || later.Server != moved.Server {
		t.Fatalf("late member after the move placed %+v, want the session's new home %s", later, moved.Server)
	}

	p2 := New(testConfig())
	p2.AddServer(ServerInfo{Address: "127.0.0.1:7000", Name: "a", Backend: "local", Capacity: 10}, t0)
	s := mustPlace(t, p2, "room", []string{"u1"}, 8, t0)
	p2.AddServer(ServerInfo{Address: "127.0.0.1:7001", Name: "b", Backend: "local", Capacity: 10}, t0)
	p2.Report(Report{Server: "a", Address: "127.0.0.1:7000", Capacity: 10, State: Stopping,
		Sessions: []SessionLoad{{ID: s.SessionID, Players: []string{"u1"}}}}, now)
	if pl := mustPlace(t, p2, "room", []string{"u2"}, 8, now); pl.Server == "a" {
		t.Fatalf("late member placed on a stopping server: %+v", pl)
	}
}

// TestAdoptedServerLeavesWhenSilent: an adopted server takes sessions like any other, keeps them
// while it reports, and leaves the pool with its sessions once silent for AdoptedSilence (no
// backend watch would ever say it is gone); a backend's server stays however long it is silent.
func TestAdoptedServerLeavesWhenSilent(t *testing.T) {
	p := New(testConfig())
	p.AddBackend("local")
	if !p.AdoptServer(ServerInfo{Name: "hand", Backend: "local", Address: "127.0.0.1:7777", Capacity: 3}, t0) {
		t.Fatal("adopt refused")
	}
	if p.AdoptServer(ServerInfo{Name: "hand", Backend: "local", Address: "x:1"}, t0) {
		t.Fatal("adopted twice")
	}
	p.AddServer(ServerInfo{Name: "fleet", Backend: "local", Address: "127.0.0.1:7000", Capacity: 1, Used: 1}, t0)
	pl := mustPlace(t, p, "g", []string{"a"}, 0, t0)
	if pl.Server != "hand" {
		t.Fatalf("placed on %s", pl.Server)
	}
	if st := p.Snapshot(t0).Servers; !st[1].Adopted || st[0].Adopted {
		t.Fatalf("snapshot %+v", st)
	}
	silence := testConfig().AdoptedSilence()
	p.Report(Report{Server: "hand", State: Accepting, Sessions: []SessionLoad{{ID: pl.SessionID, Players: []string{"a"}}}}, t0.Add(time.Second))
	if gone := p.Sweep(t0.Add(silence)); len(gone) != 0 || !p.HasServer("hand") {
		t.Fatalf("swept %v while the server reported %s ago", gone, silence-time.Second)
	}
	gone := p.Sweep(t0.Add(time.Second + silence))
	if len(gone) != 1 || gone[0] != pl.SessionID || p.HasServer("hand") {
		t.Fatalf("swept %v; server still there: %v", gone, p.HasServer("hand"))
	}
	if _, ok := p.GroupSession("g"); ok {
		t.Fatal("group still maps to the dropped session")
	}
	if !p.HasServer("fleet") {
		t.Fatal("a backend's silent server was dropped")
	}
}

// TestLargeGroupFillsOpenSessions: a chat group whose members arrive in matches of 12, 11, 16 and 1
// at 16 members per session fills each open session before the next opens: 16/16/8, whatever
// chunks the core's cycles happened to give the match function.
func TestLargeGroupFillsOpenSessions(t *testing.T) {
	p := New(testConfig())
	p.AddServer(ServerInfo{Address: "127.0.0.1:7000", Name: "s1", Backend: "local", Capacity: 10}, t0)
	next := 0
	members := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("m%02d", next)
			next++
		}
		return out
	}
	perSession := map[string]int{}
	var order []string
	for _, n := range []int{12, 11, 16, 1} {
		pl := mustPlace(t, p, "big", members(n), 16, t0)
		placed := 0
		for part := &pl; part != nil; part = part.Rest {
			k := n - placed
			if part.Players != nil {
				k = len(part.Players)
			}
			if _, seen := perSession[part.SessionID]; !seen {
				order = append(order, part.SessionID)
			}
			perSession[part.SessionID] += k
			placed += k
		}
		if placed != n {
			t.Fatalf("match of %d: %d placed", n, placed)
		}
	}
	var sizes []int
	for _, id := range order {
		sizes = append(sizes, perSession[id])
	}
	if fmt.Sprint(sizes) != "[16 16 8]" {
		t.Fatalf("40 members at 16 per session split %v, want [16 16 8]", sizes)
	}
	// The oldest members of a split match fill the open session.
	pl := mustPlace(t, p, "big2", members(10), 16, t0)
	pl = mustPlace(t, p, "big2", members(10), 16, t0)
	if pl.Rest == nil || len(pl.Players) != 6 || pl.Players[0] != fmt.Sprintf("m%02d", 50) || len(pl.Rest.Players) != 4 {
		t.Fatalf("split of 10 into a session with 6 free: %+v", pl)
	}
}
