package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestExamplesClientReadmeBlocks runs the two blocks of examples/client/README.md's "Run it
// against kumi", which the README runs in two terminals, as one bash script: the first
// (`kumi local --players 0`) in the background until it prints that it is serving, then the
// second (the example client, two players in one chat group) in the foreground; then it sends
// kumi local SIGINT, as Ctrl-C would, and kumi local must stop cleanly (exit 0). The only change made to
// the text is /tmp/kumi-keys becoming a temporary directory. kumi local listens on its default
// ports (the client block names the frontend's), so the script runs in a network namespace of its
// own, which needs root (CI runs as root).
func TestExamplesClientReadmeBlocks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the README blocks run in a network namespace of their own, which needs root (CI runs as root): run the tests as root")
	}
	root := repoRoot(t)
	readme := filepath.Join(root, "examples", "client", "README.md")
	const section = "Run it against kumi"
	local := strings.TrimSpace(readmeBlockN(t, readme, section, 0))
	client := readmeBlockN(t, readme, section, 1)
	const keys = "/tmp/kumi-keys"
	if strings.Contains(local, "\n") || !strings.Contains(local, "kumi local --players 0") || !strings.Contains(local, keys) || !strings.Contains(client, keys) {
		t.Fatalf("the blocks are no longer one `kumi local --players 0` command and a client, both with %s:\n%s\n%s", keys, local, client)
	}
	script := `
` + local + ` >"$TMPDIR/local.out" 2>&1 &
until grep -q '^serving; Ctrl-C stops everything' "$TMPDIR/local.out"; do kill -0 %1 || { cat "$TMPDIR/local.out"; exit 1; }; sleep 0.2; done
` + client + `
pkill -INT -f '^[^ ]*/kumi local --players 0'   # Ctrl-C to the kumi binary go run started (go run passes on its exit status)
wait %1
echo "kumi local exited $?"
`
	dir := t.TempDir()
	script = strings.ReplaceAll(script, keys, dir)
	t.Logf("running:\n%s", script)

	tmp := t.TempDir()
	out, err := readmeScript{root: root, script: script, tmp: tmp, netns: true, timeout: 8 * time.Minute}.run(t)
	logs := func() string { return tailFiles(filepath.Join(tmp, "local.out"), filepath.Join(dir, "kumi.log")) }
	if err != nil {
		t.Fatalf("the README blocks failed: %v\n%s", err, logs())
	}
	m := regexp.MustCompile(`summary of 2 players \((\d+) failed\)`).FindStringSubmatch(out)
	if m == nil || m[1] != "0" {
		t.Fatalf("want both players served (`summary of 2 players (0 failed)`):\n%s%s", out, logs())
	}
	recv := regexp.MustCompile(`frames sent \d+ received (\d+); ended: done`).FindAllStringSubmatch(out, -1)
	if len(recv) != 2 {
		t.Fatalf("want both players to finish their leg, got %d:\n%s", len(recv), out)
	}
	for _, r := range recv {
		if r[1] == "0" {
			t.Errorf("a player heard nothing from the other:\n%s", out)
		}
	}
	if !strings.Contains(out, "kumi local exited 0") {
		t.Errorf("kumi local did not exit 0 on SIGINT:\n%s%s", out, logs())
	}
}
