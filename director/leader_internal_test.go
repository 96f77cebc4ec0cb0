package director

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// kumi_director_leader reads 1 while the director runs and 0 once it stopped (lost its lock or
// lease, or was shut down), which the KumiDirectorWithoutLeader alert relies on.
func TestLeaderGauge(t *testing.T) {
	d := &Director{stopped: make(chan struct{})}
	g := d.leaderGauge()
	if v := testutil.ToFloat64(g); v != 1 {
		t.Fatalf("running director: kumi_director_leader = %v, want 1", v)
	}
	close(d.stopped)
	if v := testutil.ToFloat64(g); v != 0 {
		t.Fatalf("stopped director: kumi_director_leader = %v, want 0", v)
	}
}
