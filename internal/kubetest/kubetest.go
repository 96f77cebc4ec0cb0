package kubetest

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// AgonesCRDs is testdata/agones-crds.yaml: CRDs for agones.dev/v1 GameServer, GameServerSet,
// Fleet and autoscaling.agones.dev/v1 FleetAutoscaler, modelled on Agones' published schemas.
//
//go:embed testdata/agones-crds.yaml
var AgonesCRDs []byte

// AgonesCRDsPath returns the absolute path of testdata/agones-crds.yaml, for tools that take a
// file (helm, kubectl); AgonesCRDs holds the same bytes.
func AgonesCRDsPath() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "internal", "kubetest", "testdata", "agones-crds.yaml"), nil
}

// Env is a running control plane.
type Env struct {
	// Config reaches the API server as a cluster administrator.
	Config *rest.Config
	// Kube is a typed client for built-in resources.
	Kube kubernetes.Interface
	// Dynamic reaches any resource, the Agones CRDs included.
	Dynamic dynamic.Interface
	// KubeConfig is a kubeconfig file's contents for Config (for kubectl-like tools).
	KubeConfig []byte
}

type options struct {
	crdPaths []string
	crdYAML  [][]byte
	timeout  time.Duration
}

// Option adjusts Start.
type Option func(*options)

// WithCRDPaths installs the CRDs in these YAML/JSON files or directories before Start returns.
func WithCRDPaths(paths ...string) Option {
	return func(o *options) { o.crdPaths = append(o.crdPaths, paths...) }
}

// WithCRDYAML installs the CRDs in these YAML documents (several per document stream allowed).
func WithCRDYAML(docs ...[]byte) Option {
	return func(o *options) { o.crdYAML = append(o.crdYAML, docs...) }
}

// WithAgonesCRDs installs AgonesCRDs.
func WithAgonesCRDs() Option { return WithCRDYAML(AgonesCRDs) }

// WithStartTimeout bounds each component's start (default 90 s: generous for a loaded machine).
func WithStartTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// Start runs a fresh kube-apiserver + etcd for t, installs the requested CRDs and stops them on
// t.Cleanup. It fails t (never skips) when the control plane cannot be built or started.
func Start(t testing.TB, opts ...Option) *Env {
	t.Helper()
	e, stop, err := start(t.Logf, t.TempDir(), opts)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("kubetest: stop control plane: %v", err)
		}
	})
	return e
}

// StartShared is Start for a package's TestMain: one control plane that several tests share
// (tests then own the job of leaving no objects behind). The caller must call stop before exiting.
func StartShared(opts ...Option) (e *Env, stop func() error, err error) {
	dir, err := os.MkdirTemp("", "kubetest-crds")
	if err != nil {
		return nil, nil, fmt.Errorf("kubetest: %w", err)
	}
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	e, stopEnv, err := start(logf, dir, opts)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("kubetest: %w", err)
	}
	return e, func() error { defer os.RemoveAll(dir); return stopEnv() }, nil
}

func start(logf func(string, ...any), tmp string, opts []Option) (*Env, func() error, error) {
	o := options{timeout: 90 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	assets, err := Assets()
	if err != nil {
		return nil, nil, err
	}
	paths := append([]string(nil), o.crdPaths...)
	for i, doc := range o.crdYAML {
		p := filepath.Join(tmp, fmt.Sprintf("crds-%d.yaml", i))
		if err := os.WriteFile(p, doc, 0o600); err != nil {
			return nil, nil, err
		}
		paths = append(paths, p)
	}
	// envtest logs through controller-runtime's logger; unset, it prints a stack trace warning
	// into the test output after 30 s. Tests read the control plane's state, not its logs.
	ctrllog.SetLogger(logr.Discard())
	var env *envtest.Environment
	// One retry: envtest waits only 5 s for the default namespace, which a machine busy compiling
	// can miss; a second fresh control plane is the cheap fix.
	for attempt := 1; ; attempt++ {
		env = newEnvironment(assets, paths, o.timeout)
		_, err = env.Start()
		if err == nil {
			break
		}
		_ = env.Stop()
		if attempt == 2 {
			return nil, nil, fmt.Errorf("start control plane from %s: %w", assets, err)
		}
		logf("kubetest: control plane did not start (%v); retrying once", err)
	}
	cfg := rest.CopyConfig(env.Config)
	// Tests create objects in bursts; client-go's default 5 QPS would make them slow, not safer.
	cfg.QPS, cfg.Burst = 500, 1000
	kube, err := kubernetes.NewForConfig(cfg)
	if err == nil {
		var dyn dynamic.Interface
		if dyn, err = dynamic.NewForConfig(cfg); err == nil {
			return &Env{Config: cfg, Kube: kube, Dynamic: dyn, KubeConfig: env.KubeConfig}, env.Stop, nil
		}
	}
	return nil, nil, errors.Join(err, env.Stop())
}

func newEnvironment(assets string, crdPaths []string, timeout time.Duration) *envtest.Environment {
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        crdPaths,
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: timeout,
		ControlPlaneStopTimeout:  60 * time.Second,
	}
	env.CRDInstallOptions.MaxTime = timeout
	api := env.ControlPlane.GetAPIServer()
	args := api.Configure()
	// 1.37 refuses a loopback advertise address with the default endpoint reconciler; upstream's
	// integration tests turn it off the same way.
	args.Set("endpoint-reconciler-type", "none")
	// Advertise loopback explicitly: without it the apiserver looks for a default route, and a
	// network namespace with only lo (nodeoperator's tests) has none.
	args.Set("advertise-address", "127.0.0.1")
	// Without this, shutdown waits up to 60 s for clients holding watches.
	args.Set("shutdown-send-retry-after", "true")
	return env
}

// Assets returns the directory holding the kube-apiserver and etcd binaries: KUBEBUILDER_ASSETS
// when set, else what scripts/localkube.sh builds (once per process; cached across runs).
func Assets() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		for _, bin := range []string{"kube-apiserver", "etcd"} {
			if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
				return "", fmt.Errorf("KUBEBUILDER_ASSETS=%s has no %s (build it with scripts/localkube.sh): %w", dir, bin, err)
			}
		}
		return dir, nil
	}
	return buildAssets()
}

var buildAssets = sync.OnceValues(func() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	script := filepath.Join(root, "scripts", "localkube.sh")
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, script)
	cmd.Dir = root
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	fmt.Fprintln(os.Stderr, "kubetest: KUBEBUILDER_ASSETS is unset; running scripts/localkube.sh (a cold build takes ~10 min)")
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("KUBEBUILDER_ASSETS is unset and %s failed (%w); run it by hand to see why, then export KUBEBUILDER_ASSETS=$(%s):\n%s",
			script, err, script, tail(stderr.String(), 4000))
	}
	dir := strings.TrimSpace(stdout.String())
	if dir == "" {
		return "", fmt.Errorf("%s printed no directory", script)
	}
	return dir, nil
})

// RepoRoot finds kumi's repository root: the nearest directory above this source file or the
// working directory whose go.mod declares module github.com/kumi-dev/kumi.
func RepoRoot() (string, error) {
	var starts []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, dir := range starts {
		for d := dir; ; d = filepath.Dir(d) {
			mod, err := os.ReadFile(filepath.Join(d, "go.mod"))
			if err == nil && bytes.HasPrefix(mod, []byte("module github.com/kumi-dev/kumi\n")) {
				return d, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "", errors.New("kubetest: cannot find kumi's repository root (go.mod of github.com/kumi-dev/kumi) above the test")
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
