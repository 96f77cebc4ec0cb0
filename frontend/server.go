package frontend

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/kumi-dev/kumi/internal/tracing"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/kumi-dev/kumi/api/client"
	"github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/internal/config"
	"github.com/kumi-dev/kumi/internal/controlauth"
	"github.com/kumi-dev/kumi/internal/telemetry"
	"github.com/kumi-dev/kumi/internal/ticketseal"
	"github.com/kumi-dev/kumi/internal/token"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/structpb"
)

// Server is a running frontend.
type Server struct {
	grpcLn, httpLn net.Listener
	done           chan struct{}
	err            error
	svc            *service
	metrics        *telemetry.Server // nil when metrics-addr is empty
}

// defaultExpiryWorkers bounds concurrent expiry calls to Open Match.
const defaultExpiryWorkers = 8

// Start verifies the config, loads the JWT keys, connects to Open Match (lazily: an unreachable
// core fails calls with Unavailable, not Start), recovers live tickets when om-query-addr is set,
// and serves until ctx ends. It returns once both listeners are bound.
func Start(ctx context.Context, log *slog.Logger, cfg Config, reg prometheus.Registerer) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	config.Log(ctx, log, "frontend", &cfg)
	cfg.JWT.Log = log
	cfg.JWT.Claims = cfg.Attributes.claims()
	verifier, err := token.NewVerifier(ctx, cfg.JWT)
	if err != nil {
		return nil, fmt.Errorf("frontend: player token keys (flags jwt-public-keys, jwt-jwks-file, jwt-jwks-url): %w", err)
	}
	sealSecret := cfg.TicketSealSecret
	if sealSecret == "" {
		if sealSecret, err = controlauth.ReadSecret(cfg.TicketSealSecretFile); err != nil {
			return nil, fmt.Errorf("frontend: ticket-seal-secret-file: %w", err)
		}
	}
	var sealer *ticketseal.Sealer
	if sealSecret != "" {
		if sealer, err = ticketseal.New(sealSecret, 0); err != nil {
			return nil, fmt.Errorf("frontend: %w", err)
		}
	} else {
		log.Warn("ticket-seal-secret-file not set: tickets are not sealed, and a director that checks seals will never assign them")
	}
	omCreds, err := cfg.OpenMatchTLS.DialCredentials()
	if err != nil {
		return nil, fmt.Errorf("frontend: om-tls: %w", err)
	}
	serverCreds, err := cfg.TLS.ServerCredentials()
	if err != nil {
		return nil, fmt.Errorf("frontend: tls: %w", err)
	}
	var httpTLS *tls.Config
	if cfg.TLS.Enabled() {
		if httpTLS, err = cfg.TLS.Server(); err != nil {
			return nil, fmt.Errorf("frontend: tls: %w", err)
		}
	}
	conn, err := grpc.NewClient(cfg.OpenMatchAddr, append(tracing.DialOptions(), grpc.WithTransportCredentials(omCreds))...)
	if err != nil {
		return nil, fmt.Errorf("frontend: open match %s: %w", cfg.OpenMatchAddr, err)
	}
	srvCtx, stop := context.WithCancel(ctx)
	var metricsSrv *telemetry.Server
	var store Store
	fail := func(err error) (*Server, error) {
		stop()
		metricsSrv.Wait()
		conn.Close()
		if store != nil {
			store.Close()
		}
		return nil, err
	}
	if store, err = newStore(ctx, cfg.Store); err != nil {
		return fail(err)
	}
	s := &service{
		cfg: cfg, log: log, om: openmatch.NewFrontendServiceClient(conn),
		players: newPlayers(store, storeTTL(cfg.TicketLifetime), cfg.Store.Timeout, log), expiry: newExpiryQueue(), now: time.Now, seal: sealer, aliases: newAliases(),
		watchers: &watcherCount{max: cfg.MaxWatchesPerPlayer, n: map[string]int{}},
		tracer:   tracing.Tracer("frontend"),
	}
	s.watches = newWatchHub(srvCtx, s.om, log)
	s.watches.refile = s.refile
	if s.m, err = newMetrics(reg,
		func() float64 { return float64(s.players.count()) },
		func() float64 { return float64(s.watches.watching()) },
		func() float64 { return float64(s.expiry.len()) }); err != nil {
		return fail(fmt.Errorf("frontend: metrics: %w", err))
	}
	if cfg.OpenMatchQueryAddr != "" {
		if err := s.recover(ctx, cfg.OpenMatchQueryAddr); err != nil {
			return fail(err)
		}
	}
	lim := newLimiter(cfg, time.Now)
	g := &gate{v: verifier, cache: newTokenCache(cfg.TokenCacheSize, cfg.TokenCacheTTL), lim: lim, m: s.m, now: time.Now}

	if cfg.MetricsAddr != "" {
		g, ok := reg.(prometheus.Gatherer)
		if !ok {
			return fail(fmt.Errorf("frontend: metrics-addr %q set but the registerer (%T) cannot be gathered: pass a *prometheus.Registry", cfg.MetricsAddr, reg))
		}
		if metricsSrv, err = telemetry.Serve(srvCtx, log, cfg.MetricsAddr, g); err != nil {
			return fail(fmt.Errorf("frontend: %w", err))
		}
	}
	srv := &Server{done: make(chan struct{}), svc: s, metrics: metricsSrv}
	var gs *grpc.Server
	var hs *http.Server
	var grpcHealth *health.Server
	if cfg.GRPCAddr != "" {
		if srv.grpcLn, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
			return fail(fmt.Errorf("frontend: grpc listen: %w", err))
		}
		gs = grpc.NewServer(append(tracing.PublicServerOptions(),
			grpc.Creds(serverCreds),
			grpc.MaxRecvMsgSize(int(cfg.MaxBodyBytes)),
			// Headers carry the token: bound them like the HTTP side does.
			grpc.MaxHeaderListSize(uint32(cfg.JWT.MaxTokenBytes+8<<10)),
			// Each connection gets a bounded number of concurrent calls; a player needs a handful.
			grpc.MaxConcurrentStreams(uint32(cfg.MaxStreamsPerConn)),
			// Clients pinging more often than every 10 s are disconnected (GOAWAY "too_many_pings"),
			// idle connections are closed, and dead peers are found by our own pings.
			grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
			grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: cfg.ConnIdleTimeout, Time: time.Minute, Timeout: 20 * time.Second}),
			// A client that opens a connection and never completes the HTTP/2 handshake is dropped.
			grpc.ConnectionTimeout(10*time.Second),
			// Reused handler goroutines: no stack growth per call (see openmatch/server.go).
			grpc.NumStreamWorkers(uint32(4*runtime.GOMAXPROCS(0))),
		)...)
		client.RegisterFrontendServer(gs, &grpcAPI{s: s, g: g})
		// Standard gRPC health (grpc.health.v1) for load balancers and Kubernetes probes.
		grpcHealth = health.NewServer()
		healthpb.RegisterHealthServer(gs, grpcHealth)
	}
	if cfg.HTTPAddr != "" {
		if srv.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			if srv.grpcLn != nil {
				srv.grpcLn.Close()
			}
			return fail(fmt.Errorf("frontend: http listen: %w", err))
		}
		api := &httpAPI{s: s, g: g, stop: srvCtx, maxBody: cfg.MaxBodyBytes}
		hs = &http.Server{
			Handler:           tracing.PublicHTTPHandler(api.routes()),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       cfg.ConnIdleTimeout,
			MaxHeaderBytes:    cfg.JWT.MaxTokenBytes + 8<<10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
			BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
			TLSConfig:         httpTLS,
		}
	}

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	if gs != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := gs.Serve(srv.grpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				errs <- fmt.Errorf("frontend: grpc: %w", err)
			}
		}()
	}
	if hs != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			serve := hs.Serve
			if hs.TLSConfig != nil {
				serve = func(l net.Listener) error { return hs.ServeTLS(l, "", "") } // certificate from TLSConfig, reloaded on rotation
			}
			if err := serve(srv.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- fmt.Errorf("frontend: http: %w", err)
			}
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		s.expiry.run(srvCtx, s.now, cmp.Or(cfg.expiryWorkers, defaultExpiryWorkers), s.expire)
	}()
	go func() { defer wg.Done(); lim.runSweeper(srvCtx, time.Minute) }()
	log.Info("frontend serving", "grpc", srv.GRPCAddr(), "http", srv.HTTPAddr(), "openmatch", cfg.OpenMatchAddr)

	go func() {
		var err error
		select {
		case <-ctx.Done():
		case err = <-errs:
			log.Error("frontend stopping after a server error", "err", err)
		}
		// Health watchers hear NOT_SERVING first, so load balancers stop sending new calls during
		// the grace period instead of finding the port closed.
		if grpcHealth != nil {
			grpcHealth.Shutdown()
		}
		// Ending srvCtx first ends watches and long-polls, so graceful stops finish quickly.
		stop()
		grace, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
		if hs != nil {
			if hs.Shutdown(grace) != nil {
				hs.Close()
			}
		}
		if gs != nil {
			stopped := make(chan struct{})
			go func() { gs.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-grace.Done():
				gs.Stop()
				<-stopped
			}
		}
		cancel()
		wg.Wait()
		s.watches.wg.Wait()
		if merr := srv.metrics.Wait(); err == nil && merr != nil {
			err = fmt.Errorf("frontend: metrics: %w", merr)
		}
		conn.Close()
		s.players.store.Close()
		if err == nil {
			select {
			case err = <-errs:
			default:
			}
		}
		srv.err = err
		log.Info("frontend stopped")
		close(srv.done)
	}()
	return srv, nil
}

// GRPCAddr is the bound gRPC address ("" when disabled).
func (s *Server) GRPCAddr() string {
	if s.grpcLn == nil {
		return ""
	}
	return s.grpcLn.Addr().String()
}

// MetricsAddr is the bound /metrics address ("" when off).
func (s *Server) MetricsAddr() string {
	if s.metrics == nil {
		return ""
	}
	return s.metrics.Addr()
}

// HTTPAddr is the bound HTTP address ("" when disabled).
func (s *Server) HTTPAddr() string {
	if s.httpLn == nil {
		return ""
	}
	return s.httpLn.Addr().String()
}

// Wait blocks until the server has stopped and released its ports and goroutines.
func (s *Server) Wait() error {
	<-s.done
	return s.err
}

// Run is Start followed by Wait.
func Run(ctx context.Context, log *slog.Logger, cfg Config, reg prometheus.Registerer) error {
	s, err := Start(ctx, log, cfg, reg)
	if err != nil {
		return err
	}
	return s.Wait()
}

// recover finds the live tickets this frontend's players own (by PlayerExtension) through the
// QueryService, so that one-live-ticket and expiry survive a restart. Tickets pending in a
// proposed match are invisible to queries and are not recovered; they are assigned or released soon.
func (s *service) recover(ctx context.Context, queryAddr string) error {
	creds, err := s.cfg.OpenMatchTLS.DialCredentials()
	if err != nil {
		return fmt.Errorf("frontend: om-tls: %w", err)
	}
	conn, err := grpc.NewClient(queryAddr, append(tracing.DialOptions(), grpc.WithTransportCredentials(creds))...)
	if err != nil {
		return fmt.Errorf("frontend: open match query %s: %w", queryAddr, err)
	}
	defer conn.Close()
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stream, err := openmatch.NewQueryServiceClient(conn).QueryTickets(qctx, &openmatch.QueryTicketsRequest{Pool: &openmatch.Pool{}})
	if err != nil {
		return fmt.Errorf("frontend: recover live tickets from %s: %w", queryAddr, err)
	}
	var found []*openmatch.Ticket
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("frontend: recover live tickets from %s: %w", queryAddr, err)
		}
		for _, t := range resp.GetTickets() {
			if owner(t) != "" && !assigned(t) {
				found = append(found, t)
			}
		}
	}
	// Oldest first, so the newest ticket of a player (duplicates can exist after a crash
	// mid-create) is the one kept.
	slices.SortFunc(found, func(a, b *openmatch.Ticket) int {
		return cmp.Compare(a.GetCreateTime().AsTime().UnixNano(), b.GetCreateTime().AsTime().UnixNano())
	})
	kept := map[string]*openmatch.Ticket{}
	var dups []string
	for _, t := range found {
		if old := kept[owner(t)]; old != nil {
			dups = append(dups, old.GetId())
		}
		kept[owner(t)] = t
	}
	for _, id := range dups {
		if _, err := s.om.DeleteTicket(ctx, &openmatch.DeleteTicketRequest{TicketId: id}); err != nil {
			s.log.Warn("recover: deleting a duplicate live ticket failed", "ticket", id, "err", err)
		}
	}
	n := 0
	for _, t := range found {
		p := owner(t)
		if kept[p] != t {
			continue
		}
		e, err := s.players.lock(ctx, p)
		if err != nil {
			return fmt.Errorf("frontend: recover live tickets: %w", err)
		}
		e.ticketID, e.key = t.GetId(), recoveredKey(t)
		s.players.unlock(ctx, p, e)
		s.expiry.push(expiryItem{ticketID: t.GetId(), player: p, deadline: t.GetCreateTime().AsTime().Add(s.cfg.TicketLifetime)})
		n++
	}
	s.log.Info("recovered live tickets from open match", "tickets", n, "duplicates_deleted", len(dups))
	return nil
}

// recoveredKey recomputes the canonical attribute key of a stored ticket, so an identical
// CreateTicket after a restart still returns it.
func recoveredKey(t *openmatch.Ticket) string {
	a := t.GetExtensions()[AttributesExtension]
	if a == nil {
		return ""
	}
	var st structpb.Struct
	if a.UnmarshalTo(&st) != nil {
		return ""
	}
	return canonicalKey(st.GetFields())
}
