package console

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// weightSource is a Source holding only weights: the console's own rules are under test here;
// director/console_internal_test.go and cmd/kumi/console_test.go run it over a real director.
type weightSource struct {
	mu sync.Mutex
	w  map[string]float64
}

func (s *weightSource) State() State { return State{} }
func (s *weightSource) SetWeights(p map[string]float64) (map[string]float64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w = p
	return p, nil
}
func (s *weightSource) Changed() <-chan struct{} { return nil }

// TestOpenConsoleGuards: the console without login (kumi local's) answers only to loopback host
// names, so a site that rebinds its DNS name to 127.0.0.1 cannot use it, and changes weights only
// for same-origin requests carrying the console's header.
func TestOpenConsoleGuards(t *testing.T) {
	src := &weightSource{}
	c, err := New(slog.New(slog.DiscardHandler), src, Default())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const body = `{"weights": {"kumi": 40}}`
	tests := []struct {
		name, method, path, host string
		hdr                      map[string]string
		want                     int
	}{
		{"page on 127.0.0.1", "GET", "/", "127.0.0.1:50612", nil, http.StatusOK},
		{"page on localhost", "GET", "/", "localhost:50612", nil, http.StatusOK},
		{"page on [::1]", "GET", "/", "[::1]:50612", nil, http.StatusOK},
		{"state through a rebound name", "GET", "/state", "attacker.example:50612", nil, http.StatusForbidden},
		{"weights through a rebound name", "PUT", "/weights", "attacker.example:50612", map[string]string{HeaderName: "1", "Content-Type": "application/json"}, http.StatusForbidden},
		{"weights without the header", "PUT", "/weights", "127.0.0.1:50612", map[string]string{"Content-Type": "application/json"}, http.StatusForbidden},
		{"weights from another origin", "PUT", "/weights", "127.0.0.1:50612", map[string]string{HeaderName: "1", "Content-Type": "application/json", "Origin": "http://attacker.example"}, http.StatusForbidden},
		{"weights as a form", "PUT", "/weights", "127.0.0.1:50612", map[string]string{HeaderName: "1", "Content-Type": "application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType},
		{"login on an open console", "POST", "/login", "127.0.0.1:50612", map[string]string{HeaderName: "1", "Content-Type": "application/json"}, http.StatusNotFound},
		{"weights from the page", "PUT", "/weights", "127.0.0.1:50612", map[string]string{HeaderName: "1", "Content-Type": "application/json", "Origin": "http://127.0.0.1:50612", "Sec-Fetch-Site": "same-origin"}, http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src.mu.Lock()
			src.w = nil
			src.mu.Unlock()
			r := httptest.NewRequest(tc.method, "http://"+tc.host+tc.path, strings.NewReader(body))
			for k, v := range tc.hdr {
				r.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			c.ServeHTTP(rec, r)
			if rec.Code != tc.want {
				t.Fatalf("%s %s (Host %s): %d %s; want %d", tc.method, tc.path, tc.host, rec.Code, rec.Body.String(), tc.want)
			}
			src.mu.Lock()
			changed := src.w != nil
			src.mu.Unlock()
			if changed != (tc.method == "PUT" && tc.want == http.StatusOK) {
				t.Fatalf("weights changed: %v", changed)
			}
			if rec.Header().Get("X-Frame-Options") != "DENY" || !strings.Contains(rec.Header().Get("Content-Security-Policy"), "frame-ancestors 'none'") {
				t.Fatalf("response may be framed: %v", rec.Header())
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	for _, mod := range []func(*Config){
		func(c *Config) { c.Path = "console" },
		func(c *Config) { c.Path = "/console" },
		func(c *Config) { c.Interval = 0 },
		func(c *Config) { c.SessionTTL = -1 },
	} {
		cfg := Default()
		mod(&cfg)
		if _, err := New(slog.New(slog.DiscardHandler), &weightSource{}, cfg); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
}
