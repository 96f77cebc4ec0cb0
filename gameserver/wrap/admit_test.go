package wrap

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/internal/token"
)

// TestAdmit: the admit endpoint's answers, without a sandbox (the end-to-end test covers the path
// from a UDP client through the fake Unreal server).
func TestAdmit(t *testing.T) {
	s := mustSigner(t)
	v := s.Verifier("", time.Second)
	a := newAdmitter(v, "srv-1", "")
	h := httptest.NewServer(a)
	defer h.Close()
	mint := func(player, session, server, jti string, ttl time.Duration) string {
		tok, err := s.ServerToken(token.ServerClaims{PlayerID: player, SessionID: session, Server: server, ID: jti, ExpiresAt: time.Now().Add(ttl)})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	post := func(body string) (int, string) {
		resp, err := http.Post(h.URL+"/v1/admit", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		buf := make([]byte, 4096)
		n, _ := resp.Body.Read(buf)
		return resp.StatusCode, string(buf[:n])
	}
	tok := func(t string) string { return `{"token":"` + t + `"}` }
	for _, tc := range []struct {
		name string
		body string
		code int
		want string
	}{
		{"first player pins the session", tok(mint("a", "m1", "srv-1", "j1", time.Minute)), 200, `"player_id":"a","session_id":"m1"`},
		{"same match", tok(mint("b", "m1", "srv-1", "j2", time.Minute)), 200, `"player_id":"b"`},
		{"replay", tok(mint("a", "m1", "srv-1", "j1", time.Minute)), 409, "already used"},
		{"other match", tok(mint("c", "m2", "srv-1", "j3", time.Minute)), 409, "another session"},
		{"other server", tok(mint("d", "m1", "srv-2", "j4", time.Minute)), 403, "audience"},
		{"expired", tok(mint("e", "m1", "srv-1", "j5", -time.Minute)), 403, "expired"},
		{"player token", tok(func() string { p, _ := s.PlayerToken("f", time.Hour); return p }()), 403, "not a server token"},
		{"garbage", `{"token":`, 400, "want"},
		{"empty", `{}`, 400, "want"},
	} {
		code, body := post(tc.body)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s, want %d ...%s", tc.name, code, body, tc.code, tc.want)
		}
	}
	if resp, err := http.Get(h.URL + "/v1/admit"); err != nil || resp.StatusCode != 404 {
		t.Errorf("GET /v1/admit: %v %v", resp.StatusCode, err)
	}
}
