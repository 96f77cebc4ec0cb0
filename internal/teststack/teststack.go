// Package teststack starts kumi's player path on 127.0.0.1 for the tests of the client package and
// the example client.
//
// StartProduct (product.go) runs the whole product with nothing stood in: the embedded Open Match
// core, the match function, the frontend, the real director and a local fleet of game-server
// processes. Start runs the same core, match function, frontend and in-process game servers with
// Director, a small stand-in for kumi's director, because it can force what the real one avoids
// on purpose, deterministically: "no room anywhere" on a move (so a draining server sends RECONNECT)
// and the choice of the server a session lands on.
package teststack

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/api/control"
	pb "github.com/kumi-dev/kumi/api/openmatch"
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

// Stack is a running player path.
type Stack struct {
	Signer *token.Signer
	// KeyFile is Signer's private key as PEM (what `kumi token keygen` writes), for -key.
	KeyFile  string
	Frontend *frontend.Server
	Director *Director
}

// Quiet is a logger that discards everything.
func Quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Start starts the stack with the given number of game servers (gs-0, gs-1, …); everything stops
// when the test ends.
func Start(t testing.TB, servers int) *Stack {
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
	log := Quiet()
	kcfg := token.DefaultKeygenConfig()
	kcfg.Dir = t.TempDir()
	signer, _, err := token.Keygen(kcfg)
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

	d := &Director{signer: signer, joined: make(chan string, 64), groups: map[string]string{}, ready: make(chan struct{})}
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
		d.Servers = append(d.Servers, gs)
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
	return &Stack{Signer: signer, KeyFile: filepath.Join(kcfg.Dir, token.PrivateKeyFile), Frontend: fe, Director: d}
}

// Director stands in for kumi's director (built elsewhere): it fetches voice matches, keeps the
// group→session mapping (a group's session lives on the server it was first placed on), mints one
// server token per player and assigns the tickets; as the game servers' control-plane client it
// sees their load reports and answers MoveSession by minting tokens for the next server.
type Director struct {
	signer  *token.Signer
	Servers []*gameserver.Server
	ready   chan struct{}
	joined  chan string // "server/session/players" for each load report with members

	mu        sync.Mutex
	groups    map[string]string // group → session id
	home      map[string]int    // session id → server index
	current   int               // server for new sessions
	failMoves bool
}

// NoRoom makes the next sessions go to server next and every later MoveSession fail (so draining
// servers send RECONNECT), and forgets the group→session mapping so reconnecting groups get a new
// session.
func (d *Director) NoRoom(next int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failMoves = true
	d.current = next
	d.groups = map[string]string{}
}

func (d *Director) loop(ctx context.Context, be pb.BackendServiceClient, fc *pb.FunctionConfig, profile *pb.MatchProfile) {
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

func (d *Director) place(ctx context.Context, be pb.BackendServiceClient, m *pb.Match) {
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
	gs := d.Servers[d.home[sid]]
	d.mu.Unlock()
	var groups []*pb.AssignmentGroup
	for _, tk := range m.GetTickets() {
		pl, _, _ := omext.String(tk.GetExtensions(), omext.Player)
		raw, c, err := d.signer.IssueServerToken(token.ServerClaims{PlayerID: pl, SessionID: sid, Server: gs.Name(), Instance: gs.Instance(), ExpiresAt: time.Now().Add(time.Minute)})
		if err != nil {
			continue // only a missing player id fails; the ticket then stays pending and times out
		}
		ext := omext.PutString(nil, omext.Session, sid)
		omext.PutString(ext, omext.ServerToken, raw)
		omext.PutTime(ext, omext.TokenExpiry, c.ExpiresAt)
		groups = append(groups, &pb.AssignmentGroup{TicketIds: []string{tk.GetId()}, Assignment: &pb.Assignment{Connection: gs.Addr(), Extensions: ext}})
	}
	_, _ = be.AssignTickets(ctx, &pb.AssignTicketsRequest{Assignments: groups})
}

// Report implements control.DirectorClient.
func (d *Director) Report(ctx context.Context, in *control.LoadReport, _ ...grpc.CallOption) (*control.ReportReply, error) {
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
func (d *Director) MoveSession(ctx context.Context, in *control.MoveSessionRequest, _ ...grpc.CallOption) (*control.MoveSessionReply, error) {
	<-d.ready
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failMoves {
		return nil, status.Error(codes.ResourceExhausted, "no room")
	}
	d.current++
	d.home[in.GetSessionId()] = d.current
	gs := d.Servers[d.current]
	reply := &control.MoveSessionReply{Server: gs.Name(), Address: gs.Addr(), SessionId: in.GetSessionId()}
	for _, pl := range in.GetPlayers() {
		raw, err := d.signer.ServerToken(token.ServerClaims{PlayerID: pl, SessionID: in.GetSessionId(), Server: gs.Name(), Instance: gs.Instance(), ExpiresAt: time.Now().Add(time.Minute)})
		if err != nil {
			return nil, err
		}
		reply.Tokens = append(reply.Tokens, &control.PlayerToken{PlayerId: pl, Token: raw})
	}
	return reply, nil
}

// WaitJoined blocks until a load report shows at least want members in a session of server.
func (d *Director) WaitJoined(t testing.TB, server string, want int) {
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
