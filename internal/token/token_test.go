package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Keys are generated once per test binary: RSA generation is slow under -race.
var testKeys = sync.OnceValue(func() map[string]crypto.Signer {
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	rs, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return map[string]crypto.Signer{AlgEdDSA: ed, AlgES256: ec, AlgRS256: rs}
})

// fixedNow is the test clock; tokens are built around it.
var fixedNow = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func newTestSigner(t testing.TB, alg, kid string) *Signer {
	t.Helper()
	s, err := NewSigner(testKeys()[alg], kid, DefaultIssuer)
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return fixedNow }
	return s
}

func verifierFor(t testing.TB, s ...*Signer) *Verifier {
	t.Helper()
	cfg := DefaultVerifierConfig()
	cfg.Now = func() time.Time { return fixedNow }
	for _, x := range s {
		cfg.Keys = append(cfg.Keys, x.PublicKey())
	}
	v, err := NewVerifier(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// rawToken builds a token by hand, signing "header.payload" with sign (nil: no signature).
func rawToken(t testing.TB, header, claims map[string]any, sign func(input string) []byte) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
	var sig []byte
	if sign != nil {
		sig = sign(input)
	}
	return input + "." + b64.EncodeToString(sig)
}

func serverClaims(exp time.Time) map[string]any {
	return map[string]any{"iss": DefaultIssuer, "sub": "p1", "aud": "gs-1", "sid": "s1", "jti": "j1",
		"iat": fixedNow.Unix(), "nbf": fixedNow.Unix(), "exp": exp.Unix()}
}

func TestServerTokenRoundTripEachKeyType(t *testing.T) {
	for _, alg := range []string{AlgEdDSA, AlgES256, AlgRS256} {
		t.Run(alg, func(t *testing.T) {
			s := newTestSigner(t, alg, "k-"+alg)
			v := verifierFor(t, s)
			raw, issued, err := s.IssueServerToken(ServerClaims{PlayerID: "p1", SessionID: "s1", Server: "gs-1",
				ExpiresAt: fixedNow.Add(DefaultServerTokenTTL)})
			if err != nil {
				t.Fatal(err)
			}
			got, err := v.VerifyServerToken(raw, "gs-1")
			if err != nil {
				t.Fatal(err)
			}
			if got != issued {
				t.Fatalf("verified %+v, issued %+v", got, issued)
			}
			if got.ID == "" || !got.IssuedAt.Equal(fixedNow) || !got.ExpiresAt.Equal(fixedNow.Add(time.Minute)) {
				t.Fatalf("defaults not filled: %+v", got)
			}
			hdr := decodeHeader(t, raw)
			if hdr["alg"] != alg || hdr["kid"] != "k-"+alg || hdr["typ"] != ServerTokenType {
				t.Fatalf("header %v", hdr)
			}
			// A player token of the same key verifies as a player token, not as a server token.
			pt, err := s.PlayerToken("p1", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			pc, err := v.VerifyPlayerToken(pt)
			if err != nil || pc.PlayerID != "p1" {
				t.Fatalf("player token: %+v %v", pc, err)
			}
			if _, err := v.VerifyServerToken(pt, "gs-1"); !errors.Is(err, ErrTokenType) {
				t.Fatalf("player token accepted as server token: %v", err)
			}
			if _, err := v.VerifyPlayerToken(raw); !errors.Is(err, ErrTokenType) {
				t.Fatalf("server token accepted as player token: %v", err)
			}
		})
	}
}

func TestUniqueIDs(t *testing.T) {
	s := newTestSigner(t, AlgEdDSA, "k1")
	v := verifierFor(t, s)
	seen := map[string]bool{}
	for range 100 {
		raw, err := s.ServerToken(ServerClaims{PlayerID: "p1", SessionID: "s1", Server: "gs-1", ExpiresAt: fixedNow.Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		c, err := v.VerifyServerToken(raw, "gs-1")
		if err != nil {
			t.Fatal(err)
		}
		if seen[c.ID] {
			t.Fatalf("jti %q issued twice", c.ID)
		}
		seen[c.ID] = true
	}
}

func decodeHeader(t *testing.T, raw string) map[string]any {
	t.Helper()
	h, err := b64.DecodeString(strings.Split(raw, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(h, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestBadServerTokens is the issue's "bad input and security" table: each token is refused with
// the right sentinel and a message naming what is wrong.
func TestBadServerTokens(t *testing.T) {
	ed := newTestSigner(t, AlgEdDSA, "k1")
	es := newTestSigner(t, AlgES256, "k2")
	other := func() *Signer { // same kid as ed, different key: a forger
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		s, _ := NewSigner(k, "k1", DefaultIssuer)
		return s
	}()
	v := verifierFor(t, ed, es)
	edSign := func(input string) []byte {
		sig, err := jwt.SigningMethodEdDSA.Sign(input, ed.key)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	pubPEM, err := MarshalPublicKeyPEM(ed.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	good := serverClaims(fixedNow.Add(time.Minute))
	with := func(k string, val any) map[string]any {
		m := map[string]any{}
		for a, b := range good {
			m[a] = b
		}
		if val == nil {
			delete(m, k)
		} else {
			m[k] = val
		}
		return m
	}
	hdr := map[string]any{"alg": "EdDSA", "kid": "k1", "typ": ServerTokenType}
	valid := rawToken(t, hdr, good, edSign)
	if _, err := v.VerifyServerToken(valid, "gs-1"); err != nil {
		t.Fatalf("baseline token refused: %v", err)
	}
	parts := strings.Split(valid, ".")
	tamperedClaims, _ := json.Marshal(with("sub", "p2"))
	forged, err := other.ServerToken(ServerClaims{PlayerID: "p1", SessionID: "s1", Server: "gs-1", ExpiresAt: fixedNow.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	esToken, err := es.ServerToken(ServerClaims{PlayerID: "p1", SessionID: "s1", Server: "gs-1", ExpiresAt: fixedNow.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	esParts := strings.Split(esToken, ".")
	esHdrAsK1, _ := json.Marshal(map[string]any{"alg": "ES256", "kid": "k1", "typ": ServerTokenType})

	cases := []struct {
		name   string
		raw    string
		server string
		want   error
		msg    string // substring the message must contain
	}{
		{"alg none", rawToken(t, map[string]any{"alg": "none", "kid": "k1", "typ": ServerTokenType}, good, nil), "gs-1",
			ErrAlgorithm, `algorithm "none" not allowed for key "k1" (allowed: EdDSA)`},
		{"alg None unregistered", rawToken(t, map[string]any{"alg": "None", "kid": "k1"}, good, nil), "gs-1",
			ErrAlgorithm, `algorithm "None" not supported`},
		{"HS256 keyed with the public key (algorithm confusion)", rawToken(t, map[string]any{"alg": "HS256", "kid": "k1", "typ": ServerTokenType}, good,
			func(in string) []byte {
				sig, err := jwt.SigningMethodHS256.Sign(in, pubPEM)
				if err != nil {
					t.Fatal(err)
				}
				return sig
			}), "gs-1", ErrAlgorithm, `algorithm "HS256" not allowed for key "k1"`},
		{"HS256 keyed with the raw public key bytes", rawToken(t, map[string]any{"alg": "HS256", "kid": "k1", "typ": ServerTokenType}, good,
			func(in string) []byte {
				sig, _ := jwt.SigningMethodHS256.Sign(in, []byte(ed.key.Public().(ed25519.PublicKey)))
				return sig
			}), "gs-1", ErrAlgorithm, `not allowed for key "k1"`},
		{"ES256 token claiming the Ed25519 kid", esParts[0][:0] + b64.EncodeToString(esHdrAsK1) + "." + esParts[1] + "." + esParts[2], "gs-1",
			ErrAlgorithm, `algorithm "ES256" not allowed for key "k1" (allowed: EdDSA)`},
		{"expired", rawToken(t, hdr, with("exp", fixedNow.Add(-10*time.Second).Unix()), edSign), "gs-1",
			ErrExpired, "expired at 2026-11-21T11:59:50Z (now 2026-11-21T12:00:00Z, leeway 5s)"},
		{"not yet valid", rawToken(t, hdr, with("nbf", fixedNow.Add(30*time.Second).Unix()), edSign), "gs-1",
			ErrNotYetValid, "not valid before 2026-11-21T12:00:30Z"},
		{"issued in the future", rawToken(t, hdr, with("iat", fixedNow.Add(30*time.Second).Unix()), edSign), "gs-1",
			ErrNotYetValid, "issued in the future"},
		{"no exp", rawToken(t, hdr, with("exp", nil), edSign), "gs-1", ErrMissingClaim, "no exp"},
		{"wrong issuer", rawToken(t, hdr, with("iss", "evil"), edSign), "gs-1", ErrIssuer, `issuer "evil", want "kumi"`},
		{"wrong audience", valid, "gs-2", ErrAudience, `want "gs-2" (this game server)`},
		{"unknown kid", rawToken(t, map[string]any{"alg": "EdDSA", "kid": "x", "typ": ServerTokenType}, good, edSign), "gs-1",
			ErrUnknownKey, `unknown kid "x"`},
		{"no kid with two keys", rawToken(t, map[string]any{"alg": "EdDSA", "typ": ServerTokenType}, good, edSign), "gs-1",
			ErrUnknownKey, "no kid header"},
		{"tampered payload", parts[0] + "." + b64.EncodeToString(tamperedClaims) + "." + parts[2], "gs-1",
			ErrSignature, `signature does not verify with key "k1" (EdDSA)`},
		{"signed by another key under the same kid", forged, "gs-1", ErrSignature, "signature does not verify"},
		{"truncated signature", valid[:len(valid)-4], "gs-1", ErrSignature, "signature does not verify"},
		{"oversized", rawToken(t, hdr, with("pad", strings.Repeat("a", 9000)), edSign), "gs-1", ErrTooLarge, "exceeds the limit of 8192"},
		{"two segments", parts[0] + "." + parts[1], "gs-1", ErrMalformed, "invalid number of segments"},
		{"empty", "", "gs-1", ErrMalformed, "empty token"},
		{"garbage header", "!!!." + parts[1] + "." + parts[2], "gs-1", ErrMalformed, "header"},
		{"exp as string", rawToken(t, hdr, with("exp", "tomorrow"), edSign), "gs-1", ErrMalformed, "claim"},
		{"aud as number", rawToken(t, hdr, with("aud", 5), edSign), "gs-1", ErrMalformed, "aud must be a string or an array"},
		{"aud as array", rawToken(t, hdr, with("aud", []string{"gs-9", "gs-2"}), edSign), "gs-1", ErrAudience, `audience ["gs-9" "gs-2"], want "gs-1"`},
		{"exp huge", rawToken(t, hdr, with("exp", 1e300), edSign), "gs-1", ErrMalformed, "exp is not a valid NumericDate"},
		{"no sid", rawToken(t, hdr, with("sid", nil), edSign), "gs-1", ErrMissingClaim, "no sid"},
		{"no jti", rawToken(t, hdr, with("jti", nil), edSign), "gs-1", ErrMissingClaim, "no jti"},
		{"no sub", rawToken(t, hdr, with("sub", nil), edSign), "gs-1", ErrMissingClaim, "no sub"},
		{"player typ", rawToken(t, map[string]any{"alg": "EdDSA", "kid": "k1", "typ": "JWT"}, good, edSign), "gs-1", ErrTokenType, "not a server token"},
	}
	sentinels := []error{ErrMalformed, ErrTooLarge, ErrAlgorithm, ErrUnknownKey, ErrSignature, ErrExpired,
		ErrNotYetValid, ErrIssuer, ErrAudience, ErrTokenType, ErrMissingClaim}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.VerifyServerToken(tc.raw, tc.server)
			if err == nil {
				t.Fatalf("accepted: %+v", c)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %q is not %v", err, tc.want)
			}
			for _, s := range sentinels {
				if s != tc.want && errors.Is(err, s) {
					t.Fatalf("error %q also matches %v", err, s)
				}
			}
			if !strings.HasPrefix(err.Error(), "token: ") || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("message %q does not contain %q", err, tc.msg)
			}
			if c != (ServerClaims{}) {
				t.Fatalf("claims returned with an error: %+v", c)
			}
		})
	}
	// Within the leeway both ways is fine.
	for _, claims := range []map[string]any{with("exp", fixedNow.Add(-4*time.Second).Unix()), with("nbf", fixedNow.Add(4*time.Second).Unix())} {
		if _, err := v.VerifyServerToken(rawToken(t, hdr, claims, edSign), "gs-1"); err != nil {
			t.Fatalf("token within leeway refused: %v", err)
		}
	}
}

func TestBadPlayerTokens(t *testing.T) {
	s := newTestSigner(t, AlgEdDSA, "k1")
	v := verifierFor(t, s)
	cases := []struct {
		name string
		c    PlayerClaims
		want error
		msg  string
	}{
		{"wrong audience", PlayerClaims{PlayerID: "p1", Audience: []string{"other"}, ExpiresAt: fixedNow.Add(time.Hour)}, ErrAudience, `want "kumi"`},
		{"no audience", PlayerClaims{PlayerID: "p1", ExpiresAt: fixedNow.Add(time.Hour)}, ErrAudience, `want "kumi"`},
		{"wrong issuer", PlayerClaims{PlayerID: "p1", Issuer: "idp", Audience: []string{"kumi"}, ExpiresAt: fixedNow.Add(time.Hour)}, ErrIssuer, `issuer "idp"`},
		{"expired", PlayerClaims{PlayerID: "p1", Audience: []string{"kumi"}, ExpiresAt: fixedNow.Add(-time.Hour)}, ErrExpired, "expired at 2026-11-21T11:00:00Z"},
		{"never expires", PlayerClaims{PlayerID: "p1", Audience: []string{"kumi"}}, ErrMissingClaim, "no exp"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := s.SignPlayer(tc.c)
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.VerifyPlayerToken(raw)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %v containing %q", err, tc.want, tc.msg)
			}
		})
	}
	// any-audience (with an empty audience) accepts any audience.
	cfg := DefaultVerifierConfig()
	cfg.Audience, cfg.AnyAudience, cfg.Keys, cfg.Now = "", true, []PublicKey{s.PublicKey()}, func() time.Time { return fixedNow }
	any, err := NewVerifier(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := s.SignPlayer(PlayerClaims{PlayerID: "p1", Audience: []string{"game"}, ExpiresAt: fixedNow.Add(time.Hour)})
	if _, err := any.VerifyPlayerToken(raw); err != nil {
		t.Fatal(err)
	}
}

func TestSignerRefusesBadKeysAndClaims(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := NewSigner(p384, "", "kumi"); err == nil || !strings.Contains(err.Error(), "P-384 not supported") {
		t.Fatalf("P-384: %v", err)
	}
	if _, err := NewSigner(nil, "", "kumi"); err == nil {
		t.Fatal("nil key accepted")
	}
	s := newTestSigner(t, AlgEdDSA, "")
	if tp, _ := Thumbprint(s.key.Public()); s.KID() != tp {
		t.Fatalf("empty kid = %q, want the thumbprint %q", s.KID(), tp)
	}
	for _, c := range []ServerClaims{
		{SessionID: "s", Server: "g", ExpiresAt: fixedNow},
		{PlayerID: "p", Server: "g", ExpiresAt: fixedNow},
		{PlayerID: "p", SessionID: "s", ExpiresAt: fixedNow},
		{PlayerID: "p", SessionID: "s", Server: "g"},
	} {
		if _, err := s.ServerToken(c); err == nil || !strings.Contains(err.Error(), "needs") {
			t.Fatalf("%+v: %v", c, err)
		}
	}
	if _, err := s.PlayerToken("p1", 0); err == nil {
		t.Fatal("zero ttl accepted")
	}
}

// TestThumbprintRFC8037 checks the kid computation against RFC 8037 appendix A.3.
func TestThumbprintRFC8037(t *testing.T) {
	x, _ := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	got, err := Thumbprint(ed25519.PublicKey(x))
	if err != nil {
		t.Fatal(err)
	}
	if want := "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; got != want {
		t.Fatalf("thumbprint %s, want %s", got, want)
	}
}

func TestPEMFilesAndJWKSFile(t *testing.T) {
	dir := t.TempDir()
	var signers []*Signer
	for _, alg := range []string{AlgEdDSA, AlgES256, AlgRS256} {
		s := newTestSigner(t, alg, "")
		priv, err := MarshalPrivateKeyPEM(s.PrivateKey())
		if err != nil {
			t.Fatal(err)
		}
		pub, err := MarshalPublicKeyPEM(s.PublicKey().Key)
		if err != nil {
			t.Fatal(err)
		}
		must(t, os.WriteFile(filepath.Join(dir, alg+".key"), priv, 0o600))
		must(t, os.WriteFile(filepath.Join(dir, alg+".pub"), pub, 0o644))
		loaded, err := LoadSigner(filepath.Join(dir, alg+".key"), "", DefaultIssuer)
		if err != nil {
			t.Fatal(err)
		}
		loaded.now = s.now
		if loaded.KID() != s.KID() || loaded.Alg() != alg {
			t.Fatalf("loaded %s/%s, want %s/%s", loaded.KID(), loaded.Alg(), s.KID(), alg)
		}
		signers = append(signers, loaded)
	}
	jwks, err := MarshalJWKS(signers[1].PublicKey(), signers[2].PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(filepath.Join(dir, "jwks.json"), jwks, 0o644))

	cfg := DefaultVerifierConfig()
	cfg.Now = func() time.Time { return fixedNow }
	cfg.PublicKeys = []string{filepath.Join(dir, AlgEdDSA+".pub"), "named=" + filepath.Join(dir, AlgEdDSA+".pub")}
	cfg.JWKSFile = filepath.Join(dir, "jwks.json")
	// Keys with spare capacity: the PEM keys must not be appended into the caller's array.
	extra := newTestSigner(t, AlgES256, "extra").PublicKey()
	cfg.Keys = append(make([]PublicKey, 0, 4), extra)
	v, err := NewVerifier(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.KIDs()) != 5 {
		t.Fatalf("kids %v", v.KIDs())
	}
	if spare := cfg.Keys[:2][1]; spare.KID != "" {
		t.Fatalf("NewVerifier wrote key %q into the caller's Keys array", spare.KID)
	}
	for _, s := range signers {
		raw, err := s.ServerToken(ServerClaims{PlayerID: "p", SessionID: "s", Server: "g", ExpiresAt: fixedNow.Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.VerifyServerToken(raw, "g"); err != nil {
			t.Fatalf("%s: %v", s.Alg(), err)
		}
	}

	bad := []struct {
		name, file, content, want string
	}{
		{"not PEM", "a.pub", "hello", "no PEM block"},
		{"private key as public", "b.pub", string(must2(MarshalPrivateKeyPEM(signers[0].key))), `"PRIVATE KEY" is not a public key`},
		{"JWKS alg mismatch", "c.json", `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","alg":"HS256","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`, `alg "HS256" not allowed`},
		{"JWKS symmetric key", "d.json", `{"keys":[{"kty":"oct","kid":"a","k":"c2VjcmV0"}]}`, `kty "oct" not supported`},
		{"JWKS not JSON", "e.json", `{`, "not valid JSON"},
		{"JWKS point off curve", "f.json", `{"keys":[{"kty":"EC","crv":"P-256","kid":"a","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE"}]}`, "point invalid"},
		{"JWKS empty", "g.json", `{"keys":[]}`, "empty"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.file)
			must(t, os.WriteFile(p, []byte(tc.content), 0o644))
			cfg := DefaultVerifierConfig()
			if strings.HasSuffix(tc.file, ".json") {
				cfg.JWKSFile = p
			} else {
				cfg.PublicKeys = []string{p}
			}
			_, err := NewVerifier(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := NewVerifier(context.Background(), DefaultVerifierConfig()); err == nil || !strings.Contains(err.Error(), "no keys") {
		t.Fatalf("no keys: %v", err)
	}
}

func TestSignerVerifier(t *testing.T) {
	s, err := GenerateSigner("kumi")
	if err != nil {
		t.Fatal(err)
	}
	v := s.Verifier(PlayerAudience, time.Second)
	pt, _ := s.PlayerToken("p9", time.Minute)
	if c, err := v.VerifyPlayerToken(pt); err != nil || c.PlayerID != "p9" || c.Issuer != "kumi" {
		t.Fatalf("%+v %v", c, err)
	}
	st, _ := s.ServerToken(ServerClaims{PlayerID: "p9", SessionID: "s", Server: "g", ExpiresAt: time.Now().Add(time.Minute)})
	if _, err := v.VerifyServerToken(st, "g"); err != nil {
		t.Fatal(err)
	}
	other, _ := GenerateSigner("kumi")
	if other.KID() == s.KID() {
		t.Fatal("GenerateSigner repeated a kid")
	}
	st2, _ := other.ServerToken(ServerClaims{PlayerID: "p9", SessionID: "s", Server: "g", ExpiresAt: time.Now().Add(time.Minute)})
	if _, err := v.VerifyServerToken(st2, "g"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("other signer's token: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func must2[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestNewVerifierRefusesBadConfig: each unusable setting is refused at construction, naming the
// flag to fix, before any JWKS is fetched.
func TestNewVerifierRefusesBadConfig(t *testing.T) {
	key := newTestSigner(t, AlgEdDSA, "k").PublicKey()
	for _, tc := range []struct {
		name   string
		mutate func(*VerifierConfig)
		want   string
	}{
		{"no keys", func(c *VerifierConfig) { c.Keys = nil }, "set public-keys, jwks-file or jwks-url"},
		{"token cap", func(c *VerifierConfig) { c.MaxTokenBytes = 0 }, "max-token-bytes"},
		{"negative leeway", func(c *VerifierConfig) { c.Leeway = -time.Second }, "leeway"},
		{"jwks url without timeout", func(c *VerifierConfig) { c.JWKSURL, c.JWKSTimeout = "http://127.0.0.1:1/jwks", 0 }, "jwks-timeout"},
		{"jwks url not http", func(c *VerifierConfig) { c.JWKSURL = "file:///etc/jwks.json" }, `scheme "file" not supported`},
		{"empty issuer without opt-out", func(c *VerifierConfig) { c.Issuer = "" }, "any-issuer"},
		{"issuer and any-issuer", func(c *VerifierConfig) { c.AnyIssuer = true }, "choose one"},
		{"audience and any-audience", func(c *VerifierConfig) { c.AnyAudience = true }, "choose one"},
		{"negative min refresh", func(c *VerifierConfig) { c.JWKSMinRefresh = -time.Second }, "jwks-min-refresh"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultVerifierConfig()
			cfg.Keys = []PublicKey{key}
			tc.mutate(&cfg)
			if _, err := NewVerifier(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %q", err, tc.want)
			}
		})
	}
}

// The client reads the instance from its server token without verifying it; a token without one
// is refused with a message naming the claim.
func TestUnverifiedServerInstance(t *testing.T) {
	s, err := GenerateSigner(DefaultIssuer)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.ServerToken(ServerClaims{PlayerID: "p", SessionID: "s", Server: "gs", Instance: "abc", ExpiresAt: time.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if ins, err := UnverifiedServerInstance(raw); err != nil || ins != "abc" {
		t.Fatalf("instance %q %v", ins, err)
	}
	if c, err := s.Verifier("", 0).VerifyServerToken(raw, "gs"); err != nil || c.Instance != "abc" {
		t.Fatalf("verified %+v %v", c, err)
	}
	none, _ := s.ServerToken(ServerClaims{PlayerID: "p", SessionID: "s", Server: "gs", ExpiresAt: time.Now().Add(time.Minute)})
	for _, tok := range []string{none, "garbage"} {
		if _, err := UnverifiedServerInstance(tok); err == nil {
			t.Fatalf("%q: no error", tok)
		}
	}
}
