package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/kumi-dev/kumi/allocation"
	"github.com/kumi-dev/kumi/director"
	"github.com/kumi-dev/kumi/director/agones"
	"github.com/kumi-dev/kumi/gameserver/localfleet"
	"github.com/kumi-dev/kumi/internal/config"
	"github.com/kumi-dev/kumi/internal/netaddr"
	"github.com/kumi-dev/kumi/internal/serverid"
	"github.com/kumi-dev/kumi/internal/telemetry"
	"github.com/kumi-dev/kumi/internal/token"
)

// directorFlags is `kumi director`'s command line: the director's config plus its backends'.
type directorFlags struct {
	Director    director.Config
	Backends    []string          `flag:"backends" help:"allocation backends: local (a fleet of kumi gameserver processes on this machine) and/or agones (GameServerAllocation through the Kubernetes API)"`
	MetricsAddr string            `flag:"metrics-addr" help:"serve Prometheus /metrics, /healthz and /readyz (200 only on the leading director) here (host:port; empty: off)"`
	Fleet       localfleet.Config `prefix:"fleet-"`
	Agones      agones.Config     `prefix:"agones-"`
	// BootstrapTokensFile lets hand-started game servers (adopted, -adopt-backend) register: no
	// backend vouches for them, so the operator does (internal/serverid TokenFile).
	BootstrapTokensFile string `flag:"bootstrap-tokens-file" help:"file of operator-issued bootstrap tokens of hand-started game servers, one 'server sha256:<hex of SHA-256(token)>' line each (SECURITY.md); the server presents its token with -director-bootstrap-file; re-read on change; empty: only backends' servers can register"`

	pubKeyFile string
	secretFile string // a control secret generated for this run's local fleet
}

// wireFleet points the local fleet's game servers at this director: its control address and the
// public key of its server tokens (written to a temporary file), unless -fleet-args already say.
func wireFleet(fl *directorFlags) error {
	// has reports whether -fleet-args already sets flag name, or any flag starting with name when
	// it ends in "-" (a flag family such as token-).
	has := func(name string) bool {
		for _, a := range fl.Fleet.Args {
			f, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if f == name || (strings.HasSuffix(name, "-") && strings.HasPrefix(f, name)) {
				return true
			}
		}
		return false
	}
	if !has("director") {
		// The game servers learn the address before the director starts: bind it now (a port 0
		// becomes the one the kernel gave) and hand the listener to the director.
		ln, err := net.Listen("tcp", fl.Director.ControlAddr)
		if err != nil {
			return fmt.Errorf("-control-addr: %w", err)
		}
		fl.Director.ControlListener = ln
		if _, port, _ := net.SplitHostPort(fl.Director.ControlAddr); port == "0" {
			fl.Director.ControlAddr = ln.Addr().String() // also keys the default lock file
		}
		fl.Fleet.Args = append(fl.Fleet.Args, "-director="+netaddr.Dialable(ln.Addr()))
	}
	if !has("director-secret-file") {
		// The fleet's game servers get the director's control secret; without one configured, a
		// fresh random one guards this machine's director.
		path := fl.Director.ControlSecretFile
		if path == "" {
			f, err := os.CreateTemp("", "kumi-director-*.secret")
			if err != nil {
				return err
			}
			_, werr := f.WriteString(rand.Text())
			if err := errors.Join(werr, f.Close()); err != nil {
				return fmt.Errorf("write the control secret for the fleet: %w", err)
			}
			path = f.Name()
			fl.Director.ControlSecretFile = path
			fl.secretFile = path
		}
		fl.Fleet.Args = append(fl.Fleet.Args, "-director-secret-file="+path)
	}
	if !has("token-") && fl.Director.TokenKeyFile != "" {
		s, err := token.LoadSigner(fl.Director.TokenKeyFile, fl.Director.TokenKID, fl.Director.TokenIssuer)
		if err != nil {
			return fmt.Errorf("-token-key: %w", err)
		}
		pem, err := token.MarshalPublicKeyPEM(s.PublicKey().Key)
		if err != nil {
			return err
		}
		f, err := os.CreateTemp("", "kumi-director-*.pub.pem")
		if err != nil {
			return err
		}
		_, werr := f.Write(pem)
		if err := errors.Join(werr, f.Close()); err != nil {
			return fmt.Errorf("write the token public key for the fleet: %w", err)
		}
		fl.pubKeyFile = f.Name()
		fl.Director.Signer = s
		fl.Fleet.Args = append(fl.Fleet.Args, "-token-public-keys="+s.KID()+"="+f.Name(), "-token-issuer="+s.Issuer())
	}
	return nil
}

func runDirector(ctx context.Context, log *slog.Logger, args []string) error {
	fl := directorFlags{Director: director.Default(), Backends: []string{"local"}, Fleet: localfleet.Default(), Agones: agones.DefaultConfig()}
	fs := flag.NewFlagSet("director", flag.ContinueOnError)
	if err := config.Bind(fs, "", &fl); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := addBootstrapTokens(&fl); err != nil {
		return err
	}
	if fl.Director.LockFile == "" && slices.Contains(fl.Backends, "local") {
		// One director per control address unless told otherwise (on Kubernetes the Lease does it).
		lf, err := director.DefaultLockFile(fl.Director.ControlAddr)
		if err != nil {
			return err
		}
		fl.Director.LockFile = lf
	}
	// The metrics server and the local fleet stop only when ctx ends: on any return, and first of
	// all on a start error, cancel it before waiting for them, or the command would hang.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reg := telemetry.NewRegistry()
	// Readiness (GET /readyz on -metrics-addr): only a director that placed its control API and
	// leads is ready, so a Service in front of two replicas sends game servers to the leader.
	var notReady atomic.Pointer[string]
	setNotReady := func(why string) { notReady.Store(&why) }
	setNotReady("starting")
	ms, err := telemetry.Serve(ctx, log, fl.MetricsAddr, reg, telemetry.WithReadiness(func() error {
		if why := notReady.Load(); why != nil {
			return errors.New(*why)
		}
		return nil
	}))
	if err != nil {
		return err
	}
	defer func() { cancel(); _ = ms.Wait() }()

	var backends []allocation.Backend
	var kube *agones.Backend
	for _, b := range fl.Backends {
		switch b {
		case "local":
			if err := wireFleet(&fl); err != nil {
				return err
			}
			defer os.Remove(fl.pubKeyFile)
			defer os.Remove(fl.secretFile)
			f, err := localfleet.Start(ctx, log.With("backend", "local"), fl.Fleet, reg)
			if err != nil {
				return fmt.Errorf("local fleet: %w", err)
			}
			defer func() { cancel(); _ = f.Wait() }()
			backends = append(backends, f)
		case "agones":
			config.Log(ctx, log, "agones", &fl.Agones)
			k, err := agones.New(fl.Agones, log)
			if err != nil {
				return err
			}
			if err := k.Register(reg); err != nil {
				return err
			}
			// The pool must plan for at least one Agones batch wait per allocation.
			fl.Director.Pool.LeadTime = max(fl.Director.Pool.LeadTime, fl.Agones.BatchWait)
			kube = k
			backends = append(backends, k)
		default:
			return fmt.Errorf("-backends: unknown backend %q (want local and/or agones)", b)
		}
	}
	if len(backends) == 0 || len(slices.Compact(slices.Sorted(slices.Values(fl.Backends)))) != len(fl.Backends) {
		return fmt.Errorf("-backends %v: name local and/or agones, each once", fl.Backends)
	}
	run := func(ctx context.Context) error {
		d, err := director.Start(ctx, log, fl.Director, reg, backends...)
		if err != nil {
			return err
		}
		notReady.Store(nil)
		defer setNotReady("stopped leading")
		return d.Wait()
	}
	if kube != nil && fl.Agones.LeaseName != "" {
		// On Kubernetes only the Lease holder places sessions (and serves the control API);
		// followers wait their turn, not ready.
		setNotReady("following: another replica holds Lease " + fl.Agones.LeaseName)
		// A replica that lost the Lease must have stopped placing before another can acquire it:
		// it gives up after renew-deadline, and the next leader waits lease-duration.
		if fence := fl.Agones.LeaseDuration - fl.Agones.RenewDeadline - fl.Agones.RetryPeriod; fl.Director.ShutdownGrace > fence {
			log.Info("shutdown grace capped so a deposed leader stops before the next one starts", "shutdown_grace", fence)
			fl.Director.ShutdownGrace = fence
		}
		return kube.LeadWith(ctx, log, run)
	}
	return run(ctx)
}

// addBootstrapTokens adds the verifier of -bootstrap-tokens-file, when set, to the director's.
func addBootstrapTokens(fl *directorFlags) error {
	if fl.BootstrapTokensFile == "" {
		return nil
	}
	tf, err := serverid.NewTokenFile(fl.BootstrapTokensFile)
	if err != nil {
		return fmt.Errorf("-bootstrap-tokens-file: %w", err)
	}
	fl.Director.Bootstrap = append(fl.Director.Bootstrap, tf)
	return nil
}
