package director

import (
	"testing"
	"time"
)

// TestFetchGap: empty cycles follow each other at min-fetch-gap while the profile matched
// something within idleAfter, and at idle-fetch-gap otherwise (and before any match).
func TestFetchGap(t *testing.T) {
	cfg := Default()
	cfg.MinFetchGap, cfg.IdleFetchGap = 10*time.Millisecond, 50*time.Millisecond
	now := time.Unix(1764800000, 0)
	for _, tc := range []struct {
		name      string
		lastMatch time.Time
		want      time.Duration
	}{
		{"never matched", time.Time{}, 50 * time.Millisecond},
		{"matched just now", now, 10 * time.Millisecond},
		{"matched a second ago", now.Add(-time.Second), 10 * time.Millisecond},
		{"matched just within idleAfter", now.Add(-idleAfter + time.Millisecond), 10 * time.Millisecond},
		{"quiet for idleAfter", now.Add(-idleAfter), 50 * time.Millisecond},
		{"quiet for an hour", now.Add(-time.Hour), 50 * time.Millisecond},
	} {
		if got := fetchGap(cfg, now, tc.lastMatch); got != tc.want {
			t.Errorf("%s: gap %s, want %s", tc.name, got, tc.want)
		}
	}
}
