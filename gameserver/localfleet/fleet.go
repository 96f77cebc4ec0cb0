package localfleet

import (
	"context"
	"errors"
	"fmt"
	"github.com/kumi-dev/kumi/internal/serverid"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kumi-dev/kumi/allocation"
	sdkpb "github.com/kumi-dev/kumi/api/agones/sdk"
	"github.com/kumi-dev/kumi/gameserver/localsdk"
	"github.com/kumi-dev/kumi/gameserver/sdk"
	"github.com/kumi-dev/kumi/internal/config"
)

var _ allocation.Backend = (*Fleet)(nil)

// Fleet runs game-server processes and allocates them. It implements allocation.Backend.
type Fleet struct {
	log     *slog.Logger
	sdkLog  *slog.Logger // for the servers' SDK endpoints, which add their own component
	cfg     Config
	command []string
	ctx     context.Context
	metrics *metrics

	allocMu sync.Mutex // one allocation at a time, like the allocator's batch loop
	rnd     *rand.Rand // guarded by allocMu

	mu           sync.Mutex
	servers      map[string]*server
	watchers     map[*watcher]struct{}
	seq          int
	stopping     bool
	backoff      time.Duration // pause before the next start after servers died before Ready
	nextStart    time.Time
	startPending bool

	// secrets holds each live process's own bootstrap secret for the director (VerifyBootstrap).
	secrets serverid.Secrets

	kickc chan struct{}
	wg    sync.WaitGroup
	done  chan struct{}
}

// server is one GameServer: its SDK endpoint and its process.
type server struct {
	name    string
	port    int
	sdk     *localsdk.Server
	stopSDK context.CancelFunc
	cmd     *exec.Cmd
	exited  chan struct{} // closed once the process is reaped
	exitErr error         // set before exited is closed

	// guarded by Fleet.mu
	gs        *sdkpb.GameServer // the fleet's latest view
	wasReady  bool
	deleting  bool
	crashed   bool
	startedAt time.Time
}

// Start checks cfg, starts the reconciliation that keeps the buffer of Ready servers, and returns.
// Everything stops when ctx ends; Wait returns once every process is reaped. reg may be nil.
func Start(ctx context.Context, log *slog.Logger, cfg Config, reg prometheus.Registerer) (*Fleet, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("localfleet: invalid config: %w", err)
	}
	command := slices.Clone(cfg.Command)
	if len(command) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("localfleet: default command needs this executable's path: %w", err)
		}
		// Port 0: the game server takes its port from the GameServer status (Passthrough-like).
		// Args come after, so they can override it.
		command = append([]string{exe, "gameserver", "-listen-addr=" + net.JoinHostPort(cfg.Address, "0")}, cfg.Args...)
	}
	sdkLog := log.With("fleet", cfg.Name)
	log = log.With("fleet", cfg.Name)
	config.Log(ctx, log, "localfleet", &cfg) // adds component itself: a second one would duplicate the key
	log = log.With("component", "localfleet")
	m, err := newMetrics(cfg.Name, reg)
	if err != nil {
		return nil, err
	}
	f := &Fleet{
		log:      log,
		sdkLog:   sdkLog,
		cfg:      cfg,
		command:  command,
		ctx:      ctx,
		metrics:  m,
		rnd:      rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		servers:  map[string]*server{},
		watchers: map[*watcher]struct{}{},
		kickc:    make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.loop(ctx)
	}()
	go func() {
		f.wg.Wait()
		close(f.done)
	}()
	f.kick()
	return f, nil
}

// Name identifies the backend.
func (f *Fleet) Name() string { return "local:" + f.cfg.Name }

// Wait blocks until the fleet has stopped: every process killed and reaped, every SDK endpoint
// closed.
func (f *Fleet) Wait() error {
	<-f.done
	return nil
}

// Done is closed when Wait would return.
func (f *Fleet) Done() <-chan struct{} { return f.done }

func (f *Fleet) kick() {
	select {
	case f.kickc <- struct{}{}:
	default:
	}
}

func (f *Fleet) loop(ctx context.Context) {
	t := time.NewTicker(f.cfg.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			f.shutdown()
			return
		case <-t.C:
		case <-f.kickc:
		}
		f.reconcile(ctx)
	}
}

// reconcile applies the Buffer policy: Allocated+Reserved plus bufferSize, within [min, max].
func (f *Fleet) reconcile(ctx context.Context) {
	f.mu.Lock()
	var pending, ready, held []*server
	for _, s := range f.servers {
		if s.deleting {
			continue
		}
		switch st := s.gs.GetStatus().GetState(); {
		case st == localsdk.StateReady:
			ready = append(ready, s)
		case st == localsdk.StateAllocated || st == localsdk.StateReserved:
			held = append(held, s)
		case localsdk.IsTerminal(st):
			// its own goroutine is deleting it
		default:
			pending = append(pending, s)
		}
	}
	f.metrics.servers.WithLabelValues("Ready").Set(float64(len(ready)))
	f.metrics.servers.WithLabelValues("Allocated").Set(float64(len(held)))
	f.metrics.servers.WithLabelValues("Starting").Set(float64(len(pending)))
	desired := min(max(len(held)+f.cfg.BufferSize, f.cfg.MinReplicas), f.cfg.MaxReplicas)
	have := len(pending) + len(ready) + len(held)
	toStart := 0
	if have < desired {
		toStart = desired - have
		if wait := time.Until(f.nextStart); wait > 0 {
			toStart = 0
			if !f.startPending {
				f.startPending = true
				time.AfterFunc(wait, func() {
					f.mu.Lock()
					f.startPending = false
					f.mu.Unlock()
					f.kick()
				})
			}
		}
	}
	var victims []*server
	if surplus := have - desired; surplus > 0 {
		// Scale down the newest not-yet-Ready servers first, then the newest Ready ones; never held ones.
		newest := func(a, b *server) int { return b.startedAt.Compare(a.startedAt) }
		slices.SortFunc(pending, newest)
		slices.SortFunc(ready, newest)
		for _, s := range append(pending, ready...) {
			if len(victims) == surplus {
				break
			}
			s.deleting = true
			victims = append(victims, s)
		}
	}
	f.mu.Unlock()
	for _, s := range victims {
		f.log.Info("scale down", "gameserver", s.name)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.remove(s, "scale-down")
		}()
	}
	for range toStart {
		if ctx.Err() != nil {
			return
		}
		if err := f.startServer(ctx); err != nil {
			f.log.Error("start game server", "err", err)
			f.metrics.startFailures.Inc()
			f.noteEarlyDeath()
			return
		}
	}
}

// noteEarlyDeath lengthens the pause before the next start, so a crash loop does not spin.
func (f *Fleet) noteEarlyDeath() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.noteEarlyDeathLocked()
}

func (f *Fleet) noteEarlyDeathLocked() {
	f.backoff = nextBackoff(f.backoff, f.cfg.RestartBackoffMax)
	f.nextStart = time.Now().Add(f.backoff)
}

// nextBackoff is the pause after another early death when the last pause was cur: 100 ms, then
// doubling, never above limit.
func nextBackoff(cur, limit time.Duration) time.Duration {
	return min(max(2*cur, 100*time.Millisecond), limit)
}

// freeUDPPort asks the kernel for a free UDP port on addr (like Agones picking a free hostPort).
func freeUDPPort(addr string) (int, error) {
	c, err := net.ListenPacket("udp", net.JoinHostPort(addr, "0"))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// pickPort takes a free UDP port that no server of this fleet holds yet: the kernel may hand out
// a port again once the probe socket is closed, before the server that got it has bound it.
func (f *Fleet) pickPort() (int, error) {
	for range 20 {
		port, err := freeUDPPort(f.cfg.Address)
		if err != nil {
			return 0, fmt.Errorf("free UDP port on %s: %w", f.cfg.Address, err)
		}
		f.mu.Lock()
		taken := slices.ContainsFunc(slices.Collect(maps.Values(f.servers)), func(s *server) bool { return s.port == port })
		f.mu.Unlock()
		if !taken {
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free UDP port on %s not already given to a server", f.cfg.Address)
}

func (f *Fleet) startServer(ctx context.Context) error {
	f.mu.Lock()
	if f.stopping {
		f.mu.Unlock()
		return nil
	}
	f.seq++
	name := f.cfg.Name + "-" + strconv.Itoa(f.seq)
	f.mu.Unlock()

	port, err := f.pickPort()
	if err != nil {
		return err
	}
	sdkCtx, stopSDK := context.WithCancel(context.WithoutCancel(ctx))
	srv, err := localsdk.Start(sdkCtx, f.sdkLog, f.cfg.sdkConfig(name, port))
	if err != nil {
		stopSDK()
		return fmt.Errorf("SDK endpoint for %s: %w", name, err)
	}
	cmd := exec.Command(f.command[0], f.command[1:]...)
	// Each process gets a secret of its own, which proves to the director only its own name;
	// the environment reaches only this process and its children (and the same user's /proc).
	cmd.Env = append(os.Environ(),
		sdk.EnvGRPCHost+"=127.0.0.1",
		sdk.EnvGRPCPort+"="+strconv.Itoa(srv.Port()),
		serverid.EnvBootstrap+"="+f.secrets.Mint(name),
	)
	cmd.Env = append(cmd.Env, f.cfg.Env...)
	out := f.cfg.Output
	if out == nil {
		out = io.Discard
	}
	cmd.Stdout, cmd.Stderr = out, out
	// A grandchild holding the output pipe must not keep Wait (and so the fleet's stop) hanging.
	cmd.WaitDelay = time.Second
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		f.secrets.Forget(name)
		stopSDK()
		_ = srv.Wait()
		return fmt.Errorf("start %q for %s: %w", f.command[0], name, err)
	}
	s := &server{
		name: name, port: port, sdk: srv, stopSDK: stopSDK, cmd: cmd,
		exited: make(chan struct{}), gs: srv.GameServer(), startedAt: time.Now(),
	}
	f.log.Info("game server started", "gameserver", name, "pid", cmd.Process.Pid, "port", port, "sdk", srv.Addr())
	f.metrics.started.Inc()

	f.mu.Lock()
	f.servers[name] = s
	f.notify(s, false)
	f.mu.Unlock()

	f.wg.Add(2)
	go func() {
		defer f.wg.Done()
		s.exitErr = cmd.Wait()
		close(s.exited)
		f.onExit(s)
	}()
	go func() {
		defer f.wg.Done()
		f.follow(ctx, s)
	}()
	return nil
}

// onExit handles a process that ended: if nobody asked for it, the GameServer is Unhealthy, as
// with a game container exiting, and will be replaced.
func (f *Fleet) onExit(s *server) {
	f.mu.Lock()
	deleting := s.deleting
	if !deleting {
		s.crashed = true
	}
	f.mu.Unlock()
	if deleting {
		return
	}
	f.log.Warn("game server process exited", "gameserver", s.name, "err", s.exitErr)
	_, _ = s.sdk.Update(func(gs *sdkpb.GameServer) error {
		if !localsdk.IsTerminal(gs.Status.State) {
			gs.Status.State = localsdk.StateUnhealthy
		}
		return nil
	})
}

// follow tracks one server's GameServer and deletes it once it is Shutdown or Unhealthy.
func (f *Fleet) follow(ctx context.Context, s *server) {
	sub := s.sdk.Subscribe()
	defer sub.Close()
	for {
		gs, err := sub.Next(ctx)
		if err != nil {
			return // fleet stopping (or SDK endpoint closed by remove)
		}
		state := gs.GetStatus().GetState()
		f.mu.Lock()
		prev := s.gs.GetStatus().GetState()
		s.gs = gs
		if state == localsdk.StateReady && !s.wasReady {
			s.wasReady = true
			f.backoff, f.nextStart = 0, time.Time{}
		}
		deleting := s.deleting
		if localsdk.IsTerminal(state) {
			s.deleting = true
			// Set the pause before the kick below lets reconcile start a replacement.
			if !s.wasReady && state != localsdk.StateShutdown && !deleting {
				f.noteEarlyDeathLocked()
			}
		}
		f.notify(s, false)
		f.mu.Unlock()
		if state != prev {
			f.kick()
		}
		if localsdk.IsTerminal(state) && !deleting {
			reason := "unhealthy"
			switch {
			case state == localsdk.StateShutdown:
				reason = "shutdown"
			case s.crashedFlag(f):
				reason = "crash"
			}
			f.log.Info("deleting game server", "gameserver", s.name, "state", state, "reason", reason)
			f.metrics.deleted.WithLabelValues(reason).Inc()
			f.remove(s, reason)
			return
		}
	}
}

func (s *server) crashedFlag(f *Fleet) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return s.crashed
}

// remove deletes a server: its process gets SIGTERM, then SIGKILL after the grace, and is reaped;
// its SDK endpoint closes; watchers see it deleted.
func (f *Fleet) remove(s *server, reason string) {
	f.terminate(s)
	s.stopSDK()
	_ = s.sdk.Wait()
	f.mu.Lock()
	delete(f.servers, s.name)
	f.secrets.Forget(s.name)
	f.notify(s, true)
	f.mu.Unlock()
	f.log.Info("game server deleted", "gameserver", s.name, "reason", reason)
	f.kick()
}

func (f *Fleet) terminate(s *server) {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	// A stopped (frozen) process would hold SIGTERM pending until the grace runs out.
	_ = s.cmd.Process.Signal(syscall.SIGCONT)
	t := time.NewTimer(f.cfg.StopGrace)
	defer t.Stop()
	select {
	case <-s.exited:
		return
	case <-t.C:
	}
	f.log.Warn("game server ignored SIGTERM: killing", "gameserver", s.name, "grace", f.cfg.StopGrace)
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// shutdown deletes every server when the fleet's ctx ends.
func (f *Fleet) shutdown() {
	f.mu.Lock()
	f.stopping = true
	var all []*server
	for _, s := range f.servers {
		if !s.deleting {
			s.deleting = true
			all = append(all, s)
		}
	}
	f.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.remove(s, "fleet stopped")
		}()
	}
	wg.Wait()
	f.mu.Lock()
	for w := range f.watchers {
		w.close()
	}
	clear(f.watchers)
	f.mu.Unlock()
}

// Allocate performs one GameServerAllocation (see the package doc for the semantics).
func (f *Fleet) Allocate(ctx context.Context, spec allocation.Spec) (allocation.Status, error) {
	if err := ValidateSpec(spec); err != nil {
		return allocation.Status{}, fmt.Errorf("localfleet: invalid allocation: %w", err)
	}
	if f.cfg.AllocationLatency > 0 {
		t := time.NewTimer(f.cfg.AllocationLatency)
		select {
		case <-ctx.Done():
			t.Stop()
			return allocation.Status{}, fmt.Errorf("localfleet: allocate: %w", ctx.Err())
		case <-t.C:
		}
	}
	if err := ctx.Err(); err != nil {
		return allocation.Status{}, fmt.Errorf("localfleet: allocate: %w", err)
	}
	if f.ctx.Err() != nil {
		// Not UnAllocated: a stopped fleet is an unreachable backend, not one without capacity.
		return allocation.Status{}, errors.New("localfleet: allocate: fleet stopped")
	}
	f.allocMu.Lock()
	defer f.allocMu.Unlock()

	f.mu.Lock()
	live := make(map[string]*server, len(f.servers))
	for name, s := range f.servers {
		if !s.deleting {
			live[name] = s
		}
	}
	f.mu.Unlock()
	// Read every server's current state directly (no stale cache).
	cands := make([]*sdkpb.GameServer, 0, len(live))
	for _, s := range live {
		cands = append(cands, s.sdk.GameServer())
	}
	selectors := spec.Selectors
	if len(selectors) == 0 {
		selectors = []allocation.Selector{{}}
	}
	for _, sel := range selectors {
		var matched []*sdkpb.GameServer
		for _, gs := range cands {
			if Matches(sel, gs) {
				matched = append(matched, gs)
			}
		}
		Order(spec, matched, f.rnd)
		for _, gs := range matched {
			s := live[gs.GetObjectMeta().GetName()]
			var warnings []string
			// Re-check under the server's own lock: the SDK may have changed it since the read.
			after, err := s.sdk.Update(func(cur *sdkpb.GameServer) error {
				if !Matches(sel, cur) {
					return errStale
				}
				warnings = Apply(spec, cur, time.Now())
				return nil
			})
			if err != nil {
				continue // changed under us, or deleted: try the next candidate
			}
			for _, w := range warnings {
				f.log.Warn("allocation action", "gameserver", s.name, "warning", w)
			}
			f.metrics.allocations.WithLabelValues(allocation.AllocationAllocated).Inc()
			f.log.Debug("allocated", "gameserver", s.name, "state_was", gs.GetStatus().GetState())
			return statusOf(after, "localhost"), nil
		}
	}
	f.metrics.allocations.WithLabelValues(allocation.AllocationUnAllocated).Inc()
	return allocation.Status{State: allocation.AllocationUnAllocated}, nil
}

var errStale = errors.New("server no longer matches")

// List returns the servers whose labels include matchLabels, by name.
func (f *Fleet) List(_ context.Context, matchLabels map[string]string) ([]allocation.GameServer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []allocation.GameServer
	for _, name := range slices.Sorted(maps.Keys(f.servers)) {
		s := f.servers[name]
		if labelsMatch(s.gs, matchLabels) {
			out = append(out, ToGameServer(s.gs))
		}
	}
	return out, nil
}

// Server describes one running game server, for tests and operators.
type Server struct {
	Name    string
	PID     int
	Port    int
	SDKAddr string
}

// Servers lists the running game servers (not yet deleted), by name.
func (f *Fleet) Servers() []Server {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Server, 0, len(f.servers))
	for _, name := range slices.Sorted(maps.Keys(f.servers)) {
		s := f.servers[name]
		out = append(out, Server{Name: s.name, PID: s.cmd.Process.Pid, Port: s.port, SDKAddr: s.sdk.Addr()})
	}
	return out
}

func labelsMatch(gs *sdkpb.GameServer, matchLabels map[string]string) bool {
	labels := gs.GetObjectMeta().GetLabels()
	for k, v := range matchLabels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Command is the command line each game server runs with.
func (f *Fleet) Command() []string { return slices.Clone(f.command) }

// VerifyBootstrap implements serverid.Verifier for the director: proof must be the secret this
// fleet gave the process of server, which is still a member of the fleet.
func (f *Fleet) VerifyBootstrap(ctx context.Context, server, proof string) error {
	return f.secrets.VerifyBootstrap(ctx, server, proof)
}
