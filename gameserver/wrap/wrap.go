package wrap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gocloud.dev/blob"

	"github.com/kumi-dev/kumi/builds"
	"github.com/kumi-dev/kumi/gameserver/sdk"
	"github.com/kumi-dev/kumi/internal/config"
	"github.com/kumi-dev/kumi/internal/token"
)

// EnvAdmitURL tells the wrapped server where PreLogin sends the player's `?token=`.
const EnvAdmitURL = "KUMI_ADMIT_URL"

// Annotation and label keys the wrapper sets through the SDK (Agones prefixes them agones.dev/sdk-).
const (
	LabelVersion      = "build-version"
	AnnotationBuild   = "build-sha256"
	AnnotationProject = "build-project"
)

// Wrapper is a running wrapped server.
type Wrapper struct {
	log      *slog.Logger
	cfg      Config
	manifest builds.Manifest
	port     int
	public   *net.UDPConn
	proc     process
	done     chan struct{}
	err      error
	ready    chan struct{}
	admitted <-chan struct{} // closed at the first player's admission
}

// Port is the public UDP game port.
func (w *Wrapper) Port() int { return w.port }

// Manifest is the build being run.
func (w *Wrapper) Manifest() builds.Manifest { return w.manifest }

// Ready is closed once the server has bound its UDP port (and SDK Ready was sent).
func (w *Wrapper) Ready() <-chan struct{} { return w.ready }

// Done is closed when the wrapper has finished (Wait then returns at once).
func (w *Wrapper) Done() <-chan struct{} { return w.done }

// Wait blocks until the wrapper has finished: the server exited and everything is cleaned up.
func (w *Wrapper) Wait() error { <-w.done; return w.err }

// SandboxID is the runsc container id ("" without a sandbox).
func (w *Wrapper) SandboxID() string {
	if g, ok := w.proc.(*gvisor); ok {
		return g.sandboxID()
	}
	return ""
}

// Run wraps the build until the server exits or ctx ends (then the server gets SIGTERM and Grace).
func Run(ctx context.Context, log *slog.Logger, cfg Config) error {
	w, err := Start(ctx, log, cfg)
	if err != nil {
		return err
	}
	return w.Wait()
}

// Start fetches and verifies the build, starts it (sandboxed unless told otherwise) and returns
// while it runs. ctx ending stops it.
func Start(ctx context.Context, log *slog.Logger, cfg Config) (w *Wrapper, err error) {
	config.Log(ctx, log, "gameserver wrap", cfg)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	if cfg.FetchOnly {
		if cfg.WorkDir == "" {
			return nil, errors.New("wrap: -fetch-only needs -work-dir")
		}
		if err := os.MkdirAll(cfg.WorkDir, 0o700); err != nil {
			return nil, err
		}
		bucket, err := blob.OpenBucket(ctx, cfg.Bucket)
		if err != nil {
			return nil, fmt.Errorf("wrap: bucket: %w", err)
		}
		defer bucket.Close()
		m, _, err := builds.Fetch(ctx, bucket, cfg.Tenant, cfg.Build, cfg.Limits, cfg.WorkDir)
		if err != nil {
			return nil, fmt.Errorf("wrap: build %s: %w", cfg.Build, err)
		}
		log.Info("build fetched and verified", "project", m.Project, "version", m.Version, "sha256", m.SHA256)
		w := &Wrapper{manifest: m, done: make(chan struct{}), ready: make(chan struct{})}
		close(w.done)
		return w, nil
	}
	var sdkc *sdk.Client
	if cfg.SDK {
		if cfg.SDKAddr != "" {
			sdkc, err = sdk.Dial(ctx, cfg.SDKAddr)
		} else {
			sdkc, err = sdk.FromEnv(ctx)
		}
		if err != nil {
			return nil, fmt.Errorf("wrap: Agones SDK: %w", err)
		}
		cleanup = append(cleanup, func() { sdkc.Close() })
	}
	listen, err := resolveListen(ctx, &cfg, sdkc)
	if err != nil {
		return nil, err
	}

	work := cfg.WorkDir
	if work == "" {
		if work, err = os.MkdirTemp("", "kumi-wrap-*"); err != nil {
			return nil, err
		}
		cleanup = append(cleanup, func() { os.RemoveAll(work) })
	} else if err := os.MkdirAll(work, 0o700); err != nil {
		return nil, err
	}
	var bucket *blob.Bucket
	if _, err := os.Stat(filepath.Join(work, "fetched.json")); err != nil { // else fetched by -fetch-only
		if bucket, err = blob.OpenBucket(ctx, cfg.Bucket); err != nil {
			return nil, fmt.Errorf("wrap: bucket: %w", err)
		}
		defer bucket.Close()
	}
	m, ep, err := builds.Fetch(ctx, bucket, cfg.Tenant, cfg.Build, cfg.Limits, work)
	if err != nil {
		return nil, fmt.Errorf("wrap: build %s: %w", cfg.Build, err)
	}
	log.Info("build fetched and verified", "project", m.Project, "version", m.Version, "sha256", m.SHA256, "entrypoint", ep)

	v, err := token.NewVerifier(ctx, cfg.JWT)
	if err != nil {
		return nil, fmt.Errorf("wrap: %w", err)
	}
	adm := newAdmitter(v, cfg.Name, "")

	pub, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(listen))
	if err != nil {
		return nil, fmt.Errorf("wrap: game port: %w", err)
	}
	port := pub.LocalAddr().(*net.UDPAddr).Port
	w = &Wrapper{log: log, cfg: cfg, manifest: m, port: port, public: pub, done: make(chan struct{}), ready: make(chan struct{}),
		admitted: adm.admitted}
	out := io.Writer(os.Stderr)
	if cfg.ServerLog != "" {
		f, err := os.OpenFile(cfg.ServerLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			pub.Close()
			return nil, err
		}
		cleanup = append(cleanup, func() { f.Close() })
		out = f
	}
	sp := spec{work: work, buildDir: filepath.Join(work, "root"), entrypoint: m.Entrypoint,
		args: append([]string{"-port=" + strconv.Itoa(port), "-log"}, cfg.ServerArgs...), out: out}

	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	var bound func() (bool, error)
	var admitLn net.Listener
	var ns *netns
	if cfg.Sandbox == SandboxGVisor {
		if ns, err = newNetns(); err != nil {
			stop()
			pub.Close()
			return nil, err
		}
		if err := ns.do(func() (err error) { admitLn, err = net.Listen("tcp", cfg.AdmitAddr); return err }); err != nil {
			ns.close()
			stop()
			pub.Close()
			return nil, fmt.Errorf("wrap: admit listener in the sandbox namespace: %w", err)
		}
		target := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
		r := &relay{log: log, pub: pub, target: target, max: cfg.MaxClients, idle: cfg.ClientIdle, clients: map[netip.AddrPort]*relayClient{},
			dial: func() (c *net.UDPConn, err error) {
				err = ns.do(func() error { c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(target)); return err })
				return c, err
			}}
		go r.run(runCtx)
		bound = func() (ok bool, err error) {
			err = ns.do(func() error { ok, err = udpBound("/proc/thread-self/net", port); return err })
			return ok, err
		}
	} else {
		if cfg.Sandbox == SandboxNone {
			log.Warn("RUNNING AN UPLOADED BUILD WITHOUT A SANDBOX (-unsafe-no-sandbox): it can read this host's files and reach its network")
		}
		pub.Close() // the server binds the game port itself
		if admitLn, err = net.Listen("tcp", cfg.AdmitAddr); err != nil {
			stop()
			return nil, fmt.Errorf("wrap: admit listener: %w", err)
		}
		// thread-self, not /proc/net (the thread group leader's view): if a sandbox's namespace
		// thread ever ran on the main thread, the runtime parks that thread in the sandbox's
		// namespace for good and /proc/net shows that namespace instead of the host's (a
		// benchmark running the gVisor case first then never saw this server bind). Threads
		// running unlocked goroutines are always in the host's namespace.
		bound = func() (bool, error) { return udpBound("/proc/thread-self/net", port) }
	}
	sp.env = []string{EnvAdmitURL + "=http://" + admitLn.Addr().String() + "/v1/admit"}
	admitSrv := &http.Server{Handler: adm, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = admitSrv.Serve(admitLn) }()

	if ns != nil {
		w.proc, err = startGVisor(ctx, log, cfg, ns, sp)
	} else {
		w.proc, err = startPlain(sp)
	}
	if err != nil {
		admitSrv.Close()
		stop()
		pub.Close()
		if ns != nil {
			ns.close()
		}
		return nil, err
	}
	go w.supervise(ctx, runCtx, stop, sdkc, bound, func() {
		admitSrv.Close()
		pub.Close()
		w.proc.kill()
		if ns != nil {
			ns.close()
		}
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	})
	return w, nil
}

// supervise drives the SDK around the server's life and stops it when ctx ends.
func (w *Wrapper) supervise(ctx, runCtx context.Context, stop context.CancelFunc, sdkc *sdk.Client, bound func() (bool, error), cleanup func()) {
	defer close(w.done)
	exited := make(chan error, 1)
	go func() { exited <- w.proc.wait() }()
	finish := func(err error) {
		stop()
		if sdkc != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if serr := sdkc.Shutdown(sctx); serr != nil {
				w.log.Warn("SDK Shutdown failed", "err", serr)
			}
			cancel()
		}
		cleanup()
		w.err = err
	}
	// Phase 1: until the UDP port is bound.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(w.cfg.ReadyTimeout)
	defer deadline.Stop()
wait:
	for {
		select {
		case err := <-exited:
			finish(fmt.Errorf("wrap: game server exited before binding UDP port %d: %v", w.port, err))
			return
		case <-ctx.Done():
			w.stopServer(exited)
			finish(nil)
			return
		case <-deadline.C:
			w.proc.kill()
			<-exited
			finish(fmt.Errorf("wrap: game server did not bind UDP port %d within %s (ready-timeout); does it honour -port=?", w.port, w.cfg.ReadyTimeout))
			return
		case <-tick.C:
			ok, err := bound()
			if err != nil {
				w.log.Warn("checking the game port", "err", err)
			}
			if ok {
				break wait
			}
		}
	}
	if sdkc != nil {
		m := w.manifest
		for _, kv := range [][3]string{{"label", LabelVersion, m.Version}, {"annotation", AnnotationBuild, m.SHA256}, {"annotation", AnnotationProject, m.Project}} {
			set := sdkc.SetAnnotation
			if kv[0] == "label" {
				set = sdkc.SetLabel
			}
			if err := set(runCtx, kv[1], kv[2]); err != nil {
				w.log.Warn("SDK metadata", "key", kv[1], "err", err)
			}
		}
		if err := sdkc.Ready(runCtx); err != nil {
			w.log.Error("SDK Ready failed", "err", err)
		}
		go func() {
			_ = sdkc.KeepHealthy(runCtx, w.cfg.Health, func(err error) { w.log.Warn("SDK health", "err", err) })
		}()
	}
	w.log.Info("game server ready", "port", w.port, "project", w.manifest.Project, "version", w.manifest.Version)
	close(w.ready)
	// Phase 2: the server lives until it exits, the wrapper stops, or its one match has run for
	// MaxMatch (an Unreal server goes back to its lobby map after a match instead of exiting: it
	// is stopped, so the GameServer is shut down and replaced, never reused or leaked).
	admitted, matchOver := w.admitted, (<-chan time.Time)(nil)
	for {
		select {
		case err := <-exited:
			if err != nil {
				w.log.Warn("game server exited", "err", err)
			} else {
				w.log.Info("game server exited")
			}
			finish(err)
			return
		case <-ctx.Done():
			w.stopServer(exited)
			finish(nil)
			return
		case <-admitted:
			admitted = nil
			if w.cfg.MaxMatch > 0 {
				t := time.NewTimer(w.cfg.MaxMatch)
				defer t.Stop()
				matchOver = t.C
			}
		case <-matchOver:
			w.log.Info("match over: max-match since the first admission; stopping the game server", "max_match", w.cfg.MaxMatch)
			w.stopServer(exited)
			finish(nil)
			return
		}
	}
}

// stopServer forwards SIGTERM and kills the server after the grace.
func (w *Wrapper) stopServer(exited <-chan error) {
	w.log.Info("stopping game server", "grace", w.cfg.Grace)
	w.proc.terminate()
	t := time.NewTimer(w.cfg.Grace)
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C:
		w.log.Warn("game server ignored SIGTERM for the grace; killing it", "grace", w.cfg.Grace)
		w.proc.kill()
		<-exited
	}
}

// resolveListen picks the public game address: the configured one, or with port 0 and the SDK the
// GameServer status port named cfg.PortName. It also fills cfg.Name from the GameServer.
func resolveListen(ctx context.Context, cfg *Config, sdkc *sdk.Client) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(cfg.ListenAddr)
	if err != nil {
		return ap, fmt.Errorf("wrap: -listen-addr %q: %w", cfg.ListenAddr, err)
	}
	if sdkc == nil {
		if cfg.Name == "" {
			return ap, errors.New("wrap: -name is required without the SDK (the audience of the server tokens)")
		}
		return ap, nil
	}
	gs, err := sdkc.GetGameServer(ctx)
	if err != nil {
		return ap, fmt.Errorf("wrap: GetGameServer: %w", err)
	}
	if cfg.Name == "" {
		cfg.Name = gs.GetObjectMeta().GetName()
	}
	if ap.Port() == 0 {
		for _, p := range gs.GetStatus().GetPorts() {
			if p.GetName() == cfg.PortName {
				return netip.AddrPortFrom(ap.Addr(), uint16(p.GetPort())), nil
			}
		}
		return ap, fmt.Errorf("wrap: the GameServer status has no port %q", cfg.PortName)
	}
	return ap, nil
}

// udpBound reports whether a UDP socket is bound to port, from procNet/udp and udp6 of the
// namespace the caller's thread is in.
func udpBound(procNet string, port int) (bool, error) {
	want := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"udp", "udp6"} {
		fh, err := os.Open(filepath.Join(procNet, f))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return false, err
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) > 2 && strings.HasSuffix(fields[1], want) {
				fh.Close()
				return true, nil
			}
		}
		fh.Close()
	}
	return false, nil
}
