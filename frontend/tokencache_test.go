package frontend

import (
	"strconv"
	"testing"
	"time"
)

func TestTokenCache(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newTokenCache(160, time.Minute)
	c.put("tok-a", caller{player: "p1"}, now.Add(time.Hour), now)
	c.put("tok-b", caller{player: "p2"}, now.Add(10*time.Second), now)
	cases := []struct {
		name, raw string
		at        time.Duration
		want      string
		hit       bool
	}{
		{"hit", "tok-a", 0, "p1", true},
		{"other token", "tok-a ", 0, "", false},
		{"capped by ttl", "tok-a", time.Minute, "", false},
		{"within exp", "tok-b", 9 * time.Second, "p2", true},
		{"at exp", "tok-b", 10 * time.Second, "", false},
	}
	for _, tc := range cases {
		if got, ok := c.get(tc.raw, now.Add(tc.at)); got.player != tc.want || ok != tc.hit {
			t.Errorf("%s: %q %v", tc.name, got, ok)
		}
	}
	for i := range 10000 {
		c.put("t"+strconv.Itoa(i), caller{player: "p"}, now.Add(time.Hour), now)
	}
	if n := c.len(); n > 160 {
		t.Fatalf("cache holds %d entries, bound 160", n)
	}
	var off *tokenCache = newTokenCache(0, time.Minute)
	off.put("x", caller{player: "p"}, now.Add(time.Hour), now)
	if _, ok := off.get("x", now); ok || off.len() != 0 {
		t.Fatal("disabled cache hit")
	}
}
