package frontend

import (
	"strconv"
	"testing"
	"time"
)

func TestLimiterSweepAndRetry(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := Default()
	cfg.PlayerRate, cfg.PlayerBurst, cfg.SourceRate = 2, 2, 0
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
	for range 1000 {
		if err := l.allowSource("192.0.2.1:1234"); err != nil {
			t.Fatalf("source-rate 0 must be unlimited: %v", err)
		}
	}
	if n, _ := l.sweep(); n != 101 {
		t.Fatalf("sweep right away kept %d, want 101", n)
	}
	now = now.Add(l.players.idleAfter() + time.Millisecond)
	if n, _ := l.sweep(); n != 0 {
		t.Fatalf("sweep after idle kept %d", n)
	}
	// A swept player starts with a full bucket: nothing was lost by dropping it.
	for range 2 {
		if err := l.allowPlayer("hot"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSourceFloodDoesNotLockOthersOut: one address flooding (e.g. with bad tokens) exhausts only
// its own bucket; another address, and another IPv6 /64, are still served. An IPv6 flooder cannot
// escape its bucket by rotating through its /64.
func TestSourceFloodDoesNotLockOthersOut(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := Default()
	cfg.SourceRate, cfg.SourceBurst = 1, 5
	l := newLimiter(cfg, func() time.Time { return now })
	refused := 0
	for i := range 100 {
		if l.allowSource("198.51.100.7:"+strconv.Itoa(1000+i)) != nil {
			refused++
		}
	}
	if refused != 95 {
		t.Fatalf("flooder refused %d of 100, want 95", refused)
	}
	for _, other := range []string{"203.0.113.9:5000", "[2001:db8:1:2::1]:443"} {
		if err := l.allowSource(other); err != nil {
			t.Fatalf("%s locked out by another address's flood: %v", other, err)
		}
	}
	refused = 0
	for i := range 20 {
		if l.allowSource("[2001:db8:aa:bb::"+strconv.FormatInt(int64(i+1), 16)+"]:443") != nil {
			refused++
		}
	}
	if refused != 15 {
		t.Fatalf("IPv6 /64 rotation: refused %d of 20, want 15", refused)
	}
	for addr, want := range map[string]string{"10.1.2.3:80": "10.1.2.3", "[::ffff:10.1.2.3]:80": "10.1.2.3", "[2001:db8::1]:1": "2001:db8::/64", "weird": "weird"} {
		if got := sourceKey(addr); got != want {
			t.Errorf("sourceKey(%q) = %q, want %q", addr, got, want)
		}
	}
}
