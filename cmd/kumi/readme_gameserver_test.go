package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/internal/token"
)

// TestGameserverReadmeBlock runs gameserver/README.md's "Running it" block as a bash script from
// the repository root: kumi is built, a key pair made, a game server started in the background,
// its instance read from its log and a server token issued for it; then the block stops the
// server itself. The token it prints must verify with the block's JWKS for gs-1 and name the
// instance the server logged. The only changes made to the text: every 127.0.0.1 port becomes a
// free one, and /tmp/kumi-gs a temporary directory.
func TestGameserverReadmeBlock(t *testing.T) {
	root := repoRoot(t)
	block := readmeBlockN(t, filepath.Join(root, "gameserver", "README.md"), "Running it", 0)
	const demo = "/tmp/kumi-gs"
	if !strings.Contains(block, demo) {
		t.Fatalf("the block no longer works in %s:\n%s", demo, block)
	}
	script, ports := freeLoopbackPorts(t, block)
	if len(ports) != 2 {
		t.Fatalf("want the relay's and the metrics' ports in the block, got %v:\n%s", ports, block)
	}
	dir := t.TempDir()
	script = strings.ReplaceAll(script, demo, dir)
	t.Logf("running:\n%s", script)

	out, err := readmeScript{root: root, script: script, tmp: t.TempDir(), timeout: 5 * time.Minute}.run(t)
	logs := func() string { return tailFiles(filepath.Join(dir, "*.log")) }
	if err != nil {
		t.Fatalf("the README block failed: %v\n%s", err, logs())
	}
	instance := regexp.MustCompile(`game server listening.* instance=(\S+)`).FindStringSubmatch(logs())
	if instance == nil {
		t.Fatalf("the server logged no instance:\n%s", logs())
	}
	tok := regexp.MustCompile(`(?m)^eyJ[\w-]*\.[\w-]+\.[\w-]+$`).FindString(out)
	if tok == "" {
		t.Fatalf("the block printed no token:\n%s", out)
	}
	cfg := token.DefaultVerifierConfig()
	cfg.JWKSFile = filepath.Join(dir, "keys", "jwks.json")
	v, err := token.NewVerifier(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.VerifyServerToken(tok, "gs-1")
	if err != nil {
		t.Fatalf("the printed token does not verify for gs-1 with the block's JWKS: %v", err)
	}
	if c.Instance != instance[1] || c.SessionID != "room-1" || c.PlayerID != "alice" {
		t.Errorf("token claims instance %q session %q player %q, want %q room-1 alice", c.Instance, c.SessionID, c.PlayerID, instance[1])
	}
}
