package wrap

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// process is the running game server, sandboxed or not.
type process interface {
	// wait blocks until the server has exited, returning its exit error.
	wait() error
	// terminate asks the server to stop (SIGTERM).
	terminate()
	// kill ends the server and everything it started, and releases the sandbox.
	kill()
}

// spec is what to run.
type spec struct {
	work       string   // wrapper's work dir
	buildDir   string   // unpacked build (host path)
	entrypoint string   // relative to buildDir, slash separated
	args       []string // after the entrypoint
	env        []string
	out        io.Writer
}

// gvisor runs the server with `runsc run` from an OCI bundle the wrapper writes. What the server
// gets: a read-only root holding only the build (at /game), the configured library directories
// read-only, a fresh /proc and /tmp, everything writable only in an in-memory overlay (so Unreal
// can write Saved/ without touching the host), uid/gid 65534 with no capabilities and
// no_new_privs, RLIMIT_NPROC (a fork bomb stops there, inside gVisor), and as network the
// wrapper's namespace that holds nothing but loopback. The Sentry (gVisor's user-space kernel)
// answers the server's system calls, so a kernel bug reachable from the game binary is a gVisor
// bug, not a host one. runsc's own --network=host mode is used *inside* that namespace: the
// server's sockets are host sockets of the empty namespace, which lets the wrapper's relay and
// admit sockets (created there too) reach them, while no route leads anywhere else.
type gvisor struct {
	cfg  Config
	log  *slog.Logger
	id   string
	root string // runsc state dir
	ns   *netns
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// ociSpec is the subset of the OCI runtime spec the wrapper writes.
type ociSpec struct {
	OCIVersion string     `json:"ociVersion"`
	Process    ociProcess `json:"process"`
	Root       ociRoot    `json:"root"`
	Hostname   string     `json:"hostname"`
	Mounts     []ociMount `json:"mounts"`
	Linux      ociLinux   `json:"linux"`
}

type ociProcess struct {
	Terminal        bool                `json:"terminal"`
	User            map[string]int      `json:"user"`
	Args            []string            `json:"args"`
	Env             []string            `json:"env"`
	Cwd             string              `json:"cwd"`
	Capabilities    map[string][]string `json:"capabilities"`
	Rlimits         []ociRlimit         `json:"rlimits"`
	NoNewPrivileges bool                `json:"noNewPrivileges"`
}

type ociRlimit struct {
	Type string `json:"type"`
	Hard uint64 `json:"hard"`
	Soft uint64 `json:"soft"`
}

type ociRoot struct {
	Path     string `json:"path"`
	Readonly bool   `json:"readonly"`
}

type ociMount struct {
	Destination string   `json:"destination"`
	Type        string   `json:"type"`
	Source      string   `json:"source"`
	Options     []string `json:"options,omitempty"`
}

type ociLinux struct {
	Namespaces []map[string]string `json:"namespaces"`
}

// bundle writes the OCI bundle (config.json + an empty rootfs with mount points).
func (g *gvisor) bundle(s spec) (string, error) {
	dir := filepath.Join(s.work, "bundle")
	rootfs := filepath.Join(dir, "rootfs")
	mounts := []ociMount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "size=256m"}},
		{Destination: "/game", Type: "bind", Source: s.buildDir, Options: []string{"rbind", "ro", "nosuid", "nodev"}},
	}
	for _, m := range g.cfg.Mounts {
		if fi, err := os.Stat(m); err != nil || !fi.IsDir() {
			continue // absent on this host (e.g. /lib64 on some distributions)
		}
		mounts = append(mounts, ociMount{Destination: m, Type: "bind", Source: m, Options: []string{"rbind", "ro", "nosuid", "nodev"}})
	}
	for _, m := range mounts {
		if err := os.MkdirAll(filepath.Join(rootfs, m.Destination), 0o755); err != nil {
			return "", fmt.Errorf("wrap: bundle: %w", err)
		}
	}
	sp := ociSpec{
		OCIVersion: "1.0.2",
		Process: ociProcess{
			User: map[string]int{"uid": 65534, "gid": 65534},
			Args: append([]string{"/game/" + s.entrypoint}, s.args...),
			Env:  append([]string{"PATH=/usr/bin:/bin", "HOME=/tmp"}, s.env...),
			Cwd:  "/game/" + strings.SplitN(s.entrypoint, "/", 2)[0],
			Capabilities: map[string][]string{
				"bounding": {}, "effective": {}, "inheritable": {}, "permitted": {}, "ambient": {},
			},
			Rlimits: []ociRlimit{
				{Type: "RLIMIT_NPROC", Hard: uint64(g.cfg.MaxProcs), Soft: uint64(g.cfg.MaxProcs)},
				{Type: "RLIMIT_NOFILE", Hard: 65536, Soft: 65536},
			},
			NoNewPrivileges: true,
		},
		Root:     ociRoot{Path: "rootfs", Readonly: true},
		Hostname: "game",
		Mounts:   mounts,
		// No network entry: runsc --network=host uses the namespace runsc is started in, the
		// wrapper's loopback-only one.
		Linux: ociLinux{Namespaces: []map[string]string{{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}}},
	}
	data, _ := json.MarshalIndent(sp, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		return "", fmt.Errorf("wrap: bundle: %w", err)
	}
	return dir, nil
}

func (g *gvisor) runsc(args ...string) []string {
	return append([]string{g.cfg.Runsc, "--root", g.root, "--network=host", "--platform=" + g.cfg.RunscPlatform,
		"--overlay2=all:memory", "--ignore-cgroups"}, args...)
}

// startGVisor starts the server under runsc inside ns.
func startGVisor(ctx context.Context, log *slog.Logger, cfg Config, ns *netns, s spec) (*gvisor, error) {
	if _, err := exec.LookPath(cfg.Runsc); err != nil {
		return nil, fmt.Errorf("wrap: gVisor's runsc not found (%w); install it (Debian: apt-get install runsc, or scripts/tools.d/50-runsc.sh)", err)
	}
	g := &gvisor{cfg: cfg, log: log, id: "kumi-" + strings.ToLower(rand.Text()[:16]), root: filepath.Join(s.work, "runsc"), ns: ns, done: make(chan struct{})}
	bundle, err := g.bundle(s)
	if err != nil {
		return nil, err
	}
	argv := g.runsc("run", "--bundle", bundle, g.id)
	g.cmd = exec.Command(argv[0], argv[1:]...)
	g.cmd.Stdout, g.cmd.Stderr = s.out, s.out
	// runsc run stays in the foreground for the container's life; if the wrapper dies, the kernel
	// kills runsc (Pdeathsig), which takes the sandbox and every process in it down.
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := ns.do(g.cmd.Start); err != nil {
		return nil, fmt.Errorf("wrap: starting runsc: %w", err)
	}
	log.Info("game server started in gVisor", "sandbox", g.id, "runsc_pid", g.cmd.Process.Pid)
	go func() {
		g.err = g.cmd.Wait()
		close(g.done)
	}()
	return g, nil
}

func (g *gvisor) wait() error { <-g.done; return g.err }

// ID is the sandbox id (runsc container id).
func (g *gvisor) sandboxID() string { return g.id }

// control runs a runsc control command. It must run inside the namespace: runsc reaches the
// sandbox over an abstract unix socket, and those belong to a network namespace.
func (g *gvisor) control(args ...string) ([]byte, error) {
	argv := g.runsc(args...)
	var out []byte
	err := g.ns.do(func() (err error) {
		out, err = exec.Command(argv[0], argv[1:]...).CombinedOutput()
		return err
	})
	return out, err
}

func (g *gvisor) terminate() {
	if out, err := g.control("kill", g.id, "TERM"); err != nil {
		// Fall back to signalling runsc, which forwards signals to the container.
		g.log.Debug("runsc kill TERM", "err", err, "out", string(out))
		_ = g.cmd.Process.Signal(syscall.SIGTERM)
	}
}

func (g *gvisor) kill() {
	select {
	case <-g.done:
	default:
		_, _ = g.control("kill", "--all", g.id, "KILL")
		select {
		case <-g.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
			<-g.done
		}
	}
	if out, err := g.control("delete", "--force", g.id); err != nil && !strings.Contains(string(out), "not found") {
		g.log.Debug("runsc delete", "err", err, "out", string(out))
	}
	// The gofer and sandbox processes are runsc's children in its process group.
	_ = syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
}

// plain runs the server as an ordinary child process (UnsafeNoSandbox only): in its own process
// group, killed as a group, but with the wrapper's network, files and user.
type plain struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startPlain(s spec) (*plain, error) {
	p := &plain{done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(s.buildDir, filepath.FromSlash(s.entrypoint)), s.args...)
	p.cmd.Dir = filepath.Join(s.buildDir, strings.SplitN(s.entrypoint, "/", 2)[0])
	p.cmd.Env = append(os.Environ(), s.env...)
	p.cmd.Stdout, p.cmd.Stderr = s.out, s.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("wrap: starting server: %w", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *plain) wait() error { <-p.done; return p.err }
func (p *plain) terminate()  { _ = p.cmd.Process.Signal(syscall.SIGTERM) }
func (p *plain) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}
