package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/builds"
	"github.com/kumi-dev/kumi/internal/loopback"
)

// unrealSection is the README section both tests below run the blocks of.
const unrealSection = "Run your Unreal server on kumi"

// netnsShellEnv turns this test binary into a shell launcher (see init): started in a new network
// namespace, it brings that namespace's loopback up and execs bash with its arguments. The
// namespace is made by the kernel for the child (Cloneflags), never by a thread of the test
// process, whose /proc/net must keep showing the host's namespace.
const netnsShellEnv = "KUMI_TEST_README_NETNS_SHELL"

func init() {
	if os.Getenv(netnsShellEnv) != "1" {
		return
	}
	os.Unsetenv(netnsShellEnv)
	if err := loopback.Up(); err != nil {
		fmt.Fprintln(os.Stderr, "readme test:", err)
		os.Exit(2)
	}
	bash, err := exec.LookPath("bash")
	if err == nil {
		err = syscall.Exec(bash, append([]string{"bash"}, os.Args[1:]...), os.Environ())
	}
	fmt.Fprintln(os.Stderr, "readme test: exec bash:", err)
	os.Exit(2)
}

// repoRoot is the repository root: the tests run in cmd/kumi.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// readmeBlockN returns the n-th (from 0) ```bash block of the README section titled heading; the
// section ends at the next "## " heading.
func readmeBlockN(t *testing.T, readme, heading string, n int) string {
	t.Helper()
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## "+heading+"\n")
	if i < 0 {
		t.Fatalf("%s has no section %q", readme, heading)
	}
	s = s[i+1:]
	if next := strings.Index(s, "\n## "); next >= 0 {
		s = s[:next+1]
	}
	for k := 0; ; k++ {
		start := strings.Index(s, "\n```bash\n")
		if start < 0 {
			t.Fatalf("section %q has %d ```bash blocks, want block %d", heading, k, n+1)
		}
		s = s[start+len("\n```bash\n"):]
		end := strings.Index(s, "\n```")
		if end < 0 {
			t.Fatalf("section %q: unterminated ```bash block", heading)
		}
		if k == n {
			return s[:end+1]
		}
		s = s[end+len("\n```"):]
	}
}

// needRunsc fails the test when gVisor is missing: both blocks run the build under it.
func needRunsc(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("runsc"); err != nil {
		t.Fatal("gVisor's runsc is not installed: run `apt-get install runsc` (scripts/tools.d/50-runsc.sh does it for make test); the README block runs the build under it")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the README block runs the build under gVisor in a network namespace of its own, which needs root (CI runs as root): run the tests as root")
	}
}

// readmeScript is one README block run as a bash script from the repository root.
type readmeScript struct {
	root, script string
	// tmp is the script's TMPDIR (the wrappers' work dirs, kumi local's key dir).
	tmp string
	// netns runs the script in a network namespace of its own holding only loopback.
	netns   bool
	timeout time.Duration
}

// errOutlived is returned when a process the script started still held its output after it ended.
var errOutlived = errors.New("a process the block started was still running after the script ended")

// run runs the script with bash -euo pipefail in its own process group, which it kills when the
// script ends or the timeout passes, logs how long it took and its output, and returns the
// output (stdout and stderr).
func (r readmeScript) run(t *testing.T) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), r.timeout)
	defer cancel()
	args := []string{"-euo", "pipefail", "-c", r.script}
	var cmd *exec.Cmd
	if r.netns {
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd = exec.CommandContext(ctx, exe, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Cloneflags: syscall.CLONE_NEWNET}
	} else {
		cmd = exec.CommandContext(ctx, "bash", args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	cmd.Dir = r.root
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// The output pipe closes once every process holding it (the background servers too) is gone:
	// the block's own kill must have stopped them by then.
	cmd.WaitDelay = time.Minute
	cmd.Env = readmeEnv(r.tmp, r.netns)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // anything the block's kill missed
	}
	switch {
	case errors.Is(err, exec.ErrWaitDelay):
		err = fmt.Errorf("%w (its stdout stayed open %v after the script exited 0)", errOutlived, cmd.WaitDelay)
	case err != nil && ctx.Err() != nil:
		err = fmt.Errorf("%w: timed out after %v", err, r.timeout)
	}
	t.Logf("the script took %v; its output:\n%s", took.Round(time.Millisecond), out.String())
	return out.String(), err
}

// readmeEnv is the test's environment for a block, less what would change what the block does:
// the log level (the block waits for an info line), the Agones SDK (the wrapper would speak it)
// and this binary's own modes.
func readmeEnv(tmp string, netns bool) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "KUMI_LOG_LEVEL", k == asKumiEnv, k == netnsShellEnv, strings.HasPrefix(k, "AGONES_SDK_"):
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "GOFLAGS=-buildvcs=false", "TMPDIR="+tmp)
	if netns {
		env = append(env, netnsShellEnv+"=1")
	}
	return env
}

// tailFiles returns the last lines of each file matching the globs, for a failure message.
func tailFiles(globs ...string) string {
	var b strings.Builder
	for _, g := range globs {
		paths, _ := filepath.Glob(g)
		for _, p := range paths {
			data, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
			lines = lines[max(0, len(lines)-40):]
			fmt.Fprintf(&b, "\n--- tail of %s:\n%s\n", p, strings.Join(lines, "\n"))
		}
	}
	return b.String()
}

// loopbackAddr matches a 127.0.0.1 address in a block: host:port, or bash's /dev/udp/host/port.
var loopbackAddr = regexp.MustCompile(`127\.0\.0\.1([:/])(\d+)`)

// freeLoopbackPorts returns block with every 127.0.0.1 port (loopbackAddr) replaced by a free one,
// and the mapping, default → free; a default port still in the script after that (an address
// without 127.0.0.1) fails the test.
func freeLoopbackPorts(t *testing.T, block string) (string, map[string]string) {
	t.Helper()
	ports := map[string]string{}
	for _, m := range loopbackAddr.FindAllStringSubmatch(block, -1) {
		if _, ok := ports[m[2]]; !ok {
			ports[m[2]] = freePort(t)
		}
	}
	script := loopbackAddr.ReplaceAllStringFunc(block, func(a string) string {
		m := loopbackAddr.FindStringSubmatch(a)
		return "127.0.0.1" + m[1] + ports[m[2]]
	})
	for def := range ports {
		if regexp.MustCompile(`[ =:/]` + def + `\b`).MatchString(script) {
			t.Fatalf("port %s left in the script after mapping (an address without 127.0.0.1?):\n%s", def, script)
		}
	}
	return script, ports
}

// TestReadmeUnrealFakeServerBlock runs the first block of README.md's "Run your Unreal server on
// kumi" as a bash script from the repository root: kumi and the fake Unreal server are built, the
// builds API starts in the background, the build directory is uploaded with a developer token,
// `kumi gameserver wrap` fetches it by sha256 and runs it under gVisor, and a player's
// `HELLO ?token=<server token>` over UDP must be answered `WELCOME alice match-1`; then the block
// stops both servers itself, and they must be gone. The only changes made to the text: every
// 127.0.0.1 port becomes a free one, and /tmp/kumi-demo a temporary directory. So the block must
// give every listener (the builds API's included, whose default 127.0.0.1:8090 the test could
// collide on) a 127.0.0.1 address.
func TestReadmeUnrealFakeServerBlock(t *testing.T) {
	needRunsc(t)
	root := repoRoot(t)
	block := readmeBlockN(t, filepath.Join(root, "README.md"), unrealSection, 0)
	const demo = "/tmp/kumi-demo"
	if !strings.Contains(block, demo) {
		t.Fatalf("the block no longer works in %s:\n%s", demo, block)
	}
	// The builds API and its upload client must be pinned, or they would use the default port.
	_, apiPort, err := net.SplitHostPort(builds.Default().HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`--http-addr[ =]127\.0\.0\.1:` + apiPort + `\b`, `--url[ =]http://127\.0\.0\.1:` + apiPort + `\b`} {
		if !regexp.MustCompile(want).MatchString(block) {
			t.Fatalf("the block must pass the builds API's address explicitly (%s), so it can run on a free port:\n%s", want, block)
		}
	}
	script, ports := freeLoopbackPorts(t, block)
	if len(ports) < 2 {
		t.Fatalf("want the builds API's and the game's ports in the block, got %v:\n%s", ports, block)
	}
	dir := t.TempDir()
	script = strings.ReplaceAll(script, demo, dir)
	t.Logf("running:\n%s", script)

	tmp := t.TempDir()
	out, err := readmeScript{root: root, script: script, tmp: tmp, timeout: 8 * time.Minute}.run(t)
	logs := func() string { return tailFiles(filepath.Join(dir, "*.log")) }
	if err != nil {
		t.Fatalf("the README block failed: %v\n%s%s", err, out, logs())
	}
	if !strings.Contains(out, "WELCOME alice match-1") {
		t.Fatalf("no `WELCOME alice match-1` from the game server:\n%s%s", out, logs())
	}
}

// TestReadmeUnrealLocalBuildBlock runs the second block of the section: the fake Unreal server is
// packed as a build archive and `go run ./cmd/kumi local --build <archive>` uploads it, serves its
// matches under gVisor and plays them; it must exit 0 by itself, every player admitted by a build
// server. The only change made to the text is /tmp/kumi-game becoming a temporary directory.
// `kumi local` listens on its ten default ports (the block names none, and "let kumi local do
// all of it" is the point of the block), so the script runs in a network namespace of its own
// whose loopback holds nothing else: the defaults are free there, whatever runs on the machine.
func TestReadmeUnrealLocalBuildBlock(t *testing.T) {
	needRunsc(t)
	root := repoRoot(t)
	block := readmeBlockN(t, filepath.Join(root, "README.md"), unrealSection, 1)
	const game = "/tmp/kumi-game"
	if !strings.Contains(block, game) || !strings.Contains(block, "kumi local --build") {
		t.Fatalf("the block is no longer `kumi local --build` on an archive in %s:\n%s", game, block)
	}
	script := strings.ReplaceAll(block, game, t.TempDir())
	t.Logf("running:\n%s", script)

	tmp := t.TempDir()
	out, err := readmeScript{root: root, script: script, tmp: tmp, netns: true, timeout: 8 * time.Minute}.run(t)
	// kumi local keeps its key dir (and the log in it) when it fails.
	logs := func() string { return tailFiles(filepath.Join(tmp, "kumi-local-*", "kumi.log")) }
	if err != nil {
		t.Fatalf("the README block failed: %v\n%s%s", err, out, logs())
	}
	if !regexp.MustCompile(`(?m)^build Duel \S+ \(sha256 [0-9a-f]{12}, \d+ bytes\) uploaded in `).MatchString(out) {
		t.Fatalf("no `build Duel ... uploaded` line:\n%s%s", out, logs())
	}
	for _, want := range []string{"uploaded → first server Ready", "uploaded → first match served"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q line (the README promises both times):\n%s", want, out)
		}
	}
	m := regexp.MustCompile(`players admitted by the build +(\d+) of (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no `players admitted by the build` line:\n%s%s", out, logs())
	}
	admitted, _ := strconv.Atoi(m[1])
	players, _ := strconv.Atoi(m[2])
	if admitted == 0 || admitted != players || strings.Contains(out, "  failed: ") {
		t.Fatalf("want every player admitted by the build's servers, got %d of %d:\n%s%s", admitted, players, out, logs())
	}
}
