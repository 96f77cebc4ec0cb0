package director

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/console"
	"github.com/kumi-dev/kumi/director/pool"
)

// TestAttackConsoleWithoutCredentialRefused drives the director's console on the admin listener
// over real HTTP: the page loads (it holds no data), but its state, its event stream and its
// weight change refuse a caller without the login cookie, a wrong token gets no cookie, the admin
// API's bearer token in a URL or header is no substitute, and a cross-site request is refused even
// with a valid cookie. The same requests with the cookie, same-origin and the console's header
// succeed, so the refusals are not a broken console.
func TestAttackConsoleWithoutCredentialRefused(t *testing.T) {
	const token = "admin-token-for-this-test-0123456789"
	p := pool.New(pool.DefaultConfig())
	p.AddBackend("local")
	p.AddBackend("agones")
	p.AddServer(pool.ServerInfo{Name: "gs-1", Backend: "local", Address: "127.0.0.1:7777", Capacity: 10}, time.Now())
	m, err := newMetrics(nil, p)
	if err != nil {
		t.Fatal(err)
	}
	d := &Director{pool: p, m: m, log: slog.New(slog.DiscardHandler), backends: map[string]*backendLoop{}}
	srv := httptest.NewServer(d.adminHandler(token))
	t.Cleanup(srv.Close)
	t.Cleanup(d.console.Close)
	if err := d.SetWeights(map[string]int{"local": 10000}); err != nil {
		t.Fatal(err)
	}
	weightsNow := func() map[string]float64 { return d.weightsDoc().Weights }

	type req struct {
		name, method, path, body string
		hdr                      map[string]string
		cookie                   bool
		want                     int
	}
	same := map[string]string{"Content-Type": "application/json", console.HeaderName: "1", "Origin": srv.URL, "Sec-Fetch-Site": "same-origin"}
	with := func(extra map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range same {
			out[k] = v
		}
		for k, v := range extra {
			if v == "" {
				delete(out, k)
			} else {
				out[k] = v
			}
		}
		return out
	}
	const newWeights = `{"weights": {"local": 50, "agones": 50}}`
	tests := []req{
		{"page loads without login", "GET", "/console/", "", nil, false, http.StatusOK},
		{"state without cookie", "GET", "/console/state", "", nil, false, http.StatusUnauthorized},
		{"events without cookie", "GET", "/console/events", "", nil, false, http.StatusUnauthorized},
		{"bearer token is not a console credential", "GET", "/console/events", "", map[string]string{"Authorization": "Bearer " + token}, false, http.StatusUnauthorized},
		{"token in the URL is not a credential", "GET", "/console/events?token=" + token, "", nil, false, http.StatusUnauthorized},
		{"weights without cookie", "PUT", "/console/weights", newWeights, same, false, http.StatusUnauthorized},
		{"wrong token gets no cookie", "POST", "/console/login", `{"token": "guess"}`, same, false, http.StatusUnauthorized},
		{"login from another site", "POST", "/console/login", `{"token": "` + token + `"}`, with(map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}), false, http.StatusForbidden},
		{"cross-site weights with cookie", "PUT", "/console/weights", newWeights, with(map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}), true, http.StatusForbidden},
		{"cross-origin weights with cookie (no Sec-Fetch-Site)", "PUT", "/console/weights", newWeights, with(map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": ""}), true, http.StatusForbidden},
		{"cross-site form post with cookie", "POST", "/console/weights", "weights=x", map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, true, http.StatusForbidden},
		{"weights without the console header", "PUT", "/console/weights", newWeights, with(map[string]string{console.HeaderName: ""}), true, http.StatusForbidden},
		{"cross-site event stream with cookie", "GET", "/console/events", "", map[string]string{"Sec-Fetch-Site": "cross-site"}, true, http.StatusForbidden},
		{"bad weights with cookie", "PUT", "/console/weights", `{"weights": {"nosuch": 50}}`, same, true, http.StatusBadRequest},
	}

	// A real login, as the page does it, for the cookie the cases above may carry.
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	do := func(c *http.Client, method, path, body string, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		r, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		res, err := c.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("CORS header on %s %s", method, path)
		}
		return res, string(b)
	}
	res, body := do(client, "POST", "/console/login", `{"token": "`+token+`"}`, same)
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("login with the admin token: %s %s", res.Status, body)
	}
	var ck *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == console.CookieName {
			ck = c
		}
	}
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/console/" || strings.Contains(ck.Value, token) {
		t.Fatalf("login cookie %+v: want HttpOnly, SameSite=Strict, Path=/console/, not the token", ck)
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := http.DefaultClient
			if tc.cookie {
				c = client
			}
			res, body := do(c, tc.method, tc.path, tc.body, tc.hdr)
			if res.StatusCode != tc.want {
				t.Errorf("%s %s: %s %s; want %d", tc.method, tc.path, res.Status, body, tc.want)
			}
			if res.StatusCode >= 400 && !strings.Contains(body, `"error"`) {
				t.Errorf("refusal without an error message: %s", body)
			}
			if got := weightsNow(); got["local"] != 100 || got["agones"] != 0 {
				t.Fatalf("weights changed to %v by a refused request", got)
			}
		})
	}

	// With the cookie, the stream delivers the pool and the weight change goes through.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	r, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/console/events", nil)
	stream, err := client.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	if stream.StatusCode != http.StatusOK || !strings.HasPrefix(stream.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("events with cookie: %s %s", stream.Status, stream.Header.Get("Content-Type"))
	}
	first := nextState(t, bufio.NewScanner(stream.Body))
	if len(first.Servers) != 1 || first.Servers[0].Name != "gs-1" || len(first.Backends) != 2 {
		t.Fatalf("first state %+v: want gs-1 and two backends", first)
	}
	if res, body := do(client, "PUT", "/console/weights", newWeights, same); res.StatusCode != http.StatusOK {
		t.Fatalf("weights with cookie: %s %s", res.Status, body)
	}
	if got := weightsNow(); got["local"] != 50 || got["agones"] != 50 {
		t.Fatalf("weights %v after the console's change, want 50/50", got)
	}
	// Logging out ends the credential.
	if res, body := do(client, "POST", "/console/logout", "", same); res.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %s %s", res.Status, body)
	}
	if res, _ := do(client, "GET", "/console/state", "", nil); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("state after logout: %s", res.Status)
	}
}

// nextState reads SSE lines until a "state" event and decodes it.
func nextState(t *testing.T, sc *bufio.Scanner) console.State {
	t.Helper()
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && event == "state":
			var st console.State
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &st); err != nil {
				t.Fatalf("state event: %v", err)
			}
			return st
		}
	}
	t.Fatalf("event stream ended without a state: %v", sc.Err())
	return console.State{}
}
