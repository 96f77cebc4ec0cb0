package localfleet_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/gameserver/sdk"
	"github.com/kumi-dev/kumi/internal/serverid"
)

// childEnv makes the test binary act as a minimal game server when the fleet runs it.
const childEnv = "LOCALFLEET_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
	case "gameserver":
		os.Exit(runRealGameServer())
	case "fleet-parent":
		os.Exit(runFleetParent())
	default:
		os.Exit(runChild())
	}
	os.Exit(m.Run())
}

// runChild is a tiny real game server speaking the SDK: it reads its UDP port from
// GetGameServer, binds it, calls Ready and pings Health, and obeys datagram commands:
// "ping" → "pong <name>", "bootstrap" → its bootstrap secret, "stop-health", "exit" (crash), "shutdown" (SDK Shutdown),
// "ignore-term" (survive SIGTERM, to test the SIGKILL after the grace).
func runChild() int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // never outlive a test run
	defer cancel()
	fail := func(step string, err error) int {
		fmt.Fprintf(os.Stderr, "child: %s: %v\n", step, err)
		return 2
	}
	c, err := sdk.FromEnv(ctx)
	if err != nil {
		return fail("dial", err)
	}
	defer c.Close()
	gs, err := c.GetGameServer(ctx)
	if err != nil {
		return fail("GetGameServer", err)
	}
	name := gs.GetObjectMeta().GetName()
	port := gs.GetStatus().GetPorts()[0].GetPort()
	conn, err := net.ListenPacket("udp", fmt.Sprintf("%s:%d", gs.GetStatus().GetAddress(), port))
	if err != nil {
		return fail("listen", err)
	}
	defer conn.Close()
	healthCtx, stopHealth := context.WithCancel(ctx)
	defer stopHealth()
	go func() { _ = c.KeepHealthy(healthCtx, 20*time.Millisecond, nil) }()
	if err := c.Ready(ctx); err != nil {
		return fail("Ready", err)
	}
	ignoreTerm := make(chan bool, 1)
	ignoreTerm <- false
	go func() {
		for range sigs {
			ig := <-ignoreTerm
			ignoreTerm <- ig
			if !ig {
				os.Exit(0)
			}
		}
	}()
	buf := make([]byte, 512)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return fail("read", err)
		}
		reply := "ok"
		switch cmd := strings.TrimSpace(string(buf[:n])); cmd {
		case "ping":
			reply = "pong " + name
		case "bootstrap":
			reply = os.Getenv(serverid.EnvBootstrap)
		case "stop-health":
			stopHealth()
		case "exit":
			os.Exit(3)
		case "shutdown":
			// Reply first: the fleet answers Shutdown with SIGTERM, which may end us at once.
			_, _ = conn.WriteTo([]byte(reply), from)
			if err := c.Shutdown(ctx); err != nil {
				fmt.Fprintf(os.Stderr, "child: Shutdown: %v\n", err)
			}
			continue
		case "ignore-term":
			<-ignoreTerm
			ignoreTerm <- true
		default:
			reply = "unknown " + cmd
		}
		_, _ = conn.WriteTo([]byte(reply), from)
	}
}
