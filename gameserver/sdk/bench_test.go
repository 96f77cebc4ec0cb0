package sdk_test

import (
	"context"
	"testing"

	"github.com/kumi-dev/kumi/allocation"
)

// BenchmarkRoundTrip measures SDK calls from the client to the local SDK server over real gRPC on
// 127.0.0.1. The baseline is Ready on a Shutdown server: a unary round trip the server ignores.
func BenchmarkRoundTrip(b *testing.B) {
	cfg := testConfig()
	cfg.Counters["sessions"] = allocation.CounterStatus{Capacity: 1 << 40}
	ctx := context.Background()
	run := func(name string, setup func(tb testing.TB) func() error) {
		b.Run(name, func(b *testing.B) {
			call := setup(b)
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				if err := call(); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu0)
		})
	}
	run("baseline-ignored-Ready", func(tb testing.TB) func() error {
		_, c := start(tb, cfg)
		if err := c.Shutdown(ctx); err != nil {
			tb.Fatal(err)
		}
		return func() error { return c.Ready(ctx) }
	})
	run("GetGameServer", func(tb testing.TB) func() error {
		_, c := start(tb, cfg)
		return func() error { _, err := c.GetGameServer(ctx); return err }
	})
	run("UpdateCounter", func(tb testing.TB) func() error {
		_, c := start(tb, cfg)
		return func() error { _, err := c.UpdateCounter(ctx, "sessions", 1); return err }
	})
	run("SetLabel", func(tb testing.TB) func() error {
		_, c := start(tb, cfg)
		return func() error { return c.SetLabel(ctx, "k", "v") }
	})
	run("Health-stream-ping", func(tb testing.TB) func() error {
		_, c := start(tb, cfg)
		return func() error { return c.Health(ctx) }
	})
}
