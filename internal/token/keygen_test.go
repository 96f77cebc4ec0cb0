package token

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestKeygenThenIssue(t *testing.T) {
	for _, alg := range []string{AlgEdDSA, AlgES256, AlgRS256} {
		t.Run(alg, func(t *testing.T) {
			cfg := DefaultKeygenConfig()
			cfg.Dir, cfg.Alg = t.TempDir(), alg
			s, files, err := Keygen(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != 3 {
				t.Fatalf("files %v", files)
			}
			if st, err := os.Stat(filepath.Join(cfg.Dir, PrivateKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("private key mode: %v %v", st.Mode(), err)
			}
			if _, _, err := Keygen(cfg); err == nil || !strings.Contains(err.Error(), "--force") {
				t.Fatalf("second keygen without --force: %v", err)
			}
			ic := DefaultIssueConfig()
			ic.Key, ic.Player = filepath.Join(cfg.Dir, PrivateKeyFile), "p1"
			raw, err := Issue(ic)
			if err != nil {
				t.Fatal(err)
			}
			vc := DefaultVerifierConfig()
			vc.JWKSFile = filepath.Join(cfg.Dir, JWKSFile)
			v, err := NewVerifier(context.Background(), vc)
			if err != nil {
				t.Fatal(err)
			}
			c, err := v.VerifyPlayerToken(raw)
			if err != nil || c.PlayerID != "p1" || c.ExpiresAt.Sub(c.IssuedAt) != time.Hour {
				t.Fatalf("%+v %v", c, err)
			}
			if v.KIDs()[0] != s.KID() {
				t.Fatalf("kid %v, want %s", v.KIDs(), s.KID())
			}
			// Claims for authenticated attributes: only the ones the verifier asks for come back.
			ic.Groups, ic.Claims = []string{"guild-7", "raid"}, `{"party":"p-7","skill":1450,"role":"x"}`
			raw, err = Issue(ic)
			if err != nil {
				t.Fatal(err)
			}
			vc.Claims = []string{"groups", "party", "skill", "absent"}
			withClaims, err := NewVerifier(context.Background(), vc)
			if err != nil {
				t.Fatal(err)
			}
			c, err = withClaims.VerifyPlayerToken(raw)
			if err != nil || fmt.Sprint(c.Claims) != "map[groups:[guild-7 raid] party:p-7 skill:1450]" {
				t.Fatalf("claims %v, err %v", c.Claims, err)
			}
			if c, _ := v.VerifyPlayerToken(raw); c.Claims != nil {
				t.Fatalf("claims decoded without being asked for: %v", c.Claims)
			}
			ic.Groups, ic.Claims = nil, `{"sub":"someone-else"}`
			if _, err := Issue(ic); err == nil || !strings.Contains(err.Error(), "registered claim") {
				t.Fatalf("claims overriding sub: %v", err)
			}
			ic.Claims = `[1]`
			if _, err := Issue(ic); err == nil || !strings.Contains(err.Error(), "JSON object") {
				t.Fatalf("claims not an object: %v", err)
			}
			ic.Claims = ""
			ic.Server, ic.Session, ic.TTL = "gs-1", "s1", time.Minute
			ic.Instance = "ins-1" // without one: TestIssueServerToken
			raw, err = Issue(ic)
			if err != nil {
				t.Fatal(err)
			}
			if sc, err := v.VerifyServerToken(raw, "gs-1"); err != nil || sc.SessionID != "s1" || sc.Instance != "ins-1" {
				t.Fatalf("%+v %v", sc, err)
			}
		})
	}
	ic := DefaultIssueConfig()
	ic.Key, ic.Player = filepath.Join(t.TempDir(), "missing.key"), "p1"
	if _, err := Issue(ic); err == nil || !strings.Contains(err.Error(), "kumi token keygen") {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := GenerateKey("HS256"); err == nil {
		t.Fatal("HS256 keygen accepted")
	}
}

// TestIssueServerToken: a server token names its session and, for a relay game server, the
// instance; a wrapped dedicated server's token carries no instance.
func TestIssueServerToken(t *testing.T) {
	kc := DefaultKeygenConfig()
	kc.Dir = t.TempDir()
	if _, _, err := Keygen(kc); err != nil {
		t.Fatal(err)
	}
	vc := DefaultVerifierConfig()
	vc.JWKSFile = filepath.Join(kc.Dir, JWKSFile)
	v, err := NewVerifier(context.Background(), vc)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, session, instance, wantErr string
	}{
		{"relay server", "match-1", "abc123", ""},
		{"wrapped dedicated server", "match-1", "", ""},
		{"no session", "", "abc123", "--session"},
	} {
		ic := DefaultIssueConfig()
		ic.Key, ic.Player, ic.Server, ic.Session, ic.Instance = filepath.Join(kc.Dir, PrivateKeyFile), "alice", "duel-1", tc.session, tc.instance
		raw, err := Issue(ic)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: Issue = %v, want an error naming %s", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		c, err := v.VerifyServerToken(raw, "duel-1")
		if err != nil || c.PlayerID != "alice" || c.SessionID != tc.session || c.Instance != tc.instance {
			t.Errorf("%s: verified %+v, %v", tc.name, c, err)
		}
		if _, err := UnverifiedServerInstance(raw); (err == nil) != (tc.instance != "") {
			t.Errorf("%s: instance read back: %v", tc.name, err)
		}
	}
}
