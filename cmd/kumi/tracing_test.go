package main

import (
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"

	"github.com/kumi-dev/kumi/internal/logbuf"
	"github.com/kumi-dev/kumi/internal/tracing"
	"github.com/kumi-dev/kumi/local"
)

// otlpReceiver is an OpenTelemetry collector's OTLP/gRPC trace endpoint, implemented from the
// OTLP protos: it keeps every span it is sent, with its resource's service.name.
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []gotSpan
}

type gotSpan struct {
	service string
	*tracepb.Span
}

func (r *otlpReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		svc := attr(rs.GetResource().GetAttributes(), "service.name")
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans = append(r.spans, gotSpan{svc, s})
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) all() []gotSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]gotSpan(nil), r.spans...)
}

func attr(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

func id(b []byte) string { return hex.EncodeToString(b) }

// A `kumi local` crowd with tracing on exports, for each player, one trace from the frontend's
// CreateTicket to the game server's JOIN in a separate process, with the match cycle, match
// function run, placement and AssignTickets linked to it, and drain/move spans linked to the
// sessions they move. The game servers inherit this process's sampler (parentbased_traceidratio at
// ratio 1): a drain is a root span there, sampled like any root (the parent's decision ruling a
// JOIN is TestParentDecides in internal/tracing).
func TestTracingOneTracePerTicket(t *testing.T) {
	recv := &otlpReceiver{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(g, recv)
	go func() { _ = g.Serve(ln) }()
	defer g.Stop()

	// Read by this process's Setup and inherited by the game-server processes the fleet starts.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+ln.Addr().String())
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
	t.Setenv("OTEL_TRACES_SAMPLER_ARG", "1")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	t.Setenv("OTEL_SERVICE_NAME", "")

	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	shutdown, err := tracing.Setup(ctx, log, "kumi-local")
	if err != nil {
		t.Fatal(err)
	}
	// Later tests in this binary run with tracing off again.
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
	if !tracing.On() {
		t.Fatal("tracing.Setup with an OTLP endpoint installed no SDK tracer provider")
	}

	cfg := testLocalConfig(t)
	// Players talk for 4 s and the crowd drains a busy server once they have joined: its sessions
	// outlive the game servers' 1 s drain grace, so the drain moves them (as in TestLocal).
	cfg.Players, cfg.Duration, cfg.GroupSize, cfg.ScaleIn = 8, 4*time.Second, 4, true
	cfg.DuelShare, cfg.LateShare, cfg.LeaveShare = 0, 0.25, 0
	// Info level: the drain's log lines are checked for its trace_id below.
	cfg.GameServerEnv = []string{asKumiEnv + "=1", "KUMI_LOG_LEVEL=info", "GORACE=atexit_sleep_ms=0"}
	gsOut := &logbuf.Buffer{}
	cfg.GameServerOutput = gsOut
	cfg.Out = io.Discard

	s, err := local.Start(ctx, log, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := local.RunCrowd(ctx, log, cfg, s)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed > 0 {
		t.Fatalf("%d of %d players failed", sum.Failed, sum.Players)
	}
	if len(sum.Drained) != 1 || sum.Moves == 0 {
		t.Fatalf("scale-in drained %v with %d moves followed; the test needs one drain that moves sessions", sum.Drained, sum.Moves)
	}
	// Stopping the stack stops the game servers, which flush their spans on exit; then ours.
	cancel()
	if err := s.Wait(); err != nil {
		t.Logf("stack stopped with: %v", err)
	}
	fctx, fcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer fcancel()
	if err := shutdown(fctx); err != nil {
		t.Fatal(err)
	}

	spans := recv.all()
	byID := map[string]gotSpan{}
	for _, sp := range spans {
		byID[id(sp.GetSpanId())] = sp
	}
	named := func(name string) []gotSpan {
		var out []gotSpan
		for _, sp := range spans {
			if sp.GetName() == name {
				out = append(out, sp)
			}
		}
		return out
	}
	linksTo := func(sp gotSpan, target gotSpan) bool {
		for _, l := range sp.GetLinks() {
			if id(l.GetTraceId()) == id(target.GetTraceId()) && id(l.GetSpanId()) == id(target.GetSpanId()) {
				return true
			}
		}
		return false
	}
	parent := func(sp gotSpan) (gotSpan, bool) {
		p, ok := byID[id(sp.GetParentSpanId())]
		return p, ok
	}
	before := func(a, b gotSpan) bool { return a.GetStartTimeUnixNano() <= b.GetStartTimeUnixNano() }

	joins := named("gameserver.Join")
	if len(joins) == 0 {
		t.Fatalf("no gameserver.Join span among %d spans (game-server output: %s)", len(spans), gsOut.String())
	}
	// Every JOIN continues a player's trace: under the director's AssignTicket span, under the
	// frontend's CreateTicket span.
	checked := 0
	for _, join := range joins {
		if join.service != "kumi-gameserver" {
			t.Errorf("JOIN span from service %q, want the game-server process (kumi-gameserver)", join.service)
		}
		assign, ok := parent(join)
		switch {
		case ok && assign.GetName() == "director.AssignTicket":
		case ok && assign.GetName() == "director.MoveSession":
			continue // a moved member's rejoin, checked with the moves below
		default:
			t.Errorf("JOIN span %s: parent %q is not director.AssignTicket", id(join.GetSpanId()), assign.GetName())
			continue
		}
		create, ok := parent(assign)
		if !ok || create.GetName() != "frontend.CreateTicket" {
			t.Errorf("AssignTicket span: parent %q is not frontend.CreateTicket", create.GetName())
			continue
		}
		ticket := attr(create.GetAttributes(), "kumi.ticket_id")
		session := attr(assign.GetAttributes(), "kumi.session_id")
		server := attr(assign.GetAttributes(), "kumi.server")
		if ticket == "" || session == "" || server == "" {
			t.Errorf("missing attributes: ticket %q session %q server %q", ticket, session, server)
			continue
		}
		if got := attr(assign.GetAttributes(), "kumi.ticket_id"); got != ticket {
			t.Errorf("AssignTicket kumi.ticket_id %q, want %q", got, ticket)
		}
		if attr(join.GetAttributes(), "kumi.session_id") != session || attr(join.GetAttributes(), "kumi.server") != server {
			t.Errorf("JOIN attributes %v, want session %q server %q", join.GetAttributes(), session, server)
		}
		trace := id(create.GetTraceId())
		for _, sp := range []gotSpan{assign, join} {
			if id(sp.GetTraceId()) != trace {
				t.Errorf("%s is in trace %s, want the ticket's %s", sp.GetName(), id(sp.GetTraceId()), trace)
			}
		}
		if !before(create, assign) || !before(assign, join) {
			t.Errorf("not in causal order: CreateTicket %d, AssignTicket %d, JOIN %d", create.GetStartTimeUnixNano(), assign.GetStartTimeUnixNano(), join.GetStartTimeUnixNano())
		}

		// The core's CreateTicket: a server span in the same trace under the frontend's call.
		var core gotSpan
		for _, sp := range named("openmatch.FrontendService/CreateTicket") {
			if sp.GetKind() != tracepb.Span_SPAN_KIND_SERVER || id(sp.GetTraceId()) != trace {
				continue
			}
			if c, ok := parent(sp); ok {
				if p, ok := parent(c); ok && id(p.GetSpanId()) == id(create.GetSpanId()) {
					core = sp
				}
			}
		}
		if core.Span == nil {
			t.Errorf("ticket %s: no core CreateTicket server span under the frontend's CreateTicket", ticket)
			continue
		}
		if !before(create, core) || core.GetEndTimeUnixNano() > assign.GetStartTimeUnixNano() {
			t.Errorf("ticket %s: core CreateTicket not between the frontend's CreateTicket and the placement", ticket)
		}

		// The delivery to the player: a child of the AssignTicket span.
		delivered := false
		for _, sp := range named("frontend.DeliverAssignment") {
			if id(sp.GetParentSpanId()) == id(assign.GetSpanId()) && attr(sp.GetAttributes(), "kumi.ticket_id") == ticket &&
				attr(sp.GetAttributes(), "kumi.session_id") == session && before(assign, sp) {
				delivered = true
			}
		}
		if !delivered {
			t.Errorf("ticket %s: no frontend.DeliverAssignment span under its AssignTicket span", ticket)
		}

		// The cycle that matched it (director FetchMatches), its match function run and its
		// placement link to the ticket; the cycle's trace holds the core's FetchMatches and Run.
		var cycle gotSpan
		for _, sp := range named("director.FetchMatches") {
			if linksTo(sp, create) {
				cycle = sp
			}
		}
		if cycle.Span == nil {
			t.Errorf("ticket %s: no director.FetchMatches cycle links to its CreateTicket span", ticket)
			continue
		}
		mmfLinked, placeLinked, assignLinked, coreFetch := false, false, false, false
		for _, sp := range named("matchfunction.Run") {
			if linksTo(sp, create) && id(sp.GetTraceId()) == id(cycle.GetTraceId()) && before(cycle, sp) {
				mmfLinked = true
			}
		}
		for _, sp := range named("director.Place") {
			if linksTo(sp, create) && id(sp.GetParentSpanId()) == id(cycle.GetSpanId()) && attr(sp.GetAttributes(), "kumi.session_id") == session &&
				linksTo(assign, sp) && before(sp, assign) {
				placeLinked = true
			}
		}
		for _, sp := range named("director.AssignTickets") {
			if linksTo(sp, assign) && before(assign, sp) {
				assignLinked = true
			}
		}
		for _, sp := range named("openmatch.BackendService/FetchMatches") {
			if sp.GetKind() == tracepb.Span_SPAN_KIND_SERVER && id(sp.GetTraceId()) == id(cycle.GetTraceId()) {
				coreFetch = true
			}
		}
		if !mmfLinked || !placeLinked || !assignLinked || !coreFetch {
			t.Errorf("ticket %s: match function run linked %v, placement linked %v, AssignTickets linked %v, core FetchMatches in the cycle's trace %v",
				ticket, mmfLinked, placeLinked, assignLinked, coreFetch)
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("no JOIN span continued a player's trace")
	}

	// The crowd's scale-in drains a busy server: the drain is a span of the drained server; each of
	// its moves is a child of it, names the session and the server, and links to the JOIN spans of
	// the members it moves (in their tickets' traces); the director's MoveSession span is a child
	// of the move (through the control call) and names both servers, and each member's rejoin on
	// the new server is its child.
	drains := named("gameserver.Drain")
	if len(drains) != 1 {
		t.Fatalf("%d gameserver.Drain spans, want 1 (the crowd drained %v)", len(drains), sum.Drained)
	}
	drained := attr(drains[0].GetAttributes(), "kumi.server")
	if drained != sum.Drained[0] || drains[0].service != "kumi-gameserver" {
		t.Errorf("drain span: server %q from service %q, want %q from kumi-gameserver", drained, drains[0].service, sum.Drained[0])
	}
	// The drained server's log lines about the drain and its moves carry the drain's trace_id, so
	// an operator reading them finds the trace.
	drainTrace := "trace_id=" + id(drains[0].GetTraceId())
	for _, msg := range []string{`msg="drain started"`, `msg="moving remaining sessions"`, `msg="session moved`} {
		found := false
		for _, line := range strings.Split(gsOut.String(), "\n") {
			if strings.Contains(line, msg) && strings.Contains(line, drainTrace) {
				found = true
			}
		}
		if !found {
			t.Errorf("no game-server log line %s with %s (game-server output:\n%s)", msg, drainTrace, gsOut.String())
		}
	}
	moves := named("gameserver.MoveSession")
	if len(moves) == 0 {
		t.Fatalf("no gameserver.MoveSession span, though %d members followed a MOVE", sum.Moves)
	}
	rejoins := 0
	for _, mv := range moves {
		session := attr(mv.GetAttributes(), "kumi.session_id")
		if p, ok := parent(mv); !ok || id(p.GetSpanId()) != id(drains[0].GetSpanId()) {
			t.Errorf("MoveSession %s: parent %q is not the drain span", session, p.GetName())
		}
		if session == "" || attr(mv.GetAttributes(), "kumi.server") != drained {
			t.Errorf("MoveSession span: session %q, server %q; want a session of %q", session, attr(mv.GetAttributes(), "kumi.server"), drained)
			continue
		}
		if len(mv.GetLinks()) == 0 {
			t.Errorf("MoveSession %s links to no JOIN", session)
		}
		for _, l := range mv.GetLinks() {
			j, ok := byID[id(l.GetSpanId())]
			if !ok || j.GetName() != "gameserver.Join" || attr(j.GetAttributes(), "kumi.session_id") != session ||
				attr(j.GetAttributes(), "kumi.server") != drained || id(j.GetTraceId()) != id(l.GetTraceId()) {
				t.Errorf("MoveSession %s: link to %s is not a JOIN of the session it moves", session, id(l.GetSpanId()))
				continue
			}
			// The JOIN is in its player's ticket trace (frontend.CreateTicket is the root there).
			if p, ok := parent(j); !ok || p.GetName() != "director.AssignTicket" {
				t.Errorf("MoveSession %s: linked JOIN's parent %q is not director.AssignTicket", session, p.GetName())
			}
		}
		var dm gotSpan
		for _, sp := range named("director.MoveSession") {
			// Under the control call's server span, under its client span, under the move.
			if srv, ok := parent(sp); ok && srv.GetKind() == tracepb.Span_SPAN_KIND_SERVER {
				if cl, ok := parent(srv); ok && cl.GetKind() == tracepb.Span_SPAN_KIND_CLIENT && id(cl.GetParentSpanId()) == id(mv.GetSpanId()) {
					dm = sp
				}
			}
		}
		if dm.Span == nil {
			t.Errorf("MoveSession %s: no director.MoveSession span under it (through the control call)", session)
			continue
		}
		to := attr(dm.GetAttributes(), "kumi.server")
		if attr(dm.GetAttributes(), "kumi.session_id") != session || attr(dm.GetAttributes(), "kumi.from_server") != drained || to == "" || to == drained {
			t.Errorf("director.MoveSession attributes %v: want session %q from %q to another server", dm.GetAttributes(), session, drained)
		}
		for _, j := range joins {
			if id(j.GetParentSpanId()) == id(dm.GetSpanId()) {
				rejoins++
				if attr(j.GetAttributes(), "kumi.session_id") != session || attr(j.GetAttributes(), "kumi.server") != to {
					t.Errorf("rejoin JOIN attributes %v: want session %q on %q", j.GetAttributes(), session, to)
				}
			}
		}
	}
	if rejoins == 0 {
		t.Errorf("no JOIN on the new server is a child of a director.MoveSession span (%d members moved)", sum.Moves)
	}
	t.Logf("%d spans, %d JOINs checked, %d moves, %d rejoins", len(spans), checked, len(moves), rejoins)
}
