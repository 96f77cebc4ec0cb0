package openmatch

import (
	"context"
	"errors"
	"fmt"
	"github.com/kumi-dev/kumi/internal/tracing"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/internal/config"
	"github.com/kumi-dev/kumi/internal/telemetry"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
)

// Server is a running core. Create it with Start.
type Server struct {
	log       *slog.Logger
	cfg       Config
	tickets   *ticketStore
	backfills *backfillStore
	metrics   *metrics
	sync      *synchronizer
	mmfs      *mmfClients

	// stopping is closed when the server begins to stop; long streams (WatchAssignments,
	// FetchMatches waiting for a cycle) end on it so GracefulStop does not wait for them.
	stopping <-chan struct{}
	stopCtx  context.Context // done when stopping is closed; parent of every cycle's context
	stopFn   context.CancelFunc

	listeners  [3]net.Listener   // frontend, backend, query
	metricsSrv *telemetry.Server // nil when metrics-addr is empty
	grpcs      [3]*grpc.Server
	healths    [3]*health.Server

	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []error
}

// serverOptions are the gRPC options of every port (the benchmarks' baseline uses them too).
func serverOptions(log *slog.Logger) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(newCodec()),
		grpc.ChainUnaryInterceptor(recoverUnary(log)),
		grpc.ChainStreamInterceptor(recoverStream(log)),
		// Upstream's enforcement policy, so clients tuned for Open Match behave the same here.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		// Stop (after the shutdown grace) also waits for running handlers, whose contexts it
		// cancels, so Wait never returns while a FetchMatches handler could still dial a match
		// function whose connections are being closed.
		grpc.WaitForHandlers(true),
		// Handlers run on reused goroutines whose stacks have already grown: with a new goroutine
		// per call, stack growth (runtime.newstack) was ~7 % of kumi local's CPU at 1000 tickets/s
		// (BENCHMARKS.md). Calls beyond the workers still get goroutines of their own.
		grpc.NumStreamWorkers(uint32(4 * runtime.GOMAXPROCS(0))),
	}
}

// Start validates cfg, listens on the three addresses and serves until ctx ends. It returns once
// every listener is bound. reg may be nil (metrics are then kept but not exported).
func Start(ctx context.Context, log *slog.Logger, cfg Config, reg prometheus.Registerer) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	config.Log(ctx, log, "openmatch", &cfg)
	s := &Server{
		log:       log,
		cfg:       cfg,
		tickets:   newTicketStore(cfg.PendingReleaseTimeout, cfg.AssignedDeleteTimeout),
		backfills: newBackfillStore(cfg.PendingReleaseTimeout),
	}
	s.stopCtx, s.stopFn = context.WithCancel(context.Background())
	s.stopping = s.stopCtx.Done()
	var err error
	if s.metrics, err = newMetrics(reg, s.tickets, s.backfills); err != nil {
		s.stopFn()
		return nil, err
	}
	s.mmfs = newMMFClients(cfg.MatchFunctions, cfg.MMFRESTTimeout)
	ev, err := newEvaluator(cfg.EvaluatorAddr)
	if err != nil {
		s.stopFn()
		return nil, err
	}
	s.sync = newSynchronizer(s, ev)

	addrs := [3]string{cfg.FrontendAddr, cfg.BackendAddr, cfg.QueryAddr}
	names := [3]string{"frontend", "backend", "query"}
	for i, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			for _, prev := range s.listeners[:i] {
				prev.Close()
			}
			ev.close()
			s.mmfs.close()
			s.stopFn()
			return nil, fmt.Errorf("openmatch: listen %s on %q: %w", names[i], a, err)
		}
		s.listeners[i] = l
	}
	if cfg.MetricsAddr != "" {
		// It stops with stopCtx and Wait waits for it, like every other part of the server.
		if s.metricsSrv, err = s.serveMetrics(reg); err != nil {
			for _, l := range s.listeners {
				l.Close()
			}
			ev.close()
			s.mmfs.close()
			s.stopFn()
			return nil, err
		}
	}
	creds, err := cfg.TLS.ServerCredentials()
	if err != nil {
		for _, l := range s.listeners {
			l.Close()
		}
		ev.close()
		s.mmfs.close()
		s.stopFn()
		return nil, fmt.Errorf("openmatch: tls: %w", err)
	}
	for i := range s.grpcs {
		// Tracing (off by default) continues the caller's trace: the frontend's CreateTicket, the
		// director's FetchMatches cycle, which the match function's Run call then joins.
		g := grpc.NewServer(append(append(serverOptions(s.log), tracing.ServerOptions()...), grpc.Creds(creds))...)
		h := health.NewServer()
		healthpb.RegisterHealthServer(g, h)
		s.grpcs[i], s.healths[i] = g, h
	}
	s.grpcs[0].RegisterService(frontendDesc(), &frontend{s: s})
	s.healths[0].SetServingStatus(pb.FrontendService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	pb.RegisterBackendServiceServer(s.grpcs[1], &backend{s: s})
	s.healths[1].SetServingStatus(pb.BackendService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	pb.RegisterQueryServiceServer(s.grpcs[2], &query{s: s})
	s.healths[2].SetServingStatus(pb.QueryService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)

	for i := range s.grpcs {
		s.wg.Go(func() {
			if err := s.grpcs[i].Serve(s.listeners[i]); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				s.fail(fmt.Errorf("openmatch: serve %s: %w", names[i], err))
			}
		})
	}
	if s.metricsSrv != nil {
		s.wg.Go(func() {
			if err := s.metricsSrv.Wait(); err != nil {
				s.fail(fmt.Errorf("openmatch: serve metrics: %w", err))
			}
		})
	}
	s.wg.Go(func() { s.sync.run() })
	s.wg.Go(func() { s.sweep() })
	s.wg.Go(func() {
		<-ctx.Done()
		s.stop(ev)
	})
	log.Info("openmatch core serving", "frontend", s.FrontendAddr(), "backend", s.BackendAddr(), "query", s.QueryAddr(), "metrics", s.MetricsAddr())
	return s, nil
}

func (s *Server) fail(err error) {
	s.mu.Lock()
	s.errs = append(s.errs, err)
	s.mu.Unlock()
}

func (s *Server) stop(ev evaluator) {
	for _, h := range s.healths {
		h.Shutdown()
	}
	s.stopFn()
	var wg sync.WaitGroup
	for _, g := range s.grpcs {
		wg.Go(func() {
			done := make(chan struct{})
			go func() { g.GracefulStop(); close(done) }()
			t := time.NewTimer(s.cfg.ShutdownGrace)
			defer t.Stop()
			select {
			case <-done:
			case <-t.C:
				g.Stop()
				<-done
			}
		})
	}
	wg.Wait()
	ev.close()
	s.mmfs.close()
	s.log.Info("openmatch core stopped")
}

func (s *Server) serveMetrics(reg prometheus.Registerer) (*telemetry.Server, error) {
	g, ok := reg.(prometheus.Gatherer)
	if !ok {
		return nil, fmt.Errorf("openmatch: metrics-addr %q set but the registerer (%T) cannot be gathered: pass a *prometheus.Registry", s.cfg.MetricsAddr, reg)
	}
	m, err := telemetry.Serve(s.stopCtx, s.log, s.cfg.MetricsAddr, g)
	if err != nil {
		return nil, fmt.Errorf("openmatch: %w", err)
	}
	return m, nil
}

// MetricsAddr is the bound host:port of the metrics endpoint ("" when off).
func (s *Server) MetricsAddr() string {
	if s.metricsSrv == nil {
		return ""
	}
	return s.metricsSrv.Addr()
}

// sweep deletes assigned tickets after assignedDeleteTimeout.
func (s *Server) sweep() {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopping:
			return
		case now := <-t.C:
			if n := s.tickets.sweep(now.UnixNano()); n > 0 {
				s.metrics.expired.Add(float64(n))
			}
		}
	}
}

// FrontendAddr is the frontend's bound host:port.
func (s *Server) FrontendAddr() string { return s.listeners[0].Addr().String() }

// BackendAddr is the backend's bound host:port.
func (s *Server) BackendAddr() string { return s.listeners[1].Addr().String() }

// QueryAddr is the query service's bound host:port.
func (s *Server) QueryAddr() string { return s.listeners[2].Addr().String() }

// Wait blocks until the server has stopped (after ctx ended) and every goroutine and socket is
// released; it returns serve errors, if any.
func (s *Server) Wait() error {
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(s.errs...)
}

// Run starts the core and blocks until ctx ends (the `kumi openmatch` entry).
func Run(ctx context.Context, log *slog.Logger, cfg Config, reg prometheus.Registerer) error {
	if cfg.GCPercent > 0 && os.Getenv("GOGC") == "" {
		debug.SetGCPercent(cfg.GCPercent)
	}
	s, err := Start(ctx, log, cfg, reg)
	if err != nil {
		return err
	}
	return s.Wait()
}
