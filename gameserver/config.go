package gameserver

import (
	"errors"
	"fmt"
	"github.com/kumi-dev/kumi/internal/tlsconfig"
	"net"
	"time"

	"github.com/kumi-dev/kumi/gameserver/wire"
	"github.com/kumi-dev/kumi/internal/token"
)

// I/O modes of the relay.
const (
	// IOBatch moves up to BatchSize datagrams per recvmmsg/sendmmsg system call.
	IOBatch = "batch"
	// IOSingle makes one system call per datagram (the baseline batching is measured against).
	IOSingle = "single"
)

// Config is every setting of one game server.
type Config struct {
	ListenAddr string `flag:"listen-addr" help:"UDP address to serve (host:port, IPv4 or IPv6). With the SDK and port 0, the port named sdk-port-name in the GameServer status is used"`
	Name       string `flag:"name" help:"server name, the audience its tokens must carry; with the SDK it is the GameServer name"`
	PublicAddr string `flag:"public-addr" help:"ip:port clients reach this server at, reported to the director (default: GameServer status address + port with the SDK, else the bound address)"`

	Capacity      int           `flag:"capacity" help:"most concurrent sessions"`
	MaxMembers    int           `flag:"max-members" help:"most members per session"`
	MaxPayload    int           `flag:"max-payload" help:"largest DATA payload in bytes; bigger datagrams are dropped"`
	MemberRate    float64       `flag:"member-rate" help:"DATA packets per second one member may send (token bucket); excess is dropped as rate_limited. 0 = unlimited"`
	MemberBurst   int           `flag:"member-burst" help:"burst of the per-member DATA rate limit"`
	Keepalive     time.Duration `flag:"keepalive" help:"how often clients are told to send KEEPALIVE when otherwise silent"`
	MemberTimeout time.Duration `flag:"member-timeout" help:"a member silent this long is dropped (and told RECONNECT)"`

	IO        string `flag:"io" help:"relay socket I/O: batch (recvmmsg/sendmmsg) or single (one syscall per datagram)"`
	BatchSize int    `flag:"batch-size" help:"datagrams per recvmmsg/sendmmsg call in batch mode"`
	// Workers spreads the relay over cores: that many sockets bound to the listen address with
	// SO_REUSEPORT, each read by its own goroutine. The kernel hashes each datagram's source to
	// one socket, so a session's members may land on different workers: every worker reads the
	// one session table and seals and sends to the recipients from its own socket (same address,
	// so clients see one server). 1 is one socket and one relay goroutine.
	Workers int `flag:"workers" help:"relay workers, each with its own socket on the listen address (SO_REUSEPORT; Linux only above 1); 0 = GOMAXPROCS on Linux, else 1"`

	JoinRate  float64 `flag:"join-rate" help:"token verifications per second, all sources together (JOIN flood guard); excess JOINs get REFUSE busy"`
	JoinBurst int     `flag:"join-burst" help:"burst of the JOIN rate limit"`
	// Per-source limits keep one flooder from using up join-rate: only sources that answered the
	// cookie round trip (real addresses) get a bucket.
	JoinSourceRate    float64 `flag:"join-source-rate" help:"JOINs per second one source address (IPv4 /32, IPv6 /64) may have verified; excess gets REFUSE busy"`
	JoinSourceBurst   int     `flag:"join-source-burst" help:"burst of the per-source JOIN rate limit"`
	JoinSourceEntries int     `flag:"join-source-entries" help:"most source addresses with a JOIN bucket at once (idle ones are forgotten first); beyond it new sources get REFUSE busy"`
	AdmitWorkers      int     `flag:"admit-workers" help:"goroutines verifying JOIN tokens in parallel"`
	JoinBacklog       int     `flag:"join-backlog" help:"JOINs queued for verification; beyond it JOINs get REFUSE busy"`

	DrainGrace      time.Duration `flag:"drain-grace" help:"after a drain starts, how long sessions may end by themselves before they are moved"`
	MoveRetry       time.Duration `flag:"move-retry" help:"MOVE/RECONNECT retransmit interval until the member LEAVEs"`
	MoveTimeout     time.Duration `flag:"move-timeout" help:"how long a member told MOVE/RECONNECT may take to LEAVE before it is dropped"`
	MoveCallTimeout time.Duration `flag:"move-call-timeout" help:"timeout of one MoveSession call to the director"`
	ExitWhenDrained bool          `flag:"exit-when-drained" help:"stop the process once a drain has emptied the server (after SDK Shutdown)"`

	Director           string `flag:"director" help:"director control API address (host:port; plaintext gRPC unless director-tls-* is set); empty runs without a director: no load reports, drain sends RECONNECT"`
	DirectorSecretFile string `flag:"director-secret-file" help:"file with the director's control secret (its -control-secret-file), sent with every control call"`
	// DirectorBootstrapFile proves this server's identity to the director (internal/serverid).
	DirectorBootstrapFile string `flag:"director-bootstrap-file" help:"file with this server's bootstrap proof for Identity.Register (on Kubernetes a projected ServiceAccount token with audience kumi-director, re-read at each registration); empty: the KUMI_SERVER_BOOTSTRAP secret a local fleet sets"`
	// DirectorTLS secures the control link (the credential and tokens cross it).
	DirectorTLS    tlsconfig.Config `prefix:"director-tls-"`
	ReportInterval time.Duration    `flag:"report-interval" help:"load report period until the director's reply sets one"`
	ReportDebounce time.Duration    `flag:"report-debounce" help:"a session start or end triggers a report this much later (changes in between share it)"`

	MetricsAddr string `flag:"metrics-addr" help:"serve Prometheus /metrics over HTTP here (host:port; empty: off); needs a registry that is also a Gatherer"`

	SDK          bool          `flag:"sdk" help:"talk to the Agones SDK sidecar (name, port, Ready, Health, counter sessions, drain label, Shutdown)"`
	SDKAddr      string        `flag:"sdk-addr" help:"SDK sidecar gRPC address (default from AGONES_SDK_GRPC_HOST/AGONES_SDK_GRPC_PORT, else localhost:9357)"`
	SDKPortName  string        `flag:"sdk-port-name" help:"GameServer status port whose number the server listens on when listen-addr has port 0"`
	HealthPeriod time.Duration `flag:"health-period" help:"SDK Health ping period (below the GameServer's spec.health.periodSeconds)"`

	// Token says which keys sign server tokens (the director's public key or JWKS).
	Token token.VerifierConfig `prefix:"token-"`
}

// Default returns the defaults: 1000 sessions of up to 16 members on :7777, batched I/O, 30 s
// drain grace, no director, no SDK.
func Default() Config {
	tc := token.DefaultVerifierConfig()
	tc.Audience = "" // server tokens are checked against this server's name, not a fixed audience
	return Config{
		ListenAddr:    ":7777",
		Name:          "local",
		Capacity:      1000,
		MaxMembers:    16,
		MaxPayload:    1200,
		MemberRate:    200,
		MemberBurst:   100,
		Keepalive:     2 * time.Second,
		MemberTimeout: 10 * time.Second,
		IO:            IOBatch,
		BatchSize:     16,
		JoinRate:      5000,
		JoinBurst:     1000,
		// 20/s a source: a NAT of players joining at once gets through in seconds, while at least
		// join-rate/20 = 250 real addresses are needed to fill join-rate.
		JoinSourceRate:    20,
		JoinSourceBurst:   40,
		JoinSourceEntries: 65536,
		AdmitWorkers:      2,
		JoinBacklog:       4096,
		DrainGrace:        30 * time.Second,
		MoveRetry:         250 * time.Millisecond,
		MoveTimeout:       5 * time.Second,
		MoveCallTimeout:   3 * time.Second,
		ExitWhenDrained:   true,
		ReportInterval:    5 * time.Second,
		ReportDebounce:    100 * time.Millisecond,
		SDKPortName:       "default",
		HealthPeriod:      2 * time.Second,
		Token:             tc,
	}
}

// Validate reports every problem with cfg at once.
func (cfg *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, _, err := net.SplitHostPort(cfg.ListenAddr); err != nil {
		add("listen-addr %q must be host:port: %v", cfg.ListenAddr, err)
	}
	if !cfg.SDK && cfg.Name == "" {
		add("name must be set when running without the SDK (it is the token audience)")
	}
	if cfg.PublicAddr != "" {
		if _, _, err := net.SplitHostPort(cfg.PublicAddr); err != nil {
			add("public-addr %q must be host:port: %v", cfg.PublicAddr, err)
		}
	}
	if cfg.Capacity < 1 {
		add("capacity %d must be at least 1", cfg.Capacity)
	}
	if cfg.MaxMembers < 1 || cfg.MaxMembers > 1024 {
		add("max-members %d must be in 1..1024", cfg.MaxMembers)
	}
	if cfg.MaxPayload < 1 || cfg.MaxPayload > 65507-wire.Overhead {
		add("max-payload %d must be in 1..%d", cfg.MaxPayload, 65507-wire.Overhead)
	}
	if cfg.MemberRate < 0 || (cfg.MemberRate > 0 && cfg.MemberBurst < 1) {
		add("member-rate %g must not be negative, and member-burst %d must be at least 1 when it is set", cfg.MemberRate, cfg.MemberBurst)
	}
	if cfg.Keepalive < time.Millisecond || cfg.MemberTimeout <= cfg.Keepalive {
		// ACCEPT carries whole milliseconds: a shorter keepalive reaches the client as 0.
		add("keepalive %s must be at least 1ms and below member-timeout %s", cfg.Keepalive, cfg.MemberTimeout)
	}
	if cfg.MemberTimeout > time.Duration(1<<32-1)*time.Millisecond {
		add("member-timeout %s too long", cfg.MemberTimeout)
	}
	switch cfg.IO {
	case IOBatch, IOSingle:
	default:
		add("io %q must be %q or %q", cfg.IO, IOBatch, IOSingle)
	}
	if cfg.Workers < 0 || cfg.Workers > 1024 {
		add("workers %d must be in 0..1024 (0: GOMAXPROCS)", cfg.Workers)
	}
	if cfg.BatchSize < 1 || cfg.BatchSize > 1024 {
		add("batch-size %d must be in 1..1024", cfg.BatchSize)
	}
	if cfg.JoinRate <= 0 || cfg.JoinBurst < 1 {
		add("join-rate %g and join-burst %d must be positive", cfg.JoinRate, cfg.JoinBurst)
	}
	if cfg.JoinSourceRate <= 0 || cfg.JoinSourceBurst < 1 || cfg.JoinSourceEntries < 1 {
		add("join-source-rate %g, join-source-burst %d and join-source-entries %d must be positive", cfg.JoinSourceRate, cfg.JoinSourceBurst, cfg.JoinSourceEntries)
	}
	if cfg.AdmitWorkers < 1 || cfg.JoinBacklog < 1 {
		add("admit-workers %d and join-backlog %d must be at least 1", cfg.AdmitWorkers, cfg.JoinBacklog)
	}
	if cfg.DrainGrace < 0 {
		add("drain-grace %s must not be negative", cfg.DrainGrace)
	}
	if cfg.MoveRetry <= 0 || cfg.MoveTimeout < cfg.MoveRetry || cfg.MoveCallTimeout <= 0 {
		add("move-retry %s, move-timeout %s and move-call-timeout %s must be positive with move-timeout ≥ move-retry", cfg.MoveRetry, cfg.MoveTimeout, cfg.MoveCallTimeout)
	}
	if cfg.Director != "" {
		if _, _, err := net.SplitHostPort(cfg.Director); err != nil {
			add("director %q must be host:port: %v", cfg.Director, err)
		}
	}
	if cfg.ReportInterval <= 0 || cfg.ReportDebounce < 0 {
		add("report-interval %s must be positive and report-debounce %s not negative", cfg.ReportInterval, cfg.ReportDebounce)
	}
	if cfg.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(cfg.MetricsAddr); err != nil {
			add("metrics-addr %q must be host:port: %v", cfg.MetricsAddr, err)
		}
	}
	if cfg.SDK && cfg.HealthPeriod <= 0 {
		add("health-period %s must be positive", cfg.HealthPeriod)
	}
	if len(errs) > 0 {
		return fmt.Errorf("gameserver config: %w", errors.Join(errs...))
	}
	return nil
}

// maxDatagram is the largest datagram the server accepts.
func (cfg *Config) maxDatagram() int { return max(wire.MaxJoinLen, wire.Overhead+cfg.MaxPayload) }
