package wrap

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gocloud.dev/blob/fileblob"

	"github.com/kumi-dev/kumi/builds"
	"github.com/kumi-dev/kumi/gameserver/localsdk"
	"github.com/kumi-dev/kumi/internal/token"
)

// goBuild compiles one of testdata's programs as a static Linux binary (what an uploaded server
// is: nothing from the host but what the sandbox mounts).
func goBuild(t testing.TB, pkg, out string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", out, "./testdata/"+pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

// packBuild lays bin out as project's Unreal server and packs it as a .tar.gz.
func packBuild(t testing.TB, bin, project string) []byte {
	t.Helper()
	dir := t.TempDir()
	dst := filepath.Join(dir, project, "Binaries", "Linux", project+"Server")
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, project, "Content", "Paks"), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := builds.PackTarGz(&buf, dir); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// requireRunsc fails (never skips) when gVisor is missing, saying how to install it.
func requireRunsc(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("runsc"); err != nil {
		t.Fatal("gVisor's runsc is not installed: run `apt-get install runsc` (scripts/tools.d/50-runsc.sh does it for make test)")
	}
}

// storeBuild puts an archive into a fresh file bucket and returns the bucket URL and manifest.
func storeBuild(t *testing.T, tenant string, archive []byte) (string, builds.Manifest) {
	t.Helper()
	dir := t.TempDir()
	b, err := fileblob.OpenBucket(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	m, _, err := builds.NewStore(b, builds.DefaultLimits(), t.TempDir()).Upload(context.Background(), tenant, bytes.NewReader(archive), builds.UploadOptions{Format: builds.FormatTarGz, Version: "1.0"})
	if err != nil {
		t.Fatal(err)
	}
	return "file://" + dir, m
}

// freeUDPPort returns a UDP port free at the time of the call.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// startSDK runs a local Agones SDK server whose GameServer has a "default" port.
func startSDK(t *testing.T, ctx context.Context, name string, port int) *localsdk.Server {
	t.Helper()
	cfg := localsdk.Default()
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.Name = name
	cfg.Ports[0].Port = int32(port)
	cfg.Health.InitialDelay = time.Minute
	s, err := localsdk.Start(ctx, slog.New(slog.DiscardHandler), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testConfig is a wrapper config for a stored build, verifying tokens of signer.
func testConfig(t *testing.T, bucket string, m builds.Manifest, signer *token.Signer) Config {
	cfg := Default()
	cfg.Bucket, cfg.Tenant, cfg.Build = bucket, m.Tenant, m.SHA256
	cfg.WorkDir = filepath.Join(t.TempDir(), "work")
	cfg.ServerLog = filepath.Join(t.TempDir(), "server.log")
	// The server log also holds runsc's own output: a failed test shows why the sandbox ended.
	t.Cleanup(func() {
		if t.Failed() {
			data, _ := os.ReadFile(cfg.ServerLog)
			t.Logf("server log (server and runsc output):\n%s", data)
		}
	})
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.Grace = 10 * time.Second
	cfg.ReadyTimeout = time.Minute
	cfg.JWT.Keys = []token.PublicKey{signer.PublicKey()}
	return cfg
}

// waitLog waits until the server log holds every substring of want, or fails after a minute.
func waitLog(t *testing.T, file string, done <-chan struct{}, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		data, _ := os.ReadFile(file)
		s := string(data)
		all := true
		for _, w := range want {
			all = all && strings.Contains(s, w)
		}
		if all {
			return s
		}
		select {
		case <-done:
			t.Fatalf("wrapper ended before the log held %q:\n%s", want, s)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("log never held %q:\n%s", want, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// exchange sends one datagram and returns the answer.
func exchange(t *testing.T, c *net.UDPConn, msg string) string {
	t.Helper()
	buf := make([]byte, 2048)
	for range 30 {
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err == nil {
			return string(buf[:n])
		}
	}
	t.Fatalf("no answer to %q", msg)
	return ""
}
