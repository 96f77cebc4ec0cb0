package tracing

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		endpoint, traces, expor string
		want                    bool
	}{
		{"nothing set", "", "", "", false},
		{"endpoint", "http://127.0.0.1:4317", "", "", true},
		{"traces endpoint", "", "http://127.0.0.1:4317", "", true},
		{"exporter none", "http://127.0.0.1:4317", "", "none", false},
		{"exporter otlp", "http://127.0.0.1:4317", "", "otlp", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", tc.endpoint)
			t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", tc.traces)
			t.Setenv("OTEL_TRACES_EXPORTER", tc.expor)
			if got := Enabled(); got != tc.want {
				t.Fatalf("Enabled() = %v, want %v", got, tc.want)
			}
		})
	}
}

// Off, Setup installs nothing: no SDK provider, no gRPC stats handlers, no traceparent written.
func TestSetupOffIsNoop(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	shutdown, err := Setup(context.Background(), slog.New(slog.DiscardHandler), "kumi-test")
	if err != nil {
		t.Fatal(err)
	}
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if On() || ServerOptions() != nil || DialOptions() != nil {
		t.Fatalf("tracing off but On()=%v, %d server options, %d dial options", On(), len(ServerOptions()), len(DialOptions()))
	}
	ctx, span := Tracer("test").Start(context.Background(), "x")
	defer span.End()
	if span.IsRecording() || TraceParent(ctx) != "" {
		t.Fatalf("tracing off but span records (%v) or has a traceparent %q", span.IsRecording(), TraceParent(ctx))
	}
}

func TestTraceParentRoundTrip(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	ctx, span := tp.Tracer("test").Start(context.Background(), "x")
	defer span.End()
	raw := TraceParent(ctx)
	if !strings.HasPrefix(raw, "00-"+span.SpanContext().TraceID().String()+"-"+span.SpanContext().SpanID().String()) {
		t.Fatalf("traceparent %q does not name span %v", raw, span.SpanContext())
	}
	sc, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if sc.TraceID() != span.SpanContext().TraceID() || sc.SpanID() != span.SpanContext().SpanID() || !sc.IsSampled() || !sc.IsRemote() {
		t.Fatalf("parsed %v, want the span's context, sampled, remote", sc)
	}
	for _, bad := range []string{"", "garbage", "00-00000000000000000000000000000000-0000000000000000-01", "00-abc-def-01"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted a bad traceparent", bad)
		}
		if got := ContextWith(context.Background(), bad); trace.SpanContextFromContext(got).IsValid() {
			t.Errorf("ContextWith(%q) made a span context", bad)
		}
		if _, ok := Link(bad); ok {
			t.Errorf("Link(%q) made a link", bad)
		}
	}
}

// A parent-based sampler follows the traceparent's decision, whatever its own ratio: what the
// game server's JOIN span relies on.
func TestParentDecides(t *testing.T) {
	for _, tc := range []struct {
		name   string
		flags  string
		ratio  float64
		record bool
	}{
		{"sampled parent, ratio 0", "01", 0, true},
		{"unsampled parent, ratio 1", "00", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp := tracetest.NewInMemoryExporter()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(tc.ratio))))
			parent := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-" + tc.flags
			_, span := tp.Tracer("test").Start(ContextWith(context.Background(), parent), "join")
			span.End()
			got := exp.GetSpans() // the syncer exported it at End; Shutdown would clear the exporter
			defer func() { _ = tp.Shutdown(context.Background()) }()
			if (len(got) == 1) != tc.record {
				t.Fatalf("%d spans exported, want recorded=%v", len(got), tc.record)
			}
			if tc.record && got[0].Parent.SpanID().String() != "00f067aa0ba902b7" {
				t.Fatalf("parent %v, want the traceparent's span", got[0].Parent)
			}
		})
	}
}

func TestLogHandlerAddsTraceID(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewTextHandler(&buf, nil))).With("component", "x")
	ctx, span := tp.Tracer("test").Start(context.Background(), "x")
	log.InfoContext(ctx, "with span")
	span.End()
	log.Info("without span")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines: %q", len(lines), buf.String())
	}
	want := "trace_id=" + span.SpanContext().TraceID().String() + " span_id=" + span.SpanContext().SpanID().String()
	if !strings.Contains(lines[0], want) || !strings.Contains(lines[0], "component=x") {
		t.Errorf("line with a span %q lacks %q", lines[0], want)
	}
	if strings.Contains(lines[1], "trace_id") {
		t.Errorf("line without a span carries a trace id: %q", lines[1])
	}
	_ = otel.GetTracerProvider() // the handler reads only the context, never the global provider
}
