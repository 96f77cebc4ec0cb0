package sdk_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/allocation"
	sdkpb "github.com/kumi-dev/kumi/api/agones/sdk"
	"github.com/kumi-dev/kumi/gameserver/localsdk"
	"github.com/kumi-dev/kumi/gameserver/sdk"
)

// EnvSDKAddr points TestGameServerLifecycle at an external Agones SDK server (host:port of its
// gRPC port), like the conformance suite's KUMI_OM_* variables, e.g. the real sidecar run as
//
//	sdk-server --local --file gameserver.yaml   # a GameServer declaring counter "sessions" (capacity ≥ 10)
//	KUMI_SDK_ADDR=127.0.0.1:9357 go test -run GameServerLifecycle ./gameserver/sdk/
//
// Unset, the test runs against gameserver/localsdk. A GameServer that was shut down stays so:
// start the sidecar afresh for every run.
const EnvSDKAddr = "KUMI_SDK_ADDR"

// TestGameServerLifecycle makes, in order, every SDK call kumi's game server makes in its life
// (GetGameServer, the sessions counter, Ready, Health, WatchGameServer, a label and an annotation,
// counter updates, the drain's capacity cut, Shutdown) and checks what the SDK server reports back.
func TestGameServerLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	addr := os.Getenv(EnvSDKAddr)
	if addr == "" {
		cfg := localsdk.Default()
		cfg.ListenAddr = "127.0.0.1:0"
		cfg.Name = "gs-lifecycle"
		cfg.Health.Disabled = true
		cfg.Counters = map[string]allocation.CounterStatus{"sessions": {Count: 0, Capacity: 100}}
		srv, err := localsdk.Start(ctx, slog.New(slog.DiscardHandler), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); _ = srv.Wait() })
		addr = srv.Addr()
	} else {
		t.Logf("against the external SDK server %s=%s", EnvSDKAddr, addr)
	}
	c, err := sdk.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	gs, err := c.GetGameServer(ctx)
	if err != nil || gs.GetObjectMeta().GetName() == "" {
		t.Fatalf("GetGameServer: %v %v", gs, err)
	}
	if _, ok := gs.GetStatus().GetCounters()["sessions"]; !ok {
		t.Fatalf("the GameServer declares no counter \"sessions\" (counters %v): declare it, as kumi's fleets do", gs.GetStatus().GetCounters())
	}
	states := make(chan *sdkpb.GameServer, 256)
	wctx, wcancel := context.WithCancel(ctx)
	watchDone := make(chan error, 1)
	go func() { watchDone <- c.WatchGameServer(wctx, func(gs *sdkpb.GameServer) { states <- gs }) }()
	defer func() { wcancel(); <-watchDone }()
	waitFor := func(what string, ok func(*sdkpb.GameServer) bool) {
		t.Helper()
		for {
			select {
			case gs := <-states:
				if ok(gs) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("WatchGameServer never showed %s", what)
			}
		}
	}

	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	must("SetCounterCapacity", c.SetCounterCapacity(ctx, "sessions", 10))
	must("SetCounterCount", c.SetCounterCount(ctx, "sessions", 0))
	must("Ready", c.Ready(ctx))
	must("Health", c.Health(ctx))
	waitFor("Ready", func(gs *sdkpb.GameServer) bool { return gs.GetStatus().GetState() == "Ready" })
	must("SetLabel", c.SetLabel(ctx, "kumi-test", "yes"))
	must("SetAnnotation", c.SetAnnotation(ctx, "kumi-test", "yes"))
	waitFor("the label and annotation (agones.dev/sdk- prefix)", func(gs *sdkpb.GameServer) bool {
		return gs.GetObjectMeta().GetLabels()["agones.dev/sdk-kumi-test"] == "yes" &&
			gs.GetObjectMeta().GetAnnotations()["agones.dev/sdk-kumi-test"] == "yes"
	})
	must("SetCounterCount 3", c.SetCounterCount(ctx, "sessions", 3))
	// The real sidecar batches counter writes (about a second): wait for the watch, not the call.
	waitFor("count 3", func(gs *sdkpb.GameServer) bool { return gs.GetStatus().GetCounters()["sessions"].GetCount() == 3 })
	must("drain: SetCounterCapacity to the count", c.SetCounterCapacity(ctx, "sessions", 3))
	waitFor("capacity 3", func(gs *sdkpb.GameServer) bool { return gs.GetStatus().GetCounters()["sessions"].GetCapacity() == 3 })
	must("SetCounterCount 0", c.SetCounterCount(ctx, "sessions", 0))
	waitFor("count 0", func(gs *sdkpb.GameServer) bool { return gs.GetStatus().GetCounters()["sessions"].GetCount() == 0 })
	must("Shutdown", c.Shutdown(ctx))
	waitFor("Shutdown", func(gs *sdkpb.GameServer) bool { return gs.GetStatus().GetState() == "Shutdown" })
}
