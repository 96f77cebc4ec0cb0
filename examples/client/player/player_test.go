package player_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/api/control"
	pb "github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/examples/client/player"
	"github.com/kumi-dev/kumi/frontend"
	"github.com/kumi-dev/kumi/gameserver"
	"github.com/kumi-dev/kumi/internal/omext"
	"github.com/kumi-dev/kumi/internal/token"
	"github.com/kumi-dev/kumi/matchfunction"
	"github.com/kumi-dev/kumi/openmatch"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// stack is the real player path on 127.0.0.1: the embedded Open Match core, the match function,
// the frontend and game servers, plus testDirector, a stand-in for kumi's director (another
// component) that places every voice match of a chat group into one session.
type stack struct {
	signer   *token.Signer
	frontend *frontend.Server
	dir      *testDirector
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startStack(t *testing.T, servers int) *stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	var waits []func() error
	t.Cleanup(func() {
		cancel()
		for i := len(waits) - 1; i >= 0; i-- {
			if err := waits[i](); err != nil {
				t.Errorf("stop: %v", err)
			}
		}
	})
	log := quiet()
	signer, err := token.GenerateSigner(token.DefaultIssuer)
	if err != nil {
		t.Fatal(err)
	}

	ocfg := openmatch.Default()
	ocfg.FrontendAddr, ocfg.BackendAddr, ocfg.QueryAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	core, err := openmatch.Start(ctx, log, ocfg, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	waits = append(waits, core.Wait)

	mcfg := matchfunction.Default()
	mcfg.ListenAddr, mcfg.QueryAddr = "127.0.0.1:0", core.QueryAddr()
	mmf, err := matchfunction.Start(ctx, log, mcfg, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	waits = append(waits, mmf.Wait)

	fcfg := frontend.Default()
	fcfg.GRPCAddr, fcfg.HTTPAddr, fcfg.OpenMatchAddr = "127.0.0.1:0", "127.0.0.1:0", core.FrontendAddr()
	fcfg.JWT.Keys = []token.PublicKey{signer.PublicKey()}
	fe, err := frontend.Start(ctx, log, fcfg, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	waits = append(waits, fe.Wait)

	d := &testDirector{signer: signer, joined: make(chan string, 64), groups: map[string]string{}, ready: make(chan struct{})}
	for i := range servers {
		gcfg := gameserver.Default()
		gcfg.ListenAddr, gcfg.Name = "127.0.0.1:0", fmt.Sprintf("gs-%d", i)
		gcfg.Token.Keys = []token.PublicKey{signer.PublicKey()}
		gcfg.DrainGrace, gcfg.ReportDebounce, gcfg.ExitWhenDrained = 50*time.Millisecond, 5*time.Millisecond, false
		gs, err := gameserver.Start(ctx, log, gcfg, prometheus.NewRegistry(), gameserver.WithDirector(d))
		if err != nil {
			t.Fatal(err)
		}
		waits = append(waits, gs.Wait)
		d.servers = append(d.servers, gs)
	}
	close(d.ready)

	host, port, _ := net.SplitHostPort(mmf.Addr())
	p, _ := strconv.Atoi(port)
	be, err := grpc.NewClient(core.BackendAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.loop(ctx, pb.NewBackendServiceClient(be), &pb.FunctionConfig{Host: host, Port: int32(p)}, matchfunction.DefaultProfiles()[0].MatchProfile())
	}()
	waits = append(waits, func() error { <-done; return nil })
	return &stack{signer: signer, frontend: fe, dir: d}
}

// testDirector stands in for kumi's director (built elsewhere): it fetches voice matches, keeps the
// group→session mapping (a group's session lives on the server it was first placed on), mints one
// server token per player and assigns the tickets; as the game servers' control-plane client it
// sees their load reports and answers MoveSession by minting tokens for the next server.
type testDirector struct {
	signer  *token.Signer
	servers []*gameserver.Server
	ready   chan struct{}
	joined  chan string // "server/session/players" for each load report with members

	mu        sync.Mutex
	groups    map[string]string // group → session id
	home      map[string]int    // session id → server index
	current   int               // server for new sessions
	failMoves bool
}

func (d *testDirector) loop(ctx context.Context, be pb.BackendServiceClient, fc *pb.FunctionConfig, profile *pb.MatchProfile) {
	idle := time.NewTicker(5 * time.Millisecond)
	defer idle.Stop()
	for ctx.Err() == nil {
		stream, err := be.FetchMatches(ctx, &pb.FetchMatchesRequest{Config: fc, Profile: profile})
		n := 0
		for err == nil {
			var r *pb.FetchMatchesResponse
			if r, err = stream.Recv(); err == nil {
				n++
				d.place(ctx, be, r.GetMatch())
			}
		}
		if n == 0 {
			select {
			case <-ctx.Done():
			case <-idle.C:
			}
		}
	}
}

func (d *testDirector) place(ctx context.Context, be pb.BackendServiceClient, m *pb.Match) {
	group, _, _ := omext.String(m.GetExtensions(), omext.Group)
	d.mu.Lock()
	if d.home == nil {
		d.home = map[string]int{}
	}
	sid, ok := d.groups[group]
	if !ok {
		sid = "s-" + group
		d.groups[group] = sid
		d.home[sid] = d.current
	}
	gs := d.servers[d.home[sid]]
	d.mu.Unlock()
	var groups []*pb.AssignmentGroup
	for _, tk := range m.GetTickets() {
		pl, _, _ := omext.String(tk.GetExtensions(), frontend.PlayerExtension)
		raw, c, err := d.signer.IssueServerToken(token.ServerClaims{PlayerID: pl, SessionID: sid, Server: gs.Name(), ExpiresAt: time.Now().Add(time.Minute)})
		if err != nil {
			panic(err)
		}
		ext := omext.PutString(nil, omext.Session, sid)
		omext.PutString(ext, omext.ServerToken, raw)
		omext.PutTime(ext, omext.TokenExpiry, c.ExpiresAt)
		groups = append(groups, &pb.AssignmentGroup{TicketIds: []string{tk.GetId()}, Assignment: &pb.Assignment{Connection: gs.Addr(), Extensions: ext}})
	}
	_, _ = be.AssignTickets(ctx, &pb.AssignTicketsRequest{Assignments: groups})
}

// Report implements control.DirectorClient.
func (d *testDirector) Report(ctx context.Context, in *control.LoadReport, _ ...grpc.CallOption) (*control.ReportReply, error) {
	for _, s := range in.GetSessions() {
		select {
		case d.joined <- fmt.Sprintf("%s/%s/%d", in.GetServer(), s.GetSessionId(), len(s.GetPlayers())):
		default:
		}
	}
	return &control.ReportReply{}, nil
}

// MoveSession implements control.DirectorClient: the session moves to the next server, or fails
// with ResourceExhausted (the server then sends RECONNECT) once failMoves is set.
func (d *testDirector) MoveSession(ctx context.Context, in *control.MoveSessionRequest, _ ...grpc.CallOption) (*control.MoveSessionReply, error) {
	<-d.ready
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failMoves {
		return nil, status.Error(codes.ResourceExhausted, "no room")
	}
	d.current++
	d.home[in.GetSessionId()] = d.current
	gs := d.servers[d.current]
	reply := &control.MoveSessionReply{Server: gs.Name(), Address: gs.Addr(), SessionId: in.GetSessionId()}
	for _, pl := range in.GetPlayers() {
		raw, err := d.signer.ServerToken(token.ServerClaims{PlayerID: pl, SessionID: in.GetSessionId(), Server: gs.Name(), ExpiresAt: time.Now().Add(time.Minute)})
		if err != nil {
			return nil, err
		}
		reply.Tokens = append(reply.Tokens, &control.PlayerToken{PlayerId: pl, Token: raw})
	}
	return reply, nil
}

// waitJoined blocks until a load report shows at least want members in a session of server.
func (d *testDirector) waitJoined(t *testing.T, server string, want int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case s := <-d.joined:
			parts := strings.Split(s, "/") // server/session/members
			if n, _ := strconv.Atoi(parts[2]); parts[0] == server && n >= want {
				return
			}
		case <-timeout:
			t.Fatalf("no load report with %d members on %s", want, server)
		}
	}
}

func playerConfig(st *stack, id, group string, talk time.Duration) player.Config {
	cfg := player.Default()
	cfg.Frontend = st.frontend.GRPCAddr()
	cfg.Signer = st.signer
	cfg.Player = id
	cfg.Attributes = player.Attributes{"mode": "voice", "chat_group": group}
	cfg.Talk = talk
	cfg.JoinTimeout = 5 * time.Second
	cfg.AssignTimeout = 10 * time.Second
	return cfg
}

type result struct {
	rep *player.Report
	err error
}

func runPlayers(ctx context.Context, cfgs ...player.Config) []chan result {
	out := make([]chan result, len(cfgs))
	for i, cfg := range cfgs {
		out[i] = make(chan result, 1)
		go func() {
			rep, err := player.Run(ctx, quiet(), cfg)
			out[i] <- result{rep, err}
		}()
	}
	return out
}

// TestVoiceRoomEndToEnd puts two players of one chat group in one session: alice through the gRPC
// API, bob through the HTTP/JSON API with long polls (the calls examples/unreal makes).
func TestVoiceRoomEndToEnd(t *testing.T) {
	st := startStack(t, 1)
	bob := playerConfig(st, "bob", "guild-1", 600*time.Millisecond)
	bob.FrontendHTTP, bob.PollWait = "http://"+st.frontend.HTTPAddr(), 200*time.Millisecond
	res := runPlayers(t.Context(), playerConfig(st, "alice", "guild-1", 600*time.Millisecond), bob)
	var reps []*player.Report
	for _, ch := range res {
		r := <-ch
		if r.err != nil {
			t.Fatalf("player: %v (report %+v)", r.err, r.rep)
		}
		reps = append(reps, r.rep)
	}
	for _, r := range reps {
		if len(r.Legs) != 1 {
			t.Fatalf("%s: %d legs, want 1: %+v", r.Player, len(r.Legs), r.Legs)
		}
		l := r.First()
		if l.SessionID != "s-guild-1" || l.Ended != "done" || l.TicketID == "" || l.MemberID == 0 {
			t.Errorf("%s: leg %+v", r.Player, l)
		}
		for name, d := range map[string]time.Duration{"ticket→assignment": l.TicketToAssignment, "assignment→ACCEPT": l.AssignmentToAccept, "ACCEPT→first frame": l.AcceptToFirstFrame} {
			if d <= 0 || d > 5*time.Second {
				t.Errorf("%s: %s = %v", r.Player, name, d)
			}
		}
		// 600 ms at 50 frames/s is 30 frames at most; a loaded 2-core machine under -race drops
		// ticker ticks, so only require a clear stream both ways and no more than the clock allows.
		if l.FramesSent < 10 || l.FramesSent > 31 || l.FramesReceived < 5 {
			t.Errorf("%s: frames sent %d received %d", r.Player, l.FramesSent, l.FramesReceived)
		}
		if len(r.FrameLatency) == 0 || r.LatencyQuantile(0.5) > time.Second {
			t.Errorf("%s: latency samples %d p50 %v", r.Player, len(r.FrameLatency), r.LatencyQuantile(0.5))
		}
	}
}

func TestMoveThenReconnect(t *testing.T) {
	st := startStack(t, 3)
	res := runPlayers(t.Context(),
		playerConfig(st, "carol", "guild-2", 3*time.Second),
		playerConfig(st, "dave", "guild-2", 3*time.Second))

	// Both joined gs-0: drain it; the director moves the session to gs-1 (MOVE to both).
	st.dir.waitJoined(t, "gs-0", 2)
	st.dir.servers[0].Drain("test: move")
	st.dir.waitJoined(t, "gs-1", 2)
	// Drain gs-1 with no room anywhere: RECONNECT; the players file new tickets, and the group's
	// new session goes to the current server (gs-1 is draining, so the director uses gs-2).
	st.dir.mu.Lock()
	st.dir.failMoves = true
	st.dir.current = 2
	delete(st.dir.groups, "guild-2")
	st.dir.mu.Unlock()
	st.dir.servers[1].Drain("test: reconnect")

	for _, ch := range res {
		r := <-ch
		if r.err != nil {
			t.Fatalf("player: %v (legs %+v)", r.err, r.rep.Legs)
		}
		causes := []string{}
		for _, l := range r.rep.Legs {
			causes = append(causes, l.Cause+"@"+l.Address)
		}
		legs := r.rep.Legs
		if len(legs) != 3 || legs[0].Cause != "assignment" || legs[1].Cause != "move" || legs[2].Cause != "reconnect" {
			t.Fatalf("%s: legs %v", r.rep.Player, causes)
		}
		if legs[0].Address != st.dir.servers[0].Addr() || legs[1].Address != st.dir.servers[1].Addr() || legs[2].Address != st.dir.servers[2].Addr() {
			t.Fatalf("%s: legs %v", r.rep.Player, causes)
		}
		if legs[0].Ended != "move" || legs[1].Ended[:9] != "reconnect" || legs[2].Ended != "done" {
			t.Fatalf("%s: endings %q %q %q", r.rep.Player, legs[0].Ended, legs[1].Ended, legs[2].Ended)
		}
		if legs[1].SessionID != legs[0].SessionID || legs[1].AssignmentToAccept <= 0 || legs[2].TicketToAssignment <= 0 {
			t.Fatalf("%s: %+v", r.rep.Player, legs)
		}
		if r.rep.Moves() != 1 || r.rep.Reconnects() != 1 {
			t.Fatalf("%s: moves %d reconnects %d", r.rep.Player, r.rep.Moves(), r.rep.Reconnects())
		}
		if legs[2].FramesReceived == 0 {
			t.Errorf("%s: no frames after reconnect", r.rep.Player)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(*player.Config)
		want string
	}{
		{"no frontend", func(c *player.Config) { c.Frontend = "" }, "-frontend is required"},
		{"no token source", func(c *player.Config) { c.Key = "" }, "give -token, or -key"},
		{"tiny frames", func(c *player.Config) { c.FrameBytes = 4 }, "-frame-bytes 4 must be at least 16"},
		{"zero interval", func(c *player.Config) { c.FrameInterval = 0 }, "-frame-interval 0s must be positive"},
		{"missing key file", func(c *player.Config) { c.Key = filepath.Join(t.TempDir(), "none.key") }, "run `kumi token keygen`"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := player.Default()
			tt.edit(&cfg)
			_, err := player.Run(t.Context(), quiet(), cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestAttributesFlag(t *testing.T) {
	var a player.Attributes
	if err := a.Set("mode=duel, region=eu,skill=1450,ranked=true,party=7b"); err != nil {
		t.Fatal(err)
	}
	want := player.Attributes{"mode": "duel", "region": "eu", "skill": 1450.0, "ranked": true, "party": "7b"}
	if !maps.Equal(a, want) {
		t.Fatalf("got %v, want %v", a, want)
	}
	if got := a.String(); got != "mode=duel,party=7b,ranked=true,region=eu,skill=1450" {
		t.Fatalf("String() = %q", got)
	}
	if err := a.Set("mode"); err == nil || !strings.Contains(err.Error(), `attribute "mode": want name=value`) {
		t.Fatalf("bad attribute: %v", err)
	}
}
