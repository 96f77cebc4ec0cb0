package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/bench/e2e"
	"github.com/kumi-dev/kumi/internal/config"
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
	dir := t.TempDir()
	if err := res.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	svg, _ := os.ReadFile(dir + "/e2e.svg")
	if n := strings.Count(string(svg), `fill="#1f77b4"`); n != 40 || !strings.Contains(string(svg), "ticket → assignment (log scale)") {
		t.Errorf("histogram: %d bars, want 40 with axis titles:\n%s", n, svg)
	}
}

func TestBenchE2ERejectsBadConfig(t *testing.T) {
	for _, args := range [][]string{{"-rate=0"}, {"-group-size=1"}, {"-frontend=127.0.0.1:1"}} {
		if err := benchE2E(context.Background(), slog.New(slog.DiscardHandler), args); err == nil {
			t.Errorf("kumi bench e2e %v: want an error", args)
		}
	}
}

// TestBenchHelp: `kumi bench -h` explains every bench and exits 0; `kumi bench e2e -h` lists the
// flags that shape the run, not the in-process stack's addresses.
func TestBenchHelp(t *testing.T) {
	var out bytes.Buffer
	old := os.Stdout
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout = w
	code := realMain([]string{"bench", "-h"}, &out)
	w.Close()
	os.Stdout = old
	help, _ := io.ReadAll(r)
	if code != 0 || !strings.Contains(string(help), "\n  e2e\n") || !strings.Contains(string(help), "\n  spiky\n") {
		t.Fatalf("kumi bench -h: exit %d\n%s%s", code, help, out.String())
	}

	var e2eHelp bytes.Buffer
	fs := flag.NewFlagSet("bench e2e", flag.ContinueOnError)
	fs.SetOutput(&e2eHelp)
	cfg := e2e.Default()
	if err := config.Bind(fs, "", &cfg); err != nil {
		t.Fatal(err)
	}
	e2eUsage(fs)()
	for _, want := range []string{"-rate", "-group-size", "-local-capacity", "-local-allocation-latency"} {
		if !strings.Contains(e2eHelp.String(), want+"\n") {
			t.Errorf("e2e help lacks %s:\n%s", want, e2eHelp.String())
		}
	}
	for _, hidden := range []string{"-local-om-frontend-addr", "-local-players", "-local-key-dir"} {
		if strings.Contains(e2eHelp.String(), hidden+"\n") {
			t.Errorf("e2e help lists %s", hidden)
		}
	}
}
