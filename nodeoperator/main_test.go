package nodeoperator

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/internal/kubetest"
	"github.com/kumi-dev/kumi/internal/loopback"
)

// The package's tests run in a network namespace of their own, made here: TestMain re-executes the
// test binary with CLONE_NEWNET (plus CLONE_NEWUSER when not root, which unprivileged user
// namespaces allow), and the child brings up only its loopback interface. The loopback tailnet
// (testcontrol, DERP, tsnet workers), the kube-apiserver + etcd and every httptest stand-in then
// live on a 127.0.0.1 that nothing outside can reach, and there is no route out: tsnet cannot
// phone home, upload logs or find Tailscale's public relays even if a knob were missed
// (TestNothingLeavesTheNamespace checks this).
const inNetnsEnv = "KUMI_NODEOPERATOR_TEST_NETNS"

var (
	// sharedKube and shared are set up by TestMain inside the namespace, one for the package: the
	// control plane and the tailnet cost seconds to start, and tsnet's knobs are process-wide.
	sharedKube *kubeAPI
	shared     *loopTailnet
)

func TestMain(m *testing.M) {
	if os.Getenv(inNetnsEnv) == "" {
		os.Exit(runInNetns())
	}
	os.Exit(mainInNetns(m))
}

// runInNetns re-executes the test binary, with the same flags, in a fresh network namespace and
// returns its exit code. The control-plane binaries are found (or built: scripts/localkube.sh
// needs the Go module proxy) out here, as internal/kubetest does for every package.
func runInNetns() int {
	assets, err := kubetest.Assets()
	if err != nil {
		fmt.Fprintf(os.Stderr, "nodeoperator tests need the kube-apiserver and etcd binaries: %v\n", err)
		return 1
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "nodeoperator tests: %v\n", err)
		return 1
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), inNetnsEnv+"=1", "KUBEBUILDER_ASSETS="+assets)
	attr := &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if uid, gid := os.Geteuid(), os.Getegid(); uid != 0 {
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}}
	}
	cmd.SysProcAttr = attr
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.ExitCode() > 0:
		return exit.ExitCode()
	case errors.As(err, &exit):
		fmt.Fprintf(os.Stderr, "nodeoperator tests: the test process in the network namespace died: %v\n", err)
		return 1
	default:
		fmt.Fprintf(os.Stderr, "nodeoperator tests: cannot start the tests in a new network namespace "+
			"(needs root, or unprivileged user namespaces: sysctl kernel.unprivileged_userns_clone=1): %v\n", err)
		return 1
	}
}

func mainInNetns(m *testing.M) int {
	if err := loopback.Up(); err != nil {
		fmt.Fprintf(os.Stderr, "nodeoperator tests: bring up lo in the test's network namespace: %v\n", err)
		return 1
	}
	var err error
	sharedKube, err = startKube()
	if err != nil {
		fmt.Fprintf(os.Stderr, "nodeoperator tests: real API server: %v\n", err)
		return 1
	}
	defer func() {
		if err := sharedKube.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "nodeoperator tests: stop the API server: %v\n", err)
		}
	}()
	dir, err := os.MkdirTemp("", "nodeoperator-tailnet")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	shared, err = newLoopTailnet(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nodeoperator tests: loopback tailnet:", err)
		return 1
	}
	defer shared.close()
	return m.Run()
}

// TestNothingLeavesTheNamespace: the tests' only interface is loopback, and the addresses tsnet
// would reach first without the loopback DERP map and knobs (Tailscale's control and log servers,
// a public DERP relay, a public DNS server) are unreachable.
func TestNothingLeavesTheNamespace(t *testing.T) {
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 {
			t.Errorf("interface %s (%v) in the test's network namespace; want loopback only", i.Name, i.Flags)
		}
	}
	for _, addr := range []string{"1.1.1.1:53", "8.8.8.8:443", "[2606:4700:4700::1111]:443", "192.168.1.1:80"} {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err == nil {
			c.Close()
			t.Errorf("dialled %s from the test's network namespace", addr)
			continue
		}
		// No route (or, for IPv6 on a kernel without it, no such address family): refused at
		// once, never a timeout that would mean packets went somewhere.
		if !errors.Is(err, syscall.ENETUNREACH) && !errors.Is(err, syscall.EAFNOSUPPORT) && !errors.Is(err, syscall.EADDRNOTAVAIL) {
			t.Errorf("dial %s: %v, want network unreachable", addr, err)
		}
	}
}
