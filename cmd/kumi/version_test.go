package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionString(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stamped string
		info    *debug.BuildInfo
		want    string
	}{
		{"stamped wins", "v1.2.3", &debug.BuildInfo{Main: debug.Module{Version: "v0.9.0"}}, "v1.2.3"},
		{"no build info", "", nil, "devel"},
		{"module version", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.4.0"}}, "v0.4.0"},
		{"vcs checkout", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}}}, "devel+0123456789ab-dirty"},
		{"devel without vcs", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "devel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := versionString(tc.stamped, tc.info); got != tc.want {
				t.Errorf("versionString = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestPrintVersion: what `kumi version` prints for a binary stamped as install/docker/Dockerfile
// stamps it (-ldflags "-X main.version=..."). Building a stamped binary here would relink kumi, which
// takes minutes on a loaded CI machine, for what is the linker's job.
func TestPrintVersion(t *testing.T) {
	var b strings.Builder
	if err := printVersion(&b, "v9.8.7", nil); err != nil {
		t.Fatal(err)
	}
	if b.String() != "kumi v9.8.7\n" {
		t.Errorf("printed %q", b.String())
	}
}
