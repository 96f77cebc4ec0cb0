package openmatch

import (
	"context"
	"log/slog"
	"runtime/debug"
	"testing"
)

// Run (the kumi openmatch process) applies the GC target unless GOGC is set.
func TestRunAppliesGCPercent(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })
	tests := []struct {
		gogc    string
		percent int
		want    int
	}{
		{"", 250, 250},
		{"150", 250, 100}, // GOGC set by the operator wins: untouched
		{"", 0, 100},      // 0 keeps the default
	}
	for _, tc := range tests {
		t.Setenv("GOGC", tc.gogc)
		debug.SetGCPercent(100)
		cfg := Default()
		cfg.FrontendAddr, cfg.BackendAddr, cfg.QueryAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		cfg.GCPercent = tc.percent
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = Run(ctx, slog.New(slog.DiscardHandler), cfg, nil)
		if got := debug.SetGCPercent(100); got != tc.want {
			t.Errorf("GOGC=%q gc-percent=%d: GC percent %d, want %d", tc.gogc, tc.percent, got, tc.want)
		}
	}
}
