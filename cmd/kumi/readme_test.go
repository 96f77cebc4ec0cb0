package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/internal/testport"
)

// defaultPort matches a 127.0.0.1:PORT address in the block.
var defaultPort = regexp.MustCompile(`127\.0\.0\.1:(\d+)`)

// TestReadmeComponentsBlock runs README.md's "Running components separately" block as a shell
// script from the repository root, so the documented commands cannot rot: the binary is built,
// keys and the control secret are made, every server starts in the background and the example
// client's two players must get an assignment, join and hear each other; then the block stops the
// servers itself. The one change made to the text is the port numbers: each default port becomes
// a free one, so the test does not collide with anything else on the machine. Every address in
// the block must be on 127.0.0.1, and no server may listen on another address (it is checked that
// no default port appears without a host).
func TestReadmeComponentsBlock(t *testing.T) {
	root := repoRoot(t)
	block := readmeBlockN(t, filepath.Join(root, "README.md"), "Running components separately", 0)
	ports := map[string]string{}
	for _, m := range defaultPort.FindAllStringSubmatch(block, -1) {
		if _, ok := ports[m[1]]; !ok {
			ports[m[1]] = freePort(t)
		}
	}
	if len(ports) < 8 {
		t.Fatalf("the block names %d loopback ports; every listener must be given a 127.0.0.1 address:\n%s", len(ports), block)
	}
	script := defaultPort.ReplaceAllStringFunc(block, func(a string) string {
		return "127.0.0.1:" + ports[strings.TrimPrefix(a, "127.0.0.1:")]
	})
	// Bare port flags (the director's --mmf-port) follow the same mapping.
	for def, free := range ports {
		script = regexp.MustCompile(`(--[a-z-]+-port) `+def+`\b`).ReplaceAllString(script, "${1} "+free)
	}
	for def := range ports {
		if regexp.MustCompile(`[ =:]` + def + `\b`).MatchString(script) {
			t.Fatalf("port %s left in the script after mapping (an address without 127.0.0.1?):\n%s", def, script)
		}
	}
	t.Logf("running:\n%s", script)

	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = root
	// Its own process group, so a failure or the timeout stops every background server with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 30 * time.Second
	cmd.Env = append(os.Environ(), "KUMI_LOG_LEVEL=warn", "GOFLAGS=-buildvcs=false")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // anything the block's kill missed
	if runErr != nil {
		t.Fatalf("the README block failed: %v\n%s", runErr, out.String())
	}
	got := out.String()
	// Two players, one session: each reports a leg, frames received from the other, and the summary.
	if n := strings.Count(got, "leg 1 (assignment): session "); n != 2 {
		t.Fatalf("want 2 players assigned, got %d:\n%s", n, got)
	}
	recv := regexp.MustCompile(`frames sent (\d+) received (\d+); ended: done`).FindAllStringSubmatch(got, -1)
	if len(recv) != 2 {
		t.Fatalf("want both players to finish their leg, got %d:\n%s", len(recv), got)
	}
	for _, m := range recv {
		if n, _ := strconv.Atoi(m[2]); n == 0 {
			t.Errorf("a player heard nothing from the other (%s):\n%s", m[0], got)
		}
	}
	if !strings.Contains(got, "summary of 2 players") {
		t.Errorf("no summary:\n%s", got)
	}
}

// freePort returns a port on 127.0.0.1 free for TCP and UDP (the game server uses its UDP twin).
func freePort(t *testing.T) string {
	t.Helper()
	return strconv.Itoa(testport.Free(t))
}
