package director

import (
	"testing"
	"time"
)

// Tokens name the instance a server last reported; a server that never reported gets none, and
// servers silent past instanceTTL are forgotten.
func TestInstances(t *testing.T) {
	var in instances
	now := time.Unix(1000, 0)
	if got := in.get("gs-1"); got != "" {
		t.Fatalf("unknown server: %q", got)
	}
	in.set("gs-1", "a", now)
	in.set("gs-2", "b", now)
	in.set("", "x", now)
	in.set("gs-3", "", now)
	in.set("gs-1", "a2", now.Add(time.Second)) // restarted: a new instance replaces the old
	for server, want := range map[string]string{"gs-1": "a2", "gs-2": "b", "gs-3": ""} {
		if got := in.get(server); got != want {
			t.Errorf("get(%s) = %q, want %q", server, got, want)
		}
	}
	// Much later only gs-1 reports: gs-2 is forgotten at the next prune.
	later := now.Add(2 * instanceTTL)
	in.set("gs-1", "a2", later)
	if got := in.get("gs-2"); got != "" {
		t.Fatalf("gs-2 not forgotten: %q", got)
	}
	if got := in.get("gs-1"); got != "a2" {
		t.Fatalf("gs-1 = %q", got)
	}
}
