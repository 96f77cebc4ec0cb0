package localfleet_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kumi-dev/kumi/allocation"
	"github.com/kumi-dev/kumi/gameserver"
	"github.com/kumi-dev/kumi/internal/token"
)

// runRealGameServer runs kumi's real game server (the code behind `kumi gameserver`) in the child
// process, with the SDK on, its port taken from the GameServer status, and a throwaway token key.
func runRealGameServer() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute) // never outlive a test run
	defer cancel()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: key:", err)
		return 2
	}
	key, err := token.NewPublicKey("test", pub)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: key:", err)
		return 2
	}
	cfg := gameserver.Default()
	cfg.SDK = true
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.HealthPeriod = 20 * time.Millisecond
	cfg.DrainGrace = 0
	cfg.ExitWhenDrained = true
	cfg.Token.Keys = []token.PublicKey{key}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	s, err := gameserver.Start(ctx, log, cfg, prometheus.NewRegistry())
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: start:", err)
		return 2
	}
	if err := s.Wait(); err != nil {
		fmt.Fprintln(os.Stderr, "child: wait:", err)
		return 1
	}
	return 0
}

// TestRealGameServerDrainAndReplace runs the real game server under the fleet: it must become Ready
// through the SDK on the port the fleet gave it, and a drain label set at allocation makes it
// drain, call Shutdown and exit, after which the fleet deletes and replaces it.
func TestRealGameServerDrainAndReplace(t *testing.T) {
	cfg := fleetConfig(t)
	cfg.Env = []string{"LOCALFLEET_TEST_CHILD=gameserver", "GORACE=atexit_sleep_ms=0"}
	cfg.BufferSize = 1
	h := startFleet(t, cfg)
	h.until("1 Ready", readyN(1))
	list, _ := h.f.List(context.Background(), nil)
	gs := list[0]
	// The fleet's declared sessions capacity bounds what the server advertises.
	if c := gs.Counters[allocation.CounterSessions]; c.Capacity < 1 || c.Capacity > cfg.SessionCapacity {
		t.Errorf("sessions counter %+v, want a capacity in 1..%d", c, cfg.SessionCapacity)
	}
	// It listens on the UDP port the fleet put in its status.
	if c, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(gs.Ports[0].Port)))); err == nil {
		c.Close()
		t.Fatalf("port %d from the GameServer status is not bound by the game server", gs.Ports[0].Port)
	}
	pid := pidOf(t, h.f, gs.Name)

	st, err := h.f.Allocate(context.Background(), allocation.Spec{
		Metadata: &allocation.MetaPatch{Labels: map[string]string{allocation.LabelDrain: "true"}},
	})
	if err != nil || st.GameServerName != gs.Name {
		t.Fatalf("Allocate = %+v, %v", st, err)
	}
	if ev := h.waitDeleted(gs.Name); ev.Server.State != "Shutdown" {
		t.Errorf("drained server deleted in state %s, want Shutdown", ev.Server.State)
	}
	h.until("replacement Ready", func(l []allocation.GameServer) bool {
		return len(l) == 1 && l[0].Name != gs.Name && l[0].State == "Ready"
	})
	if !pidGone(pid) {
		t.Errorf("drained game server process %d not reaped", pid)
	}
}

// TestRealGameServerHangIsReplaced freezes the real game server (SIGSTOP): its health pings stop,
// its SDK endpoint marks it Unhealthy, and the fleet deletes it (the process is resumed to take
// its SIGTERM) and starts a replacement.
func TestRealGameServerHangIsReplaced(t *testing.T) {
	cfg := fleetConfig(t)
	cfg.Env = []string{"LOCALFLEET_TEST_CHILD=gameserver", "GORACE=atexit_sleep_ms=0"}
	cfg.BufferSize = 1
	h := startFleet(t, cfg)
	h.until("1 Ready", readyN(1))
	list, _ := h.f.List(context.Background(), nil)
	gs := list[0]
	pid := pidOf(t, h.f, gs.Name)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if ev := h.waitDeleted(gs.Name); ev.Server.State != "Unhealthy" {
		t.Errorf("hung server deleted in state %s, want Unhealthy", ev.Server.State)
	}
	if !pidGone(pid) {
		t.Errorf("hung process %d not reaped", pid)
	}
	h.until("replacement Ready", func(l []allocation.GameServer) bool {
		return len(l) == 1 && l[0].Name != gs.Name && l[0].State == "Ready"
	})
}
