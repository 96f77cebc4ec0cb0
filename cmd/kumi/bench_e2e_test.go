package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/bench/e2e"
	"github.com/kumi-dev/kumi/internal/config"
	"github.com/kumi-dev/kumi/local"
)

// TestBenchE2E runs the bench both ways: with the stack in process (players join over UDP), and
// as a generator against a stack already running (here started by the test, in this process, so
// -product-pid is this process) with tickets only.
func TestBenchE2E(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		running bool // against a running stack with -frontend, -key, -product-pid, -tickets-only
		row     string
	}{
		{name: "in process", row: "| 40 | tickets + UDP | 4 |"},
		{name: "running stack tickets only", running: true, row: "| 40 | tickets only | 4 |"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e2e.Default()
			cfg.Rate, cfg.Duration, cfg.GroupSize, cfg.Lifetime = 40, 2*time.Second, 4, time.Second
			cfg.Local.Capacity, cfg.Local.AllocateLag = 10, 100*time.Millisecond
			cfg.Local.GameServerCommand = []string{exe, "gameserver"}
			cfg.Local.GameServerEnv = []string{asKumiEnv + "=1", "KUMI_LOG_LEVEL=warn", "GORACE=atexit_sleep_ms=0"}
			cfg.Local.KeyDir = t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if tc.running {
				lc := cfg.Local
				// (No comma in the subtest name: the key dir is under t.TempDir, and -token-public-keys
				// is a comma-separated list.)
				lc.Players, lc.GroupSize = 0, cfg.GroupSize
				sctx, stop := context.WithCancel(ctx)
				s, err := local.Start(sctx, slog.New(slog.DiscardHandler), lc)
				if err != nil {
					stop()
					t.Fatal(err)
				}
				defer func() { stop(); _ = s.Wait() }()
				cfg.Frontend, cfg.Key = s.Frontend.GRPCAddr(), filepath.Join(lc.KeyDir, "player.key.pem")
				cfg.ProductPID, cfg.TicketsOnly = os.Getpid(), true
			}
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
			if res.Assign[0] <= 0 || res.Assign[1] < res.Assign[0] || res.GeneratorCPU <= 0 {
				t.Fatalf("implausible: assign %v, generator CPU %v", res.Assign, res.GeneratorCPU)
			}
			if tc.running {
				// Tickets only: nobody joins, so no frame; the product is this process, whose CPU
				// includes the generator's.
				if res.FramesReceived != 0 || res.FirstFrame[0] != 0 || res.ProductMainCPU < res.GeneratorCPU/2 || res.ProductCPU < res.ProductMainCPU {
					t.Fatalf("tickets only: frames %d first frame %v, product CPU %v (main %v), generator %v",
						res.FramesReceived, res.FirstFrame, res.ProductCPU, res.ProductMainCPU, res.GeneratorCPU)
				}
			} else if res.FirstFrame[0] <= res.Assign[0] || res.FramesReceived == 0 {
				t.Fatalf("implausible quantiles: assign %v first frame %v frames %d", res.Assign, res.FirstFrame, res.FramesReceived)
			}
			if !strings.Contains(row.String(), tc.row) {
				t.Fatalf("row lacks %q: %s", tc.row, row.String())
			}
			dir := t.TempDir()
			if err := res.WriteFiles(dir); err != nil {
				t.Fatal(err)
			}
			svg, _ := os.ReadFile(dir + "/e2e.svg")
			if n := strings.Count(string(svg), `fill="#1f77b4"`); n != 40 || !strings.Contains(string(svg), "ticket → assignment (log scale)") {
				t.Errorf("histogram: %d bars, want 40 with axis titles:\n%s", n, svg)
			}
		})
	}
}

func TestBenchE2ERejectsBadConfig(t *testing.T) {
	for _, args := range [][]string{{"-rate=0"}, {"-group-size=1"}, {"-frontend=127.0.0.1:1"}, {"-product-pid=1"}} {
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
	for _, want := range []string{"-rate", "-group-size", "-local-capacity", "-local-allocation-latency", "-tickets-only", "-product-pid"} {
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
