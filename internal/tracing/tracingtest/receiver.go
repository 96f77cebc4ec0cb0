// Package tracingtest is an in-process OTLP/gRPC trace receiver for tests and benchmarks: the
// collector's TraceService from the OTLP protos, so spans leave a kumi component by the same
// OTLP exporter, configured by the same OTEL_* variables, as in production.
package tracingtest

import (
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"testing"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// Receiver counts the spans it is sent (and keeps none: a benchmark's exports would pile up).
type Receiver struct {
	collectortrace.UnimplementedTraceServiceServer
	spans atomic.Int64
}

// Start serves a Receiver on 127.0.0.1 (reachable by processes of this machine only; it accepts
// any span and stores nothing) until tb ends, and returns it and its OTLP endpoint URL for
// OTEL_EXPORTER_OTLP_ENDPOINT (plain gRPC: set OTEL_EXPORTER_OTLP_INSECURE=true).
func Start(tb testing.TB) (*Receiver, string) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	r := &Receiver{}
	g := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(g, r)
	go func() { _ = g.Serve(ln) }()
	tb.Cleanup(g.Stop)
	return r, "http://" + ln.Addr().String()
}

// Export counts the request's spans.
func (r *Receiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	var n int64
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			n += int64(len(ss.GetSpans()))
		}
	}
	r.spans.Add(n)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// Spans is the number of spans received so far.
func (r *Receiver) Spans() int64 { return r.spans.Load() }

// Env is the OTEL_* environment ("KEY=value") that turns tracing on (internal/tracing.Setup)
// exporting to endpoint, sampling root spans at ratio (children follow their parent).
func Env(endpoint string, ratio float64) []string {
	return []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + endpoint,
		"OTEL_EXPORTER_OTLP_INSECURE=true",
		"OTEL_TRACES_SAMPLER=parentbased_traceidratio",
		"OTEL_TRACES_SAMPLER_ARG=" + strconv.FormatFloat(ratio, 'g', -1, 64),
	}
}
