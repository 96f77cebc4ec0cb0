package tracing

import (
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"google.golang.org/grpc"
)

// PublicServerOptions are ServerOptions for a listener the public reaches (the frontend's player
// API): a call's span starts a new trace and only links to a caller's trace context, so a client
// can neither choose our trace ids nor, with a parent-based sampler, force its calls to be
// sampled (and exported at our cost). None when tracing is off.
func PublicServerOptions() []grpc.ServerOption {
	if !On() {
		return nil
	}
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithPublicEndpoint()))}
}

// PublicHTTPHandler wraps h (a public API's handler, typically an http.ServeMux) with otelhttp: a
// server span per request named for the route pattern ("POST /v1/tickets"), starting a new trace
// that links to the caller's traceparent, if any, for the reason PublicServerOptions gives. Off,
// it returns h itself, so tracing costs nothing.
func PublicHTTPHandler(h http.Handler) http.Handler {
	if !On() {
		return h
	}
	// otelhttp's ResponseWriter (httpsnoop) unwraps to the server's, so http.ResponseController
	// deadlines and flushes still reach the connection.
	return otelhttp.NewHandler(h, "http",
		otelhttp.WithPublicEndpointFn(func(*http.Request) bool { return true }),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			if r.Pattern != "" {
				return r.Pattern
			}
			return r.Method
		}))
}
