package director

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/director/pool"
)

// TestAttackAdminDrainWithoutCredentialRefused drives the admin API over real HTTP the ways an
// attacker (or a web page in an operator's browser) might: no token, a wrong token, the old
// query-string action, a form post, a browser origin. None of them drains the server; only the
// documented request (admin.go) does.
func TestAttackAdminDrainWithoutCredentialRefused(t *testing.T) {
	const token = "admin-token-for-this-test-0123456789"
	p := pool.New(pool.DefaultConfig())
	p.AddBackend("local")
	p.AddServer(pool.ServerInfo{Name: "gs-1", Backend: "local", Address: "127.0.0.1:7777", Capacity: 10}, time.Now())
	m, err := newMetrics(nil, p)
	if err != nil {
		t.Fatal(err)
	}
	d := &Director{pool: p, m: m, log: slog.New(slog.DiscardHandler), backends: map[string]*backendLoop{}}
	srv := httptest.NewServer(d.adminHandler(token))
	t.Cleanup(srv.Close)

	draining := func() bool {
		for _, s := range p.Snapshot(time.Now()).Servers {
			if s.Name == "gs-1" {
				return s.State == pool.Draining.String()
			}
		}
		t.Fatal("gs-1 left the pool")
		return false
	}
	do := func(method, path, body string, hdr map[string]string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("CORS header on %s %s", method, path)
		}
		return res.StatusCode, string(b)
	}
	auth := "Bearer " + token
	jsonCT := "application/json"
	for _, tc := range []struct {
		name, method, path, body string
		hdr                      map[string]string
		code                     int
		msg                      string
	}{
		{"no token", "POST", "/drain", `{"server":"gs-1"}`, map[string]string{"Content-Type": jsonCT}, 401, "missing or wrong token"},
		{"wrong token", "POST", "/drain", `{"server":"gs-1"}`, map[string]string{"Authorization": "Bearer " + token[:len(token)-1] + "x", "Content-Type": jsonCT}, 401, "missing or wrong token"},
		{"token without Bearer", "POST", "/drain", `{"server":"gs-1"}`, map[string]string{"Authorization": token, "Content-Type": jsonCT}, 401, ""},
		{"no token, GET pool", "GET", "/pool", "", nil, 401, ""},
		{"query-string action", "POST", "/drain?server=gs-1", "", map[string]string{"Authorization": auth}, 400, "no query parameters"},
		{"form post", "POST", "/drain", "server=gs-1", map[string]string{"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"}, 415, "application/json"},
		{"browser origin", "POST", "/drain", `{"server":"gs-1"}`, map[string]string{"Authorization": auth, "Content-Type": jsonCT, "Origin": "https://evil.example"}, 403, "browsers"},
		{"unknown field", "POST", "/drain", `{"server":"gs-1","force":true}`, map[string]string{"Authorization": auth, "Content-Type": jsonCT}, 400, "unknown field"},
		{"preflight", "OPTIONS", "/drain", "", map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}, 403, ""},
	} {
		code, body := do(tc.method, tc.path, tc.body, tc.hdr)
		if code != tc.code || !strings.Contains(body, tc.msg) {
			t.Errorf("%s: %d %s, want %d containing %q", tc.name, code, body, tc.code, tc.msg)
		}
		if draining() {
			t.Fatalf("%s drained the server", tc.name)
		}
	}
	// The documented request drains it.
	code, body := do("POST", "/drain", `{"server": "gs-1"}`, map[string]string{"Authorization": auth, "Content-Type": jsonCT})
	var got map[string]string
	if code != 200 || json.Unmarshal([]byte(body), &got) != nil || got["draining"] != "gs-1" || !draining() {
		t.Fatalf("authorised drain: %d %s", code, body)
	}
	if code, _ := do("POST", "/drain", `{"server": "nope"}`, map[string]string{"Authorization": auth, "Content-Type": jsonCT}); code != 404 {
		t.Fatalf("unknown server: %d", code)
	}
}
