package director

import (
	"context"
	"errors"
	"fmt"
	"github.com/kumi-dev/kumi/internal/serverid"
	"github.com/kumi-dev/kumi/internal/tracing"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/kumi-dev/kumi/allocation"
	"github.com/kumi-dev/kumi/api/control"
	"github.com/kumi-dev/kumi/console"
	"github.com/kumi-dev/kumi/director/pool"
	"github.com/kumi-dev/kumi/internal/config"
	"github.com/kumi-dev/kumi/internal/controlauth"
	"github.com/kumi-dev/kumi/internal/ticketseal"
	"github.com/kumi-dev/kumi/internal/token"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/kumi-dev/kumi/api/openmatch"
)

// Director is a running director.
type Director struct {
	cfg      Config
	log      *slog.Logger
	pool     *pool.Pool
	signer   *token.Signer
	seal     *ticketseal.Sealer // nil with accept-unsealed-tickets
	m        *metrics
	om       openmatch.BackendServiceClient
	conn     *grpc.ClientConn
	backends map[string]*backendLoop
	labels   map[string]string
	spec     allocation.Spec

	grpcSrv *grpc.Server
	ctlLn   net.Listener
	adminLn net.Listener
	admin   *http.Server
	lock    *fileLock

	adoption  adoption
	adoptInto string // backend whose share adopted servers join; "" when adoption is off
	secured   bool   // the control API requires a secret

	reported chan struct{} // poked on every known report (rebuild waits on it)
	// instances is each server's reported instance, named in the tokens minted for it.
	instances instances
	// dedicated are the games served on dedicated servers (dedicated.go), by profile.
	dedicated dedicatedGames
	mainDone  chan struct{} // closed when the match, refill and housekeeping loops have ended
	// events are the latest drains, moves and weight changes the live console shows (events.go).
	events eventLog
	// console is the live console on the admin listener (nil without one); see admin.go.
	console *console.Console

	wg        sync.WaitGroup
	closeOnce sync.Once
	errMu     sync.Mutex
	errs      []error
	stopped   chan struct{}
}

// Start builds the director over the given allocation backends (at least one; names distinct),
// rebuilds its pool from them, and returns once the control API (and admin API, when configured)
// listen. Matches are fetched only after the pool servers' reports arrived or RebuildTimeout
// passed. Everything stops when ctx ends; Wait returns then. A nil reg exports no metrics.
func Start(ctx context.Context, log *slog.Logger, cfg Config, reg prometheus.Registerer, backends ...allocation.Backend) (_ *Director, err error) {
	if l := cfg.ControlListener; l != nil {
		// Closed on any failure before the director serves on it (its own error paths below
		// close d.ctlLn, which is l; a second Close is harmless).
		defer func() {
			if err != nil {
				l.Close()
			}
		}()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(backends) == 0 {
		return nil, errors.New("director: no allocation backend given")
	}
	config.Log(ctx, log, "director", &cfg)
	d := &Director{cfg: cfg, log: log, backends: map[string]*backendLoop{}, reported: make(chan struct{}, 1),
		mainDone: make(chan struct{}), stopped: make(chan struct{}), adoption: adoption{told: map[string]string{}},
		dedicated: dedicatedGames{stop: ctx}}
	d.labels, _ = ParseLabels(cfg.ServerLabels)
	d.spec = pool.AllocationSpec(cfg.PoolName, d.labels)
	d.pool = pool.New(cfg.Pool)
	for _, b := range backends {
		if _, dup := d.backends[b.Name()]; dup || b.Name() == "" {
			return nil, fmt.Errorf("director: backend name %q is empty or used twice", b.Name())
		}
		d.backends[b.Name()] = &backendLoop{b: b, wake: make(chan struct{}, 1)}
		d.pool.AddBackend(b.Name())
	}
	switch cfg.AdoptBackend {
	case AdoptNone:
	case "":
		d.adoptInto = backends[0].Name()
	default:
		if d.backends[cfg.AdoptBackend] == nil {
			return nil, fmt.Errorf("director: adopt-backend %q is not one of the backends (or %q)", cfg.AdoptBackend, AdoptNone)
		}
		d.adoptInto = cfg.AdoptBackend
	}
	if w, _ := ParseWeights(cfg.Weights); w != nil {
		if err := d.pool.SetWeights(w); err != nil {
			return nil, fmt.Errorf("director: weights: %w", err)
		}
	}
	d.signer = cfg.Signer
	if d.signer == nil {
		s, err := token.LoadSigner(cfg.TokenKeyFile, cfg.TokenKID, cfg.TokenIssuer)
		if err != nil {
			return nil, fmt.Errorf("director: token-key: %w", err)
		}
		d.signer = s
	}
	if !cfg.AcceptUnsealedTickets {
		sealSecret := cfg.TicketSealSecret
		if sealSecret == "" {
			if sealSecret, err = controlauth.ReadSecret(cfg.TicketSealSecretFile); err != nil {
				return nil, fmt.Errorf("director: ticket-seal-secret-file: %w", err)
			}
		}
		if d.seal, err = ticketseal.New(sealSecret, cfg.TicketSealMaxAge); err != nil {
			return nil, fmt.Errorf("director: %w", err)
		}
	}
	m, err := newMetrics(reg, d.pool)
	if err != nil {
		return nil, fmt.Errorf("director: metrics: %w", err)
	}
	d.m = m
	if reg != nil {
		if err := reg.Register(d.leaderGauge()); err != nil {
			return nil, fmt.Errorf("director: metrics: %w", err)
		}
	}

	if cfg.LockFile != "" {
		if d.lock, err = lockFile(cfg.LockFile); err != nil {
			return nil, err
		}
	}
	ok := false
	defer func() {
		if !ok {
			d.closeAll()
		}
	}()

	omCreds, err := cfg.OpenMatchTLS.DialCredentials()
	if err != nil {
		return nil, fmt.Errorf("director: om-tls: %w", err)
	}
	serverCreds, err := cfg.TLS.ServerCredentials()
	if err != nil {
		return nil, fmt.Errorf("director: tls: %w", err)
	}
	d.conn, err = grpc.NewClient(cfg.BackendAddr, append(tracing.DialOptions(), grpc.WithTransportCredentials(omCreds))...)
	if err != nil {
		return nil, fmt.Errorf("director: open match backend %s: %w", cfg.BackendAddr, err)
	}
	d.om = openmatch.NewBackendServiceClient(d.conn)

	// Rebuild the pool from the backends before serving anything.
	sel := map[string]string{allocation.LabelPool: cfg.PoolName}
	listed := map[string]bool{}
	now := time.Now()
	for name, bl := range d.backends {
		servers, err := bl.b.List(ctx, sel)
		if err != nil {
			return nil, fmt.Errorf("director: rebuild from backend %s: %w", name, err)
		}
		for _, gs := range servers {
			if terminal(gs.State) {
				continue
			}
			d.pool.AddServer(pool.ServerFromGameServer(name, cfg.PortName, gs), now)
			listed[gs.Name] = true
		}
	}
	log.Info("pool rebuilt from backends", "servers", len(listed), "pool", cfg.PoolName)

	if d.ctlLn = cfg.ControlListener; d.ctlLn == nil {
		if d.ctlLn, err = net.Listen("tcp", cfg.ControlAddr); err != nil {
			return nil, fmt.Errorf("director: control-addr %s: %w", cfg.ControlAddr, err)
		}
	}
	secret := cfg.ControlSecret
	if secret == "" {
		if secret, err = controlauth.ReadSecret(cfg.ControlSecretFile); err != nil {
			d.ctlLn.Close()
			return nil, fmt.Errorf("director: %w", err)
		}
	}
	if secret == "" {
		log.Warn("control API accepts any caller: set -control-secret-file unless players cannot reach it; game servers no backend lists are not adopted")
	}
	d.secured = secret != ""
	// Each game server acts only as itself: Register trades a per-server bootstrap proof for a
	// credential every other call must carry (internal/serverid); the shared secret, when set,
	// stays an outer guard against callers that are no game server at all.
	verifiers := serverid.Verifiers(slices.Clone(cfg.Bootstrap))
	for _, b := range backends {
		if v, ok := b.(serverid.Verifier); ok {
			verifiers = append(verifiers, v)
		}
	}
	issuer, err := serverid.NewIssuer(cfg.ServerCredentialTTL)
	if err != nil {
		d.ctlLn.Close()
		return nil, fmt.Errorf("director: %w", err)
	}
	if len(verifiers) == 0 {
		log.Warn("no bootstrap verifier: game servers cannot register and so cannot report (use the local or agones backend)")
	}
	registrar := &serverid.Registrar{Issuer: issuer, Verifier: verifiers, Log: log}
	d.grpcSrv = grpc.NewServer(append(tracing.ServerOptions(), grpc.Creds(serverCreds), grpc.ChainUnaryInterceptor(controlauth.UnaryServerInterceptor(secret), registrar.UnaryServerInterceptor()))...)
	control.RegisterDirectorServer(d.grpcSrv, &controlServer{d: d})
	control.RegisterIdentityServer(d.grpcSrv, registrar)
	if cfg.AdminAddr != "" {
		d.adminLn, err = net.Listen("tcp", cfg.AdminAddr)
		if err != nil {
			return nil, fmt.Errorf("director: admin-addr %s: %w", cfg.AdminAddr, err)
		}
		adminToken := cfg.AdminToken
		if adminToken == "" {
			if adminToken, err = controlauth.ReadSecret(cfg.AdminTokenFile); err != nil {
				return nil, fmt.Errorf("director: admin-token-file: %w", err)
			}
		}
		d.admin = &http.Server{Handler: d.adminHandler(adminToken), ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
		// Shutdown waits for handlers: the console's event streams end when it starts.
		d.admin.RegisterOnShutdown(d.console.Close)
		if cfg.TLS.Enabled() {
			if d.admin.TLSConfig, err = cfg.TLS.Server(); err != nil {
				return nil, fmt.Errorf("director: tls: %w", err)
			}
		}
	}
	ok = true

	d.goRun("control", func() error {
		if err := d.grpcSrv.Serve(d.ctlLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return err
		}
		return nil
	})
	if d.admin != nil {
		d.goRun("admin", func() error {
			serve := d.admin.Serve
			if d.admin.TLSConfig != nil {
				serve = func(l net.Listener) error { return d.admin.ServeTLS(l, "", "") }
			}
			if err := serve(d.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	for _, bl := range d.backends {
		d.goRun("watch "+bl.b.Name(), func() error { return d.watch(ctx, bl.b) })
	}
	// Games served later (ServeDedicated) run their loops under d.wg: this gate keeps the count
	// above zero until it closes the door to new ones, so no goRun races the final wg.Wait.
	d.goRun("dedicated gate", func() error {
		<-ctx.Done()
		d.dedicated.mu.Lock()
		d.dedicated.closed = true
		d.dedicated.mu.Unlock()
		return nil
	})
	d.goRun("main", func() error {
		d.waitReports(ctx, listed)
		var inner sync.WaitGroup
		for _, bl := range d.backends {
			inner.Go(func() { d.refill(ctx, bl) })
		}
		inner.Go(func() { d.housekeep(ctx) })
		for _, p := range cfg.Profiles {
			inner.Go(func() { d.matchLoop(ctx, p) })
		}
		inner.Wait()
		return nil
	})
	go func() {
		<-ctx.Done()
		d.wg.Wait() // loops first: the match loop may still assign during its grace
		d.closeAll()
		close(d.stopped)
	}()
	go func() {
		<-ctx.Done()
		// Stop serving control and admin only after the match loops ended (they finish in-flight work).
		<-d.mainDone
		d.grpcSrv.GracefulStop()
		if d.admin != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = d.admin.Shutdown(sctx)
			cancel()
		}
	}()
	log.Info("director started", "control", d.ctlLn.Addr().String(), "admin", d.AdminAddr(), "profiles", cfg.Profiles)
	return d, nil
}

func (d *Director) goRun(name string, f func() error) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		err := f()
		if name == "main" {
			close(d.mainDone)
		}
		if err != nil {
			d.errMu.Lock()
			d.errs = append(d.errs, fmt.Errorf("director %s: %w", name, err))
			d.errMu.Unlock()
		}
	}()
}

func (d *Director) closeAll() {
	d.closeOnce.Do(d.close)
}

func (d *Director) close() {
	if d.conn != nil {
		_ = d.conn.Close()
	}
	if d.ctlLn != nil {
		_ = d.ctlLn.Close()
	}
	if d.adminLn != nil {
		_ = d.adminLn.Close()
	}
	if d.lock != nil {
		d.lock.release()
	}
}

// Wait blocks until the director has stopped: loops ended, listeners closed, lock released.
func (d *Director) Wait() error {
	<-d.stopped
	d.errMu.Lock()
	defer d.errMu.Unlock()
	return errors.Join(d.errs...)
}

// ControlAddr is the control API's bound address.
func (d *Director) ControlAddr() string { return d.ctlLn.Addr().String() }

// AdminAddr is the admin API's bound address ("" when disabled).
func (d *Director) AdminAddr() string {
	if d.adminLn == nil {
		return ""
	}
	return d.adminLn.Addr().String()
}

// Pool is the director's pool (read it for state; it is safe for concurrent use).
func (d *Director) Pool() *pool.Pool { return d.pool }

// SetWeights changes the traffic weights at runtime (0.01 % units; see pool.SetWeights).
func (d *Director) SetWeights(w map[string]int) error {
	if err := d.pool.SetWeights(w); err != nil {
		return err
	}
	d.log.Info("traffic weights changed", "weights", FormatWeights(d.pool.Weights()))
	d.noteWeights()
	for _, bl := range d.backends {
		bl.poke()
	}
	return nil
}

func terminal(state string) bool {
	switch state {
	case allocation.StateShutdown, allocation.StateUnhealthy, allocation.StateError:
		return true
	}
	return false
}

// waitReports holds placement back until every listed server has reported (restoring its live
// sessions and their groups) or RebuildTimeout passed.
func (d *Director) waitReports(ctx context.Context, listed map[string]bool) {
	if len(listed) == 0 || d.cfg.RebuildTimeout == 0 {
		return
	}
	deadline := time.NewTimer(d.cfg.RebuildTimeout)
	defer deadline.Stop()
	for {
		missing := 0
		for _, s := range d.pool.Snapshot(time.Now()).Servers {
			if listed[s.Name] && !s.Reported {
				missing++
			}
		}
		if missing == 0 {
			d.log.Info("every pooled server reported; placing")
			return
		}
		select {
		case <-d.reported:
		case <-deadline.C:
			d.log.Warn("placing before every pooled server reported", "missing", missing)
			return
		case <-ctx.Done():
			return
		}
	}
}

// watch keeps the pool in step with the backend's servers: new pool members, state changes,
// servers gone. A watch that ends before ctx is opened again after a pause.
func (d *Director) watch(ctx context.Context, b allocation.Backend) error {
	backoff := newBackoff(100*time.Millisecond, d.cfg.AllocBackoffMax)
	for {
		ch, err := b.Watch(ctx, map[string]string{allocation.LabelPool: d.cfg.PoolName})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			pause := backoff.Step()
			d.log.Warn("watching servers failed", "backend", b.Name(), "err", err, "retry_in", pause)
			sleep(ctx, pause)
			continue
		}
		for ev := range ch {
			backoff = newBackoff(100*time.Millisecond, d.cfg.AllocBackoffMax)
			d.apply(b.Name(), ev)
		}
		if ctx.Err() != nil {
			return nil
		}
		d.log.Warn("server watch ended; watching again", "backend", b.Name())
		sleep(ctx, backoff.Step())
	}
}

func (d *Director) apply(backend string, ev allocation.Event) {
	gs := ev.Server
	switch {
	case ev.Deleted || terminal(gs.State):
		if d.pool.HasServer(gs.Name) {
			gone := d.pool.RemoveServer(gs.Name)
			d.log.Info("server left the pool", "server", gs.Name, "backend", backend, "state", gs.State, "sessions_lost", len(gone))
		}
	case gs.State == allocation.StateAllocated && gs.Labels[allocation.LabelPool] == d.cfg.PoolName:
		d.pool.AddServer(pool.ServerFromGameServer(backend, d.cfg.PortName, gs), time.Now())
	}
}

// housekeep expires reservations and drains on scale-in.
func (d *Director) housekeep(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if gone := d.pool.Sweep(now); len(gone) > 0 {
				d.log.Debug("reservations expired", "sessions", gone)
			}
			for _, name := range d.pool.ScaleIn(now) {
				d.m.drains.WithLabelValues(d.backendOf(name)).Inc()
				d.log.Info("draining server on scale-in", "server", name)
				d.noteDrain(name, "scale-in")
			}
		}
	}
}

func (d *Director) backendOf(server string) string {
	for _, s := range d.pool.Snapshot(time.Now()).Servers {
		if s.Name == server {
			return s.Backend
		}
	}
	return ""
}
