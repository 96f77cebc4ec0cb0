package localsdk_test

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/allocation"
	sdkpb "github.com/kumi-dev/kumi/api/agones/sdk"
	"github.com/kumi-dev/kumi/gameserver/localsdk"
	"github.com/kumi-dev/kumi/internal/config"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mod     func(*localsdk.Config)
		wantErr string
	}{
		{"default", func(*localsdk.Config) {}, ""},
		{"no name", func(c *localsdk.Config) { c.Name = "" }, "name must be set"},
		{"bad state", func(c *localsdk.Config) { c.State = "Unhealthy" }, `state "Unhealthy"`},
		{"bad period", func(c *localsdk.Config) { c.Health.Period = 0 }, "health-period"},
		{"period ignored when disabled", func(c *localsdk.Config) { c.Health = localsdk.Health{Disabled: true} }, ""},
		{"bad threshold", func(c *localsdk.Config) { c.Health.FailureThreshold = 0 }, "health-failure-threshold"},
		{"bad port", func(c *localsdk.Config) { c.Ports = []allocation.Port{{Name: "", Port: 1}} }, "port"},
		{"bad label", func(c *localsdk.Config) { c.Labels = map[string]string{"bad key": "v"} }, "label"},
		{"counter over capacity", func(c *localsdk.Config) {
			c.Counters = map[string]allocation.CounterStatus{"s": {Count: 2, Capacity: 1}}
		}, `counter "s"`},
		{"list over 1000", func(c *localsdk.Config) { c.Lists = map[string]allocation.ListStatus{"p": {Capacity: 1001}} }, `list "p"`},
		{"list values over capacity", func(c *localsdk.Config) {
			c.Lists = map[string]allocation.ListStatus{"p": {Capacity: 1, Values: []string{"a", "b"}}}
		}, `list "p"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := localsdk.Default()
			tc.mod(&cfg)
			err := cfg.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate = %v, want %q", err, tc.wantErr)
			}
			if _, err := localsdk.Start(context.Background(), slog.New(slog.DiscardHandler), cfg); err == nil {
				t.Fatal("Start accepted an invalid config")
			}
		})
	}
}

func startServer(t *testing.T, cfg localsdk.Config) *localsdk.Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := localsdk.Start(ctx, slog.New(slog.DiscardHandler), cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := srv.Wait(); err != nil {
			t.Error(err)
		}
	})
	return srv
}

func TestUpdateAndSubscribe(t *testing.T) {
	cfg := localsdk.Default()
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.Health.Disabled = true
	cfg.Counters = map[string]allocation.CounterStatus{"sessions": {Capacity: 5}}
	srv := startServer(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub := srv.Subscribe()
	defer sub.Close()
	first, err := sub.Next(ctx)
	if err != nil || first.GetStatus().GetState() != localsdk.StateScheduled {
		t.Fatalf("first update %v, %v", first, err)
	}

	// A failing update changes nothing and publishes nothing.
	boom := errors.New("boom")
	if _, err := srv.Update(func(gs *sdkpb.GameServer) error {
		gs.Status.State = localsdk.StateAllocated
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("Update err = %v", err)
	}
	if st := srv.GameServer().GetStatus().GetState(); st != localsdk.StateScheduled {
		t.Fatalf("state after failed update = %s", st)
	}

	now := time.Now()
	got, err := srv.Update(func(gs *sdkpb.GameServer) error {
		gs.Status.State = localsdk.StateAllocated
		gs.Status.Counters["sessions"].Count++
		localsdk.StampAllocated(gs, now)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetStatus().GetCounters()["sessions"].GetCount() != 1 || got.GetObjectMeta().GetAnnotations()[localsdk.AnnotationLastAllocated] == "" {
		t.Fatalf("Update result %v", got)
	}
	next, err := sub.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if next.GetStatus().GetState() != localsdk.StateAllocated || next.GetObjectMeta().GetResourceVersion() == first.GetObjectMeta().GetResourceVersion() {
		t.Fatalf("published %v", next)
	}
	// The subscriber's copy is its own.
	next.Status.State = "Mangled"
	if srv.GameServer().GetStatus().GetState() != localsdk.StateAllocated {
		t.Fatal("subscriber copy aliases server state")
	}
}

func TestSubscriptionEndsWithServer(t *testing.T) {
	cfg := localsdk.Default()
	cfg.ListenAddr = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := localsdk.Start(ctx, slog.New(slog.DiscardHandler), cfg)
	if err != nil {
		t.Fatal(err)
	}
	sub := srv.Subscribe()
	if _, err := sub.Next(context.Background()); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := srv.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Next(context.Background()); !errors.Is(err, localsdk.ErrClosed) {
		t.Fatalf("Next after stop = %v, want ErrClosed", err)
	}
	if _, err := srv.Update(func(*sdkpb.GameServer) error { return nil }); !errors.Is(err, localsdk.ErrClosed) {
		t.Fatalf("Update after stop = %v, want ErrClosed", err)
	}
}

func TestStartPortInUse(t *testing.T) {
	cfg := localsdk.Default()
	cfg.ListenAddr = "127.0.0.1:0"
	srv := startServer(t, cfg)
	cfg.ListenAddr = srv.Addr()
	if _, err := localsdk.Start(context.Background(), slog.New(slog.DiscardHandler), cfg); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("second Start on %s = %v, want a listen error", srv.Addr(), err)
	}
}

func TestConfigBindsToFlags(t *testing.T) {
	cfg := localsdk.Default()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	if err := config.Bind(fs, "", &cfg); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"-name=gs1", "-health-failure-threshold=2", "-listen-addr=127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "gs1" || cfg.Health.FailureThreshold != 2 || cfg.ListenAddr != "127.0.0.1:0" {
		t.Errorf("bound config = %+v", cfg)
	}
}
