package director

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kumi-dev/kumi/director/pool"
)

// A nil registry means "no metrics" (as for the game server and the local fleet), not a panic; a
// registry already holding the director's metrics is an error.
func TestMetricsRegistry(t *testing.T) {
	p := pool.New(pool.DefaultConfig())
	m, err := newMetrics(nil, p)
	if err != nil || m == nil {
		t.Fatalf("nil registry: %v", err)
	}
	m.placements.WithLabelValues("b", "new").Inc() // usable all the same
	reg := prometheus.NewRegistry()
	if _, err := newMetrics(reg, p); err != nil {
		t.Fatal(err)
	}
	if _, err := newMetrics(reg, p); err == nil {
		t.Fatal("registering the director's metrics twice on one registry succeeded")
	}
}
