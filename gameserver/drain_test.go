package gameserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kumi-dev/kumi/api/control"
	"github.com/kumi-dev/kumi/gameserver/client"
	"github.com/kumi-dev/kumi/gameserver/wire"
	"github.com/kumi-dev/kumi/internal/logbuf"
	"github.com/kumi-dev/kumi/internal/token"
)

// testDirector is a small real implementation of kumi.control.v1.Director served over gRPC on
// 127.0.0.1: it records reports and moves every session to one target server, minting real
// tokens for it (or answers ResourceExhausted when it has no target). It is a test peer, not the
// director's placement logic.
type testDirector struct {
	control.UnimplementedDirectorServer
	signer *token.Signer

	mu      sync.Mutex
	target  *Server
	drain   bool
	reports []*control.LoadReport
	moves   []*control.MoveSessionRequest
	reportC chan *control.LoadReport
}

func startDirector(t testing.TB, signer *token.Signer) (*testDirector, string) {
	t.Helper()
	d := &testDirector{signer: signer, reportC: make(chan *control.LoadReport, 1024)}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	control.RegisterDirectorServer(g, d)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return d, lis.Addr().String()
}

func (d *testDirector) Report(_ context.Context, r *control.LoadReport) (*control.ReportReply, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reports = append(d.reports, r)
	select {
	case d.reportC <- r:
	default:
	}
	return &control.ReportReply{Drain: d.drain, ReportInterval: durationpb.New(time.Second)}, nil
}

func (d *testDirector) MoveSession(_ context.Context, req *control.MoveSessionRequest) (*control.MoveSessionReply, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.moves = append(d.moves, req)
	if d.target == nil {
		return nil, status.Error(codes.ResourceExhausted, "no server has room")
	}
	reply := &control.MoveSessionReply{Server: d.target.Name(), Address: d.target.PublicAddr(), SessionId: req.GetSessionId()}
	exp := time.Now().Add(time.Minute)
	for _, p := range req.GetPlayers() {
		raw, err := d.signer.ServerToken(token.ServerClaims{PlayerID: p, SessionID: req.GetSessionId(), Server: d.target.Name(), Instance: d.target.Instance(), ExpiresAt: exp})
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		reply.Tokens = append(reply.Tokens, &control.PlayerToken{PlayerId: p, Token: raw, Expiry: timestamppb.New(exp)})
	}
	return reply, nil
}

func TestDrainMovesSessions(t *testing.T) {
	signer := newSigner(t)
	d, daddr := startDirector(t, signer)
	b := startServer(t, testConfig("gs-b"), signer)
	d.mu.Lock()
	d.target = b
	d.mu.Unlock()
	cfg := testConfig("gs-a")
	cfg.Director = daddr
	// The late join and the short session's end below must both land inside the grace; 1 s was
	// too little for them on a machine loaded by two CPU hogs besides a -race run.
	cfg.DrainGrace = 5 * time.Second
	a := startServer(t, cfg, signer)

	const sessions, members = 20, 2
	var conns []*client.Conn
	for i := range sessions {
		for j := range members {
			conns = append(conns, dial(t, a, mint(t, signer, "gs-a", fmt.Sprintf("s%d", i), fmt.Sprintf("p%d-%d", i, j), time.Minute)))
		}
	}
	short := []*client.Conn{
		dial(t, a, mint(t, signer, "gs-a", "short", "q1", time.Minute)),
		dial(t, a, mint(t, signer, "gs-a", "short", "q2", time.Minute)),
	}
	start := time.Now()
	a.Drain("test")
	eventually(t, time.Second, "draining", func() bool { return a.State() != StateAccepting })
	_, err := client.Dial(context.Background(), a.Addr(), mint(t, signer, "gs-a", "new", "late", time.Minute), client.Default())
	var re *client.RefusedError
	if !errors.As(err, &re) || re.Code != wire.RefuseDraining {
		t.Fatalf("join while draining: %v", err)
	}
	// A late member of a live session still joins during the grace, and moves with its session.
	conns = append(conns, dial(t, a, mint(t, signer, "gs-a", "s0", "late-s0", time.Minute)))
	// A session that ends within the grace period is not moved.
	for _, c := range short {
		c.Leave()
	}
	if el := time.Since(start); el >= cfg.DrainGrace {
		t.Fatalf("test setup took %s, longer than the drain grace %s: the checks below would not test the grace", el, cfg.DrainGrace)
	}

	for _, c := range conns {
		mv := recvKind(t, c, client.EventMove)
		if mv.Addr != b.PublicAddr() {
			t.Fatalf("MOVE to %s, want %s", mv.Addr, b.PublicAddr())
		}
		if done := recvKind(t, c, client.EventMoved); done.Err != nil {
			t.Fatalf("rejoin failed: %v", done.Err)
		}
	}
	// Every member got MOVE and rejoined elsewhere above, so the server empties: the wait is a
	// deadline for that state, not a bound on how fast (the drain's duration is a benchmark's).
	select {
	case <-a.Drained():
	case <-time.After(30 * time.Second):
		t.Fatalf("not empty 30 s after every member moved: %+v", a.Stats())
	}
	if n := a.m.left[leaveUnacked].Load(); n != 0 {
		t.Fatalf("%d members dropped unacknowledged", n)
	}
	if err := a.Wait(); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.Sessions != sessions || st.Members != sessions*members+1 {
		t.Fatalf("target has %+v, want %d sessions of %d", st, sessions, members)
	}
	// Moved members talk on the new server.
	if err := conns[0].Send([]byte("moved")); err != nil {
		t.Fatal(err)
	}
	if e := recvKind(t, conns[1], client.EventData); string(e.Payload) != "moved" {
		t.Fatalf("got %q", e.Payload)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.moves) != sessions {
		t.Fatalf("director got %d MoveSession calls, want %d", len(d.moves), sessions)
	}
	if got := a.m.left[leaveMoved].Load(); got != sessions*members+1 {
		t.Fatalf("moved members = %d", got)
	}
	var sawDraining, sawStopping bool
	for _, r := range d.reports {
		sawDraining = sawDraining || r.GetState() == control.ServerState_SERVER_STATE_DRAINING
		sawStopping = sawStopping || r.GetState() == control.ServerState_SERVER_STATE_STOPPING
	}
	if !sawDraining || !sawStopping {
		t.Fatalf("reports: draining %v stopping %v", sawDraining, sawStopping)
	}
}

func TestDrainWithoutMoveTarget(t *testing.T) {
	for _, withDirector := range []bool{false, true} {
		t.Run(fmt.Sprintf("director=%v", withDirector), func(t *testing.T) {
			signer := newSigner(t)
			cfg := testConfig("gs-a")
			var d *testDirector
			if withDirector {
				var addr string
				d, addr = startDirector(t, signer) // no target: ResourceExhausted
				cfg.Director = addr
			}
			a := startServer(t, cfg, signer)
			c1 := dial(t, a, mint(t, signer, "gs-a", "s1", "p1", time.Minute))
			c2 := dial(t, a, mint(t, signer, "gs-a", "s1", "p2", time.Minute))
			a.Drain("test")
			for _, c := range []*client.Conn{c1, c2} {
				if e := recvKind(t, c, client.EventReconnect); e.Code != wire.ReconnectDrain {
					t.Fatalf("got %+v", e)
				}
			}
			select {
			case <-a.Drained():
			case <-time.After(cfg.DrainGrace + time.Second):
				t.Fatalf("not drained: %+v", a.Stats())
			}
			if got := a.m.left[leaveReconnected].Load(); got != 2 {
				t.Fatalf("reconnected = %d", got)
			}
			if d != nil {
				d.mu.Lock()
				n := len(d.moves)
				d.mu.Unlock()
				if n != 1 {
					t.Fatalf("MoveSession calls = %d", n)
				}
			}
		})
	}
}

// A member that never acknowledges MOVE gets it retransmitted, then is dropped and counted.
func TestDrainUnacknowledged(t *testing.T) {
	signer := newSigner(t)
	cfg := testConfig("gs-a")
	cfg.DrainGrace = 0
	cfg.MoveTimeout = 300 * time.Millisecond
	a := startServer(t, cfg, signer)
	m, _ := rawJoin(t, a, mint(t, signer, "gs-a", "s1", "deaf", time.Minute))
	a.Drain("test")
	var got int
	for got < 2 {
		h, body := m.next(2 * time.Second)
		if h.Type != wire.TypeReconnect {
			t.Fatalf("got %v", h)
		}
		if r, err := wire.ParseReconnect(body); err != nil || r.Code != wire.ReconnectDrain {
			t.Fatalf("%+v %v", r, err)
		}
		got++
	}
	select {
	case <-a.Drained():
	case <-time.After(3 * time.Second):
		t.Fatal("not drained")
	}
	if n := a.m.left[leaveUnacked].Load(); n != 1 {
		t.Fatalf("unacknowledged = %d", n)
	}
}

func TestDirectorReportsAndDrainRequest(t *testing.T) {
	signer := newSigner(t)
	d, addr := startDirector(t, signer)
	cfg := testConfig("gs-a")
	cfg.Director = addr
	cfg.ExitWhenDrained = false
	a := startServer(t, cfg, signer)
	next := func(cond func(*control.LoadReport) bool) *control.LoadReport {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case r := <-d.reportC:
				if cond(r) {
					return r
				}
			case <-timeout:
				t.Fatal("no matching report")
			}
		}
	}
	first := next(func(*control.LoadReport) bool { return true })
	if first.GetServer() != "gs-a" || first.GetAddress() != a.PublicAddr() || first.GetCapacity() != int32(cfg.Capacity) || first.GetState() != control.ServerState_SERVER_STATE_ACCEPTING {
		t.Fatalf("first report %v", first)
	}
	c := dial(t, a, mint(t, signer, "gs-a", "room", "p1", time.Minute))
	r := next(func(r *control.LoadReport) bool { return len(r.GetSessions()) == 1 })
	if s := r.GetSessions()[0]; s.GetSessionId() != "room" || len(s.GetPlayers()) != 1 || s.GetPlayers()[0] != "p1" {
		t.Fatalf("session %v", s)
	}
	c.Leave()
	r = next(func(r *control.LoadReport) bool { return len(r.GetEndedSessions()) > 0 })
	if r.GetEndedSessions()[0] != "room" || len(r.GetSessions()) != 0 {
		t.Fatalf("report after leave %v", r)
	}
	d.mu.Lock()
	d.drain = true
	d.mu.Unlock()
	next(func(r *control.LoadReport) bool { return r.GetState() == control.ServerState_SERVER_STATE_STOPPING })
	if a.State() != StateStopping {
		t.Fatalf("state %s", a.State())
	}
}

// A server whose public address is unspecified (0.0.0.0, ::) would have the director send players
// somewhere only this machine reaches: it says so at start, naming the setting to fix.
func TestUnspecifiedPublicAddrWarns(t *testing.T) {
	signer := newSigner(t)
	_, daddr := startDirector(t, signer)
	for _, tc := range []struct {
		public string
		warn   bool
	}{{"0.0.0.0:7777", true}, {"[::]:7777", true}, {"127.0.0.1:7777", false}} {
		t.Run(tc.public, func(t *testing.T) {
			var buf logbuf.Buffer
			cfg := testConfig("gs-a")
			cfg.Director, cfg.PublicAddr = daddr, tc.public
			ctx, cancel := context.WithCancel(context.Background())
			s, err := Start(ctx, slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})), cfg,
				prometheus.NewRegistry(), WithVerifier(signer.Verifier("", time.Second)))
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			cancel()
			if err := s.Wait(); err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(buf.String(), "set -public-addr"); got != tc.warn {
				t.Fatalf("warning logged = %v, want %v; log:\n%s", got, tc.warn, buf.String())
			}
		})
	}
}
