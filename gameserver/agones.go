package gameserver

import (
	"context"
	"fmt"
	"github.com/kumi-dev/kumi/internal/tracing"
	"math"
	"net"
	"os"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kumi-dev/kumi/allocation"
	sdkpb "github.com/kumi-dev/kumi/api/agones/sdk"
	"github.com/kumi-dev/kumi/api/control"
	"github.com/kumi-dev/kumi/gameserver/sdk"
	"github.com/kumi-dev/kumi/internal/controlauth"
	"github.com/kumi-dev/kumi/internal/serverid"
)

// SDK is the part of the Agones SDK the game server uses; *sdk.Client implements it (against the
// real sidecar or gameserver/localsdk).
type SDK interface {
	Ready(ctx context.Context) error
	Shutdown(ctx context.Context) error
	Health(ctx context.Context) error // one ping
	GetGameServer(ctx context.Context) (*sdkpb.GameServer, error)
	WatchGameServer(ctx context.Context, fn func(*sdkpb.GameServer)) error // blocks until ctx ends
	SetLabel(ctx context.Context, key, value string) error
	SetAnnotation(ctx context.Context, key, value string) error
	SetCounterCount(ctx context.Context, name string, count int64) error
	SetCounterCapacity(ctx context.Context, name string, capacity int64) error
}

// sdkStartTimeout bounds waiting for the sidecar at start (it may come up after the server).
const sdkStartTimeout = 30 * time.Second

// dialDeps connects to the director and the SDK sidecar unless the caller supplied them.
func (s *Server) dialDeps() error {
	if s.deps.director == nil && s.cfg.Director != "" {
		secret, err := controlauth.ReadSecret(s.cfg.DirectorSecretFile)
		if err != nil {
			return fmt.Errorf("gameserver: %w", err)
		}
		creds, err := s.cfg.DirectorTLS.DialCredentials()
		if err != nil {
			return fmt.Errorf("gameserver: director-tls: %w", err)
		}
		opts := append(tracing.DialOptions(), grpc.WithTransportCredentials(creds))
		if c := controlauth.Credentials(secret); c != nil {
			opts = append(opts, grpc.WithPerRPCCredentials(c))
		}
		conn, err := grpc.NewClient(s.cfg.Director, opts...)
		if err != nil {
			return fmt.Errorf("gameserver: director %s: %w", s.cfg.Director, err)
		}
		s.closers = append(s.closers, conn)
		// The director acts on a server's behalf only with its credential (internal/serverid).
		var proof serverid.ProofFunc
		switch env := os.Getenv(serverid.EnvBootstrap); {
		case s.cfg.DirectorBootstrapFile != "":
			proof = serverid.FileProof(s.cfg.DirectorBootstrapFile)
		case env != "":
			proof = serverid.StaticProof(env)
		}
		if proof == nil {
			s.log.Warn("no bootstrap proof (director-bootstrap-file or the local fleet's KUMI_SERVER_BOOTSTRAP): the director will refuse this server's reports")
			s.deps.director = control.NewDirectorClient(conn)
		} else {
			s.deps.director = serverid.NewClient(conn, proof)
		}
	}
	if s.cfg.SDK && s.deps.sdk == nil {
		addr := s.cfg.SDKAddr
		if addr == "" {
			addr = sdk.AddrFromEnv(os.Getenv)
		}
		c, err := sdk.Dial(s.ctx, addr)
		if err != nil {
			return fmt.Errorf("gameserver: %w", err)
		}
		s.closers = append(s.closers, c)
		s.deps.sdk = c
	}
	return nil
}

// fromGameServer learns the server's name, port and public address from the GameServer and
// returns the address to listen on.
func (s *Server) fromGameServer() (string, error) {
	ctx, cancel := context.WithTimeout(s.ctx, sdkStartTimeout)
	defer cancel()
	var gs *sdkpb.GameServer
	var err error
	// The sidecar may start after this container: retry with the one jittered backoff policy.
	backoff := wait.Backoff{Duration: 50 * time.Millisecond, Factor: 2, Jitter: 0.5, Steps: math.MaxInt32, Cap: time.Second}
	for {
		if gs, err = s.deps.sdk.GetGameServer(ctx); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("gameserver: SDK sidecar not answering GetGameServer within %s: %w", sdkStartTimeout, err)
		case <-time.After(backoff.Step()):
		}
	}
	name := gs.GetObjectMeta().GetName()
	if name == "" {
		return "", fmt.Errorf("gameserver: GameServer from the SDK has no name")
	}
	s.name = name
	// The fleet's declared counter capacity is authoritative for allocation; never advertise more.
	if c := gs.GetStatus().GetCounters()[allocation.CounterSessions]; c.GetCapacity() > 0 && c.GetCapacity() < int64(s.cfg.Capacity) {
		s.log.Info("capacity lowered to the GameServer's declared counter capacity", "counter", allocation.CounterSessions, "capacity", c.GetCapacity(), "configured", s.cfg.Capacity)
		s.cfg.Capacity = int(c.GetCapacity())
	}
	host, port, _ := net.SplitHostPort(s.cfg.ListenAddr)
	var statusPort int32
	var names []string
	for _, p := range gs.GetStatus().GetPorts() {
		names = append(names, p.GetName())
		if p.GetName() == s.cfg.SDKPortName {
			statusPort = p.GetPort()
		}
	}
	if port == "0" {
		// Passthrough/Dynamic: the port is only known from the GameServer status.
		if statusPort == 0 {
			return "", fmt.Errorf("gameserver: listen-addr has port 0 but the GameServer status has no port %q (ports: %v); set sdk-port-name or a fixed port", s.cfg.SDKPortName, names)
		}
		port = strconv.Itoa(int(statusPort))
	}
	if s.cfg.PublicAddr != "" {
		s.public = s.cfg.PublicAddr
	} else if addr := gs.GetStatus().GetAddress(); addr != "" {
		pp := port
		if statusPort != 0 {
			pp = strconv.Itoa(int(statusPort)) // Dynamic: the host port differs from the container port
		}
		s.public = net.JoinHostPort(addr, pp)
	}
	return net.JoinHostPort(host, port), nil
}

// sdkReady declares the sessions counter and marks the GameServer Ready.
func (s *Server) sdkReady() error {
	if err := s.deps.sdk.SetCounterCapacity(s.ctx, allocation.CounterSessions, int64(s.cfg.Capacity)); err != nil {
		// Without the counter declared in the GameServer spec the server still works; only
		// counter-based allocation cannot see its load.
		s.log.Warn("could not set counter capacity; declare it in the GameServer spec", "counter", allocation.CounterSessions, "err", err)
	} else if err := s.deps.sdk.SetCounterCount(s.ctx, allocation.CounterSessions, 0); err != nil {
		s.log.Warn("could not set counter count", "counter", allocation.CounterSessions, "err", err)
	}
	if err := s.deps.sdk.Ready(s.ctx); err != nil {
		return fmt.Errorf("gameserver: SDK Ready: %w", err)
	}
	return nil
}

func (s *Server) healthLoop() error {
	t := time.NewTicker(s.cfg.HealthPeriod)
	defer t.Stop()
	for {
		if err := s.deps.sdk.Health(s.ctx); err != nil && s.ctx.Err() == nil {
			s.log.Warn("SDK health ping failed", "err", err)
		}
		select {
		case <-s.ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// drainRequested reports whether the GameServer carries kumi.dev/drain=true as a label or
// annotation (set by the director or an operator through the Kubernetes API).
func drainRequested(gs *sdkpb.GameServer) (string, bool) {
	if gs.GetObjectMeta().GetLabels()[allocation.LabelDrain] == "true" {
		return "label " + allocation.LabelDrain, true
	}
	if gs.GetObjectMeta().GetAnnotations()[allocation.LabelDrain] == "true" {
		return "annotation " + allocation.LabelDrain, true
	}
	return "", false
}

func (s *Server) watchLoop() error {
	err := s.deps.sdk.WatchGameServer(s.ctx, func(gs *sdkpb.GameServer) {
		if where, ok := drainRequested(gs); ok {
			s.Drain("GameServer " + where)
		}
	})
	if err != nil && status.Code(err) == codes.Unimplemented {
		s.log.Warn("SDK has no WatchGameServer; drain only on the director's request", "err", err)
		return nil
	}
	return err
}

// counterLoop keeps the Agones counter "sessions" equal to the live sessions, one call at a time
// with changes coalesced.
func (s *Server) counterLoop() error {
	last := int64(0)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return nil
		case <-s.countKick:
		case <-retry.C:
		}
		s.counterMu.Lock()
		if s.sdkShut {
			s.counterMu.Unlock()
			return nil
		}
		n := int64(s.sessionCount())
		var err error
		if n != last {
			err = s.deps.sdk.SetCounterCount(s.ctx, allocation.CounterSessions, n)
		}
		s.counterMu.Unlock()
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Warn("could not update counter", "counter", allocation.CounterSessions, "count", n, "err", err)
				retry.Reset(time.Second)
			}
			continue
		}
		last = n
	}
}

// shutdownSDK calls SDK Shutdown once no counter write can follow it: it stops counterLoop's
// writes under counterMu and, holding it, brings the counter to the live sessions (0 once
// drained) before Shutdown.
func (s *Server) shutdownSDK() error {
	s.counterMu.Lock()
	defer s.counterMu.Unlock()
	s.sdkShut = true
	if err := s.deps.sdk.SetCounterCount(s.ctx, allocation.CounterSessions, int64(s.sessionCount())); err != nil {
		s.log.Warn("could not update counter before Shutdown", "counter", allocation.CounterSessions, "err", err)
	}
	return s.deps.sdk.Shutdown(s.ctx)
}
