// Package tracing sets up OpenTelemetry tracing for a kumi component from the standard OTEL_*
// environment variables, and carries a trace across the places gRPC metadata cannot: Open Match
// ticket and assignment extensions and server tokens (as a W3C traceparent string).
//
// Tracing is off unless an OTLP endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) and OTEL_TRACES_EXPORTER is not "none". Off, Setup installs
// nothing: the global tracer provider stays OpenTelemetry's no-op one, ServerOptions/DialOptions
// add no gRPC stats handlers and Inject writes nothing, so tracing costs nothing when off.
//
// On, spans go by OTLP/gRPC (otlptracegrpc, which reads the OTEL_EXPORTER_OTLP_* variables itself:
// endpoint, headers, TLS, timeout) through a batch processor; the sampler comes from
// OTEL_TRACES_SAMPLER/OTEL_TRACES_SAMPLER_ARG (default parentbased_always_on) and the service name
// from OTEL_SERVICE_NAME (default: the component's name).
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
)

// Attribute keys kumi puts on its spans, stable so dashboards and queries can rely on them.
const (
	TicketID  = attribute.Key("kumi.ticket_id")
	SessionID = attribute.Key("kumi.session_id")
	Server    = attribute.Key("kumi.server")
	// FromServer is the server a session moves off (kumi.server is where it goes).
	FromServer = attribute.Key("kumi.from_server")
	PlayerID   = attribute.Key("kumi.player_id")
	Profile    = attribute.Key("kumi.profile")
)

// Scope is the instrumentation scope (tracer name) prefix of kumi's own spans.
const Scope = "github.com/kumi-dev/kumi/"

// Enabled reports whether the environment configures an exporter (see the package doc).
func Enabled() bool {
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")), "none") {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup installs the global tracer provider and the W3C trace-context propagator when Enabled, and
// returns the function that flushes and stops it (call it on exit, with a context bounding the
// flush). Off, it installs nothing and the returned function does nothing. service is the default
// service.name when OTEL_SERVICE_NAME is unset.
func Setup(ctx context.Context, log *slog.Logger, service string) (shutdown func(context.Context) error, err error) {
	if !Enabled() {
		return func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracegrpc.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res, err := resource.Merge(
		resource.NewSchemaless(semconv.ServiceName(service)),
		// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override the default name.
		mustDetect(ctx),
	)
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	// No sampler option: the SDK reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing: export failed", "err", err)
	}))
	log.Info("tracing on: exporting spans by OTLP/gRPC", "service", service,
		"endpoint", firstSet("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
		"sampler", firstSet("OTEL_TRACES_SAMPLER"), "sampler_arg", firstSet("OTEL_TRACES_SAMPLER_ARG"))
	return func(ctx context.Context) error {
		if err := tp.Shutdown(ctx); err != nil {
			return fmt.Errorf("tracing: flush: %w", err)
		}
		return nil
	}, nil
}

// mustDetect is the resource from OTEL_SERVICE_NAME/OTEL_RESOURCE_ATTRIBUTES; a malformed
// variable is ignored (the SDK reports partial resources as errors that lose nothing else).
func mustDetect(ctx context.Context) *resource.Resource {
	r, err := resource.New(ctx, resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil && r == nil {
		return resource.Empty()
	}
	return r
}

func firstSet(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// On reports whether Setup installed a recording tracer provider in this process.
func On() bool {
	_, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider)
	return ok
}

// Tracer is the tracer of one kumi package (e.g. "director"), from the global provider.
func Tracer(pkg string) trace.Tracer { return otel.Tracer(Scope + pkg) }

// ServerOptions are the gRPC server options that make a span per call, continuing the caller's
// trace from the request metadata; none when tracing is off.
func ServerOptions() []grpc.ServerOption {
	if !On() {
		return nil
	}
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler())}
}

// DialOptions are the gRPC client options that make a span per call and send the trace context in
// the request metadata; none when tracing is off.
func DialOptions() []grpc.DialOption {
	if !On() {
		return nil
	}
	return []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler())}
}

// TraceParent is the W3C traceparent of the span in ctx; "" when ctx holds no sampled-or-not valid
// span context (tracing off, or nothing started).
func TraceParent(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c["traceparent"]
}

// ErrBadTraceParent is returned by Parse for a value that is not a W3C traceparent.
var ErrBadTraceParent = errors.New("tracing: not a W3C traceparent")

// Parse turns a W3C traceparent back into a (remote) span context.
func Parse(traceparent string) (trace.SpanContext, error) {
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": traceparent})
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return trace.SpanContext{}, fmt.Errorf("%w: %q", ErrBadTraceParent, traceparent)
	}
	return sc, nil
}

// ContextWith returns ctx carrying the remote span context of traceparent as the parent of the next
// span started from it; ctx unchanged when traceparent is empty or malformed (a bad value from a
// peer must not fail the request it rides on).
func ContextWith(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	sc, err := Parse(traceparent)
	if err != nil {
		return ctx
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}

// Link is a span link to traceparent; ok is false when it is empty or malformed.
func Link(traceparent string, attrs ...attribute.KeyValue) (trace.Link, bool) {
	if traceparent == "" {
		return trace.Link{}, false
	}
	sc, err := Parse(traceparent)
	if err != nil {
		return trace.Link{}, false
	}
	return trace.Link{SpanContext: sc, Attributes: attrs}, true
}
