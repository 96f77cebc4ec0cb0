package wrap

import (
	"errors"
	"fmt"
	"time"

	"github.com/kumi-dev/kumi/builds"
	"github.com/kumi-dev/kumi/internal/token"
)

// Sandboxes the wrapper can run a build in.
const (
	SandboxGVisor = "gvisor" // runsc (gVisor) in a network namespace of its own; the local default
	SandboxNone   = "none"   // a plain child process; only with UnsafeNoSandbox
	// SandboxPod trusts the pod's runtime as the sandbox: set by the rendered build Fleets, whose
	// pods run under runtimeClassName kata (a VM per pod) with the locked-down pod spec.
	SandboxPod = "pod"
)

// Config is every setting of `kumi gameserver wrap`.
type Config struct {
	Bucket    string `flag:"bucket" help:"gocloud.dev/blob bucket URL the builds API stores builds in"`
	Tenant    string `flag:"tenant" help:"studio id owning the build"`
	Build     string `flag:"build" help:"sha256 of the build to run"`
	FetchOnly bool   `flag:"fetch-only" help:"fetch, verify and unpack the build into -work-dir, then exit (the Kubernetes init container)"`
	WorkDir   string `flag:"work-dir" help:"directory for the fetched archive and unpacked build (created; empty: a new temp dir, removed at exit)"`

	Name       string   `flag:"name" help:"server name, the audience of the server tokens it admits (with the SDK: the GameServer name)"`
	ListenAddr string   `flag:"listen-addr" help:"UDP address players reach the server at (host:port); port 0 takes the GameServer status port named port-name"`
	PortName   string   `flag:"port-name" help:"GameServer status port that is the game port"`
	AdmitAddr  string   `flag:"admit-addr" help:"loopback address of the admit endpoint as the server sees it (inside the sandbox's network namespace)"`
	ServerArgs []string `flag:"server-args" help:"extra arguments for the game server (after -port=<port> -log)"`
	ServerLog  string   `flag:"server-log" help:"file receiving the game server's stdout and stderr (empty: the wrapper's stderr)"`

	Grace        time.Duration `flag:"grace" help:"after SIGTERM, how long the game server may take to exit before it is killed"`
	ReadyTimeout time.Duration `flag:"ready-timeout" help:"how long the game server may take to bind its UDP port"`
	Health       time.Duration `flag:"health-period" help:"Agones health ping period while the server lives"`
	SDK          bool          `flag:"sdk" help:"speak the Agones SDK (on by default when AGONES_SDK_GRPC_PORT is set)"`
	SDKAddr      string        `flag:"sdk-addr" help:"Agones SDK gRPC address (empty: from AGONES_SDK_GRPC_HOST/PORT)"`

	Sandbox         string        `flag:"sandbox" help:"gvisor (runsc in its own network namespace), pod (the pod runtime, Kata, is the sandbox; rendered Fleets set it) or none"`
	UnsafeNoSandbox bool          `flag:"unsafe-no-sandbox" help:"DEV ONLY: allow -sandbox=none, running an uploaded (untrusted) build as a plain process on this host"`
	Runsc           string        `flag:"runsc" help:"runsc binary"`
	RunscPlatform   string        `flag:"runsc-platform" help:"gVisor platform (ptrace works everywhere; systrap/kvm are faster where available)"`
	Mounts          []string      `flag:"mounts" help:"host directories bind-mounted read-only into the sandbox (shared libraries a dynamically linked server needs)"`
	MaxProcs        int           `flag:"max-procs" help:"most processes and threads the server may run (RLIMIT_NPROC inside the sandbox): a fork bomb stops here"`
	MaxClients      int           `flag:"max-clients" help:"most distinct player addresses relayed into the sandbox at once"`
	ClientIdle      time.Duration `flag:"client-idle" help:"a relayed player address silent this long is forgotten"`
	MaxMatch        time.Duration `flag:"max-match" help:"how long the match may run after its first player is admitted; then the game server is stopped (grace) and the GameServer shut down, so a build that keeps running after its match is never kept or reused (0: until the server exits)"`

	Limits builds.Limits        `prefix:"build-"`
	JWT    token.VerifierConfig `prefix:"jwt-"`
}

// Default returns the defaults: gVisor sandbox, 30 s grace, admit endpoint 127.0.0.1:7780.
func Default() Config {
	jwt := token.DefaultVerifierConfig()
	jwt.Audience = ""
	return Config{
		ListenAddr:    "0.0.0.0:0",
		PortName:      "default",
		AdmitAddr:     "127.0.0.1:7780",
		Grace:         30 * time.Second,
		ReadyTimeout:  5 * time.Minute,
		Health:        2 * time.Second,
		Sandbox:       SandboxGVisor,
		Runsc:         "runsc",
		RunscPlatform: "ptrace",
		Mounts:        []string{"/lib", "/lib64", "/usr/lib"},
		MaxProcs:      256,
		MaxClients:    1024,
		ClientIdle:    2 * time.Minute,
		MaxMatch:      2 * time.Hour,
		Limits:        builds.DefaultLimits(),
		JWT:           jwt,
	}
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Bucket == "" || c.Build == "" || c.Tenant == "" {
		errs = append(errs, errors.New("wrap: -bucket, -tenant and -build (sha256) are required"))
	}
	if c.Build != "" && !builds.ValidSHA256(c.Build) {
		errs = append(errs, fmt.Errorf("wrap: -build %q is not a sha256", c.Build))
	}
	switch c.Sandbox {
	case SandboxGVisor, SandboxPod:
	case SandboxNone:
		if !c.UnsafeNoSandbox {
			errs = append(errs, errors.New("wrap: refusing to run an uploaded build without a sandbox; -sandbox=none needs -unsafe-no-sandbox (development only)"))
		}
	default:
		errs = append(errs, fmt.Errorf("wrap: -sandbox %q: want %s, %s or %s", c.Sandbox, SandboxGVisor, SandboxPod, SandboxNone))
	}
	if c.Grace <= 0 || c.ReadyTimeout <= 0 || c.Health <= 0 {
		errs = append(errs, errors.New("wrap: -grace, -ready-timeout and -health-period must be positive"))
	}
	if c.MaxMatch < 0 {
		errs = append(errs, errors.New("wrap: -max-match must not be negative"))
	}
	if c.MaxProcs < 8 || c.MaxClients < 1 {
		errs = append(errs, errors.New("wrap: -max-procs must be at least 8 and -max-clients at least 1"))
	}
	return errors.Join(errs...)
}
