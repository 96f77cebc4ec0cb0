package gameserver

import (
	"context"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/allocation"
	sdkpb "github.com/kumi-dev/kumi/api/agones/sdk"
	"github.com/kumi-dev/kumi/gameserver/client"
	"github.com/kumi-dev/kumi/gameserver/localsdk"
	"github.com/kumi-dev/kumi/gameserver/sdk"
	"github.com/kumi-dev/kumi/gameserver/wire"
)

// freeUDPPort finds a port for the GameServer status to name (Passthrough-style: the server
// learns its port from the SDK).
func freeUDPPort(t *testing.T) int32 {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return int32(c.LocalAddr().(*net.UDPAddr).Port)
}

// TestAgonesSDK runs the server against the local SDK server over real gRPC: name and port from
// GetGameServer, Ready, the sessions counter, drain on the kumi.dev/drain label, Shutdown.
func TestAgonesSDK(t *testing.T) {
	signer := newSigner(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lcfg := localsdk.Default()
	lcfg.ListenAddr = "127.0.0.1:0"
	lcfg.Name = "gs-sdk-7"
	lcfg.ReadyDelay = 0
	// Without pings the local SDK marks the server Unhealthy 100 ms + 3 × 200 ms after start, well
	// inside the 800 ms the test watches below; with pings every 100 ms, a loaded machine would
	// have to stall the pinger for 600 ms to fail it.
	lcfg.Health.InitialDelay = 100 * time.Millisecond
	lcfg.Health.Period = 200 * time.Millisecond
	lcfg.Health.FailureThreshold = 3
	port := freeUDPPort(t)
	lcfg.Ports = []allocation.Port{{Name: "default", Port: port}}
	lcfg.Counters = map[string]allocation.CounterStatus{allocation.CounterSessions: {Count: 0, Capacity: 30}}
	lsdk, err := localsdk.Start(ctx, testLog(t), lcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = lsdk.Wait() })
	sc, err := sdk.Dial(ctx, lsdk.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })

	cfg := testConfig("")
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.Capacity = 50
	cfg.DrainGrace = 100 * time.Millisecond
	rec := &recordingSDK{SDK: sc}
	s := startServer(t, cfg, signer, WithSDK(rec))
	if s.Name() != "gs-sdk-7" {
		t.Fatalf("name %q", s.Name())
	}
	if _, p, _ := net.SplitHostPort(s.Addr()); p != strconv.Itoa(int(port)) {
		t.Fatalf("listening on %s, want port %d from the GameServer status", s.Addr(), port)
	}
	counter := func() *sdkpb.GameServer_Status_CounterStatus {
		return lsdk.GameServer().GetStatus().GetCounters()[allocation.CounterSessions]
	}
	eventually(t, 30*time.Second, "Ready", func() bool { return lsdk.GameServer().GetStatus().GetState() == localsdk.StateReady })
	// The GameServer declares 30: the server never advertises more than that.
	if c := counter(); c.GetCapacity() != 30 || s.cfg.Capacity != 30 {
		t.Fatalf("counter %v, capacity %d", c, s.cfg.Capacity)
	}
	c1 := dial(t, s, mint(t, signer, "gs-sdk-7", "s1", "p1", time.Minute))
	dial(t, s, mint(t, signer, "gs-sdk-7", "s2", "p2", time.Minute))
	eventually(t, 30*time.Second, "counter = 2", func() bool { return counter().GetCount() == 2 })
	// Health pings (every 100 ms) keep it Ready well past the point where silence would have
	// made it Unhealthy; this bounded wait is the assertion, not a synchronisation.
	<-time.After(800 * time.Millisecond)
	if st := lsdk.GameServer().GetStatus().GetState(); st != localsdk.StateReady {
		t.Fatalf("state %s after 800 ms of health pings, want Ready", st)
	}

	if _, err := lsdk.Update(func(gs *sdkpb.GameServer) error {
		if gs.ObjectMeta.Labels == nil {
			gs.ObjectMeta.Labels = map[string]string{}
		}
		gs.ObjectMeta.Labels[allocation.LabelDrain] = "true"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "capacity lowered to count", func() bool { return counter().GetCapacity() == 2 })
	if e := recvKind(t, c1, client.EventReconnect); e.Code != wire.ReconnectDrain {
		t.Fatalf("got %+v", e)
	}
	select {
	case <-s.Drained():
	case <-time.After(30 * time.Second):
		t.Fatal("not drained")
	}
	eventually(t, 30*time.Second, "Shutdown", func() bool { return lsdk.GameServer().GetStatus().GetState() == localsdk.StateShutdown })
	// No counter write may follow Shutdown (the sidecar would apply it to a GameServer going away).
	calls := rec.calls()
	shut := slices.Index(calls, "Shutdown")
	if shut < 1 || slices.Contains(calls[shut+1:], "SetCounterCount") || calls[shut-1] != "SetCounterCount" {
		t.Fatalf("SDK calls %v: want the final counter write right before Shutdown and none after", calls)
	}
}

// recordingSDK records the order of the SDK calls that change the GameServer.
type recordingSDK struct {
	SDK
	mu  sync.Mutex
	log []string
}

func (r *recordingSDK) note(call string) {
	r.mu.Lock()
	r.log = append(r.log, call)
	r.mu.Unlock()
}

func (r *recordingSDK) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log)
}

func (r *recordingSDK) Shutdown(ctx context.Context) error {
	r.note("Shutdown")
	return r.SDK.Shutdown(ctx)
}

func (r *recordingSDK) SetCounterCount(ctx context.Context, name string, n int64) error {
	r.note("SetCounterCount")
	return r.SDK.SetCounterCount(ctx, name, n)
}

func (r *recordingSDK) SetCounterCapacity(ctx context.Context, name string, n int64) error {
	r.note("SetCounterCapacity")
	return r.SDK.SetCounterCapacity(ctx, name, n)
}
