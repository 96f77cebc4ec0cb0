package frontend

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/metadata"

	"github.com/kumi-dev/kumi/api/client"
	pb "github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/internal/logbuf"
	"github.com/kumi-dev/kumi/internal/omext"
	"github.com/kumi-dev/kumi/internal/tracing"
)

// With tracing on, a CreateTicket over HTTP (otelhttp) makes the same trace as one over gRPC: the
// call's server span starts a new trace that links to (and does not continue) the client's
// traceparent, since the API is public; frontend.CreateTicket is its child; the core's CreateTicket
// server span is under that (through the core client's span); and the ticket carries the
// frontend span's traceparent on through Open Match. The spans go to an SDK provider with an
// in-memory recorder (no exporter is needed to see them).
func TestTracingHTTPCreateTicket(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() {
		// The other tests of this package run with tracing off.
		otel.SetTracerProvider(noop.NewTracerProvider())
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
	})
	if !tracing.On() {
		t.Fatal("an SDK tracer provider is installed but tracing.On() is false")
	}
	// The frontend's log as `kumi frontend` writes it (JSON here, to read it back): records logged
	// with a traced context carry trace_id.
	logs := &logbuf.Buffer{}
	log := slog.New(tracing.LogHandler(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	e := newEnvLog(t, nil, log) // after the provider: the frontend picks its instrumentation at start

	// A client that sends its own (sampled) trace context.
	const clientTP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	clientSC, err := tracing.Parse(clientTP)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest("POST", e.base+"/v1/tickets", strings.NewReader(`{"attributes":{"mode":"duel","region":"eu","skill":1200}}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.token("http-player"))
	req.Header.Set("traceparent", clientTP)
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := new(strings.Builder)
	_, _ = io.Copy(body, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("HTTP CreateTicket: status %d: %s", resp.StatusCode, body)
	}
	httpTicket := decodeTicket(t, []byte(body.String())).GetId()

	gctx := metadata.AppendToOutgoingContext(e.as("grpc-player"), "traceparent", clientTP)
	gt, err := e.api.CreateTicket(gctx, &client.CreateTicketRequest{Attributes: attrs("mode", "duel", "region", "eu", "skill", 1200.0)})
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		via, ticket, callSpan string
	}{
		{"http", httpTicket, "POST /v1/tickets"},
		{"grpc", gt.GetId(), "kumi.client.v1.Frontend/CreateTicket"},
	} {
		t.Run(tc.via, func(t *testing.T) {
			// Server spans end just after the reply is sent: wait for the whole shape.
			var call, create, core sdktrace.ReadOnlySpan
			deadline := time.Now().Add(30 * time.Second)
			for {
				call, create, core = shape(rec.Ended(), tc.ticket)
				if core != nil || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if create == nil {
				t.Fatalf("no frontend.CreateTicket span for ticket %s", tc.ticket)
			}
			if call == nil || call.SpanKind() != trace.SpanKindServer || call.Name() != tc.callSpan {
				t.Fatalf("frontend.CreateTicket's parent is %v, want the %s server span %q", name(call), tc.via, tc.callSpan)
			}
			if call.Parent().IsValid() || call.SpanContext().TraceID() == clientSC.TraceID() {
				t.Errorf("the %s call continues the client's trace (parent %v): a public API must start its own", tc.via, call.Parent())
			}
			linked := false
			for _, l := range call.Links() {
				linked = linked || (l.SpanContext.TraceID() == clientSC.TraceID() && l.SpanContext.SpanID() == clientSC.SpanID())
			}
			if !linked {
				t.Errorf("the %s call's span does not link to the client's traceparent: links %v", tc.via, call.Links())
			}
			if core == nil {
				t.Fatalf("no core CreateTicket server span under frontend.CreateTicket for ticket %s", tc.ticket)
			}
			// Its "ticket created" log line names the trace.
			logged := false
			for _, line := range strings.Split(logs.String(), "\n") {
				var rec struct {
					Msg     string `json:"msg"`
					Ticket  string `json:"ticket"`
					TraceID string `json:"trace_id"`
				}
				if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "ticket created" && rec.Ticket == tc.ticket {
					logged = rec.TraceID == create.SpanContext().TraceID().String()
				}
			}
			if !logged {
				t.Errorf("no \"ticket created\" log line for %s with trace_id %s:\n%s", tc.ticket, create.SpanContext().TraceID(), logs.String())
			}
			// The ticket carries the frontend span on through Open Match.
			got, err := e.om.GetTicket(context.Background(), &pb.GetTicketRequest{TicketId: tc.ticket})
			if err != nil {
				t.Fatal(err)
			}
			tp, _, err := omext.String(got.GetExtensions(), omext.TraceParent)
			if err != nil {
				t.Fatal(err)
			}
			sc, err := tracing.Parse(tp)
			if err != nil || sc.SpanID() != create.SpanContext().SpanID() || sc.TraceID() != create.SpanContext().TraceID() {
				t.Errorf("ticket traceparent %q (%v), want frontend.CreateTicket's span %s", tp, err, create.SpanContext().SpanID())
			}
		})
	}
}

// shape finds, among spans, the frontend.CreateTicket span of ticket, its parent (the call's
// server span) and the core's CreateTicket server span under it (through the client span).
func shape(spans []sdktrace.ReadOnlySpan, ticket string) (call, create, core sdktrace.ReadOnlySpan) {
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byID[s.SpanContext().SpanID()] = s
	}
	for _, s := range spans {
		if s.Name() != "frontend.CreateTicket" {
			continue
		}
		for _, a := range s.Attributes() {
			if a.Key == tracing.TicketID && a.Value.AsString() == ticket {
				create = s
			}
		}
	}
	if create == nil {
		return nil, nil, nil
	}
	call = byID[create.Parent().SpanID()]
	for _, s := range spans {
		if s.Name() != "openmatch.FrontendService/CreateTicket" || s.SpanKind() != trace.SpanKindServer {
			continue
		}
		if c, ok := byID[s.Parent().SpanID()]; ok && c.Parent().SpanID() == create.SpanContext().SpanID() {
			core = s
		}
	}
	return call, create, core
}

func name(s sdktrace.ReadOnlySpan) string {
	if s == nil {
		return "none"
	}
	return s.Name()
}
