package conformance

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// testCtx bounds one call; the bound grows with the target's timers (a remote core may run
// upstream's minutes-long defaults).
func testCtx(t *testing.T) context.Context {
	tm, err := timingFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	d := 20*time.Second + 2*max(tm.PendingRelease, tm.AssignedDelete, tm.Registration+tm.ProposalCollection)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func (h *Harness) create(t *testing.T, sf *pb.SearchFields) *pb.Ticket {
	t.Helper()
	tk, err := h.FE.CreateTicket(testCtx(t), &pb.CreateTicketRequest{Ticket: h.Ticket(sf)})
	if err != nil {
		t.Fatalf("CreateTicket: %v", err)
	}
	return tk
}

func (h *Harness) fetch(t *testing.T, ctx context.Context, name string) (chanStream, error) {
	t.Helper()
	s, err := h.BE.FetchMatches(ctx, &pb.FetchMatchesRequest{Config: h.MMFConfig(), Profile: &pb.MatchProfile{Name: name, Pools: []*pb.Pool{h.Pool(&pb.Pool{Name: "pool"})}}})
	return chanStream{s}, err
}

type chanStream struct {
	s interface {
		Recv() (*pb.FetchMatchesResponse, error)
	}
}

func (c chanStream) recv() (*pb.Match, error) {
	r, err := c.s.Recv()
	return r.GetMatch(), err
}

func mustEOF(t *testing.T, s chanStream) {
	t.Helper()
	if m, err := s.recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("want end of stream, got match %v err %v", m, err)
	}
}

func mustMatch(t *testing.T, s chanStream, want *pb.Match) {
	t.Helper()
	m, err := s.recv()
	if err != nil {
		t.Fatalf("want match %s, got error %v", want.MatchId, err)
	}
	if !proto.Equal(m, want) {
		t.Fatalf("match differs:\n got %v\nwant %v", m, want)
	}
}

func mustErrContain(t *testing.T, s chanStream, text string) {
	t.Helper()
	for {
		m, err := s.recv()
		if err == nil {
			continue // a match may stream before the cycle's error
		}
		if errors.Is(err, io.EOF) || !strings.Contains(err.Error(), text) {
			t.Fatalf("want error containing %q, got %v (last match %v)", text, err, m)
		}
		return
	}
}

// echoOne is an evaluator that checks the only proposal and accepts it.
func echoOne(t *testing.T, want *pb.Match) Evaluator {
	return func(ctx context.Context, in <-chan *pb.Match, out chan<- string) error {
		p, ok := <-in
		if !ok || !proto.Equal(p, want) {
			t.Errorf("evaluator got %v, want %v", p, want)
		}
		if _, more := <-in; more {
			t.Errorf("evaluator got a second proposal")
		}
		out <- want.MatchId
		return nil
	}
}

func acceptAll(ctx context.Context, in <-chan *pb.Match, out chan<- string) error {
	for m := range in {
		out <- m.MatchId
	}
	return nil
}

// sharedCycle widens an embedded core's registration window for tests whose calls must join one
// cycle although a test goroutine makes them one after another (with a match round trip between
// them in TestSynchronizerMatchCollision).
func sharedCycle(tm *Timing) { tm.Registration = max(tm.Registration, 1500*time.Millisecond) }

// farWindow widens an embedded core's proposal window beyond any test's deadline, so "the call
// did not wait for the window" holds or fails whatever the machine's load: a core that waited
// would run into the test's context deadline instead of beating a wall-clock bound.
func farWindow(tm *Timing) { tm.ProposalCollection = time.Hour }

func TestHappyPath(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	ctx := testCtx(t)
	t1, t2 := h.create(t, nil), h.create(t, nil)
	m := &pb.Match{MatchId: "1", Tickets: []*pb.Ticket{t1, t2}}
	h.SetMMF(func(ctx context.Context, p *pb.MatchProfile, out chan<- *pb.Match) error { out <- m; return nil })
	h.SetEvaluator(echoOne(t, m))
	s, err := h.fetch(t, ctx, "happy")
	if err != nil {
		t.Fatal(err)
	}
	mustMatch(t, s, m)
	mustEOF(t, s)
}

func TestMatchFunctionMatchCollision(t *testing.T) {
	h := NewWithTiming(t, func(tm *Timing) { sharedCycle(tm); farWindow(tm) })
	h.Parallel(t)
	ctx := testCtx(t)
	t1, t2 := h.create(t, nil), h.create(t, nil)
	errStarted, okStarted := make(chan struct{}), make(chan struct{})
	h.SetMMF(func(ctx context.Context, p *pb.MatchProfile, out chan<- *pb.Match) error {
		switch p.Name {
		case "error":
			close(errStarted)
			<-okStarted
			out <- &pb.Match{MatchId: "1", Tickets: []*pb.Ticket{t1}}
			out <- &pb.Match{MatchId: "1", Tickets: []*pb.Ticket{t2}}
		case "success":
			close(okStarted)
			<-errStarted
			out <- &pb.Match{MatchId: "3", Tickets: []*pb.Ticket{t2}}
		}
		return nil
	})
	h.SetEvaluator(func(ctx context.Context, in <-chan *pb.Match, out chan<- string) error {
		for m := range in {
			if m.MatchId == "3" {
				out <- "3"
			}
		}
		return nil
	})
	start := time.Now()
	sErr, err := h.fetch(t, ctx, "error")
	if err != nil {
		t.Fatal(err)
	}
	sOK, err := h.fetch(t, ctx, "success")
	if err != nil {
		t.Fatal(err)
	}
	mustErrContain(t, sErr, `MatchMakingFunction returned same match_id twice: "1"`)
	m, err := sOK.recv()
	if err != nil || !proto.Equal(m.Tickets[0], t2) {
		t.Fatalf("success call: %v %v", m, err)
	}
	// Accepted matches stream out while the cycle is still open (a remote core's window is its
	// own; an embedded core's is beyond the test's deadline: see farWindow).
	if d := time.Since(start); h.Remote && d >= h.Timing.Registration+h.Timing.ProposalCollection {
		t.Errorf("match arrived after %s", d)
	}
	mustEOF(t, sOK)
}

func TestSynchronizerMatchCollision(t *testing.T) {
	h := NewWithTiming(t, sharedCycle)
	h.Parallel(t)
	ctx := testCtx(t)
	t1 := h.create(t, nil)
	h.SetMMF(func(ctx context.Context, p *pb.MatchProfile, out chan<- *pb.Match) error {
		out <- &pb.Match{MatchId: "1", Tickets: []*pb.Ticket{t1}}
		return nil
	})
	var calls sync.Mutex
	n := 0
	h.SetEvaluator(func(ctx context.Context, in <-chan *pb.Match, out chan<- string) error {
		calls.Lock()
		n++
		if n != 1 {
			t.Errorf("evaluator called %d times, want one shared evaluation", n)
		}
		calls.Unlock()
		return acceptAll(ctx, in, out)
	})
	s1, err := h.fetch(t, ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s1.recv(); err != nil { // the first match flows before the second call joins
		t.Fatal(err)
	}
	s2, err := h.fetch(t, ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	mustErrContain(t, s2, `multiple match functions used same match_id: "1"`)
	mustErrContain(t, s1, `multiple match functions used same match_id: "1"`)
}

func TestEvaluatorReturnInvalidID(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	h.SetMMF(func(context.Context, *pb.MatchProfile, chan<- *pb.Match) error { return nil })
	h.SetEvaluator(func(ctx context.Context, in <-chan *pb.Match, out chan<- string) error { out <- "1"; return nil })
	s, err := h.fetch(t, testCtx(t), "p")
	if err != nil {
		t.Fatal(err)
	}
	mustErrContain(t, s, `evaluator returned match_id "1" which does not correspond to its any match in its input`)
}

func TestEvaluatorReturnDuplicateMatchID(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	t1, t2 := h.create(t, nil), h.create(t, nil)
	m := &pb.Match{MatchId: "1", Tickets: []*pb.Ticket{t1, t2}}
	h.SetMMF(func(ctx context.Context, p *pb.MatchProfile, out chan<- *pb.Match) error { out <- m; return nil })
	h.SetEvaluator(func(ctx context.Context, in <-chan *pb.Match, out chan<- string) error {
		for range in {
		}
		out <- "1"
		out <- "1"
		return nil
	})
	s, err := h.fetch(t, testCtx(t), "p")
	if err != nil {
		t.Fatal(err)
	}
	mustErrContain(t, s, `evaluator returned same match_id twice: "1"`)
}

func TestMatchWithNoTickets(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	m := &pb.Match{MatchId: "1"}
	h.SetMMF(func(ctx context.Context, p *pb.MatchProfile, out chan<- *pb.Match) error { out <- m; return nil })
	h.SetEvaluator(echoOne(t, m))
	s, err := h.fetch(t, testCtx(t), "p")
	if err != nil {
		t.Fatal(err)
	}
	mustMatch(t, s, m)
	mustEOF(t, s)
}

func TestEvaluatorError(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	h.SetMMF(func(context.Context, *pb.MatchProfile, chan<- *pb.Match) error { return nil })
	h.SetEvaluator(func(context.Context, <-chan *pb.Match, chan<- string) error { return errors.New("my custom error") })
	s, err := h.fetch(t, testCtx(t), "p")
	if err != nil {
		t.Fatal(err)
	}
	mustErrContain(t, s, "my custom error")
}

func TestMMFError(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	t1 := h.create(t, nil)
	h.SetMMF(func(ctx context.Context, p *pb.MatchProfile, out chan<- *pb.Match) error {
		return errors.New("my custom error")
	})
	h.SetEvaluator(func(ctx context.Context, in <-chan *pb.Match, out chan<- string) error {
		if _, ok := <-in; ok {
			t.Errorf("evaluator got a proposal from a failed MMF")
		}
		return nil
	})
	s, err := h.fetch(t, testCtx(t), "p")
	if err != nil {
		t.Fatal(err)
	}
	mustErrContain(t, s, "my custom error")
	// The ticket stays active.
	ts, _, err := h.QueryTickets(testCtx(t), h.Pool(nil))
	if err != nil || len(ts) != 1 || ts[0].Id != t1.Id {
		t.Fatalf("after MMF error: %v %v", ts, err)
	}
}

func TestNoMatches(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	h.SetMMF(func(context.Context, *pb.MatchProfile, chan<- *pb.Match) error { return nil })
	h.SetEvaluator(func(ctx context.Context, in <-chan *pb.Match, out chan<- string) error {
		if _, ok := <-in; ok {
			t.Errorf("unexpected proposal")
		}
		return nil
	})
	s, err := h.fetch(t, testCtx(t), "p")
	if err != nil {
		t.Fatal(err)
	}
	mustEOF(t, s)
}

func TestFetchMatchesInvalidArgument(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	for _, tc := range []struct {
		name string
		req  *pb.FetchMatchesRequest
		msg  string
	}{
		{"no profile", &pb.FetchMatchesRequest{Config: h.MMFConfig()}, ".profile is required"},
		{"no config", &pb.FetchMatchesRequest{Profile: &pb.MatchProfile{}}, ".config is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := h.BE.FetchMatches(testCtx(t), tc.req)
			if err == nil {
				_, err = s.Recv()
			}
			if st := status.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != tc.msg {
				t.Fatalf("got %v, want InvalidArgument %q", err, tc.msg)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	var started, finished sync.WaitGroup
	started.Add(2)
	finished.Add(2)
	h.SetMMF(func(ctx context.Context, p *pb.MatchProfile, out chan<- *pb.Match) error {
		started.Done()
		<-ctx.Done()
		finished.Done()
		return nil
	})
	h.SetEvaluator(func(ctx context.Context, in <-chan *pb.Match, out chan<- string) error {
		started.Done()
		<-ctx.Done()
		finished.Done()
		return nil
	})
	start := time.Now()
	if _, err := h.fetch(t, ctx, "p"); err != nil {
		t.Fatal(err)
	}
	started.Wait()
	cancel()
	finished.Wait()
	// The evaluator is only cancelled once the registration window is over.
	if d := time.Since(start); d < h.Timing.Registration {
		t.Errorf("evaluator cancelled after %s, before the registration window (%s) ended", d, h.Timing.Registration)
	}
}

func TestStreaming(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	t1, t2 := h.create(t, nil), h.create(t, nil)
	m1 := &pb.Match{MatchId: "1", Tickets: []*pb.Ticket{t1}}
	m2 := &pb.Match{MatchId: "2", Tickets: []*pb.Ticket{t2}}
	firstSeen := make(chan struct{})
	h.SetMMF(func(ctx context.Context, p *pb.MatchProfile, out chan<- *pb.Match) error {
		out <- m1
		<-firstSeen
		out <- m2
		return nil
	})
	h.SetEvaluator(func(ctx context.Context, in <-chan *pb.Match, out chan<- string) error {
		<-in
		out <- "1"
		<-firstSeen
		<-in
		out <- "2"
		if _, ok := <-in; ok {
			t.Errorf("unexpected third proposal")
		}
		return nil
	})
	s, err := h.fetch(t, testCtx(t), "p")
	if err != nil {
		t.Fatal(err)
	}
	// m1 must reach the caller before the MMF produces m2: nothing is batched.
	mustMatch(t, s, m1)
	close(firstSeen)
	mustMatch(t, s, m2)
	mustEOF(t, s)
}

func TestRegistrationWindow(t *testing.T) {
	h := NewWithTiming(t, farWindow)
	h.Parallel(t)
	start := time.Now()
	h.SetMMF(func(context.Context, *pb.MatchProfile, chan<- *pb.Match) error { return nil })
	h.SetEvaluator(func(ctx context.Context, in <-chan *pb.Match, out chan<- string) error {
		for range in {
		}
		if d := time.Since(start); d < h.Timing.Registration {
			t.Errorf("evaluator input closed after %s, before the registration window %s", d, h.Timing.Registration)
		}
		return nil
	})
	s, err := h.fetch(t, testCtx(t), "p")
	if err != nil {
		t.Fatal(err)
	}
	mustEOF(t, s)
	d := time.Since(start)
	if d < h.Timing.Registration {
		t.Errorf("FetchMatches ended after %s, before the registration window %s", d, h.Timing.Registration)
	}
	// Finished MMFs end the cycle: it does not wait for the proposal window (an embedded core's is
	// beyond the test's deadline: see farWindow).
	if h.Remote && d >= h.Timing.Registration+h.Timing.ProposalCollection {
		t.Errorf("FetchMatches took %s: waited for the proposal window although the MMF was done", d)
	}
}

func TestProposalWindowClose(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	start := time.Now()
	window := h.Timing.Registration + h.Timing.ProposalCollection
	h.SetMMF(func(ctx context.Context, p *pb.MatchProfile, out chan<- *pb.Match) error {
		<-ctx.Done()
		if d := time.Since(start); d < window {
			t.Errorf("MMF cancelled after %s, before %s", d, window)
		}
		return nil
	})
	h.SetEvaluator(func(ctx context.Context, in <-chan *pb.Match, out chan<- string) error {
		for range in {
		}
		if d := time.Since(start); d < window {
			t.Errorf("evaluator input closed after %s, before %s", d, window)
		}
		return nil
	})
	s, err := h.fetch(t, testCtx(t), "p")
	if err != nil {
		t.Fatal(err)
	}
	// Open Match v1.8.1's exact text (its own e2e test asserts it): the window is the MMF's error.
	mustErrContain(t, s, "error(s) in FetchMatches call. syncErr=[<nil>], mmfErr=[match function ran longer than proposal window, canceling]")
	if d := time.Since(start); d < window {
		t.Errorf("call ended after %s, before %s", d, window)
	}
}

func TestMultipleFetchCalls(t *testing.T) {
	h := NewWithTiming(t, sharedCycle)
	h.Parallel(t)
	t1, t2 := h.create(t, nil), h.create(t, nil)
	m1 := &pb.Match{MatchId: "1", Tickets: []*pb.Ticket{t1}}
	m2 := &pb.Match{MatchId: "2", Tickets: []*pb.Ticket{t2}}
	h.SetMMF(func(ctx context.Context, p *pb.MatchProfile, out chan<- *pb.Match) error {
		switch p.Name {
		case "one":
			out <- m1
		case "two":
			out <- m2
		default:
			return errors.New("unknown profile")
		}
		return nil
	})
	h.SetEvaluator(func(ctx context.Context, in <-chan *pb.Match, out chan<- string) error {
		var ids []string
		for m := range in {
			ids = append(ids, m.MatchId)
		}
		slices.Sort(ids)
		if !slices.Equal(ids, []string{"1", "2"}) {
			t.Errorf("one evaluation should see both calls' proposals, got %v", ids)
		}
		for _, id := range ids {
			out <- id
		}
		return nil
	})
	ctx := testCtx(t)
	s1, err := h.fetch(t, ctx, "one")
	if err != nil {
		t.Fatal(err)
	}
	s2, err := h.fetch(t, ctx, "two")
	if err != nil {
		t.Fatal(err)
	}
	mustMatch(t, s1, m1)
	mustEOF(t, s1)
	mustMatch(t, s2, m2)
	mustEOF(t, s2)
}

func TestSlowBackendDoesntBlock(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	ctx := testCtx(t)
	t1, t2 := h.create(t, nil), h.create(t, nil)
	m1 := &pb.Match{MatchId: "1", Tickets: []*pb.Ticket{t1}}
	m2 := &pb.Match{MatchId: "2", Tickets: []*pb.Ticket{t2}}
	evalDone := make(chan struct{})
	h.SetMMF(func(ctx context.Context, p *pb.MatchProfile, out chan<- *pb.Match) error {
		ts, _, err := h.QueryTickets(ctx, p.Pools[0])
		if err != nil {
			return err
		}
		var ids []string
		for _, tk := range ts {
			ids = append(ids, tk.Id)
		}
		slices.Sort(ids)
		switch p.Name {
		case "one":
			want := []string{t1.Id, t2.Id}
			slices.Sort(want)
			if !slices.Equal(ids, want) {
				t.Errorf("first cycle saw %v, want %v", ids, want)
			}
			out <- m1
		case "two":
			if !slices.Equal(ids, []string{t2.Id}) {
				t.Errorf("second cycle saw %v: t1 should be pending", ids)
			}
			out <- m2
		}
		return nil
	})
	h.SetEvaluator(func(ctx context.Context, in <-chan *pb.Match, out chan<- string) error {
		m := <-in
		if _, ok := <-in; ok {
			t.Errorf("unexpected second proposal")
		}
		out <- m.MatchId
		evalDone <- struct{}{}
		return nil
	})
	s1, err := h.fetch(t, ctx, "one")
	if err != nil {
		t.Fatal(err)
	}
	<-evalDone
	s2, err := h.fetch(t, ctx, "two") // s1 has not been read: the next cycle must still run
	if err != nil {
		t.Fatal(err)
	}
	<-evalDone
	mustMatch(t, s2, m2)
	mustEOF(t, s2)
	mustMatch(t, s1, m1)
	mustEOF(t, s1)
}

// TestConcurrentFetchNoTicketTwice runs several FetchMatches calls over the same tickets with the
// default evaluator behaviour: every ticket is in at most one returned match.
func TestConcurrentFetchNoTicketTwice(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	ctx := testCtx(t)
	var ids []string
	for range 4 {
		ids = append(ids, h.create(t, nil).Id)
	}
	h.SetMMF(func(ctx context.Context, p *pb.MatchProfile, out chan<- *pb.Match) error {
		ts, _, err := h.QueryTickets(ctx, p.Pools[0])
		if err != nil {
			return err
		}
		for i := 0; i+1 < len(ts); i += 2 {
			out <- &pb.Match{MatchId: p.Name + "-" + ts[i].Id, Tickets: ts[i : i+2]}
		}
		return nil
	})
	h.SetEvaluator(DefaultEvaluator)
	const calls = 3
	results := make([][]*pb.Match, calls)
	errs := make([]error, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			s, err := h.BE.FetchMatches(ctx, &pb.FetchMatchesRequest{Config: h.MMFConfig(),
				Profile: &pb.MatchProfile{Name: string(rune('a' + i)), Pools: []*pb.Pool{h.Pool(nil)}}})
			if err == nil {
				results[i], err = Matches(s)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	total := 0
	for i := range calls {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		for _, m := range results[i] {
			total++
			for _, tk := range m.Tickets {
				if seen[tk.Id] {
					t.Fatalf("ticket %s in two accepted matches", tk.Id)
				}
				seen[tk.Id] = true
			}
		}
	}
	if total != 2 {
		t.Fatalf("got %d matches over 4 tickets, want 2", total)
	}
	for _, id := range ids {
		if !seen[id] {
			t.Errorf("ticket %s in no accepted match", id)
		}
	}
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestDefaultEvaluatorScore: the higher evaluation_input score wins an overlap.
func TestDefaultEvaluatorScore(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	t1, t2, t3 := h.create(t, nil), h.create(t, nil), h.create(t, nil)
	low := &pb.Match{MatchId: "low", Tickets: []*pb.Ticket{t1, t2}, Extensions: map[string]*anypb.Any{"evaluation_input": mustAny(t, &pb.DefaultEvaluationCriteria{Score: 1})}}
	high := &pb.Match{MatchId: "high", Tickets: []*pb.Ticket{t2, t3}, Extensions: map[string]*anypb.Any{"evaluation_input": mustAny(t, &pb.DefaultEvaluationCriteria{Score: 5})}}
	h.SetMMF(func(ctx context.Context, p *pb.MatchProfile, out chan<- *pb.Match) error {
		out <- low
		out <- high
		return nil
	})
	h.SetEvaluator(DefaultEvaluator)
	s, err := h.fetch(t, testCtx(t), "p")
	if err != nil {
		t.Fatal(err)
	}
	mustMatch(t, s, high)
	mustEOF(t, s)
	ts, _, err := h.QueryTickets(testCtx(t), h.Pool(nil))
	if err != nil || len(ts) != 1 || ts[0].Id != t1.Id {
		t.Fatalf("only the winner's tickets go pending; active now %v %v", ts, err)
	}
}

// TestHTTPMMF: the same happy path with the match function called over HTTP/JSON (type REST).
func TestHTTPMMF(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	t1, t2 := h.create(t, nil), h.create(t, nil)
	m := &pb.Match{MatchId: "1", Tickets: []*pb.Ticket{t1, t2}}
	h.SetMMF(func(ctx context.Context, p *pb.MatchProfile, out chan<- *pb.Match) error { out <- m; return nil })
	h.SetEvaluator(echoOne(t, m))
	s, err := h.BE.FetchMatches(testCtx(t), &pb.FetchMatchesRequest{Config: h.MMFConfigHTTP(), Profile: &pb.MatchProfile{Name: "http"}})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := Matches(s)
	if err != nil || len(ms) != 1 || !proto.Equal(ms[0], m) {
		t.Fatalf("got %v %v, want %v", ms, err, m)
	}
	h.SetEvaluator(acceptAll)
	h.SetMMF(func(context.Context, *pb.MatchProfile, chan<- *pb.Match) error { return errors.New("rest mmf failed") })
	s, err = h.BE.FetchMatches(testCtx(t), &pb.FetchMatchesRequest{Config: h.MMFConfigHTTP(), Profile: &pb.MatchProfile{Name: "http"}})
	if err == nil {
		_, err = Matches(s)
	}
	if err == nil || !strings.Contains(err.Error(), "rest mmf failed") {
		t.Fatalf("MMF error over REST: %v", err)
	}
}
