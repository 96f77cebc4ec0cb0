package frontend

import (
	"strconv"
	"testing"
	"time"
)

func TestLimiterSweepAndRetry(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := Default()
	cfg.PlayerRate, cfg.PlayerBurst, cfg.GlobalRate = 2, 2, 0
	l := newLimiter(cfg, func() time.Time { return now })
	for i := range 100 {
		if err := l.allowPlayer("p" + strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.allowPlayer("hot")
	l.allowPlayer("hot")
	err := l.allowPlayer("hot")
	if err == nil || err.retryAfter != 500*time.Millisecond {
		t.Fatalf("third request: %v", err)
	}
	if err := l.allowGlobal(); err != nil {
		t.Fatalf("global-rate 0 must be unlimited: %v", err)
	}
	if n := l.sweep(); n != 101 {
		t.Fatalf("sweep right away kept %d, want 101", n)
	}
	now = now.Add(l.idleAfter() + time.Millisecond)
	if n := l.sweep(); n != 0 {
		t.Fatalf("sweep after idle kept %d", n)
	}
	// A swept player starts with a full bucket: nothing was lost by dropping it.
	for range 2 {
		if err := l.allowPlayer("hot"); err != nil {
			t.Fatal(err)
		}
	}
}
