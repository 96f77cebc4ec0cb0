package local

import (
	"strings"
	"testing"
)

func TestValidatePprof(t *testing.T) {
	for _, tc := range []struct {
		name    string
		metrics string
		pprof   bool
		ok      bool
	}{
		{"off", "0.0.0.0:9090", false, true},
		{"loopback", "127.0.0.1:9090", true, true},
		{"every interface", ":9090", true, false},
		{"metrics off", "", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.MetricsAddr, c.Pprof = tc.metrics, tc.pprof
			if err := c.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// A key dir with a comma would split the key-file list game servers are started with; it is
// refused up front with the reason rather than crashing every game server.
func TestValidateKeyDir(t *testing.T) {
	for _, tc := range []struct {
		dir string
		ok  bool
	}{
		{"", true},
		{"/tmp/kumi keys", true},
		{"/tmp/kumi,keys", false},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			c := Default()
			c.KeyDir = tc.dir
			err := c.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "comma") {
				t.Errorf("error %q does not say why", err)
			}
		})
	}
}
