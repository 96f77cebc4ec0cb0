package openmatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestMalformedPoolsAreRefused(t *testing.T) {
	c := startCore(t, nil)
	ctx := testCtx(t)
	tk, err := c.fe.CreateTicket(ctx, &pb.CreateTicketRequest{Ticket: smallTicket(1)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		pool *pb.Pool
		want string
	}{
		{"empty double arg", &pb.Pool{DoubleRangeFilters: []*pb.DoubleRangeFilter{{Max: 1}}}, "double_range_filters[0].double_arg is empty"},
		{"NaN bound", &pb.Pool{DoubleRangeFilters: []*pb.DoubleRangeFilter{{DoubleArg: "skill", Min: math.NaN(), Max: 1}}}, "NaN bound"},
		{"min above max", &pb.Pool{DoubleRangeFilters: []*pb.DoubleRangeFilter{{DoubleArg: "skill", Min: 2, Max: 1}}}, "min 2 > max 1"},
		{"unknown exclude", &pb.Pool{DoubleRangeFilters: []*pb.DoubleRangeFilter{{DoubleArg: "skill", Max: 1, Exclude: 9}}}, "unknown exclude value 9"},
		{"empty string arg", &pb.Pool{StringEqualsFilters: []*pb.StringEqualsFilter{{Value: "x"}}}, "string_equals_filters[0].string_arg is empty"},
		{"empty tag", &pb.Pool{TagPresentFilters: []*pb.TagPresentFilter{{}}}, "tag_present_filters[0].tag is empty"},
		{"bad created_before", &pb.Pool{CreatedBefore: &timestamppb.Timestamp{Nanos: -1}}, "invalid created_before"},
		{"bad created_after", &pb.Pool{CreatedAfter: &timestamppb.Timestamp{Seconds: math.MaxInt64}}, "invalid created_after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := queryIDs(ctx, c.q, tc.pool)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.want) {
				t.Fatalf("got %v, want InvalidArgument mentioning %q", err, tc.want)
			}
		})
	}
	// Refused queries leave the store as it was.
	ids, err := queryIDs(ctx, c.q, &pb.Pool{})
	if err != nil || len(ids) != 1 || ids[0] != tk.Id {
		t.Fatalf("after refused queries: %v %v", ids, err)
	}
}

func TestOversizedTicketIsRefused(t *testing.T) {
	c := startCore(t, func(cfg *Config) { cfg.MaxTicketBytes = 256 })
	ctx := testCtx(t)
	big := smallTicket(1)
	big.SearchFields.StringArgs["blob"] = strings.Repeat("x", 300)
	_, err := c.fe.CreateTicket(ctx, &pb.CreateTicketRequest{Ticket: big})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "max-ticket-bytes") {
		t.Fatalf("got %v, want InvalidArgument naming max-ticket-bytes", err)
	}
	_, err = c.fe.CreateBackfill(ctx, &pb.CreateBackfillRequest{Backfill: &pb.Backfill{SearchFields: big.SearchFields}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("backfill: got %v, want InvalidArgument", err)
	}
	if ids, _ := queryIDs(ctx, c.q, &pb.Pool{}); len(ids) != 0 {
		t.Fatalf("refused ticket stored: %v", ids)
	}
	if _, err := c.fe.CreateTicket(ctx, &pb.CreateTicketRequest{Ticket: smallTicket(2)}); err != nil {
		t.Fatalf("small ticket: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, mutate := range []func(*Config){
		func(c *Config) { c.RegistrationInterval = 0 },
		func(c *Config) { c.PendingReleaseTimeout = -time.Second },
		func(c *Config) { c.MaxTicketBytes = 1 },
		func(c *Config) { c.FrontendAddr = "256.0.0.1:0" },
	} {
		cfg := testConfig()
		mutate(&cfg)
		ctx, cancel := context.WithCancel(context.Background())
		s, err := Start(ctx, slog.New(slog.DiscardHandler), cfg, nil)
		cancel()
		if err == nil {
			s.Wait()
			t.Fatalf("config %+v accepted", cfg)
		}
	}
}

// sharedCycleWindow is the registration window of tests whose calls must share one cycle: wide
// enough for calls made one after another by a test goroutine to join the same cycle even when a
// loaded 2-core CI machine stalls it for a good fraction of a second (300 ms left little margin).
const sharedCycleWindow = 1500 * time.Millisecond

// The built-in default evaluator (no evaluator-addr): concurrent calls over the same tickets
// share a cycle and no ticket is in two accepted matches; higher scores win.
func TestBuiltinEvaluatorDedupes(t *testing.T) {
	t.Parallel() // it waits out a long registration window; let it overlap the others
	// With the disjoint-proposals promise too: a cycle of several calls never accepts early, so
	// the best score still wins across calls (each call here even breaks its promise).
	for _, promise := range []bool{false, true} {
		t.Run(fmt.Sprintf("promise-%v", promise), func(t *testing.T) {
			t.Parallel()
			builtinEvaluatorDedupes(t, promise)
		})
	}
}

func builtinEvaluatorDedupes(t *testing.T, promise bool) {
	// The three calls must land in one cycle. Nothing can hold the window open, so it is long
	// enough (sharedCycleWindow) that a stalled goroutine on a loaded CI machine still joins.
	c := startCore(t, func(cfg *Config) { cfg.RegistrationInterval = sharedCycleWindow })
	ctx := testCtx(t)
	for i := range 6 {
		if _, err := c.fe.CreateTicket(ctx, &pb.CreateTicketRequest{Ticket: smallTicket(i)}); err != nil {
			t.Fatal(err)
		}
	}
	fc := serveMMF(t, func(r *pb.RunRequest, s grpc.ServerStreamingServer[pb.RunResponse]) error {
		if promise {
			if err := s.SetHeader(metadata.Pairs(pb.DisjointProposalsHeader, "1")); err != nil {
				return err
			}
		}
		ts, _, err := queryTickets(s.Context(), c.q, &pb.Pool{})
		if err != nil {
			return err
		}
		// Every call proposes every pair, scored by the call, so proposals overlap heavily.
		score, _ := anypb.New(&pb.DefaultEvaluationCriteria{Score: float64(len(r.Profile.Name))})
		for i := range ts {
			for j := i + 1; j < len(ts); j++ {
				m := &pb.Match{MatchId: r.Profile.Name + ts[i].Id + ts[j].Id, Tickets: []*pb.Ticket{{Id: ts[i].Id}, {Id: ts[j].Id}},
					Extensions: map[string]*anypb.Any{"evaluation_input": score}}
				if err := s.Send(&pb.RunResponse{Proposal: m}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	names := []string{"a", "bb", "ccc"}
	got := make([][]*pb.Match, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Go(func() {
			ms, err := fetch(ctx, c.be, fc, &pb.MatchProfile{Name: n})
			if err != nil {
				t.Errorf("fetch %s: %v", n, err)
			}
			got[i] = ms
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, ms := range got {
		for _, m := range ms {
			for _, tk := range m.Tickets {
				if seen[tk.Id] {
					t.Fatalf("ticket %s in two accepted matches", tk.Id)
				}
				seen[tk.Id] = true
			}
		}
	}
	if len(seen) != 6 {
		t.Fatalf("%d of 6 tickets matched", len(seen))
	}
	if len(got[2]) != 3 {
		t.Fatalf("the highest-scoring call (ccc) should win all pairs, got a=%d bb=%d ccc=%d", len(got[0]), len(got[1]), len(got[2]))
	}
}

// An MMF that proposes tickets already pending from an earlier cycle gets nothing: kumi drops
// such a match even if the evaluator accepts it.
func TestPendingTicketsNeverMatchedTwice(t *testing.T) {
	c := startCore(t, nil)
	ctx := testCtx(t)
	tk, err := c.fe.CreateTicket(ctx, &pb.CreateTicketRequest{Ticket: smallTicket(1)})
	if err != nil {
		t.Fatal(err)
	}
	fixed := serveMMF(t, func(r *pb.RunRequest, s grpc.ServerStreamingServer[pb.RunResponse]) error {
		return s.Send(&pb.RunResponse{Proposal: &pb.Match{MatchId: r.Profile.Name, Tickets: []*pb.Ticket{{Id: tk.Id}}}})
	})
	if ms, err := fetch(ctx, c.be, fixed, &pb.MatchProfile{Name: "first"}); err != nil || len(ms) != 1 {
		t.Fatalf("first: %v %v", ms, err)
	}
	if ms, err := fetch(ctx, c.be, fixed, &pb.MatchProfile{Name: "second"}); err != nil || len(ms) != 0 {
		t.Fatalf("second cycle re-matched a pending ticket: %v %v", ms, err)
	}
	if got := testutil.ToFloat64(c.srv.metrics.dropped); got != 1 {
		t.Fatalf("dropped matches metric = %v, want 1", got)
	}
}

func TestInProcessMatchFunction(t *testing.T) {
	var srv *Server
	mmf := &mmfFunc{f: func(r *pb.RunRequest, s grpc.ServerStreamingServer[pb.RunResponse]) error {
		return pairMMF(srv.QueryClient())(r, s)
	}}
	c := startCore(t, func(cfg *Config) { cfg.MatchFunctions = map[string]pb.MatchFunctionServer{"mmf.local:7": mmf} })
	srv = c.srv
	ctx := testCtx(t)
	for i := range 4 {
		if _, err := c.fe.CreateTicket(ctx, &pb.CreateTicketRequest{Ticket: smallTicket(i)}); err != nil {
			t.Fatal(err)
		}
	}
	pool := &pb.Pool{Name: "all"}
	ms, err := fetch(ctx, c.be, &pb.FunctionConfig{Host: "mmf.local", Port: 7}, &pb.MatchProfile{Name: "p", Pools: []*pb.Pool{pool}})
	if err != nil || len(ms) != 2 || len(ms[0].Tickets) != 2 || ms[0].Tickets[0].SearchFields.StringArgs["mode"] != "ranked" {
		t.Fatalf("in-process MMF: %v %v", ms, err)
	}
	// Registered after Start, under another key.
	c.srv.RegisterMatchFunction("late:1", &mmfFunc{f: func(r *pb.RunRequest, s grpc.ServerStreamingServer[pb.RunResponse]) error {
		return errors.New("late mmf says no")
	}})
	_, err = fetch(ctx, c.be, &pb.FunctionConfig{Host: "late", Port: 1}, &pb.MatchProfile{Name: "p"})
	if status.Code(err) != codes.Unknown || !strings.Contains(err.Error(), "late mmf says no") {
		t.Fatalf("late MMF: %v", err)
	}
}

func TestMatchFunctionFailures(t *testing.T) {
	c := startCore(t, nil)
	ctx := testCtx(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // nothing listens there now
	for _, tc := range []struct {
		name string
		fc   *pb.FunctionConfig
		want string
	}{
		{"REST unreachable", &pb.FunctionConfig{Host: "127.0.0.1", Port: int32(port), Type: pb.FunctionConfig_REST}, "match function (REST)"},
		{"unknown type", &pb.FunctionConfig{Host: "127.0.0.1", Port: 1, Type: 7}, "provided match function type is not supported"},
		{"unreachable", &pb.FunctionConfig{Host: "127.0.0.1", Port: int32(port)}, "error(s) in FetchMatches call"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fetch(ctx, c.be, tc.fc, &pb.MatchProfile{Name: "p"})
			if status.Code(err) != codes.Unknown || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want Unknown containing %q", err, tc.want)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	// The gauges are read after the calls: timeouts beyond the test's run keep the assigned and
	// pending tickets where the calls put them however slow the machine is.
	c := startCore(t, func(cfg *Config) {
		cfg.AssignedDeleteTimeout = time.Hour
		cfg.PendingReleaseTimeout = time.Hour
	})
	ctx := testCtx(t)
	var ids []string
	for i := range 5 {
		tk, err := c.fe.CreateTicket(ctx, &pb.CreateTicketRequest{Ticket: smallTicket(i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tk.Id)
	}
	if _, err := c.be.AssignTickets(ctx, &pb.AssignTicketsRequest{Assignments: []*pb.AssignmentGroup{{TicketIds: ids[:1], Assignment: &pb.Assignment{}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.fe.DeleteTicket(ctx, &pb.DeleteTicketRequest{TicketId: ids[1]}); err != nil {
		t.Fatal(err)
	}
	fc := serveMMF(t, pairMMF(c.q))
	if ms, err := fetch(ctx, c.be, fc, &pb.MatchProfile{Name: "p", Pools: []*pb.Pool{{}}}); err != nil || len(ms) != 1 {
		t.Fatalf("fetch: %v %v", ms, err)
	}
	want := `
# HELP kumi_openmatch_tickets_active Tickets that queries return (unassigned, not pending).
# TYPE kumi_openmatch_tickets_active gauge
kumi_openmatch_tickets_active 1
# HELP kumi_openmatch_tickets_assigned Assigned tickets not yet deleted.
# TYPE kumi_openmatch_tickets_assigned gauge
kumi_openmatch_tickets_assigned 1
# HELP kumi_openmatch_tickets_created_total Tickets created by CreateTicket.
# TYPE kumi_openmatch_tickets_created_total counter
kumi_openmatch_tickets_created_total 5
# HELP kumi_openmatch_tickets_deleted_total Tickets deleted by DeleteTicket.
# TYPE kumi_openmatch_tickets_deleted_total counter
kumi_openmatch_tickets_deleted_total 1
# HELP kumi_openmatch_tickets_pending Tickets in an accepted match, hidden from queries until assigned, released or timed out.
# TYPE kumi_openmatch_tickets_pending gauge
kumi_openmatch_tickets_pending 2
`
	if err := testutil.GatherAndCompare(c.reg, strings.NewReader(want), "kumi_openmatch_tickets_active", "kumi_openmatch_tickets_assigned",
		"kumi_openmatch_tickets_created_total", "kumi_openmatch_tickets_deleted_total", "kumi_openmatch_tickets_pending"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(c.srv.metrics.cycles.WithLabelValues("ok")); n != 1 {
		t.Fatalf("fetch cycles ok = %v", n)
	}
	if n := testutil.CollectAndCount(c.srv.metrics.cycleSeconds); n != 1 {
		t.Fatalf("cycle histogram series = %d", n)
	}
}

// Stopping the core ends open streams, frees the ports and Wait returns.
func TestShutdownReleasesEverything(t *testing.T) {
	cfg := testConfig()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := Start(ctx, slog.New(slog.DiscardHandler), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	fe := pb.NewFrontendServiceClient(dial(t, s.FrontendAddr()))
	tk, err := fe.CreateTicket(testCtx(t), &pb.CreateTicketRequest{Ticket: smallTicket(1)})
	if err != nil {
		t.Fatal(err)
	}
	w, err := fe.WatchAssignments(testCtx(t), &pb.WatchAssignmentsRequest{TicketId: tk.Id})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Header(); err != nil {
		t.Fatal(err)
	}
	addrs := []string{s.FrontendAddr(), s.BackendAddr(), s.QueryAddr()}
	cancel()
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("watch after stop: %v", err)
	}
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("port %s still held: %v", a, err)
		}
		l.Close()
	}
}

func TestParseProposalMatchesDecoder(t *testing.T) {
	score, _ := anypb.New(&pb.DefaultEvaluationCriteria{Score: 7.5})
	wrong, _ := anypb.New(&pb.Ticket{})
	for _, m := range []*pb.Match{
		{},
		{MatchId: "m", Tickets: []*pb.Ticket{{Id: "a", SearchFields: &pb.SearchFields{Tags: []string{"x"}}}, {Id: "b"}, {}}},
		{MatchId: "s", Extensions: map[string]*anypb.Any{"evaluation_input": score, "other": wrong}},
		{MatchId: "w", Extensions: map[string]*anypb.Any{"evaluation_input": wrong}},
		{MatchId: "e", Extensions: map[string]*anypb.Any{"evaluation_input": {}}},
		{MatchId: "bf", Backfill: &pb.Backfill{Id: "b1", Generation: 3}, AllocateGameserver: true},
	} {
		raw, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseProposal(raw)
		if err != nil {
			t.Fatalf("%v: %v", m, err)
		}
		want := proposalFromMatch(m)
		if got.id != want.id || strings.Join(got.tickets, ",") != strings.Join(want.tickets, ",") || got.score != want.score ||
			got.badScore != want.badScore || !proto.Equal(got.backfill, want.backfill) {
			t.Fatalf("match %v: parsed %+v, decoded %+v", m, got, want)
		}
		back, err := got.match()
		if err != nil || !proto.Equal(back, m) {
			t.Fatalf("round trip: %v %v", back, err)
		}
	}
	for _, bad := range [][]byte{{0x0a, 0x05, 'a'}, {0x22, 0x02, 0x0a, 0x09}, {0xff}} {
		if _, err := parseProposal(bad); err == nil {
			t.Fatalf("malformed %x accepted", bad)
		}
	}
}

func FuzzParseProposal(f *testing.F) {
	seed, _ := proto.Marshal(&pb.Match{MatchId: "m", Tickets: []*pb.Ticket{{Id: "a"}}, Backfill: &pb.Backfill{Id: "b"}})
	f.Add(seed)
	f.Add([]byte{0x3a, 0x03, 0x0a, 0x01, 'e'})
	for _, body := range []*pb.DefaultEvaluationCriteria{{Score: 2.5}, {Score: math.Inf(-1)}, {}} {
		a, _ := anypb.New(body)
		s, _ := proto.Marshal(&pb.Match{MatchId: "s", Tickets: []*pb.Ticket{{Id: "a"}, {Id: "b"}},
			Extensions: map[string]*anypb.Any{"evaluation_input": a, "group": {TypeUrl: "x/y"}}})
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseProposal(b)
		if err != nil {
			return
		}
		var m pb.Match
		if proto.Unmarshal(b, &m) != nil {
			return
		}
		want := proposalFromMatch(&m)
		if p.id != want.id || !slices.Equal(p.tickets, want.tickets) || p.badScore != want.badScore ||
			math.Float64bits(p.score) != math.Float64bits(want.score) || !proto.Equal(p.backfill, want.backfill) {
			t.Fatalf("parsed id %q tickets %q score %v bad %v backfill %v; decoded id %q tickets %q score %v bad %v backfill %v",
				p.id, p.tickets, p.score, p.badScore, p.backfill, want.id, want.tickets, want.score, want.badScore, want.backfill)
		}
	})
}

func TestReassignKeepsTicket(t *testing.T) {
	tk := smallTicket(3)
	tk.Id = "t1"
	raw, _ := proto.Marshal(tk)
	a1, _ := proto.Marshal(&pb.Assignment{Connection: "one"})
	a2, _ := proto.Marshal(&pb.Assignment{Connection: "two"})
	r := withAssignment(withAssignment(string(raw), a1, false), a2, true)
	var got pb.Ticket
	if err := proto.Unmarshal([]byte(r), &got); err != nil {
		t.Fatal(err)
	}
	want := proto.CloneOf(tk)
	want.Assignment = &pb.Assignment{Connection: "two"}
	if !proto.Equal(&got, want) {
		t.Fatalf("got %v, want %v", &got, want)
	}
}

func TestWatchStreamsEachChange(t *testing.T) {
	c := startCore(t, nil)
	ctx := testCtx(t)
	tk, err := c.fe.CreateTicket(ctx, &pb.CreateTicketRequest{Ticket: smallTicket(1)})
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.fe.WatchAssignments(ctx, &pb.WatchAssignmentsRequest{TicketId: tk.Id})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Header(); err != nil {
		t.Fatal(err)
	}
	for _, conn := range []string{"a", "a", "b"} {
		if _, err := c.be.AssignTickets(ctx, &pb.AssignTicketsRequest{Assignments: []*pb.AssignmentGroup{{TicketIds: []string{tk.Id}, Assignment: &pb.Assignment{Connection: conn}}}}); err != nil {
			t.Fatal(err)
		}
	}
	// Sent only on change (the identical second assignment is never repeated); a fast sequence
	// may be coalesced, but the last state always arrives.
	var got []string
	for len(got) == 0 || got[len(got)-1] != "b" {
		r, err := w.Recv()
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		if len(got) > 0 && got[len(got)-1] == r.Assignment.Connection {
			t.Fatalf("assignment %q sent twice in a row", r.Assignment.Connection)
		}
		got = append(got, r.Assignment.Connection)
	}
	if _, err := c.fe.DeleteTicket(ctx, &pb.DeleteTicketRequest{TicketId: tk.Id}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); status.Code(err) != codes.NotFound {
		t.Fatalf("after delete: %v", err)
	}
	if _, err := w.Recv(); !errors.Is(err, io.EOF) && status.Code(err) != codes.NotFound {
		t.Fatalf("stream should be over: %v", err)
	}
}

// A caller that leaves during the registration window must not cancel the evaluation for a
// caller that joins the same cycle after it.
func TestLeaverDoesNotCancelLaterJoiner(t *testing.T) {
	t.Parallel()
	// The stayer must join the leaver's cycle after several round trips: see sharedCycleWindow.
	c := startCore(t, func(cfg *Config) { cfg.RegistrationInterval = sharedCycleWindow })
	ctx := testCtx(t)
	tk, err := c.fe.CreateTicket(ctx, &pb.CreateTicketRequest{Ticket: smallTicket(1)})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	fc := serveMMF(t, func(r *pb.RunRequest, s grpc.ServerStreamingServer[pb.RunResponse]) error {
		if r.Profile.Name == "leaver" {
			close(started)
			<-s.Context().Done()
			return s.Context().Err()
		}
		return s.Send(&pb.RunResponse{Proposal: &pb.Match{MatchId: "m", Tickets: []*pb.Ticket{{Id: tk.Id}}}})
	})
	lctx, cancel := context.WithCancel(ctx)
	ls, err := c.be.FetchMatches(lctx, &pb.FetchMatchesRequest{Config: fc, Profile: &pb.MatchProfile{Name: "leaver"}})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	cancel()
	if _, err := ls.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("leaver: %v", err)
	}
	ms, err := fetch(ctx, c.be, fc, &pb.MatchProfile{Name: "stayer"})
	if err != nil || len(ms) != 1 {
		t.Fatalf("stayer: %v %v", ms, err)
	}
	ok, failed := testutil.ToFloat64(c.srv.metrics.cycles.WithLabelValues("ok")), testutil.ToFloat64(c.srv.metrics.cycles.WithLabelValues("error"))
	if ok+failed != 1 {
		t.Fatalf("%v cycles ran (ok %v, error %v): the stayer should have joined the leaver's cycle", ok+failed, ok, failed)
	}
}

// Concurrent creates, assignments, deletes, releases, queries, watches and fetches (run with
// -race): every call succeeds or fails cleanly and no ticket ends up in two matches.
func TestConcurrentTraffic(t *testing.T) {
	// A matched ticket that is neither assigned nor released comes back after the pending timeout
	// and may rightly be matched again; the timeouts are beyond the test's run however slow the
	// machine, so a second match means a real double match. (With 1 s a loaded machine got there.)
	c := startCore(t, func(cfg *Config) {
		cfg.PendingReleaseTimeout = time.Hour
		cfg.ProposalCollectionInterval = time.Minute
	})
	ctx := testCtx(t)
	fc := serveMMF(t, pairMMFWith(c.q, true))
	var mu sync.Mutex
	matched, released := map[string]bool{}, map[string]bool{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				tk, err := c.fe.CreateTicket(ctx, &pb.CreateTicketRequest{Ticket: smallTicket(w*100 + i)})
				if err != nil {
					t.Error(err)
					return
				}
				switch i % 5 {
				case 1:
					if _, err := c.fe.DeleteTicket(ctx, &pb.DeleteTicketRequest{TicketId: tk.Id}); err != nil {
						t.Error(err)
					}
				case 2:
					wctx, cancel := context.WithCancel(ctx)
					ws, err := c.fe.WatchAssignments(wctx, &pb.WatchAssignmentsRequest{TicketId: tk.Id})
					if err == nil {
						_, err = c.be.AssignTickets(ctx, &pb.AssignTicketsRequest{Assignments: []*pb.AssignmentGroup{{TicketIds: []string{tk.Id}, Assignment: &pb.Assignment{Connection: "x"}}}})
					}
					if err == nil {
						_, err = ws.Recv()
					}
					cancel()
					if err != nil && status.Code(err) != codes.NotFound {
						t.Error(err)
					}
				case 3:
					// A released ticket may legitimately be matched again.
					mu.Lock()
					released[tk.Id] = true
					mu.Unlock()
					if _, err := c.be.ReleaseTickets(ctx, &pb.ReleaseTicketsRequest{TicketIds: []string{tk.Id}}); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	for f := range 3 {
		wg.Go(func() {
			for range 10 {
				// Distinct profile names: the pairing MMF derives match ids from them, and two
				// calls of one cycle proposing the same id would (correctly) fail the cycle.
				ms, err := fetch(ctx, c.be, fc, &pb.MatchProfile{Name: string(rune('a' + f)), Pools: []*pb.Pool{{}}})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, m := range ms {
					for _, tk := range m.Tickets {
						if matched[tk.Id] && !released[tk.Id] {
							t.Errorf("ticket %s matched twice", tk.Id)
						}
						matched[tk.Id] = true
					}
				}
				mu.Unlock()
				if _, err := queryIDs(ctx, c.q, &pb.Pool{TagPresentFilters: []*pb.TagPresentFilter{{Tag: "eu"}}}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}

func TestUnreachableEvaluatorFailsTheCycle(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := startCore(t, func(cfg *Config) { cfg.EvaluatorAddr = addr })
	ctx := testCtx(t)
	fc := serveMMF(t, func(r *pb.RunRequest, s grpc.ServerStreamingServer[pb.RunResponse]) error {
		return s.Send(&pb.RunResponse{Proposal: &pb.Match{MatchId: "m"}})
	})
	_, err = fetch(ctx, c.be, fc, &pb.MatchProfile{Name: "p"})
	if status.Code(err) != codes.Unknown || !strings.Contains(err.Error(), "evaluator") {
		t.Fatalf("got %v, want a cycle error naming the evaluator", err)
	}
}

// indexRaw (substrings of the stored bytes) must agree with the decoded ticket.
func TestIndexRawMatchesDecodedTicket(t *testing.T) {
	for _, tk := range []*pb.Ticket{
		{Id: "a"},
		{Id: "b", SearchFields: &pb.SearchFields{}},
		{Id: "c", SearchFields: &pb.SearchFields{DoubleArgs: map[string]float64{"x": 1.5, "": -2, "nan": math.NaN(), "inf": math.Inf(1)},
			StringArgs: map[string]string{"k": "v", "empty": "", "": "blank-key"}, Tags: []string{"t1", "", "t1"}}},
		{Id: "d", Extensions: map[string]*anypb.Any{"e": {TypeUrl: "x/y", Value: []byte{1, 2}}}, CreateTime: timestamppb.Now(),
			SearchFields: &pb.SearchFields{Tags: []string{"only"}}},
	} {
		raw, err := proto.Marshal(tk)
		if err != nil {
			t.Fatal(err)
		}
		sf := tk.GetSearchFields()
		id, ix, err := indexRaw(string(raw), raw, len(sf.GetDoubleArgs()), len(sf.GetStringArgs()), len(sf.GetTags()))
		if err != nil || id != tk.Id {
			t.Fatalf("%v: id %q err %v", tk, id, err)
		}
		want := newIndex(sf)
		if len(ix.dbl) != len(want.dbl) || len(ix.str) != len(want.str) || strings.Join(ix.tags, ",") != strings.Join(want.tags, ",") {
			t.Fatalf("%v: index %+v, want %+v", tk, ix, want)
		}
		for _, d := range ix.dbl {
			v, ok := sf.DoubleArgs[d.key]
			if !ok || (v != d.v && !(math.IsNaN(v) && math.IsNaN(d.v))) {
				t.Fatalf("double %q=%v, want %v", d.key, d.v, v)
			}
		}
		for _, s := range ix.str {
			if v, ok := sf.StringArgs[s.key]; !ok || v != s.v {
				t.Fatalf("string %q=%q, want %q", s.key, s.v, v)
			}
		}
	}
	if _, _, err := indexRaw("\x22\x05\x0a", []byte("\x22\x05\x0a"), 0, 0, 0); err == nil {
		t.Fatal("truncated bytes accepted")
	}
}
