package localsdk

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	sdkpb "github.com/kumi-dev/kumi/api/agones/sdk"
	betapb "github.com/kumi-dev/kumi/api/agones/sdk/beta"
	"github.com/kumi-dev/kumi/internal/config"
)

// GameServer states (agones.dev/v1).
const (
	StateScheduled    = "Scheduled"
	StateRequestReady = "RequestReady"
	StateReady        = "Ready"
	StateReserved     = "Reserved"
	StateAllocated    = "Allocated"
	StateShutdown     = "Shutdown"
	StateError        = "Error"
	StateUnhealthy    = "Unhealthy"
)

// Metadata keys Agones uses.
const (
	// MetadataPrefix is put in front of every key the SDK's SetLabel/SetAnnotation writes.
	MetadataPrefix = "agones.dev/sdk-"
	// AnnotationLastAllocated is stamped (RFC 3339) on every allocation.
	AnnotationLastAllocated = "agones.dev/last-allocated"
)

// ErrClosed is returned by Subscription.Next once the server has stopped.
var ErrClosed = errors.New("localsdk: server stopped")

// IsTerminal reports whether a GameServer in state will never change state again.
func IsTerminal(state string) bool {
	return state == StateShutdown || state == StateUnhealthy || state == StateError
}

// Server is one local SDK endpoint serving one GameServer.
type Server struct {
	log *slog.Logger
	cfg Config
	lis net.Listener
	srv *grpc.Server

	mu           sync.Mutex
	gs           *sdkpb.GameServer
	version      int64
	subs         map[*Subscription]struct{}
	closed       bool
	readyTimer   *time.Timer
	reserveTimer *time.Timer
	reserveGen   int64
	healthStart  time.Time // pings are only required from here on (start + initial delay)
	lastPing     time.Time
	failures     int

	wg   sync.WaitGroup
	done chan struct{}
	err  error
}

// Start validates cfg, listens on cfg.ListenAddr and serves the SDK API until ctx ends.
func Start(ctx context.Context, log *slog.Logger, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("localsdk: invalid config: %w", err)
	}
	cfg = cfg.clone()
	log = log.With("gameserver", cfg.Name)
	config.Log(ctx, log, "localsdk", &cfg) // adds component itself: a second one would duplicate the key
	log = log.With("component", "localsdk")
	lis, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("localsdk: listen %s: %w", cfg.ListenAddr, err)
	}
	s := &Server{
		log:  log,
		cfg:  cfg,
		lis:  lis,
		srv:  grpc.NewServer(),
		subs: map[*Subscription]struct{}{},
		done: make(chan struct{}),
	}
	now := time.Now()
	s.gs = initialGameServer(cfg, now)
	s.version = 1
	s.healthStart = now.Add(cfg.Health.InitialDelay)
	s.lastPing = s.healthStart
	sdkpb.RegisterSDKServer(s.srv, &stableService{s: s})
	betapb.RegisterSDKServer(s.srv, &betaService{s: s})

	serveErr := make(chan error, 1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		serveErr <- s.srv.Serve(lis)
	}()
	if !cfg.Health.Disabled {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.healthLoop(ctx)
		}()
	}
	go func() {
		<-ctx.Done()
		s.stop()
		s.srv.Stop() // not graceful: Health and Watch streams would hold a graceful stop open
		s.wg.Wait()
		if err := <-serveErr; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.err = fmt.Errorf("localsdk: serve: %w", err)
		}
		close(s.done)
	}()
	return s, nil
}

// Addr is the address the SDK API listens on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Port is the TCP port of Addr, the value of AGONES_SDK_GRPC_PORT for the game server.
func (s *Server) Port() int { return s.lis.Addr().(*net.TCPAddr).Port }

// Wait blocks until the server has stopped and released its port and goroutines.
func (s *Server) Wait() error {
	<-s.done
	return s.err
}

// Done is closed once the server has stopped.
func (s *Server) Done() <-chan struct{} { return s.done }

// GameServer returns a copy of the current GameServer.
func (s *Server) GameServer() *sdkpb.GameServer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return proto.Clone(s.gs).(*sdkpb.GameServer)
}

// Update is the control plane's write path (the local fleet's allocator, or marking a crashed
// process Unhealthy): fn changes a copy of the GameServer, and the change is applied and published
// as one update, or dropped entirely if fn returns an error. It returns the GameServer after it.
func (s *Server) Update(fn func(gs *sdkpb.GameServer) error) (*sdkpb.GameServer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if err := s.mutate(fn); err != nil {
		return nil, err
	}
	return proto.Clone(s.gs).(*sdkpb.GameServer), nil
}

func initialGameServer(cfg Config, now time.Time) *sdkpb.GameServer {
	var uid [16]byte
	_, _ = rand.Read(uid[:]) // crypto/rand.Read never fails on supported platforms
	gs := &sdkpb.GameServer{
		ObjectMeta: &sdkpb.GameServer_ObjectMeta{
			Name:              cfg.Name,
			Namespace:         cfg.Namespace,
			Uid:               hex.EncodeToString(uid[:]),
			ResourceVersion:   "1",
			Generation:        1,
			CreationTimestamp: now.Unix(),
			Labels:            map[string]string{},
			Annotations:       map[string]string{},
		},
		Spec: &sdkpb.GameServer_Spec{Health: &sdkpb.GameServer_Spec_Health{
			Disabled:            cfg.Health.Disabled,
			PeriodSeconds:       ceilSeconds(cfg.Health.Period),
			FailureThreshold:    int32(min(cfg.Health.FailureThreshold, math.MaxInt32)),
			InitialDelaySeconds: ceilSeconds(cfg.Health.InitialDelay),
		}},
		Status: &sdkpb.GameServer_Status{
			State:    cfg.State,
			Address:  cfg.Address,
			Counters: map[string]*sdkpb.GameServer_Status_CounterStatus{},
			Lists:    map[string]*sdkpb.GameServer_Status_ListStatus{},
		},
	}
	if cfg.Address != "" {
		gs.Status.Addresses = []*sdkpb.GameServer_Status_Address{{Type: "InternalIP", Address: cfg.Address}}
	}
	for _, p := range cfg.Ports {
		gs.Status.Ports = append(gs.Status.Ports, &sdkpb.GameServer_Status_Port{Name: p.Name, Port: p.Port})
	}
	for k, v := range cfg.Labels {
		gs.ObjectMeta.Labels[k] = v
	}
	for k, v := range cfg.Annotations {
		gs.ObjectMeta.Annotations[k] = v
	}
	for k, c := range cfg.Counters {
		gs.Status.Counters[k] = &sdkpb.GameServer_Status_CounterStatus{Count: c.Count, Capacity: c.Capacity}
	}
	for k, l := range cfg.Lists {
		gs.Status.Lists[k] = &sdkpb.GameServer_Status_ListStatus{Capacity: l.Capacity, Values: append([]string(nil), l.Values...)}
	}
	return gs
}

func ceilSeconds(d time.Duration) int32 {
	return int32(min(math.Ceil(d.Seconds()), math.MaxInt32))
}

// mutate applies fn to a copy and, if anything changed, installs and publishes it. s.mu is held.
func (s *Server) mutate(fn func(gs *sdkpb.GameServer) error) error {
	work := proto.Clone(s.gs).(*sdkpb.GameServer)
	if err := fn(work); err != nil {
		return err
	}
	if proto.Equal(work, s.gs) {
		return nil
	}
	old := s.gs.GetStatus().GetState()
	s.version++
	work.ObjectMeta.ResourceVersion = strconv.FormatInt(s.version, 10)
	s.gs = work
	if state := work.GetStatus().GetState(); state != old {
		s.log.Info("state changed", "from", old, "to", state)
		s.afterStateChange(state)
	}
	s.publish()
	return nil
}

// afterStateChange runs the stand-in controller's reactions. s.mu is held.
func (s *Server) afterStateChange(state string) {
	if state != StateReserved && s.reserveTimer != nil {
		s.reserveTimer.Stop()
		s.reserveTimer = nil
	}
	if state != StateRequestReady && s.readyTimer != nil {
		s.readyTimer.Stop()
		s.readyTimer = nil
	}
	if state == StateRequestReady && !s.closed {
		s.readyTimer = time.AfterFunc(s.cfg.ReadyDelay, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.closed || s.gs.Status.State != StateRequestReady {
				return
			}
			_ = s.mutate(func(gs *sdkpb.GameServer) error { gs.Status.State = StateReady; return nil })
		})
	}
}

// requestState is an SDK state request: ignored on a terminal server, as Agones does.
func (s *Server) requestState(state string, extra func(gs *sdkpb.GameServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if IsTerminal(s.gs.Status.State) {
		s.log.Info("state request ignored: terminal", "state", s.gs.Status.State, "requested", state)
		return
	}
	_ = s.mutate(func(gs *sdkpb.GameServer) error {
		gs.Status.State = state
		if extra != nil {
			extra(gs)
		}
		return nil
	})
	// A repeated request for the same state still cancels a pending reservation.
	if state != StateReserved && s.reserveTimer != nil {
		s.reserveTimer.Stop()
		s.reserveTimer = nil
	}
}

// StampAllocated sets the last-allocated annotation as Agones does (RFC 3339 with nanoseconds, so
// every allocation changes it even within one second).
func StampAllocated(gs *sdkpb.GameServer, now time.Time) {
	if gs.ObjectMeta == nil {
		gs.ObjectMeta = &sdkpb.GameServer_ObjectMeta{}
	}
	if gs.ObjectMeta.Annotations == nil {
		gs.ObjectMeta.Annotations = map[string]string{}
	}
	gs.ObjectMeta.Annotations[AnnotationLastAllocated] = now.UTC().Format(time.RFC3339Nano)
}

func (s *Server) reserve(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if IsTerminal(s.gs.Status.State) {
		s.log.Info("reserve ignored: terminal", "state", s.gs.Status.State)
		return
	}
	_ = s.mutate(func(gs *sdkpb.GameServer) error { gs.Status.State = StateReserved; return nil })
	if s.reserveTimer != nil {
		s.reserveTimer.Stop()
		s.reserveTimer = nil
	}
	if d <= 0 || s.closed {
		return // 0 reserves until told otherwise
	}
	s.reserveGen++
	gen := s.reserveGen
	s.reserveTimer = time.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed || gen != s.reserveGen || s.gs.Status.State != StateReserved {
			return
		}
		_ = s.mutate(func(gs *sdkpb.GameServer) error { gs.Status.State = StateRequestReady; return nil })
	})
}

func (s *Server) touchHealth() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastPing = time.Now()
	s.failures = 0
}

func (s *Server) healthLoop(ctx context.Context) {
	h := s.cfg.Health
	wait := time.NewTimer(h.InitialDelay)
	defer wait.Stop()
	select {
	case <-ctx.Done():
		return
	case <-wait.C:
	}
	tick := time.NewTicker(h.Period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if s.checkHealth(now) {
				return
			}
		}
	}
}

// checkHealth counts a missed period and marks the server Unhealthy at the threshold; it reports
// whether checking is over (terminal state).
func (s *Server) checkHealth(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if IsTerminal(s.gs.Status.State) {
		return true
	}
	if now.Sub(s.lastPing) > s.cfg.Health.Period {
		s.failures++
	}
	if s.failures < s.cfg.Health.FailureThreshold {
		return false
	}
	s.log.Warn("health pings missed: marking Unhealthy", "failures", s.failures, "last_ping", s.lastPing)
	_ = s.mutate(func(gs *sdkpb.GameServer) error { gs.Status.State = StateUnhealthy; return nil })
	return true
}

func (s *Server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.readyTimer != nil {
		s.readyTimer.Stop()
	}
	if s.reserveTimer != nil {
		s.reserveTimer.Stop()
	}
	for sub := range s.subs {
		sub.close()
	}
	clear(s.subs)
}
