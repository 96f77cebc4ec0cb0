// Package telemetry serves a component's Prometheus registry over HTTP, so every kumi component
// exposes /metrics the same way whether it runs alone or inside `kumi local`.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a registry with the Go runtime and process collectors, so every component
// reports memory, goroutines and CPU next to its own metrics.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Server is a running /metrics endpoint.
type Server struct {
	ln   net.Listener
	done chan error
}

// Option adds to what Serve serves.
type Option func(*http.ServeMux)

// WithReadiness serves GET /readyz: 200 while ready returns nil, else 503 with its error, so a
// Kubernetes readiness probe can take a replica out of its Services (e.g. a director that is not
// the Lease holder).
func WithReadiness(ready func() error) Option {
	return func(mux *http.ServeMux) {
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
			if err := ready(); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok\n"))
		})
	}
}

// WithPprof serves net/http/pprof's /debug/pprof/ handlers, for profiling a component under load
// (`go tool pprof http://ADDR/debug/pprof/profile?seconds=10`). Only for a loopback listener:
// profiles reveal the process's internals.
func WithPprof() Option {
	return func(mux *http.ServeMux) {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
}

// Serve listens on addr and serves /metrics from g (and /healthz) until ctx ends. It returns once
// listening; an empty addr disables the endpoint and returns a nil *Server.
func Serve(ctx context.Context, log *slog.Logger, addr string, g prometheus.Gatherer, opts ...Option) (*Server, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	for _, o := range opts {
		o(mux)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	s := &Server{ln: ln, done: make(chan error, 1)}
	go func() {
		err := hs.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	log.Info("metrics listening", "addr", ln.Addr().String())
	return s, nil
}

// Addr is the address the endpoint listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Wait blocks until the endpoint has stopped.
func (s *Server) Wait() error {
	if s == nil {
		return nil
	}
	return <-s.done
}
