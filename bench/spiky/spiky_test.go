package spiky

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/director/pool"
)

// small is the default trace scaled down (one 1 h period, peak 5 sessions/s, 50 sessions/server)
// so it runs in seconds under the race detector; BENCHMARKS.md quotes the full default run. One
// period holds the whole swing (rise, peak, fall with scale-in); the baseline's thousands of
// one-session servers make every simulated hour cost about 10 s with -race.
func small() Config {
	cfg := Default()
	cfg.Duration = time.Hour
	cfg.Period = time.Hour
	cfg.PeakRate = 5
	cfg.Capacity = 50
	cfg.Pool.HighWatermark = 50
	cfg.Pool.MinFreeSlots = 10
	return cfg
}

func TestSpikyTargets(t *testing.T) {
	cfg := small()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	shared, base, ag := res.Shared, res.Baseline, res.Agones
	var md strings.Builder
	Markdown(&md, cfg, pool.DefaultConfig(), res)
	t.Log("\n" + md.String())
	if shared.Sessions == 0 || shared.Sessions != base.Sessions || shared.Sessions != ag.Sessions {
		t.Fatalf("every policy must replay the same non-empty trace: %d, %d, %d", shared.Sessions, ag.Sessions, base.Sessions)
	}
	if ag.Moves != 0 {
		t.Errorf("the Agones pattern moved %d sessions, want none", ag.Moves)
	}
	if ag.Drains == 0 {
		t.Error("the Agones pattern must delete empty servers on the swing down")
	}
	if shared.Rejected != 0 {
		t.Errorf("rejected %d sessions, want 0", shared.Rejected)
	}
	// The full default trace stays under 15 %; at a tenth of its scale one server's worth of
	// headroom weighs more, so the bound here is 20 %.
	if shared.AvgIdle > 0.20 {
		t.Errorf("avg idle capacity %.1f%%, want ≤ 20%% on this scaled-down trace", 100*shared.AvgIdle)
	}
	if shared.P99 > 50*time.Millisecond {
		t.Errorf("p99 placement %v, want ≤ 50ms", shared.P99)
	}
	if ratio := float64(base.PeakServers) / float64(shared.PeakServers); ratio < 10 {
		t.Errorf("peak servers %d vs baseline %d: %.1fx, want ≥ 10x", shared.PeakServers, base.PeakServers, ratio)
	}
	if shared.Drains == 0 {
		t.Error("the swing down must scale in by draining")
	}
	// Demand never exceeds capacity for long: every sample after warm-up has capacity for demand
	// or sessions waiting at most RejectAfter (checked by Rejected == 0 above).
	if shared.PeakDemand < cfg.Capacity {
		t.Errorf("peak demand %d too small to exercise packing", shared.PeakDemand)
	}
}

func TestSameSeedSameTrace(t *testing.T) {
	cfg := small()
	a, b := newTrace(cfg), newTrace(cfg)
	if len(a) == 0 || len(a) != len(b) || a[len(a)/2] != b[len(b)/2] {
		t.Fatal("a seed must give the same trace")
	}
	cfg.Seed++
	if c := newTrace(cfg); len(c) == len(a) && c[len(c)/2] == a[len(a)/2] {
		t.Fatal("another seed must give another trace")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"duration", func(c *Config) { c.Duration = 0 }, "duration"},
		{"swing", func(c *Config) { c.Swing = 0.5 }, "swing"},
		{"capacity", func(c *Config) { c.Capacity = 0 }, "capacity"},
		{"peak", func(c *Config) { c.PeakRate = 0 }, "peak-rate"},
		{"agones buffer", func(c *Config) { c.AgonesBuffer = 0 }, "agones-buffer"},
		{"agones sync", func(c *Config) { c.AgonesSync = 1500 * time.Millisecond }, "agones-sync"},
	}
	for _, tc := range tests {
		cfg := Default()
		tc.mutate(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want error naming %q", tc.name, err, tc.want)
		}
	}
}

func TestWriteFiles(t *testing.T) {
	cfg := small()
	cfg.Duration, cfg.Period = 10*time.Minute, 5*time.Minute
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteFiles(dir, cfg, pool.DefaultConfig(), res); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "spiky.md"))
	svg, _ := os.ReadFile(filepath.Join(dir, "spiky.svg"))
	for _, want := range []string{"| shared servers (kumi pool) |", "| Agones counters (packed, buffer) |", "| one session per server |", "| `--pool-min-free-slots` | 10 (differs) | 20 |", "| `--pool-rate-share` | 2 | 2 |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	for _, want := range []string{"<polyline", "simulated time (h:mm)", ">sessions</text>", ">0:10</text>", "capacity: Agones counters"} {
		if !strings.Contains(string(svg), want) {
			t.Errorf("plot lacks %q", want)
		}
	}
}

// TestSameSeedSameReport replays one seed twice and wants byte-identical report and plot files, and
// another seed to change them: the bench is a reproducible figure, not a sample of the machine.
func TestSameSeedSameReport(t *testing.T) {
	cfg := small()
	cfg.Duration, cfg.Period = 20*time.Minute, 10*time.Minute
	files := func(seed uint64) (md, svg []byte) {
		c := cfg
		c.Seed = seed
		res, err := Run(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := WriteFiles(dir, c, pool.DefaultConfig(), res); err != nil {
			t.Fatal(err)
		}
		md, _ = os.ReadFile(filepath.Join(dir, "spiky.md"))
		svg, _ = os.ReadFile(filepath.Join(dir, "spiky.svg"))
		return md, svg
	}
	md1, svg1 := files(7)
	md2, svg2 := files(7)
	if !bytes.Equal(md1, md2) {
		t.Errorf("same seed, different reports:\n%s\n---\n%s", md1, md2)
	}
	if !bytes.Equal(svg1, svg2) {
		t.Error("same seed, different plots")
	}
	if md3, _ := files(8); bytes.Equal(md1, md3) {
		t.Error("another seed gave the same report")
	}
}
