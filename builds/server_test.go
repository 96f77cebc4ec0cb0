package builds

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/internal/token"
)

type apiFixture struct {
	t      *testing.T
	url    string
	signer *token.Signer
	srv    *Server
}

func startAPI(t *testing.T) *apiFixture {
	t.Helper()
	signer, err := token.GenerateSigner(token.DefaultIssuer)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Default()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.BucketURL = "file://" + t.TempDir()
	cfg.TmpDir = t.TempDir()
	cfg.Limits = testLimits()
	cfg.JWT.Keys = []token.PublicKey{signer.PublicKey()}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := Start(ctx, slog.New(slog.DiscardHandler), cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = srv.Wait() })
	return &apiFixture{t: t, url: "http://" + srv.Addr(), signer: signer, srv: srv}
}

func (f *apiFixture) dev(tenant string, scopes ...string) string {
	f.t.Helper()
	tok, err := DeveloperToken(f.signer, "dev@"+tenant, tenant, scopes, time.Hour)
	if err != nil {
		f.t.Fatal(err)
	}
	return tok
}

// do sends one request and decodes a JSON answer into out (when non-nil).
func (f *apiFixture) do(method, path, tok, ctype string, body io.Reader, out any) (int, string) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.url+path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			f.t.Fatalf("%s %s: %v in %s", method, path, err, data)
		}
	}
	return resp.StatusCode, string(data)
}

func TestAPIUploadListInspectDelete(t *testing.T) {
	f := startAPI(t)
	rw := f.dev("studio-a", ScopeWrite)
	data := tarGz(t, server("Game"), file("Game/Content/a.pak", []byte("content")))
	want := sha256.Sum256(data)

	var m Manifest
	code, body := f.do("POST", "/v1/builds?version=1.0", rw, "application/gzip", bytes.NewReader(data), &m)
	if code != http.StatusCreated {
		t.Fatalf("upload: %d %s", code, body)
	}
	if m.SHA256 != hex.EncodeToString(want[:]) || m.Project != "Game" || m.Version != "1.0" || m.Tenant != "studio-a" ||
		m.Entrypoint != "Game/Binaries/Linux/GameServer" || m.Size != int64(len(data)) || m.State != StateReady || m.Created.IsZero() {
		t.Fatalf("manifest %+v", m)
	}
	// The same bytes again: idempotent, 200 with the same manifest.
	var again Manifest
	if code, body := f.do("POST", "/v1/builds?version=1.0", rw, "application/gzip", bytes.NewReader(data), &again); code != http.StatusOK || again != m {
		t.Fatalf("re-upload: %d %s", code, body)
	}
	// Other bytes under a taken version: 409.
	other := tarGz(t, server("Game"), file("Game/Content/a.pak", []byte("other")))
	if code, body := f.do("POST", "/v1/builds?version=1.0", rw, "application/gzip", bytes.NewReader(other), nil); code != http.StatusConflict || !strings.Contains(body, "pick a new version") {
		t.Fatalf("version conflict: %d %s", code, body)
	}
	// Zip upload of a second version.
	var m2 Manifest
	zdata := zipOf(t, server("Game"), file("Game/Content/b.pak", []byte("b")))
	if code, body := f.do("POST", "/v1/builds?version=1.1", rw, "application/zip", bytes.NewReader(zdata), &m2); code != http.StatusCreated || m2.Format != FormatZip {
		t.Fatalf("zip upload: %d %s", code, body)
	}

	var list struct{ Builds []Manifest }
	if code, body := f.do("GET", "/v1/builds", f.dev("studio-a", ScopeRead), "", nil, &list); code != 200 || len(list.Builds) != 2 {
		t.Fatalf("list: %d %s", code, body)
	}
	var got Manifest
	if code, body := f.do("GET", "/v1/builds/"+m.SHA256, rw, "", nil, &got); code != 200 || got != m {
		t.Fatalf("inspect: %d %s", code, body)
	}

	// Traffic: 90/10, then a version serving players cannot be deleted.
	var tr Traffic
	if code, body := f.do("PUT", "/v1/projects/Game/traffic", rw, "application/json", strings.NewReader(`{"weights":{"1.0":90,"1.1":10}}`), &tr); code != 200 || tr.Weights["1.1"] != 10 {
		t.Fatalf("traffic: %d %s", code, body)
	}
	for _, bad := range []string{`{"weights":{"1.0":90}}`, `{"weights":{"1.0":50,"9.9":50}}`, `{"weights":{"1.0":150,"1.1":-50}}`, `{"wieghts":{}}`} {
		if code, body := f.do("PUT", "/v1/projects/Game/traffic", rw, "application/json", strings.NewReader(bad), nil); code < 400 || code >= 500 {
			t.Errorf("traffic %s: %d %s, want a 4xx", bad, code, body)
		}
	}
	if code, body := f.do("DELETE", "/v1/builds/"+m2.SHA256, rw, "", nil, nil); code != http.StatusConflict || !strings.Contains(body, "serves 10%") {
		t.Fatalf("delete in use: %d %s", code, body)
	}
	if code, _ := f.do("PUT", "/v1/projects/Game/traffic", rw, "application/json", strings.NewReader(`{"weights":{"1.0":100}}`), nil); code != 200 {
		t.Fatal("traffic 100")
	}
	if code, body := f.do("DELETE", "/v1/builds/"+m2.SHA256, rw, "", nil, nil); code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", code, body)
	}
	if code, _ := f.do("GET", "/v1/builds/"+m2.SHA256, rw, "", nil, nil); code != http.StatusNotFound {
		t.Fatalf("deleted build still visible: %d", code)
	}
	// The version name is free again after the delete.
	if code, body := f.do("POST", "/v1/builds?version=1.1", rw, "application/zip", bytes.NewReader(zdata), nil); code != http.StatusCreated {
		t.Fatalf("re-upload after delete: %d %s", code, body)
	}
}

// TestAPIAuth: player tokens, server tokens, read-only tokens, missing tenants and other tenants'
// builds are all refused.
func TestAPIAuth(t *testing.T) {
	f := startAPI(t)
	data := tarGz(t, server("Game"))
	var m Manifest
	if code, body := f.do("POST", "/v1/builds", f.dev("studio-a", ScopeWrite), "application/gzip", bytes.NewReader(data), &m); code != 201 {
		t.Fatalf("upload: %d %s", code, body)
	}
	player, _ := f.signer.PlayerToken("p1", time.Hour)
	serverTok, _ := f.signer.ServerToken(token.ServerClaims{PlayerID: "p1", SessionID: "s", Server: DeveloperAudience, ID: "j"})
	other, _ := token.GenerateSigner(token.DefaultIssuer)
	forged, _ := DeveloperToken(other, "x", "studio-a", []string{ScopeWrite}, time.Hour)
	expired, _ := DeveloperToken(f.signer, "x", "studio-a", []string{ScopeWrite}, -time.Hour)
	cases := []struct {
		name, method, path, tok string
		want                    int
	}{
		{"no token", "GET", "/v1/builds", "", 401},
		{"player token", "GET", "/v1/builds", player, 401},
		{"server token", "GET", "/v1/builds", serverTok, 401},
		{"foreign key", "GET", "/v1/builds", forged, 401},
		{"expired", "GET", "/v1/builds", expired, 401},
		{"no scope", "GET", "/v1/builds", f.dev("studio-a", "profile"), 403},
		{"read-only upload", "POST", "/v1/builds", f.dev("studio-a", ScopeRead), 403},
		{"read-only delete", "DELETE", "/v1/builds/" + m.SHA256, f.dev("studio-a", ScopeRead), 403},
		{"other tenant inspect", "GET", "/v1/builds/" + m.SHA256, f.dev("studio-b", ScopeWrite), 404},
		{"other tenant delete", "DELETE", "/v1/builds/" + m.SHA256, f.dev("studio-b", ScopeWrite), 404},
		{"other tenant traffic", "PUT", "/v1/projects/Game/traffic", f.dev("studio-b", ScopeWrite), 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			ctype := ""
			switch tc.method {
			case "POST":
				body, ctype = bytes.NewReader(data), "application/gzip"
			case "PUT":
				body, ctype = strings.NewReader(`{"weights":{"`+m.Version+`":100}}`), "application/json"
			}
			if code, text := f.do(tc.method, tc.path, tc.tok, ctype, body, nil); code != tc.want {
				t.Errorf("%d %s, want %d", code, text, tc.want)
			}
		})
	}
	var list struct{ Builds []Manifest }
	if code, _ := f.do("GET", "/v1/builds", f.dev("studio-b", ScopeRead), "", nil, &list); code != 200 || len(list.Builds) != 0 {
		t.Fatalf("studio-b sees %d builds of studio-a", len(list.Builds))
	}
	// studio-a's build survived every refused call.
	if code, _ := f.do("GET", "/v1/builds/"+m.SHA256, f.dev("studio-a", ScopeRead), "", nil, nil); code != 200 {
		t.Fatal("build lost")
	}
}

// TestAPIRefusalSaysWhy: a hostile upload is a 4xx whose message names entry and limit, and a
// wrong Content-Type is 415.
func TestAPIRefusalSaysWhy(t *testing.T) {
	f := startAPI(t)
	rw := f.dev("studio-a", ScopeWrite)
	data := tarGz(t, server("Game"), file("Game/../../x", []byte("x")))
	code, body := f.do("POST", "/v1/builds", rw, "application/gzip", bytes.NewReader(data), nil)
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, `Game/../../x`) || !strings.Contains(body, "path traversal") {
		t.Fatalf("%d %s", code, body)
	}
	if code, body := f.do("POST", "/v1/builds", rw, "text/plain", bytes.NewReader(data), nil); code != http.StatusUnsupportedMediaType {
		t.Fatalf("%d %s", code, body)
	}
	big := tarGz(t, server("Game"), ent{name: "Game/bomb", typ: '0', size: 30 << 20})
	if code, body := f.do("POST", "/v1/builds", rw, "application/gzip", bytes.NewReader(big), nil); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("bomb: %d %s", code, body)
	}
}
