package logbuf

import (
	"strings"
	"sync"
	"testing"
)

// Concurrent writers never interleave within a Write, and String sees every line (run with -race).
func TestConcurrentWrites(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for range 100 {
				_, _ = b.Write([]byte(strings.Repeat(string(rune('a'+w)), 10) + "\n"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 800 {
		t.Fatalf("%d lines, want 800", len(lines))
	}
	for _, l := range lines {
		if len(l) != 10 || strings.Count(l, l[:1]) != 10 {
			t.Fatalf("interleaved write: %q", l)
		}
	}
}
