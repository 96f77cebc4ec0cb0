package matchfunction

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"

	"github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/internal/config"
	"github.com/kumi-dev/kumi/internal/omwire"
	"github.com/kumi-dev/kumi/internal/telemetry"
	"github.com/kumi-dev/kumi/internal/tlsconfig"
	"github.com/kumi-dev/kumi/internal/tracing"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// Server is a running match function: a gRPC server for openmatch.MatchFunction plus its
// QueryService connection.
type Server struct {
	lis     net.Listener
	metrics *telemetry.Server // nil when metrics-addr is empty
	done    chan struct{}
	err     error
}

// Start validates cfg, connects to the query service (lazily: a core that starts later is fine),
// listens on cfg.ListenAddr and serves until ctx ends. It returns once the listener is bound.
func Start(ctx context.Context, log *slog.Logger, cfg Config, reg prometheus.Registerer) (*Server, error) {
	config.Log(ctx, log, "matchfunction", &cfg)
	profiles, err := cfg.profiles()
	if err != nil {
		return nil, fmt.Errorf("matchfunction: %w", err)
	}
	if cfg.QueryAddr == "" {
		return nil, errors.New("matchfunction: query-addr is required (the Open Match QueryService host:port)")
	}
	if err := tlsconfig.CheckListen("matchfunction: listen-addr", cfg.ListenAddr, cfg.TLS.Enabled(), cfg.Insecure); err != nil {
		return nil, err
	}
	serverCreds, err := cfg.TLS.ServerCredentials()
	if err != nil {
		return nil, fmt.Errorf("matchfunction: tls: %w", err)
	}
	queryCreds, err := cfg.QueryTLS.DialCredentials()
	if err != nil {
		return nil, fmt.Errorf("matchfunction: query-tls: %w", err)
	}
	conn, err := grpc.NewClient(cfg.QueryAddr, append(tracing.DialOptions(), grpc.WithTransportCredentials(queryCreds))...)
	if err != nil {
		return nil, fmt.Errorf("matchfunction: query-addr %q: %w", cfg.QueryAddr, err)
	}
	h, err := NewHandler(log, profiles, openmatch.NewQueryServiceClient(conn), cfg.QueryTimeout, reg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	lis, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("matchfunction: listen-addr: %w", err)
	}
	// The metrics endpoint also stops when serving gRPC fails, not only when ctx ends.
	metricsCtx, stopMetrics := context.WithCancel(ctx)
	var metrics *telemetry.Server
	if cfg.MetricsAddr != "" {
		g, ok := reg.(prometheus.Gatherer)
		if !ok {
			err = fmt.Errorf("matchfunction: metrics-addr %q set but the registerer (%T) cannot be gathered: pass a *prometheus.Registry", cfg.MetricsAddr, reg)
		} else if metrics, err = telemetry.Serve(metricsCtx, log, cfg.MetricsAddr, g); err != nil {
			err = fmt.Errorf("matchfunction: %w", err)
		}
		if err != nil {
			stopMetrics()
			lis.Close()
			conn.Close()
			return nil, err
		}
	}
	// Reused handler goroutines: no stack growth per call (see openmatch/server.go). Proposals
	// are encoded without protobuf-go's reflective map encoding (internal/omwire).
	gs := grpc.NewServer(append(tracing.ServerOptions(), grpc.Creds(serverCreds), grpc.NumStreamWorkers(uint32(4*runtime.GOMAXPROCS(0))),
		grpc.ForceServerCodecV2(omwire.NewCodec(nil)))...)
	openmatch.RegisterMatchFunctionServer(gs, h)
	s := &Server{lis: lis, metrics: metrics, done: make(chan struct{})}
	serveErr := make(chan error, 1)
	go func() { serveErr <- gs.Serve(lis) }()
	go func() {
		defer close(s.done)
		select {
		case <-ctx.Done():
			gs.GracefulStop()
			<-serveErr
		case err := <-serveErr:
			s.err = fmt.Errorf("matchfunction: serve: %w", err)
			gs.Stop()
		}
		stopMetrics()
		if err := metrics.Wait(); err != nil {
			log.Error("matchfunction metrics", "err", err)
		}
		if err := conn.Close(); err != nil && s.err == nil {
			s.err = fmt.Errorf("matchfunction: close query connection: %w", err)
		}
		log.Info("matchfunction stopped")
	}()
	log.Info("matchfunction serving", "addr", lis.Addr().String(), "query", cfg.QueryAddr, "profiles", h.Profiles())
	return s, nil
}

// Addr is the address the server listens on (the real port when cfg.ListenAddr used port 0).
func (s *Server) Addr() string { return s.lis.Addr().String() }

// MetricsAddr is the /metrics HTTP address, or "" when metrics are not served.
func (s *Server) MetricsAddr() string {
	if s.metrics == nil {
		return ""
	}
	return s.metrics.Addr()
}

// Wait blocks until the server has stopped and released its port and connection.
func (s *Server) Wait() error {
	<-s.done
	return s.err
}

// Run starts the match function and blocks until ctx ends.
func Run(ctx context.Context, log *slog.Logger, cfg Config, reg prometheus.Registerer) error {
	s, err := Start(ctx, log, cfg, reg)
	if err != nil {
		return err
	}
	return s.Wait()
}
