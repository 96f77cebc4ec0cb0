package local

import "testing"

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
