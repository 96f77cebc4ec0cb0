package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kumi-dev/kumi/local"
	"github.com/kumi-dev/kumi/openmatch"
)

// TestLocalExternalOpenMatch: with -om-external, kumi local starts no core of its own and runs the
// whole product against the Open Match core at the given addresses (here a separately started
// kumi core standing in for a real Open Match): every player is served and the tickets went
// through that core.
func TestLocalExternalOpenMatch(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	omCfg := openmatch.Default()
	omCfg.FrontendAddr, omCfg.BackendAddr, omCfg.QueryAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	reg := prometheus.NewRegistry()
	octx, ocancel := context.WithCancel(ctx)
	core, err := openmatch.Start(octx, slog.New(slog.DiscardHandler), omCfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { ocancel(); _ = core.Wait() }()

	cfg := local.Default()
	cfg.Players, cfg.Duration, cfg.GroupSize, cfg.ScaleIn = 8, 2*time.Second, 4, false
	cfg.OMExternal = true
	cfg.OMFrontendAddr, cfg.OMBackendAddr, cfg.OMQueryAddr = core.FrontendAddr(), core.BackendAddr(), core.QueryAddr()
	cfg.MMFAddr, cfg.FrontendAddr, cfg.FrontendHTTP = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.ControlAddr, cfg.AdminAddr, cfg.MetricsAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.ConsoleAddr = "127.0.0.1:0"
	cfg.KeyDir = filepath.Join(t.TempDir(), "keys")
	cfg.GameServerCommand = []string{exe, "gameserver"}
	cfg.GameServerEnv = []string{asKumiEnv + "=1", "KUMI_LOG_LEVEL=warn", "GORACE=atexit_sleep_ms=0"}
	cfg.Out = &discard{}
	lctx, lcancel := context.WithCancel(ctx)
	defer lcancel()
	log := slog.New(slog.DiscardHandler)
	s, err := local.Start(lctx, log, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.OpenMatch != nil || s.OMFrontend != core.FrontendAddr() || s.OMBackend != core.BackendAddr() {
		t.Fatalf("kumi local started its own core (%v) or uses %s/%s, want the external one", s.OpenMatch, s.OMFrontend, s.OMBackend)
	}
	sum, err := local.RunCrowd(lctx, log, cfg, s)
	if err != nil {
		t.Fatal(err)
	}
	lcancel()
	if err := s.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		t.Logf("stop: %v", err)
	}
	if sum.Failed != 0 || sum.OK != cfg.Players {
		t.Fatalf("%d of %d players failed: %v", sum.Failed, sum.Players, sum.Failures)
	}
	if n := counterValue(t, reg, "kumi_openmatch_tickets_created_total"); n < float64(cfg.Players) {
		t.Fatalf("the external core saw %v tickets, want ≥ %d", n, cfg.Players)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// counterValue reads a registered counter by name.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}
