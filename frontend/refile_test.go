package frontend

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/api/client"
	pb "github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/internal/ticketseal"
	"github.com/kumi-dev/kumi/internal/token"
	"github.com/kumi-dev/kumi/openmatch"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// startCoreAt starts an embedded core on the given addresses (127.0.0.1:0 for fresh ports); stop
// ends it and waits.
func startCoreAt(t *testing.T, fe, be, q string) (core *openmatch.Server, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := openmatch.Default()
	cfg.FrontendAddr, cfg.BackendAddr, cfg.QueryAddr = fe, be, q
	core, err := openmatch.Start(ctx, testLog(t), cfg, prometheus.NewRegistry())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			core.Wait()
		}
	}
	t.Cleanup(stop)
	return core, stop
}

// TestCoreRestartRefilesWatchedTickets restarts the embedded core (which keeps tickets in memory
// only) under a frontend whose players are waiting: every waiting player's ticket is filed again,
// once, sealed afresh, and the assignment made on the new core reaches the player's watch under
// the id the player knows. A player who cancelled before the restart is not filed again.
func TestCoreRestartRefilesWatchedTickets(t *testing.T) {
	signer, err := token.GenerateSigner(token.DefaultIssuer)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "0123456789abcdef0123456789abcdef"
	coreA, stopA := startCoreAt(t, "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0")
	feAddr, beAddr, qAddr := coreA.FrontendAddr(), coreA.BackendAddr(), coreA.QueryAddr()
	cfg := testConfig(signer)
	cfg.TicketSealSecret = secret
	reg := prometheus.NewRegistry()
	cfg.OpenMatchAddr = feAddr
	fctx, fcancel := context.WithCancel(context.Background())
	fe, err := Start(fctx, testLog(t), cfg, reg)
	if err != nil {
		fcancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { fcancel(); fe.Wait() })
	e := &env{t: t, signer: signer, cfg: cfg, api: client.NewFrontendClient(dial(t, fe.GRPCAddr()))}

	// p1 waits on a watch; p2 files and cancels (its watch ends), so it must not come back.
	ctx := e.as("p1")
	ct, err := e.api.CreateTicket(ctx, &client.CreateTicketRequest{Attributes: attrs("mode", "duel", "region", "eu")})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := e.api.WatchAssignment(ctx, &client.WatchAssignmentRequest{TicketId: ct.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := stream.Recv(); err != nil || first.GetState() != client.Ticket_SEARCHING {
		t.Fatalf("first watch message %v %v", first, err)
	}
	ct2, err := e.api.CreateTicket(e.as("p2"), &client.CreateTicketRequest{Attributes: attrs("mode", "duel")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.api.CancelTicket(e.as("p2"), &client.CancelTicketRequest{TicketId: ct2.GetId()}); err != nil {
		t.Fatal(err)
	}

	// The core restarts on the same addresses with no tickets.
	stopA()
	_, _ = startCoreAt(t, feAddr, beAddr, qAddr)
	query := pb.NewQueryServiceClient(dial(t, qAddr))
	backend := pb.NewBackendServiceClient(dial(t, beAddr))
	var refiled []*pb.Ticket
	waitFor(t, func() bool {
		refiled = queryAll(t, query)
		return len(refiled) > 0
	})
	if len(refiled) != 1 || owner(refiled[0]) != "p1" || refiled[0].GetId() == ct.GetId() {
		t.Fatalf("tickets on the restarted core: %v; want p1's alone, under a new id", refiled)
	}
	if sf := refiled[0].GetSearchFields(); sf.GetStringArgs()["mode"] != "duel" || sf.GetStringArgs()["region"] != "eu" {
		t.Fatalf("re-filed search fields %v", sf)
	}
	sealer, err := ticketseal.New(secret, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := sealer.Check(refiled[0], "p1", time.Now()); err != nil {
		t.Fatalf("re-filed ticket's seal: %v", err)
	}
	// The core holds the new ticket before the frontend has recorded it (alias, counter): wait for
	// the counter, the last step, so the assignment below finds the alias.
	waitFor(t, func() bool { return testutil.ToFloat64(fe.svc.m.refiled) >= 1 })
	if got := testutil.ToFloat64(fe.svc.m.refiled); got != 1 {
		t.Fatalf("kumi_frontend_tickets_refiled_total = %v, want 1", got)
	}

	// The director assigns the new ticket; the player's watch delivers it under the id it knows.
	exp := time.Now().Add(time.Minute).Truncate(time.Second)
	resp, err := backend.AssignTickets(context.Background(), &pb.AssignTicketsRequest{Assignments: []*pb.AssignmentGroup{
		{TicketIds: []string{refiled[0].GetId()}, Assignment: assignment("10.0.0.7:7777", "sess-1", "tok", exp)}}})
	if err != nil || len(resp.GetFailures()) > 0 {
		t.Fatalf("assign: %v %v", resp, err)
	}
	got, err := stream.Recv()
	if err != nil || got.GetState() != client.Ticket_ASSIGNED || got.GetId() != ct.GetId() || got.GetAssignment().GetSessionId() != "sess-1" {
		t.Fatalf("watch after restart: %v %v", got, err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("watch did not end after the assignment: %v", err)
	}
	// The old id still answers (an alias); the player has no live ticket left.
	if g, err := e.api.GetTicket(ctx, &client.GetTicketRequest{TicketId: ct.GetId()}); err != nil || g.GetAssignment().GetSessionId() != "sess-1" {
		t.Fatalf("get by the old id: %v %v", g, err)
	}
	if _, err := e.api.GetTicket(ctx, &client.GetTicketRequest{}); status.Code(err) != codes.NotFound {
		t.Fatalf("current after assignment: %v", err)
	}
	if _, err := e.api.GetTicket(e.as("p2"), &client.GetTicketRequest{}); status.Code(err) != codes.NotFound {
		t.Fatalf("p2 (cancelled) has a live ticket: %v", err)
	}
}

func queryAll(t *testing.T, q pb.QueryServiceClient) []*pb.Ticket {
	t.Helper()
	s, err := q.QueryTickets(context.Background(), &pb.QueryTicketsRequest{Pool: &pb.Pool{}})
	if err != nil {
		return nil
	}
	var out []*pb.Ticket
	for {
		r, err := s.Recv()
		if err != nil {
			return out
		}
		out = append(out, r.GetTickets()...)
	}
}
