package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/builds"
	"github.com/kumi-dev/kumi/local"
)

// fakeUEBuild compiles the fake Unreal server (gameserver/wrap/testdata/fakeue) statically and
// packs it as project's Linux server build.
func fakeUEBuild(t testing.TB, project string) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, project, "Binaries", "Linux", project+"Server")
	cmd := exec.Command("go", "build", "-o", bin, "../../gameserver/wrap/testdata/fakeue")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build fakeue: %v\n%s", err, b)
	}
	var buf bytes.Buffer
	if err := builds.PackTarGz(&buf, dir); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "build.tar.gz")
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// localBuildConfig is `kumi local --build` on free ports, with this test binary as kumi.
func localBuildConfig(t *testing.T, archive string, unsafe bool) local.Config {
	cfg := testLocalConfig(t)
	cfg.Players = local.Default().Players
	cfg.Dedicated.Build = archive
	cfg.Dedicated.UnsafeNoSandbox = unsafe
	return cfg
}

// TestLocalBuildGVisor is the local story end to end: a fake-UE build uploaded to the builds API
// serves matches under gVisor; each player's ticket (game=<project>) is matched, assigned to a
// dedicated server of its own match, and its ?token= is admitted by that server's wrapper.
func TestLocalBuildGVisor(t *testing.T) {
	if _, err := exec.LookPath("runsc"); err != nil {
		t.Fatal("gVisor's runsc is not installed: run `apt-get install runsc` (scripts/tools.d/50-runsc.sh does it for make test)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("running a build under gVisor needs root (CI runs as root): run the tests as root")
	}
	cfg := localBuildConfig(t, fakeUEBuild(t, "FakeGame"), false)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := local.RunBuild(ctx, slog.New(slog.DiscardHandler), cfg, nil)
	var out bytes.Buffer
	res.Print(&out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest.Project != "FakeGame" || res.Admitted != res.Players || res.Players != cfg.Dedicated.Matches*cfg.Dedicated.MatchPlayers {
		t.Fatalf("result %+v", res)
	}
	if res.FirstMatch < res.FirstReady {
		t.Errorf("first match served (%v) before the first server was Ready (%v)", res.FirstMatch, res.FirstReady)
	}
}

// TestLocalBuildNeedsArchive: a missing archive is a clear error before anything starts.
func TestLocalBuildNeedsArchive(t *testing.T) {
	cfg := localBuildConfig(t, filepath.Join(t.TempDir(), "missing.tar.gz"), true)
	_, err := local.RunBuild(context.Background(), slog.New(slog.DiscardHandler), cfg, nil)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("missing.tar.gz")) {
		t.Fatalf("got %v, want an error naming the archive", err)
	}
}

// TestLocalBuildUnsafeNoSandbox: with the explicit dev flag the build runs as plain processes that
// share the host's loopback, so every wrapper's admit endpoint must take a port of its own.
func TestLocalBuildUnsafeNoSandbox(t *testing.T) {
	cfg := localBuildConfig(t, fakeUEBuild(t, "PlainGame"), true)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := local.RunBuild(ctx, slog.New(slog.DiscardHandler), cfg, nil)
	if err != nil {
		t.Fatalf("%v (result %+v)", err, res)
	}
	if res.Admitted != res.Players || res.Players < 2*cfg.Dedicated.MatchPlayers {
		t.Fatalf("result %+v: want every player of several matches admitted", res)
	}
}
