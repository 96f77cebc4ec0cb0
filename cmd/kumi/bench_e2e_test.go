package main

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/bench/e2e"
)

func TestBenchE2E(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := e2e.Default()
	cfg.Rate, cfg.Duration, cfg.GroupSize, cfg.Lifetime = 40, 2*time.Second, 4, time.Second
	cfg.Local.Capacity, cfg.Local.AllocateLag = 10, 100*time.Millisecond
	cfg.Local.GameServerCommand = []string{exe, "gameserver"}
	cfg.Local.GameServerEnv = []string{asKumiEnv + "=1", "KUMI_LOG_LEVEL=warn", "GORACE=atexit_sleep_ms=0"}
	cfg.Local.KeyDir = t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := e2e.Run(ctx, slog.New(slog.DiscardHandler), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var row strings.Builder
	e2e.Header(&row)
	res.Row(&row)
	t.Log("\n" + row.String())
	if res.Failed != 0 || res.Ok != res.Tickets || res.Tickets < 40 {
		t.Fatalf("tickets %d ok %d failed %d: %v", res.Tickets, res.Ok, res.Failed, res.Failures)
	}
	if res.Assign[0] <= 0 || res.Assign[1] < res.Assign[0] || res.FirstFrame[0] <= res.Assign[0] || res.FramesReceived == 0 {
		t.Fatalf("implausible quantiles: assign %v first frame %v frames %d", res.Assign, res.FirstFrame, res.FramesReceived)
	}
	if !strings.Contains(row.String(), "| 40 | 4 |") {
		t.Fatalf("row lacks the settings: %s", row.String())
	}
}

func TestBenchE2ERejectsBadConfig(t *testing.T) {
	for _, args := range [][]string{{"-rate=0"}, {"-group-size=1"}, {"-frontend=127.0.0.1:1"}} {
		if err := benchE2E(context.Background(), slog.New(slog.DiscardHandler), args); err == nil {
			t.Errorf("kumi bench e2e %v: want an error", args)
		}
	}
}
