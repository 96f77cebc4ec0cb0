package matchfunction

import (
	"context"
	"errors"
	"fmt"
	"github.com/kumi-dev/kumi/internal/omext"
	"github.com/kumi-dev/kumi/internal/omwire"
	"github.com/kumi-dev/kumi/internal/tracing"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kumi-dev/kumi/api/openmatch"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/xid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// FunctionName is written into Match.match_function.
const FunctionName = "kumi"

// Handler is the match function itself, independent of how it is served: it implements
// openmatch.MatchFunctionServer (register it on any *grpc.Server or in openmatch.Config.MatchFunctions)
// and offers Propose for callers that want proposals without a core.
type Handler struct {
	openmatch.UnimplementedMatchFunctionServer

	log      *slog.Logger
	profiles map[string]*Profile
	query    openmatch.QueryServiceClient
	timeout  time.Duration
	now      func() time.Time
	m        *metrics
}

// NewHandler validates profiles and returns a Handler reading tickets through query. reg receives the
// kumi_matchfunction_* metrics; nil registers nowhere. queryTimeout ≤ 0 means no bound beyond the
// caller's context.
func NewHandler(log *slog.Logger, profiles []Profile, query openmatch.QueryServiceClient, queryTimeout time.Duration, reg prometheus.Registerer) (*Handler, error) {
	if query == nil {
		return nil, errors.New("matchfunction: a QueryService client is required")
	}
	if err := ValidateProfiles(profiles); err != nil {
		return nil, fmt.Errorf("matchfunction: %w", err)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	h := &Handler{log: log, profiles: make(map[string]*Profile, len(profiles)), query: query, timeout: queryTimeout, now: time.Now, m: m}
	for i := range profiles {
		p := profiles[i]
		h.profiles[p.Name] = &p
	}
	return h, nil
}

// Profiles returns the names of the configured profiles, sorted.
func (h *Handler) Profiles() []string {
	names := make([]string, 0, len(h.profiles))
	for n := range h.profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Run serves openmatch.MatchFunction/Run: it queries the profile's pools and streams one proposal per
// group.
func (h *Handler) Run(req *openmatch.RunRequest, stream grpc.ServerStreamingServer[openmatch.RunResponse]) error {
	ctx, span := tracing.Tracer("matchfunction").Start(stream.Context(), "matchfunction.Run",
		trace.WithAttributes(tracing.Profile.String(req.GetProfile().GetName())))
	defer span.End()
	// Served over gRPC, the proposals' tickets go back as the bytes the query returned instead of
	// being re-encoded (omwire.Recorder.Forward; the same tickets on the wire). Not when an
	// embedding core calls Run in process: it reads the proposals' tickets as Go values, and its
	// context carries the core's own method (FetchMatches), not Run.
	var rec *omwire.Recorder
	if m, _ := grpc.Method(stream.Context()); m == openmatch.MatchFunction_Run_FullMethodName {
		// The function reads no ticket extensions, unless to link this span to the tickets' traces.
		rec = omwire.NewRecorder(span.IsRecording())
	}
	matches, err := h.propose(ctx, req.GetProfile(), rec)
	if err != nil {
		span.SetStatus(otelcodes.Error, err.Error())
		return err
	}
	// One Run serves many tickets, each in its own trace: link this run to every matched ticket.
	if span.IsRecording() {
		for _, m := range matches {
			for _, t := range m.GetTickets() {
				tp, _, _ := omext.String(t.GetExtensions(), omext.TraceParent)
				if l, ok := tracing.Link(tp, tracing.TicketID.String(t.GetId())); ok {
					span.AddLink(l)
				}
			}
		}
	}
	if rec != nil {
		// Propose groups deduplicated tickets once, so no ticket is in two proposals: the kumi
		// core may accept each as it arrives (api/openmatch/disjoint.go).
		if err := stream.SetHeader(metadata.Pairs(openmatch.DisjointProposalsHeader, "1")); err != nil {
			return err
		}
	}
	for _, m := range matches {
		if rec != nil {
			m = rec.Forward(m)
		}
		if err := stream.Send(&openmatch.RunResponse{Proposal: m}); err != nil {
			return err
		}
	}
	return nil
}

// Propose runs the match function for one profile and returns its proposals. The profile's
// parameters are looked up by mp.name in the configured profiles; its pools are mp.pools, or the
// configured pools when mp carries none. Errors carry gRPC status codes (InvalidArgument for a bad
// profile, Unavailable/other for query failures).
func (h *Handler) Propose(ctx context.Context, mp *openmatch.MatchProfile) ([]*openmatch.Match, error) {
	return h.propose(ctx, mp, nil)
}

// propose is Propose; rec, when not nil, records the wire bytes of the tickets queried.
func (h *Handler) propose(ctx context.Context, mp *openmatch.MatchProfile, rec *omwire.Recorder) ([]*openmatch.Match, error) {
	start := time.Now()
	if mp == nil {
		h.m.runs.WithLabelValues("", "invalid").Inc()
		return nil, status.Error(codes.InvalidArgument, ".profile is required")
	}
	p, ok := h.profiles[mp.GetName()]
	if !ok {
		h.m.runs.WithLabelValues("", "invalid").Inc()
		return nil, status.Errorf(codes.InvalidArgument, "match profile %q is not configured in the match function (configured: %s)",
			mp.GetName(), strings.Join(h.Profiles(), ", "))
	}
	pools := mp.GetPools()
	if len(pools) == 0 {
		pools = p.MatchProfile().GetPools()
	}
	// Query results are keyed by pool name, so a repeated name would silently drop a pool's tickets.
	seen := make(map[string]int, len(pools))
	for i, pool := range pools {
		if j, dup := seen[pool.GetName()]; dup {
			h.m.runs.WithLabelValues(p.Name, "invalid").Inc()
			return nil, status.Errorf(codes.InvalidArgument, "match profile %q: pools[%d] and pools[%d] are both named %q; give each pool its own name",
				p.Name, j, i, pool.GetName())
		}
		seen[pool.GetName()] = i
	}
	if h.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.timeout)
		defer cancel()
	}
	// Query pages decode without protobuf-go's reflective map decoding (omwire); an in-process
	// query client ignores the option.
	byPool, err := queryPools(ctx, h.query, pools, grpc.ForceCodecV2(omwire.NewCodec(rec)))
	if err != nil {
		h.m.runs.WithLabelValues(p.Name, "query_error").Inc()
		h.log.WarnContext(ctx, "query pools", "profile", p.Name, "err", err)
		return nil, err
	}
	var tickets []*openmatch.Ticket
	for _, pool := range pools {
		tickets = append(tickets, byPool[pool.GetName()]...)
	}
	res := Propose(p, tickets, h.now())

	matches := make([]*openmatch.Match, 0, len(res.Proposals))
	for i := range res.Proposals {
		// xid is unique across processes and calls, so two concurrent FetchMatches calls in one
		// synchronizer cycle never share a match id (which would fail the whole cycle).
		matches = append(matches, res.Proposals[i].ToMatch(p, p.Name+"-"+xid.New().String(), FunctionName))
	}
	h.m.runs.WithLabelValues(p.Name, "ok").Inc()
	h.m.proposals.WithLabelValues(p.Name).Add(float64(len(matches)))
	h.m.tickets.WithLabelValues(p.Name).Add(float64(len(tickets)))
	h.m.duration.WithLabelValues(p.Name).Observe(time.Since(start).Seconds())
	if h.log.Enabled(ctx, slog.LevelDebug) {
		for _, s := range res.Skipped {
			h.log.DebugContext(ctx, "ticket waits", "profile", p.Name, "ticket", s.TicketID, "reason", s.Reason)
		}
	}
	h.log.DebugContext(ctx, "run", "profile", p.Name, "tickets", len(tickets), "proposals", len(matches), "waiting", len(res.Skipped))
	return matches, nil
}

// QueryPools queries every pool concurrently (like upstream's matchfunction.QueryPools) and returns
// pool name → tickets. The first failure cancels the other queries and is returned, naming its pool.
func QueryPools(ctx context.Context, q openmatch.QueryServiceClient, pools []*openmatch.Pool) (map[string][]*openmatch.Ticket, error) {
	return queryPools(ctx, q, pools)
}

func queryPools(ctx context.Context, q openmatch.QueryServiceClient, pools []*openmatch.Pool, opts ...grpc.CallOption) (map[string][]*openmatch.Ticket, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		out      = make(map[string][]*openmatch.Ticket, len(pools))
		firstErr error
		wg       sync.WaitGroup
	)
	for _, pool := range pools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ts, err := queryPool(ctx, q, pool, opts...)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
					cancel()
				}
				return
			}
			out[pool.GetName()] = ts
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

func queryPool(ctx context.Context, q openmatch.QueryServiceClient, pool *openmatch.Pool, opts ...grpc.CallOption) ([]*openmatch.Ticket, error) {
	stream, err := q.QueryTickets(ctx, &openmatch.QueryTicketsRequest{Pool: pool}, opts...)
	if err != nil {
		return nil, wrapQuery(pool, err)
	}
	var ts []*openmatch.Ticket
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return ts, nil
		}
		if err != nil {
			return nil, wrapQuery(pool, err)
		}
		ts = append(ts, resp.GetTickets()...)
	}
}

// wrapQuery names the pool but keeps the gRPC code of the query failure.
func wrapQuery(pool *openmatch.Pool, err error) error {
	st, _ := status.FromError(err)
	return status.Errorf(st.Code(), "query pool %q: %s", pool.GetName(), st.Message())
}

type metrics struct {
	runs      *prometheus.CounterVec
	proposals *prometheus.CounterVec
	tickets   *prometheus.CounterVec
	duration  *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kumi_matchfunction_runs_total", Help: "Match function runs by profile and result (ok, invalid, query_error).",
		}, []string{"profile", "result"}),
		proposals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kumi_matchfunction_proposals_total", Help: "Match proposals streamed back, by profile.",
		}, []string{"profile"}),
		tickets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kumi_matchfunction_tickets_considered_total", Help: "Tickets read from the query service, by profile (a ticket counts once per run and pool).",
		}, []string{"profile"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kumi_matchfunction_run_seconds", Help: "Time of one successful run (query and grouping), by profile.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"profile"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.runs, m.proposals, m.tickets, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("matchfunction: register metrics: %w", err)
		}
	}
	return m, nil
}
