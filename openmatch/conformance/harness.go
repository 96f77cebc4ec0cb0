package conformance

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/openmatch"
	"github.com/rs/xid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
)

// Environment variables that point the suite at a core (see the package doc).
const (
	EnvFrontend                   = "KUMI_OM_FRONTEND"
	EnvBackend                    = "KUMI_OM_BACKEND"
	EnvQuery                      = "KUMI_OM_QUERY"
	EnvMMFListen                  = "KUMI_OM_MMF_LISTEN"
	EnvMMFHost                    = "KUMI_OM_MMF_HOST"
	EnvMMFHTTPListen              = "KUMI_OM_MMF_HTTP_LISTEN"
	EnvEvaluatorListen            = "KUMI_OM_EVALUATOR_LISTEN"
	EnvRegistrationInterval       = "KUMI_OM_REGISTRATION_INTERVAL"
	EnvProposalCollectionInterval = "KUMI_OM_PROPOSAL_COLLECTION_INTERVAL"
	EnvPendingReleaseTimeout      = "KUMI_OM_PENDING_RELEASE_TIMEOUT"
	EnvAssignedDeleteTimeout      = "KUMI_OM_ASSIGNED_DELETE_TIMEOUT"
	EnvQueryPageSize              = "KUMI_OM_QUERY_PAGE_SIZE"
)

// ScopeArg is the string arg every test puts on its tickets and pools.
const ScopeArg = "kumi.conformance.scope"

// Timing is the target core's configuration that tests depend on.
type Timing struct {
	Registration, ProposalCollection, PendingRelease, AssignedDelete time.Duration
	PageSize                                                         int
}

// MMF is a test's match function: it writes proposals to out and returns.
type MMF func(ctx context.Context, profile *pb.MatchProfile, out chan<- *pb.Match) error

// Evaluator is a test's evaluator: it reads proposals from in (closed at the end of the cycle's
// input) and writes accepted match ids to out.
type Evaluator func(ctx context.Context, in <-chan *pb.Match, out chan<- string) error

// Harness is one test's view of a core.
type Harness struct {
	FE     pb.FrontendServiceClient
	BE     pb.BackendServiceClient
	Q      pb.QueryServiceClient
	Timing Timing
	Remote bool
	Scope  string // unique per test; see Ticket and Pool

	mu     sync.Mutex
	mmf    MMF
	eval   Evaluator
	fc     *pb.FunctionConfig
	httpFC *pb.FunctionConfig
}

// New connects to the core named by the environment or starts an embedded one for this test.
func New(t testing.TB) *Harness {
	t.Helper()
	return NewWithTiming(t, nil)
}

// NewWithTiming is New, with adjust applied to the timing of an embedded core (a remote core's
// timing is what the environment states; adjust is not called for it). Tests whose calls must
// share one synchronizer cycle use it to widen the registration window: nothing can hold the
// window open, so on a loaded machine 300 ms between two calls is not enough margin.
func NewWithTiming(t testing.TB, adjust func(*Timing)) *Harness {
	t.Helper()
	h := &Harness{Scope: xid.New().String()}
	var err error
	if h.Timing, err = timingFromEnv(); err != nil {
		t.Fatal(err)
	}
	fe, be, q := os.Getenv(EnvFrontend), os.Getenv(EnvBackend), os.Getenv(EnvQuery)
	h.Remote = fe != "" || be != "" || q != ""
	if !h.Remote && adjust != nil {
		adjust(&h.Timing)
	}
	if h.Remote && (fe == "" || be == "" || q == "") {
		t.Fatalf("conformance: set all of %s, %s and %s, or none", EnvFrontend, EnvBackend, EnvQuery)
	}

	evalListen := os.Getenv(EnvEvaluatorListen)
	if h.Remote && evalListen == "" {
		t.Fatalf("conformance: a remote core needs %s (its evaluator address must point at the suite)", EnvEvaluatorListen)
	}
	var evalAddr, mmfAddr, httpAddr string
	if h.Remote {
		// A real Open Match keeps its evaluator connection (and MMF address) for its whole life:
		// the suite serves them once, from the first test to the end of the process, and routes
		// each call to the test running now (remote tests run one at a time).
		ls, err := remoteListeners.start(evalListen)
		if err != nil {
			t.Fatal(err)
		}
		ls.setActive(h)
		t.Cleanup(func() { ls.setActive(nil) })
		evalAddr, mmfAddr, httpAddr = ls.evalAddr, ls.mmfAddr, ls.httpAddr
	} else {
		// Each embedded core lives exactly as long as its test, and so do its listeners: tests
		// then run in parallel, each with its own match function and evaluator.
		self := func() *Harness { return h }
		evalAddr = serveGRPC(t, cmp.Or(evalListen, "127.0.0.1:0"), func(g *grpc.Server) { pb.RegisterEvaluatorServer(g, &evalServer{h: self}) })
		mmfAddr = serveGRPC(t, cmp.Or(os.Getenv(EnvMMFListen), "127.0.0.1:0"), func(g *grpc.Server) { pb.RegisterMatchFunctionServer(g, &mmfServer{h: self}) })
		httpAddr = serveHTTP(t, cmp.Or(os.Getenv(EnvMMFHTTPListen), "127.0.0.1:0"), self)
	}
	host, portStr, _ := net.SplitHostPort(mmfAddr)
	port, _ := strconv.Atoi(portStr)
	h.fc = &pb.FunctionConfig{Host: cmp.Or(os.Getenv(EnvMMFHost), host), Port: int32(port), Type: pb.FunctionConfig_GRPC}
	host, portStr, _ = net.SplitHostPort(httpAddr)
	port, _ = strconv.Atoi(portStr)
	h.httpFC = &pb.FunctionConfig{Host: cmp.Or(os.Getenv(EnvMMFHost), host), Port: int32(port), Type: pb.FunctionConfig_REST}

	if !h.Remote {
		cfg := openmatch.Default()
		cfg.FrontendAddr, cfg.BackendAddr, cfg.QueryAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		cfg.RegistrationInterval = h.Timing.Registration
		cfg.ProposalCollectionInterval = h.Timing.ProposalCollection
		cfg.PendingReleaseTimeout = h.Timing.PendingRelease
		cfg.AssignedDeleteTimeout = h.Timing.AssignedDelete
		cfg.QueryPageSize = h.Timing.PageSize
		cfg.EvaluatorAddr = evalAddr
		cfg.SweepInterval = 10 * time.Millisecond
		cfg.ShutdownGrace = time.Second
		ctx, cancel := context.WithCancel(context.Background())
		srv, err := openmatch.Start(ctx, slog.New(slog.DiscardHandler), cfg, nil)
		if err != nil {
			cancel()
			t.Fatalf("start embedded core: %v", err)
		}
		t.Cleanup(func() {
			cancel()
			if err := srv.Wait(); err != nil {
				t.Errorf("embedded core: %v", err)
			}
		})
		fe, be, q = srv.FrontendAddr(), srv.BackendAddr(), srv.QueryAddr()
	}
	h.FE = pb.NewFrontendServiceClient(dial(t, fe))
	h.BE = pb.NewBackendServiceClient(dial(t, be))
	h.Q = pb.NewQueryServiceClient(dial(t, q))
	return h
}

// Parallel marks the test parallel when each test has its own core.
func (h *Harness) Parallel(t *testing.T) {
	if !h.Remote {
		t.Parallel()
	}
}

func serveGRPC(t testing.TB, addr string, register func(*grpc.Server)) string {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("conformance: listen %s: %v", addr, err)
	}
	g := grpc.NewServer()
	register(g)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Serve(l)
	}()
	t.Cleanup(func() {
		g.Stop()
		<-done
	})
	return l.Addr().String()
}

// suiteListeners are the evaluator and match-function listeners of a run against a remote core.
type suiteListeners struct {
	once                        sync.Once
	err                         error
	evalAddr, mmfAddr, httpAddr string

	mu     sync.Mutex
	active *Harness
}

// remoteListeners is process-wide because the remote core outlives every test: it is the one
// piece of suite state, started by the first remote test and served until the process exits.
var remoteListeners suiteListeners

func (ls *suiteListeners) start(evalListen string) (*suiteListeners, error) {
	ls.once.Do(func() {
		current := func() *Harness {
			ls.mu.Lock()
			defer ls.mu.Unlock()
			return ls.active
		}
		listen := func(addr string) net.Listener {
			l, err := net.Listen("tcp", addr)
			if err != nil && ls.err == nil {
				ls.err = fmt.Errorf("conformance: listen %s: %w", addr, err)
			}
			return l
		}
		el, ml := listen(evalListen), listen(cmp.Or(os.Getenv(EnvMMFListen), "127.0.0.1:0"))
		hl := listen(cmp.Or(os.Getenv(EnvMMFHTTPListen), "127.0.0.1:0"))
		if ls.err != nil {
			return
		}
		g := grpc.NewServer()
		pb.RegisterEvaluatorServer(g, &evalServer{h: current})
		pb.RegisterMatchFunctionServer(g, &mmfServer{h: current})
		go func() { _ = g.Serve(el) }()
		go func() { _ = g.Serve(ml) }()
		mux := http.NewServeMux()
		mux.HandleFunc("POST /v1/matchfunction:run", func(w http.ResponseWriter, r *http.Request) { serveRun(w, r, current) })
		go func() { _ = (&http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}).Serve(hl) }()
		ls.evalAddr, ls.mmfAddr, ls.httpAddr = el.Addr().String(), ml.Addr().String(), hl.Addr().String()
	})
	return ls, ls.err
}

func (ls *suiteListeners) setActive(h *Harness) {
	ls.mu.Lock()
	ls.active = h
	ls.mu.Unlock()
}

func dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("conformance: dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func timingFromEnv() (Timing, error) {
	tm := Timing{Registration: 300 * time.Millisecond, ProposalCollection: 5 * time.Second,
		PendingRelease: 3 * time.Second, AssignedDelete: 200 * time.Millisecond, PageSize: 10}
	for _, d := range []struct {
		env string
		dst *time.Duration
	}{{EnvRegistrationInterval, &tm.Registration}, {EnvProposalCollectionInterval, &tm.ProposalCollection},
		{EnvPendingReleaseTimeout, &tm.PendingRelease}, {EnvAssignedDeleteTimeout, &tm.AssignedDelete}} {
		if v := os.Getenv(d.env); v != "" {
			x, err := time.ParseDuration(v)
			if err != nil {
				return tm, fmt.Errorf("conformance: %s=%q: %w", d.env, v, err)
			}
			*d.dst = x
		}
	}
	if v := os.Getenv(EnvQueryPageSize); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return tm, fmt.Errorf("conformance: %s=%q: %w", EnvQueryPageSize, v, err)
		}
		tm.PageSize = n
	}
	return tm, nil
}

// MMFConfig is the FunctionConfig that reaches the suite's match function over gRPC.
func (h *Harness) MMFConfig() *pb.FunctionConfig { return h.fc }

// MMFConfigHTTP reaches the same match function through its HTTP/JSON gateway (type REST).
func (h *Harness) MMFConfigHTTP() *pb.FunctionConfig { return h.httpFC }

// serveHTTP serves the match function the way grpc-gateway exposes it: POST
// /v1/matchfunction:run, JSON request, newline-delimited {"result": RunResponse} objects.
func serveHTTP(t testing.TB, addr string, h func() *Harness) string {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("conformance: listen %s: %v", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/matchfunction:run", func(w http.ResponseWriter, r *http.Request) { serveRun(w, r, h) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return l.Addr().String()
}

func serveRun(w http.ResponseWriter, r *http.Request, current func() *Harness) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var req pb.RunRequest
	if err == nil {
		err = protojson.Unmarshal(body, &req)
	}
	if err != nil {
		http.Error(w, `{"code":3,"message":"bad request"}`, http.StatusBadRequest)
		return
	}
	f := current().currentMMF()
	w.Header().Set("Content-Type", "application/json")
	if f == nil {
		fmt.Fprintln(w, `{"error":{"code":2,"message":"conformance: no match function set"}}`)
		return
	}
	out := make(chan *pb.Match)
	errc := make(chan error, 1)
	go func() {
		defer close(out)
		errc <- f(r.Context(), req.Profile, out)
	}()
	for m := range out {
		b, err := protojson.Marshal(&pb.RunResponse{Proposal: m})
		if err != nil {
			continue
		}
		fmt.Fprintf(w, "{\"result\":%s}\n", b)
	}
	if err := <-errc; err != nil {
		msg, _ := json.Marshal(err.Error())
		fmt.Fprintf(w, "{\"error\":{\"code\":2,\"message\":%s}}\n", msg)
	}
}

// currentMMF is the match function set now; nil for a nil harness (no test running).
func (h *Harness) currentMMF() MMF {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mmf
}

// SetMMF sets the match function for the following FetchMatches calls.
func (h *Harness) SetMMF(f MMF) {
	h.mu.Lock()
	h.mmf = f
	h.mu.Unlock()
}

// SetEvaluator sets the evaluator; until set, DefaultEvaluator is used.
func (h *Harness) SetEvaluator(f Evaluator) {
	h.mu.Lock()
	h.eval = f
	h.mu.Unlock()
}

// Ticket returns a ticket carrying the test's scope (plus the given search fields).
func (h *Harness) Ticket(sf *pb.SearchFields) *pb.Ticket {
	if sf == nil {
		sf = &pb.SearchFields{}
	}
	if sf.StringArgs == nil {
		sf.StringArgs = map[string]string{}
	}
	sf.StringArgs[ScopeArg] = h.Scope
	return &pb.Ticket{SearchFields: sf}
}

// Pool returns p restricted to the test's tickets.
func (h *Harness) Pool(p *pb.Pool) *pb.Pool {
	if p == nil {
		p = &pb.Pool{}
	}
	p.StringEqualsFilters = append(p.StringEqualsFilters, &pb.StringEqualsFilter{StringArg: ScopeArg, Value: h.Scope})
	return p
}

type mmfServer struct {
	pb.UnimplementedMatchFunctionServer
	h func() *Harness
}

func (m *mmfServer) Run(req *pb.RunRequest, stream grpc.ServerStreamingServer[pb.RunResponse]) error {
	f := m.h().currentMMF()
	if f == nil {
		return errors.New("conformance: no match function set")
	}
	out := make(chan *pb.Match)
	errc := make(chan error, 1)
	go func() {
		defer close(out)
		errc <- f(stream.Context(), req.Profile, out)
	}()
	var sendErr error
	for p := range out {
		if sendErr == nil {
			sendErr = stream.Send(&pb.RunResponse{Proposal: p})
		}
	}
	if err := <-errc; err != nil {
		return err
	}
	return sendErr
}

type evalServer struct {
	pb.UnimplementedEvaluatorServer
	h func() *Harness
}

func (e *evalServer) Evaluate(stream grpc.BidiStreamingServer[pb.EvaluateRequest, pb.EvaluateResponse]) error {
	var f Evaluator
	if h := e.h(); h != nil {
		h.mu.Lock()
		f = h.eval
		h.mu.Unlock()
	}
	if f == nil {
		f = DefaultEvaluator
	}
	ctx := stream.Context()
	in := make(chan *pb.Match)
	out := make(chan string)
	go func() {
		defer close(in)
		for {
			r, err := stream.Recv()
			if err != nil {
				return
			}
			select {
			case in <- r.Match:
			case <-ctx.Done():
				return
			}
		}
	}()
	errc := make(chan error, 1)
	go func() {
		defer close(out)
		errc <- f(ctx, in, out)
	}()
	var sendErr error
	for id := range out {
		if sendErr == nil {
			sendErr = stream.Send(&pb.EvaluateResponse{MatchId: id})
		}
	}
	if err := <-errc; err != nil {
		return err
	}
	return sendErr
}

// DefaultEvaluator behaves like Open Match's default evaluator: highest
// extensions["evaluation_input"] score first, a match accepted when none of its tickets (nor its
// backfill) is taken.
func DefaultEvaluator(ctx context.Context, in <-chan *pb.Match, out chan<- string) error {
	type scored struct {
		m     *pb.Match
		score float64
	}
	var all []scored
	for m := range in {
		s := math.Inf(-1)
		if a, ok := m.GetExtensions()["evaluation_input"]; ok {
			var c pb.DefaultEvaluationCriteria
			if a.UnmarshalTo(&c) != nil {
				continue
			}
			s = c.Score
		}
		all = append(all, scored{m, s})
	}
	slices.SortStableFunc(all, func(a, b scored) int { return cmp.Compare(b.score, a.score) })
	used := map[string]bool{}
next:
	for _, s := range all {
		for _, t := range s.m.GetTickets() {
			if used[t.GetId()] {
				continue next
			}
		}
		if bf := s.m.GetBackfill().GetId(); bf != "" {
			if used["backfill/"+bf] {
				continue
			}
			used["backfill/"+bf] = true
		}
		for _, t := range s.m.GetTickets() {
			used[t.GetId()] = true
		}
		select {
		case out <- s.m.GetMatchId():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Recv helpers -----------------------------------------------------------------------------------

// Matches reads a FetchMatches stream to its end.
func Matches(stream grpc.ServerStreamingClient[pb.FetchMatchesResponse]) ([]*pb.Match, error) {
	var out []*pb.Match
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, r.Match)
	}
}

// QueryTickets returns every ticket pool matches and the number of pages they came in.
func (h *Harness) QueryTickets(ctx context.Context, pool *pb.Pool) ([]*pb.Ticket, int, error) {
	s, err := h.Q.QueryTickets(ctx, &pb.QueryTicketsRequest{Pool: pool})
	if err != nil {
		return nil, 0, err
	}
	var out []*pb.Ticket
	pages := 0
	for {
		r, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return out, pages, nil
		}
		if err != nil {
			return nil, pages, err
		}
		pages++
		out = append(out, r.Tickets...)
	}
}
