package telemetry

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestServeMetrics(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	reg := NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "kumi_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	s, err := Serve(ctx, slog.New(slog.DiscardHandler), "127.0.0.1:0", reg)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + s.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"kumi_test_total 3", "go_goroutines"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	cancel()
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := Serve(context.Background(), slog.New(slog.DiscardHandler), "256.0.0.1:bad", reg); err == nil {
		t.Fatal("want listen error")
	}
	if s, err := Serve(ctx, slog.New(slog.DiscardHandler), "", reg); s != nil || err != nil {
		t.Fatal("empty addr must disable")
	}
}

// TestWithPprof: /debug/pprof/ is served only with the option.
func TestWithPprof(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
		want int
	}{
		{"off", nil, http.StatusNotFound},
		{"on", []Option{WithPprof()}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			s, err := Serve(ctx, slog.New(slog.DiscardHandler), "127.0.0.1:0", NewRegistry(), tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { cancel(); _ = s.Wait() }()
			resp, err := http.Get("http://" + s.Addr() + "/debug/pprof/goroutine?debug=1")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("GET /debug/pprof/goroutine: %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}
