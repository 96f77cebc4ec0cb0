package localfleet_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/gameserver/localfleet"
	"github.com/kumi-dev/kumi/gameserver/localsdk"
)

// runFleetParent runs a fleet of two test children, prints their PIDs once both are Ready, and
// waits to be killed.
func runFleetParent() int {
	exe, err := os.Executable()
	if err != nil {
		return 2
	}
	cfg := localfleet.Default()
	cfg.Name = "orphans"
	cfg.Command = []string{exe}
	cfg.Env = []string{"LOCALFLEET_TEST_CHILD=1", "GORACE=atexit_sleep_ms=0"}
	cfg.BufferSize = 2
	cfg.Health = localsdk.Health{Period: time.Second, FailureThreshold: 3, InitialDelay: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f, err := localfleet.Start(ctx, slog.New(slog.DiscardHandler), cfg, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "parent:", err)
		return 2
	}
	events, err := f.Watch(ctx, nil)
	if err != nil {
		return 2
	}
	for range events {
		list, _ := f.List(ctx, nil)
		if count(list, "Ready") == 2 {
			var pids []string
			for _, s := range f.Servers() {
				pids = append(pids, strconv.Itoa(s.PID))
			}
			fmt.Println(strings.Join(pids, " "))
			break
		}
	}
	<-ctx.Done()
	return 0
}

// gone reports whether pid no longer runs (absent, or a zombie waiting for its new parent to reap).
func gone(pid int) bool {
	if pidGone(pid) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// Format: pid (comm) state ...
	rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
	return strings.HasPrefix(strings.TrimSpace(rest), "Z")
}

// TestNoOrphansWhenFleetProcessDies SIGKILLs a process running a fleet: the kernel's parent-death
// signal must take its game-server children down with it.
func TestNoOrphansWhenFleetProcessDies(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	parent := exec.CommandContext(ctx, exe)
	parent.Env = append(os.Environ(), "LOCALFLEET_TEST_CHILD=fleet-parent", "GORACE=atexit_sleep_ms=0")
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = parent.Process.Kill()
		_ = parent.Wait()
		t.Fatalf("reading the children's PIDs: %v", err)
	}
	var pids []int
	for _, f := range strings.Fields(line) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("bad PID %q", f)
		}
		pids = append(pids, pid)
	}
	if len(pids) != 2 {
		t.Fatalf("PIDs %v, want 2", pids)
	}
	if err := parent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = parent.Wait()
	// The children are not ours, so there is nothing to wait on: poll until the kernel has killed them.
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for !gone(pid) {
			if time.Now().After(deadline) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				t.Fatalf("child %d outlived its killed fleet process", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
