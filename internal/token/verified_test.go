package token

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestVerifiedCache: a player token whose signature checked out is not checked again, but every
// other check still runs on each call, a key dropped from the JWKS stops its tokens at once,
// failures are never remembered, and server tokens (single use) never enter.
func TestVerifiedCache(t *testing.T) {
	a := newTestSigner(t, AlgEdDSA, "a")
	b := newTestSigner(t, AlgEdDSA, "b")
	type env struct {
		v       *Verifier
		srv     *jwksServer
		advance func(time.Duration)
	}
	newEnv := func(t *testing.T, size int) env {
		srv := newJWKSServer(t, must2(MarshalJWKS(a.PublicKey(), b.PublicKey())))
		now := fixedNow
		var mu sync.Mutex
		cfg := DefaultVerifierConfig()
		cfg.JWKSURL = srv.URL
		cfg.JWKSRefresh = 0
		cfg.VerifiedCache = size
		cfg.Claims = []string{"groups"}
		cfg.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		v, err := NewVerifier(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return env{v: v, srv: srv, advance: func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }}
	}
	player := func(t *testing.T, s *Signer, ttl time.Duration) string {
		raw, err := s.PlayerToken("p1", ttl, map[string]any{"groups": []any{"g1"}})
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	for _, tc := range []struct {
		name string
		size int
		run  func(t *testing.T, e env)
		// checks is how many signature checks the run must have made.
		checks int64
	}{
		{"same token twice is checked once", 10, func(t *testing.T, e env) {
			tok := player(t, a, time.Hour)
			for range 2 {
				c, err := e.v.VerifyPlayerToken(tok)
				if err != nil || c.PlayerID != "p1" {
					t.Fatalf("%+v %v", c, err)
				}
			}
		}, 1},
		{"cache off checks every call", 0, func(t *testing.T, e env) {
			tok := player(t, a, time.Hour)
			for range 2 {
				if _, err := e.v.VerifyPlayerToken(tok); err != nil {
					t.Fatal(err)
				}
			}
		}, 2},
		{"a remembered token still expires", 10, func(t *testing.T, e env) {
			tok := player(t, a, time.Minute)
			if _, err := e.v.VerifyPlayerToken(tok); err != nil {
				t.Fatal(err)
			}
			e.advance(2 * time.Minute)
			if _, err := e.v.VerifyPlayerToken(tok); !errors.Is(err, ErrExpired) {
				t.Fatalf("expired token: %v", err)
			}
		}, 1},
		{"a key dropped from the JWKS stops its remembered tokens", 10, func(t *testing.T, e env) {
			tok := player(t, a, time.Hour)
			if _, err := e.v.VerifyPlayerToken(tok); err != nil {
				t.Fatal(err)
			}
			e.srv.doc.Store(must2(MarshalJWKS(b.PublicKey())))
			if err := e.v.Refresh(); err != nil {
				t.Fatal(err)
			}
			if _, err := e.v.VerifyPlayerToken(tok); !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("token of the dropped key: %v", err)
			}
		}, 2},
		{"a refresh keeping the key makes the next call check once more", 10, func(t *testing.T, e env) {
			tok := player(t, a, time.Hour)
			for range 2 {
				if _, err := e.v.VerifyPlayerToken(tok); err != nil {
					t.Fatal(err)
				}
				if err := e.v.Refresh(); err != nil {
					t.Fatal(err)
				}
			}
		}, 2},
		{"failures are not remembered", 10, func(t *testing.T, e env) {
			tok := player(t, a, time.Hour)
			bad := tok[:len(tok)-2] + "AA"
			for range 2 {
				if _, err := e.v.VerifyPlayerToken(bad); !errors.Is(err, ErrSignature) {
					t.Fatalf("altered token: %v", err)
				}
			}
		}, 2},
		{"server tokens are checked every time", 10, func(t *testing.T, e env) {
			raw, err := a.ServerToken(ServerClaims{PlayerID: "p", SessionID: "s", Server: "g", ExpiresAt: fixedNow.Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if _, err := e.v.VerifyServerToken(raw, "g"); err != nil {
					t.Fatal(err)
				}
			}
			// And a server token offered as a player token is refused even when remembered.
			for range 2 {
				if _, err := e.v.VerifyPlayerToken(raw); !errors.Is(err, ErrTokenType) {
					t.Fatalf("server token as player token: %v", err)
				}
			}
		}, 3},
		{"a caller changing its claims does not change the next caller's", 10, func(t *testing.T, e env) {
			tok := player(t, a, time.Hour)
			c, err := e.v.VerifyPlayerToken(tok)
			if err != nil {
				t.Fatal(err)
			}
			c.Claims["groups"] = "changed"
			c.Audience[0] = "changed"
			c2, err := e.v.VerifyPlayerToken(tok)
			if err != nil {
				t.Fatal(err)
			}
			if g, ok := c2.Claims["groups"].([]any); !ok || len(g) != 1 || g[0] != "g1" || c2.Audience[0] != PlayerAudience {
				t.Fatalf("claims %v, audience %v", c2.Claims, c2.Audience)
			}
		}, 1},
		{"the cache is bounded", 1, func(t *testing.T, e env) {
			t1, t2 := player(t, a, time.Hour), player(t, b, time.Hour)
			for _, tok := range []string{t1, t2, t1} {
				if _, err := e.v.VerifyPlayerToken(tok); err != nil {
					t.Fatal(err)
				}
			}
		}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.size)
			tc.run(t, e)
			if got := e.v.verifies.Load(); got != tc.checks {
				t.Fatalf("%d signature checks, want %d", got, tc.checks)
			}
		})
	}
	if _, err := NewVerifier(context.Background(), VerifierConfig{Keys: []PublicKey{a.PublicKey()}, Issuer: DefaultIssuer, MaxTokenBytes: 1, VerifiedCache: -1}); err == nil {
		t.Fatal("negative verified-cache accepted")
	}
}
