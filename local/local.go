package local

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kumi-dev/kumi/allocation"
	"github.com/kumi-dev/kumi/director"
	"github.com/kumi-dev/kumi/frontend"
	"github.com/kumi-dev/kumi/gameserver/localfleet"
	"github.com/kumi-dev/kumi/internal/config"
	"github.com/kumi-dev/kumi/internal/netaddr"
	"github.com/kumi-dev/kumi/internal/telemetry"
	"github.com/kumi-dev/kumi/internal/tlsconfig"
	"github.com/kumi-dev/kumi/internal/token"
	"github.com/kumi-dev/kumi/matchfunction"
	"github.com/kumi-dev/kumi/openmatch"
)

// Config is every setting of `kumi local`. Addresses default to the components' standard ports on
// 127.0.0.1; port 0 picks free ones.
type Config struct {
	Players     int           `flag:"players" help:"simulated players in the demo crowd; 0 only serves until interrupted"`
	Duration    time.Duration `flag:"duration" help:"how long each on-time player talks after joining (late and leaving players talk less)"`
	GroupSize   int           `flag:"group-size" help:"players per voice chat group"`
	DuelShare   float64       `flag:"duel-share" help:"share of players who queue for 1v1 duels instead of voice groups"`
	LateShare   float64       `flag:"late-share" help:"share of each voice group that arrives late and must land in its group's live session"`
	LeaveShare  float64       `flag:"leave-share" help:"share of players who leave early"`
	ScaleIn     bool          `flag:"scale-in" help:"drain one busy server mid-run so its sessions move to another server while players talk"`
	FrameEvery  time.Duration `flag:"frame-interval" help:"time between a player's voice frames"`
	ServeOnly   bool          `flag:"serve" help:"keep serving after the crowd finished, until interrupted"`
	ProgressTTY bool          `flag:"progress" help:"print a progress line every second"`

	Servers     int           `flag:"servers" help:"Ready game servers the local fleet keeps in reserve"`
	MaxServers  int           `flag:"max-servers" help:"most game-server processes"`
	Capacity    int           `flag:"capacity" help:"sessions per game server"`
	MaxMembers  int           `flag:"max-members" help:"members per session"`
	AllocateLag time.Duration `flag:"allocation-latency" help:"simulated latency of each local allocation (Agones batches up to 500ms)"`

	OMFrontendAddr string `flag:"om-frontend-addr" help:"Open Match FrontendService address (the embedded core's, or the external one's with -om-external)"`
	OMBackendAddr  string `flag:"om-backend-addr" help:"Open Match BackendService address (the embedded core's, or the external one's with -om-external)"`
	OMQueryAddr    string `flag:"om-query-addr" help:"Open Match QueryService address (the embedded core's, or the external one's with -om-external)"`
	OMExternal     bool   `flag:"om-external" help:"use the Open Match core already serving at the -om-*-addr addresses (e.g. a real Open Match v1.8 whose evaluator is set up) and start no embedded core"`
	MMFAddr        string `flag:"mmf-addr" help:"match function gRPC address"`
	FrontendAddr   string `flag:"frontend-addr" help:"player frontend gRPC address"`
	FrontendHTTP   string `flag:"frontend-http-addr" help:"player frontend HTTP/JSON address (empty: off)"`
	ControlAddr    string `flag:"director-addr" help:"director control API address game servers report to"`
	AdminAddr      string `flag:"admin-addr" help:"director admin HTTP API address (weights, pool, drain)"`
	MetricsAddr    string `flag:"metrics-addr" help:"Prometheus /metrics of every in-process component (empty: off)"`
	ConsoleAddr    string `flag:"console-addr" help:"live console web page (pool, sessions, weights); loopback only, no login (empty: off)"`
	Pprof          bool   `flag:"pprof" help:"also serve Go's /debug/pprof/ profiles of the in-process components on -metrics-addr (loopback only)"`
	KeyDir         string `flag:"key-dir" help:"where the dev signing keys are written (empty: a new temporary directory)"`
	LogFile        string `flag:"log-file" help:"file receiving every component's log at info level, game servers' included (empty: kumi.log in the key dir); the terminal shows warnings and the progress"`

	// Dedicated runs an uploaded dedicated-server build (build.go).
	Dedicated Dedicated

	// GameServerCommand starts one game server; empty runs this executable's `gameserver`.
	GameServerCommand []string
	// GameServerEnv is added to each game server's environment.
	GameServerEnv []string
	// GameServerOutput receives the game-server processes' stdout and stderr; nil discards them.
	GameServerOutput io.Writer
	// Out receives the progress lines and the summary; nil is os.Stdout.
	Out io.Writer
}

// Default returns the settings `kumi local` starts with.
func Default() Config {
	return Config{
		Players:        60,
		Duration:       8 * time.Second,
		GroupSize:      5,
		DuelShare:      0.2,
		LateShare:      0.2,
		LeaveShare:     0.1,
		ScaleIn:        true,
		FrameEvery:     20 * time.Millisecond,
		ProgressTTY:    true,
		Servers:        2,
		MaxServers:     8,
		Capacity:       20,
		MaxMembers:     16,
		OMFrontendAddr: "127.0.0.1:50504",
		OMBackendAddr:  "127.0.0.1:50505",
		OMQueryAddr:    "127.0.0.1:50503",
		MMFAddr:        "127.0.0.1:50502",
		FrontendAddr:   "127.0.0.1:50600",
		FrontendHTTP:   "127.0.0.1:8080",
		ControlAddr:    "127.0.0.1:50610",
		AdminAddr:      "127.0.0.1:50611",
		MetricsAddr:    "127.0.0.1:9090",
		ConsoleAddr:    "127.0.0.1:50612",
		Dedicated:      DefaultDedicated(),
	}
}

// Validate names the first bad setting.
func (c Config) Validate() error {
	switch {
	case c.Players < 0:
		return fmt.Errorf("local: players %d: want >= 0", c.Players)
	case c.Duration <= 0:
		return fmt.Errorf("local: duration %v: want > 0", c.Duration)
	case c.GroupSize < 1:
		return fmt.Errorf("local: group-size %d: want >= 1", c.GroupSize)
	case c.GroupSize > c.MaxMembers:
		return fmt.Errorf("local: group-size %d exceeds max-members %d", c.GroupSize, c.MaxMembers)
	case c.DuelShare < 0 || c.DuelShare > 1, c.LateShare < 0 || c.LateShare > 1, c.LeaveShare < 0 || c.LeaveShare > 1:
		return errors.New("local: duel-share, late-share and leave-share must lie in [0, 1]")
	case c.Capacity < 1 || c.MaxMembers < 2:
		return fmt.Errorf("local: capacity %d / max-members %d: want >= 1 / >= 2", c.Capacity, c.MaxMembers)
	case c.Servers < 1 || c.MaxServers < c.Servers+1:
		return fmt.Errorf("local: servers %d / max-servers %d: want >= 1 and max-servers > servers (room to move sessions)", c.Servers, c.MaxServers)
	case c.FrameEvery <= 0:
		return fmt.Errorf("local: frame-interval %v: want > 0", c.FrameEvery)
	case strings.Contains(c.KeyDir, ","):
		return fmt.Errorf("local: key-dir %q: must not contain a comma (game servers are given key files in a comma-separated flag)", c.KeyDir)
	case c.Pprof && !tlsconfig.IsLoopback(c.MetricsAddr):
		// Profiles reveal the process's internals: loopback only, like the console.
		return fmt.Errorf("local: -pprof needs a loopback -metrics-addr (127.0.0.1:PORT), not %q", c.MetricsAddr)
	}
	return nil
}

// Stack is the running product.
type Stack struct {
	// OpenMatch is the embedded core; nil with Config.OMExternal.
	OpenMatch *openmatch.Server
	// OMFrontend, OMBackend and OMQuery are the addresses of the core in use.
	OMFrontend, OMBackend, OMQuery string
	MMF                            *matchfunction.Server
	Frontend                       *frontend.Server
	Director                       *director.Director
	Fleet                          *localfleet.Fleet
	Metrics                        *telemetry.Server
	// PlayerSigner mints dev player tokens the frontend accepts (a stand-in identity provider).
	PlayerSigner *token.Signer
	KeyDir       string
	// AdminToken is the director's admin API bearer token (also in KeyDir/admin.token).
	AdminToken string
	// ServerKID is the kid of the director's server-token key (public half: server.pub.pem).
	ServerKID string
	// ConsoleURL is the live console's page ("" when Config.ConsoleAddr is empty).
	ConsoleURL string

	waits []func() error
}

// Wait blocks until every component has stopped (after the context given to Start ends).
func (s *Stack) Wait() error {
	var errs []error
	for i := len(s.waits) - 1; i >= 0; i-- {
		if err := s.waits[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Start brings up every component and returns once all listen and the fleet has its first
// servers starting. Everything stops when ctx ends; call Wait to join.
func Start(ctx context.Context, log *slog.Logger, cfg Config) (*Stack, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	config.Log(ctx, log, "local", &cfg)
	ctx, cancel := context.WithCancel(ctx)
	s := &Stack{}
	fail := func(err error) (*Stack, error) {
		cancel()
		_ = s.Wait()
		return nil, err
	}
	s.waits = append(s.waits, func() error { cancel(); return nil })

	reg := telemetry.NewRegistry()
	wrap := func(component string) prometheus.Registerer {
		return prometheus.WrapRegistererWith(prometheus.Labels{"component": component}, reg)
	}
	var err error
	var mopts []telemetry.Option
	if cfg.Pprof {
		mopts = append(mopts, telemetry.WithPprof())
	}
	if s.Metrics, err = telemetry.Serve(ctx, log, cfg.MetricsAddr, reg, mopts...); err != nil {
		return fail(err)
	}
	s.waits = append(s.waits, s.Metrics.Wait)

	// Dev keys: one signs players' tokens (standing in for the studio's identity provider), the
	// other the director's server tokens; game servers and the frontend get the public halves.
	if s.KeyDir = cfg.KeyDir; s.KeyDir == "" {
		if s.KeyDir, err = os.MkdirTemp("", "kumi-local-"); err != nil {
			return fail(fmt.Errorf("key dir: %w", err))
		}
		// Removed last, once every component (game servers included) has stopped using it.
		dir := s.KeyDir
		s.waits = slices.Insert(s.waits, 0, func() error { return os.RemoveAll(dir) })
		if strings.Contains(s.KeyDir, ",") {
			return fail(fmt.Errorf("key dir %q (from TMPDIR): must not contain a comma (game servers are given key files in a comma-separated flag)", s.KeyDir))
		}
	} else if err := os.MkdirAll(s.KeyDir, 0o700); err != nil {
		return fail(fmt.Errorf("key dir: %w", err))
	}
	// The player key's kid is its thumbprint, which is what `examples/client -key` (and `kumi token
	// issue`) put in tokens signed with the written player.key.pem.
	playerKey, err := token.GenerateKey(token.AlgEdDSA)
	if err != nil {
		return fail(err)
	}
	if s.PlayerSigner, err = token.NewSigner(playerKey, "", token.DefaultIssuer); err != nil {
		return fail(err)
	}
	serverSigner, err := token.GenerateSigner(token.DefaultIssuer)
	if err != nil {
		return fail(err)
	}
	playerPub, err := writePublicKey(s.KeyDir, "player.pub.pem", s.PlayerSigner)
	if err != nil {
		return fail(err)
	}
	serverPub, err := writePublicKey(s.KeyDir, "server.pub.pem", serverSigner)
	if err != nil {
		return fail(err)
	}
	s.ServerKID = serverSigner.KID()
	if err := writePrivateKey(s.KeyDir, "player.key.pem", s.PlayerSigner); err != nil {
		return fail(err)
	}
	// Only the game servers may call the director's control API (MoveSession mints tokens).
	controlSecret := rand.Text()
	secretFile := filepath.Join(s.KeyDir, "control.secret")
	if err := os.WriteFile(secretFile, []byte(controlSecret), 0o600); err != nil {
		return fail(fmt.Errorf("write %s: %w", secretFile, err))
	}

	// The director's admin API (drain, weights) takes this bearer token; an operator reads the file.
	s.AdminToken = rand.Text()
	adminFile := filepath.Join(s.KeyDir, "admin.token")
	if err := os.WriteFile(adminFile, []byte(s.AdminToken), 0o600); err != nil {
		return fail(fmt.Errorf("write %s: %w", adminFile, err))
	}
	// The frontend seals every ticket with this secret; the director assigns only sealed tickets,
	// so nothing created straight in the core gets a server token.
	sealSecret := rand.Text()

	if cfg.OMExternal {
		s.OMFrontend, s.OMBackend, s.OMQuery = cfg.OMFrontendAddr, cfg.OMBackendAddr, cfg.OMQueryAddr
		log.Info("using an external Open Match core; no embedded core started", "frontend", s.OMFrontend, "backend", s.OMBackend, "query", s.OMQuery)
	} else {
		omCfg := openmatch.Default()
		omCfg.FrontendAddr, omCfg.BackendAddr, omCfg.QueryAddr = cfg.OMFrontendAddr, cfg.OMBackendAddr, cfg.OMQueryAddr
		omCfg.PendingReleaseTimeout = 5 * time.Second
		if s.OpenMatch, err = openmatch.Start(ctx, log.With("component", "openmatch"), omCfg, wrap("openmatch")); err != nil {
			return fail(fmt.Errorf("open match core: %w", err))
		}
		s.waits = append(s.waits, s.OpenMatch.Wait)
		s.OMFrontend, s.OMBackend, s.OMQuery = s.OpenMatch.FrontendAddr(), s.OpenMatch.BackendAddr(), s.OpenMatch.QueryAddr()
	}

	profiles := matchfunction.DefaultProfiles()
	for i := range profiles {
		if profiles[i].Kind == "rendezvous" {
			profiles[i].MaxMembers = cfg.MaxMembers
		}
	}
	profiles = append(profiles, cfg.Dedicated.profiles...)
	mfCfg := matchfunction.Default()
	mfCfg.ListenAddr, mfCfg.QueryAddr, mfCfg.Profiles = cfg.MMFAddr, s.OMQuery, profiles
	if s.MMF, err = matchfunction.Start(ctx, log.With("component", "matchfunction"), mfCfg, wrap("matchfunction")); err != nil {
		return fail(fmt.Errorf("match function: %w", err))
	}
	s.waits = append(s.waits, s.MMF.Wait)

	feCfg := frontend.Default()
	feCfg.GRPCAddr, feCfg.HTTPAddr = cfg.FrontendAddr, cfg.FrontendHTTP
	feCfg.OpenMatchAddr, feCfg.OpenMatchQueryAddr = s.OMFrontend, s.OMQuery
	feCfg.JWT.PublicKeys = []string{s.PlayerSigner.KID() + "=" + playerPub}
	feCfg.TicketSealSecret = sealSecret
	// The whole demo crowd (and kumi bench e2e's) comes from 127.0.0.1 over one shared connection;
	// per-player limits still apply.
	feCfg.SourceRate, feCfg.MaxStreamsPerConn = 0, 1<<16
	if s.Frontend, err = frontend.Start(ctx, log.With("component", "frontend"), feCfg, wrap("frontend")); err != nil {
		return fail(fmt.Errorf("frontend: %w", err))
	}
	s.waits = append(s.waits, s.Frontend.Wait)

	// Game servers are told the director's address when they start, so its listener is bound
	// before both and handed to the director (director.Config.ControlListener).
	mmfHost, mmfPort, err := splitHostPort(s.MMF.Addr())
	if err != nil {
		return fail(err)
	}
	ctlLn, err := net.Listen("tcp", cfg.ControlAddr)
	if err != nil {
		return fail(fmt.Errorf("director: control-addr %s: %w", cfg.ControlAddr, err))
	}
	ctlAddr := netaddr.Dialable(ctlLn.Addr())
	flCfg := localfleet.Default()
	flCfg.Name = "kumi"
	flCfg.BufferSize, flCfg.MaxReplicas, flCfg.SessionCapacity = cfg.Servers, cfg.MaxServers, int64(cfg.Capacity)
	flCfg.AllocationLatency = cfg.AllocateLag
	flCfg.Command = cfg.GameServerCommand
	flCfg.Env = cfg.GameServerEnv
	flCfg.Output = cfg.GameServerOutput
	gsArgs := []string{
		"-director=" + ctlAddr,
		"-director-secret-file=" + secretFile,
		"-token-public-keys=" + serverSigner.KID() + "=" + serverPub,
		"-capacity=" + strconv.Itoa(cfg.Capacity),
		"-max-members=" + strconv.Itoa(cfg.MaxMembers),
		"-report-interval=500ms",
		"-report-debounce=20ms",
		"-drain-grace=1s",
		"-exit-when-drained",
		"-metrics-addr=127.0.0.1:0", // each game server logs where its /metrics listens
		// Every local player joins from 127.0.0.1: the per-source JOIN limit (a flood guard for
		// public addresses) would make one machine's crowd queue behind itself.
		"-join-source-rate=100000",
		"-join-source-burst=100000",
	}
	if len(flCfg.Command) > 0 {
		flCfg.Command = append(append([]string(nil), flCfg.Command...), append([]string{"-listen-addr=127.0.0.1:0"}, gsArgs...)...)
	} else {
		flCfg.Args = gsArgs
	}
	if s.Fleet, err = localfleet.Start(ctx, log.With("component", "fleet"), flCfg, wrap("fleet")); err != nil {
		ctlLn.Close()
		return fail(fmt.Errorf("local fleet: %w", err))
	}
	s.waits = append(s.waits, s.Fleet.Wait)

	dCfg := director.Default()
	dCfg.ControlAddr, dCfg.AdminAddr, dCfg.BackendAddr = ctlAddr, cfg.AdminAddr, s.OMBackend
	dCfg.ControlListener = ctlLn
	dCfg.MMFHost, dCfg.MMFPort = mmfHost, mmfPort
	dCfg.Signer = serverSigner
	dCfg.ControlSecret = controlSecret
	dCfg.TicketSealSecret = sealSecret
	dCfg.AdminToken = s.AdminToken
	dCfg.ReportInterval = 500 * time.Millisecond
	dCfg.RebuildTimeout = 0
	dCfg.Pool.MinFreeSlots = max(2, cfg.Capacity/2)
	dCfg.Pool.HighWatermark = 2 * cfg.Capacity
	dCfg.Pool.DefaultCap = cfg.Capacity
	if s.Director, err = director.Start(ctx, log.With("component", "director"), dCfg, wrap("director"), allocation.Backend(s.Fleet)); err != nil {
		return fail(fmt.Errorf("director: %w", err))
	}
	s.waits = append(s.waits, s.Director.Wait)
	if err := s.startConsole(ctx, log.With("component", "console"), cfg.ConsoleAddr); err != nil {
		return fail(err)
	}
	s.waits = append(s.waits, func() error { cancel(); return nil })
	if err := s.waitWarm(ctx, min(cfg.Capacity, cfg.Servers*cfg.Capacity/2)); err != nil {
		return fail(err)
	}
	return s, nil
}

// waitWarm returns once the director's pool has free session slots on reporting servers, so the
// first players are placed at once instead of being released while the first game servers boot.
func (s *Stack) waitWarm(ctx context.Context, slots int) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if free := s.Director.Pool().Free(s.Fleet.Name(), time.Now()); free >= slots {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("local: the pool has no %d free session slots yet (game servers did not become Ready and report): %w", slots, ctx.Err())
		case <-tick.C:
		}
	}
}

func writePublicKey(dir, name string, s *token.Signer) (string, error) {
	pem, err := token.MarshalPublicKeyPEM(s.PublicKey().Key)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem, 0o644); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return path, nil
}

func writePrivateKey(dir, name string, s *token.Signer) error {
	pem, err := token.MarshalPrivateKeyPEM(s.PrivateKey())
	if err != nil {
		return err
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("address %q: %w", addr, err)
	}
	return host, port, nil
}
