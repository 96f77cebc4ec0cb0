package token

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// jwksServer serves whatever doc holds on a real HTTP server on 127.0.0.1 and counts the fetches.
type jwksServer struct {
	*httptest.Server
	doc     atomic.Value // []byte
	status  atomic.Int32 // 0: 200
	fetches atomic.Int32
}

func newJWKSServer(t *testing.T, doc []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.doc.Store(doc)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		if code := s.status.Load(); code != 0 {
			http.Error(w, "down", int(code))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(s.doc.Load().([]byte))
	}))
	t.Cleanup(s.Close)
	return s
}

// waitFor polls cond with a generous deadline: the refresher runs on its own goroutine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestJWKSRotation rotates keys behind a real HTTP JWKS: a token of a new kid fails at once (no
// request waits on the JWKS) and asks the background refresher for one re-fetch, re-fetches are rate
// limited, a withdrawn key stops verifying, and a failing or empty JWKS keeps the cached keys.
func TestJWKSRotation(t *testing.T) {
	a := newTestSigner(t, AlgEdDSA, "a")
	b := newTestSigner(t, AlgES256, "b")
	srv := newJWKSServer(t, must2(MarshalJWKS(a.PublicKey())))

	now := fixedNow
	var clock sync.Mutex
	cfg := DefaultVerifierConfig()
	cfg.JWKSURL = srv.URL
	cfg.JWKSMinRefresh = 10 * time.Second
	cfg.JWKSRefresh = 0 // only unknown kids and Refresh re-fetch here; the ticker is real time
	cfg.Now = func() time.Time { clock.Lock(); defer clock.Unlock(); return now }
	advance := func(d time.Duration) { clock.Lock(); now = now.Add(d); clock.Unlock() }
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v, err := NewVerifier(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	tok := func(s *Signer) string {
		raw, err := s.ServerToken(ServerClaims{PlayerID: "p", SessionID: "s", Server: "g", ExpiresAt: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	if _, err := v.VerifyServerToken(tok(a), "g"); err != nil || srv.fetches.Load() != 1 {
		t.Fatalf("a: %v, fetches %d", err, srv.fetches.Load())
	}
	// Rotate: b published, a withdrawn. Within the rate limit b is refused and nothing is fetched.
	srv.doc.Store(must2(MarshalJWKS(b.PublicKey())))
	kicks := v.kicks.Load()
	if _, err := v.VerifyServerToken(tok(b), "g"); !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), "re-fetched in the background") {
		t.Fatalf("b within rate limit: %v", err)
	}
	waitFor(t, "the refresher to handle the unknown kid", func() bool { return v.kicks.Load() > kicks })
	if srv.fetches.Load() != 1 {
		t.Fatalf("fetched %d times within the rate limit", srv.fetches.Load())
	}
	advance(11 * time.Second)
	// Many concurrent verifications of the new kid fail fast and cause at most one fetch each
	// min-refresh interval; once fetched, b verifies.
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() { defer wg.Done(); v.VerifyServerToken(tok(b), "g") }()
	}
	wg.Wait()
	waitFor(t, "b to be fetched", func() bool { _, err := v.VerifyServerToken(tok(b), "g"); return err == nil })
	if srv.fetches.Load() != 2 {
		t.Fatalf("fetches %d, want 2", srv.fetches.Load())
	}
	if _, err := v.VerifyServerToken(tok(a), "g"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("withdrawn key a still verifies: %v", err)
	}
	// A failing JWKS keeps the cached keys.
	srv.status.Store(http.StatusServiceUnavailable)
	if err := v.Refresh(); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("refresh against a failing JWKS: %v", err)
	}
	if _, err := v.VerifyServerToken(tok(b), "g"); err != nil {
		t.Fatalf("cached key b refused while JWKS is down: %v", err)
	}
	// An empty JWKS (a provider's bad deploy) keeps them too.
	srv.status.Store(0)
	srv.doc.Store([]byte(`{"keys":[]}`))
	if err := v.Refresh(); err == nil || !strings.Contains(err.Error(), "no usable key") {
		t.Fatalf("refresh to an empty JWKS: %v", err)
	}
	if _, err := v.VerifyServerToken(tok(b), "g"); err != nil {
		t.Fatalf("cached key b dropped by an empty JWKS: %v", err)
	}
	// Startup against a failing JWKS fails with the reason.
	srv.status.Store(http.StatusServiceUnavailable)
	if _, err := NewVerifier(ctx, cfg); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("startup with JWKS down: %v", err)
	}
}

// TestJWKSBackgroundRefresh: with a refresh period, the JWKS is re-read on its own (no request
// involved), so a rotated key works before any token names it.
func TestJWKSBackgroundRefresh(t *testing.T) {
	a := newTestSigner(t, AlgEdDSA, "a")
	b := newTestSigner(t, AlgES256, "b")
	srv := newJWKSServer(t, must2(MarshalJWKS(a.PublicKey())))
	cfg := DefaultVerifierConfig()
	cfg.JWKSURL = srv.URL
	cfg.JWKSRefresh = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v, err := NewVerifier(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.doc.Store(must2(MarshalJWKS(a.PublicKey(), b.PublicKey())))
	waitFor(t, "the background refresh to pick up kid b", func() bool { return len(v.KIDs()) == 2 })
	cancel()
}

// rsaPSSJWK is a real RSA key published for PS256, which kumi does not verify with.
func rsaPSSJWK(t *testing.T) JWK {
	t.Helper()
	j, err := jwkOf(&testKeys()[AlgRS256].(*rsa.PrivateKey).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	j.Kid, j.Use, j.Alg = "pss", "sig", "PS256"
	return j
}

// TestAttackJWKSMixedKeySet: an identity provider's set with an RSA-PSS key (and other keys kumi
// cannot use) next to an Ed25519 key still verifies Ed25519 tokens; the odd keys are skipped and
// logged, never trusted.
func TestAttackJWKSMixedKeySet(t *testing.T) {
	ed := newTestSigner(t, AlgEdDSA, "ed")
	edJWK := must2(ToJWK(ed.PublicKey()))
	set := JWKSet{Keys: []JWK{
		rsaPSSJWK(t),
		{Kty: "oct", Kid: "hmac"},
		{Kty: "EC", Crv: "P-384", Kid: "p384", X: "AA", Y: "AA"},
		edJWK,
		{Kty: "OKP", Crv: "X25519", Kid: "enc", Use: "enc", X: "AA"},
	}}
	doc := must2(jsonMarshal(set))
	srv := newJWKSServer(t, doc)
	var logged strings.Builder
	var logMu sync.Mutex
	cfg := DefaultVerifierConfig()
	cfg.JWKSURL = srv.URL
	cfg.Now = func() time.Time { return fixedNow }
	cfg.Log = newTestLogger(&logMu, &logged)
	v, err := NewVerifier(context.Background(), cfg)
	if err != nil {
		t.Fatalf("mixed JWKS refused: %v", err)
	}
	if got := strings.Join(v.KIDs(), ","); got != "ed" {
		t.Fatalf("trusted kids %q, want only ed", got)
	}
	raw := must2(ed.ServerToken(ServerClaims{PlayerID: "p", SessionID: "s", Server: "g", ExpiresAt: fixedNow.Add(time.Minute)}))
	if _, err := v.VerifyServerToken(raw, "g"); err != nil {
		t.Fatalf("Ed25519 token next to an RSA-PSS key: %v", err)
	}
	logMu.Lock()
	out := logged.String()
	logMu.Unlock()
	for _, want := range []string{`kid \"pss\"`, `alg \"PS256\" not allowed`, `kid \"hmac\"`, `kid \"p384\"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log does not explain the skipped key (%s):\n%s", want, out)
		}
	}
	// A kid published twice is ambiguous: neither copy is trusted.
	_, skipped, err := ParseJWKS(must2(jsonMarshal(JWKSet{Keys: []JWK{edJWK, edJWK, must2(ToJWK(newTestSigner(t, AlgES256, "ec").PublicKey()))}})))
	if err != nil || len(skipped) != 2 || !strings.Contains(skipped[0].Error(), "appears 2 times") {
		t.Fatalf("duplicate kid: skipped %v, err %v", skipped, err)
	}
}

// TestAttackPlainHTTPJWKSRefused: a JWKS URL in clear to another host is refused at start (keys
// fetched in clear could be swapped by anyone on the path); loopback http is allowed for local use.
func TestAttackPlainHTTPJWKSRefused(t *testing.T) {
	key := newTestSigner(t, AlgEdDSA, "k").PublicKey()
	for _, u := range []string{"http://idp.example.com/.well-known/jwks.json", "http://10.0.0.7:8080/jwks", "http://[2001:db8::1]/jwks", "ftp://idp.example.com/jwks"} {
		cfg := DefaultVerifierConfig()
		cfg.Keys = []PublicKey{key}
		cfg.JWKSURL = u
		if _, err := NewVerifier(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "https") {
			t.Errorf("%s: err = %v, want a refusal asking for https", u, err)
		}
	}
	for _, u := range []string{"https://idp.example.com/jwks", "http://127.0.0.1:1/jwks", "http://localhost:1/jwks", "http://[::1]:1/jwks"} {
		if err := checkJWKSURL(u); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
}

// TestJWKSRedirects: a redirect on the same host is followed; one to another host is refused and
// the fetch fails instead of trusting that host's keys.
func TestJWKSRedirects(t *testing.T) {
	a := newTestSigner(t, AlgEdDSA, "a")
	evil := newJWKSServer(t, must2(MarshalJWKS(newTestSigner(t, AlgES256, "evil").PublicKey())))
	mux := http.NewServeMux()
	mux.HandleFunc("/old", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/jwks", http.StatusFound) })
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) { w.Write(must2(MarshalJWKS(a.PublicKey()))) })
	mux.HandleFunc("/away", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, evil.URL+"/jwks", http.StatusFound) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	cfg := DefaultVerifierConfig()
	cfg.JWKSURL = srv.URL + "/old"
	v, err := NewVerifier(context.Background(), cfg)
	if err != nil || strings.Join(v.KIDs(), ",") != "a" {
		t.Fatalf("same-host redirect: %v", err)
	}
	cfg.JWKSURL = srv.URL + "/away"
	if _, err := NewVerifier(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "another host") {
		t.Fatalf("cross-host redirect: %v", err)
	}
	if evil.fetches.Load() != 0 {
		t.Fatalf("the other host was fetched %d times", evil.fetches.Load())
	}
}

// TestIssuerAudienceOptOut: an empty issuer or audience is only accepted with the explicit flag.
func TestIssuerAudienceOptOut(t *testing.T) {
	s := newTestSigner(t, AlgEdDSA, "k")
	raw := must2(s.SignPlayer(PlayerClaims{PlayerID: "p", Issuer: "other-idp", Audience: []string{"other-game"}, ExpiresAt: fixedNow.Add(time.Minute)}))
	for _, tc := range []struct {
		name   string
		mutate func(*VerifierConfig)
		want   error
	}{
		{"defaults check both", func(*VerifierConfig) {}, ErrIssuer},
		{"any issuer still checks audience", func(c *VerifierConfig) { c.Issuer, c.AnyIssuer = "", true }, ErrAudience},
		{"empty audience without opt-out refuses", func(c *VerifierConfig) { c.Issuer, c.AnyIssuer, c.Audience = "", true, "" }, ErrAudience},
		{"both opted out", func(c *VerifierConfig) { c.Issuer, c.AnyIssuer, c.Audience, c.AnyAudience = "", true, "", true }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultVerifierConfig()
			cfg.Keys = []PublicKey{s.PublicKey()}
			cfg.Now = func() time.Time { return fixedNow }
			tc.mutate(&cfg)
			v, err := NewVerifier(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.VerifyPlayerToken(raw)
			if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestUnknownKidErrorHidesTrustedKids: the message reaches unauthenticated callers (the frontend's
// 401 body), so it must not list the kids the verifier trusts.
func TestUnknownKidErrorHidesTrustedKids(t *testing.T) {
	v := verifierFor(t, newTestSigner(t, AlgEdDSA, "secret-kid-1"), newTestSigner(t, AlgES256, "secret-kid-2"))
	raw := must2(newTestSigner(t, AlgEdDSA, "guess").ServerToken(ServerClaims{PlayerID: "p", SessionID: "s", Server: "g", ExpiresAt: fixedNow.Add(time.Minute)}))
	_, err := v.VerifyServerToken(raw, "g")
	if !errors.Is(err, ErrUnknownKey) || strings.Contains(err.Error(), "secret-kid") {
		t.Fatalf("err = %v", err)
	}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// lockedWriter lets the verifier's logger (written from its refresher goroutine) feed a test buffer.
type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func newTestLogger(mu *sync.Mutex, b *strings.Builder) *slog.Logger {
	return slog.New(slog.NewTextHandler(lockedWriter{mu, b}, nil))
}
