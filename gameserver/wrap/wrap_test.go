package wrap

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/builds"
	"github.com/kumi-dev/kumi/gameserver/localsdk"
	"github.com/kumi-dev/kumi/internal/token"
)

// TestFakeUEEndToEnd: the fake Unreal server is packaged as a .tar.gz build, uploaded through the
// builds API with a developer token, run by the wrapper under gVisor with the local Agones SDK, and
// a client's server token is admitted through the wrapper's /v1/admit; replays and tokens for
// another session or server are refused; SIGTERM ends it with SDK Shutdown.
func TestFakeUEEndToEnd(t *testing.T) {
	requireRunsc(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bin := filepath.Join(t.TempDir(), "fakeue")
	goBuild(t, "fakeue", bin)
	archive := packBuild(t, bin, "Duel")

	signer, err := token.GenerateSigner(token.DefaultIssuer)
	if err != nil {
		t.Fatal(err)
	}
	api := builds.Default()
	api.HTTPAddr = "127.0.0.1:0"
	api.BucketURL = "file://" + t.TempDir()
	api.TmpDir = t.TempDir()
	api.JWT.Keys = []token.PublicKey{signer.PublicKey()}
	srv, err := builds.Start(ctx, slog.New(slog.DiscardHandler), api)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := builds.DeveloperToken(signer, "dev", "studio-a", []string{builds.ScopeWrite}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "http://"+srv.Addr()+"/v1/builds?version=1.0", bytes.NewReader(archive))
	req.Header.Set("Authorization", "Bearer "+dev)
	req.Header.Set("Content-Type", "application/gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %s %s", resp.Status, body)
	}
	var m builds.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("upload answer %s: %v", body, err)
	}

	port := freeUDPPort(t)
	sdkSrv := startSDK(t, ctx, "duel-7f2k", port)
	cfg := testConfig(t, api.BucketURL, m, signer)
	cfg.SDK, cfg.SDKAddr = true, sdkSrv.Addr()
	cfg.ListenAddr = "127.0.0.1:0"
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	w, err := Start(wctx, testLog(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if w.Port() != port {
		t.Fatalf("wrapper serves port %d, GameServer status says %d", w.Port(), port)
	}
	select {
	case <-w.Ready():
	case <-w.Done():
		t.Fatalf("wrapper ended before ready: %v", w.Wait())
	case <-time.After(2 * time.Minute):
		t.Fatal("wrapper never became ready")
	}
	waitState(t, sdkSrv, "Ready")
	gs := sdkSrv.GameServer()
	if got := gs.GetObjectMeta().GetLabels()["agones.dev/sdk-"+LabelVersion]; got != "1.0" {
		t.Errorf("version label %q", got)
	}
	if got := gs.GetObjectMeta().GetAnnotations()["agones.dev/sdk-"+AnnotationBuild]; got != m.SHA256 {
		t.Errorf("build annotation %q", got)
	}
	waitLog(t, cfg.ServerLog, nil, fmt.Sprintf("IpNetDriver listening on port %d", port))

	mint := func(player, session, server string) string {
		tok, err := signer.ServerToken(token.ServerClaims{PlayerID: player, SessionID: session, Server: server, ID: player + "-" + session + "-" + server, ExpiresAt: time.Now().Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	dial := func() *net.UDPConn {
		c, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	alice := dial()
	if got := exchange(t, alice, "HELLO ?token="+mint("alice", "match-1", "duel-7f2k")); got != "WELCOME alice match-1" {
		t.Fatalf("alice: %q", got)
	}
	if got := exchange(t, alice, "ping"); got != "ECHO alice ping" {
		t.Fatalf("alice echo: %q", got)
	}
	bob := dial()
	if got := exchange(t, bob, "HELLO ?token="+mint("bob", "match-1", "duel-7f2k")); got != "WELCOME bob match-1" {
		t.Fatalf("bob: %q", got)
	}
	for _, tc := range []struct{ name, tok, want string }{
		{"replayed", mint("alice", "match-1", "duel-7f2k"), "already used"},
		{"other session", mint("carol", "match-2", "duel-7f2k"), "another session"},
		{"other server", mint("dave", "match-1", "duel-other"), "audience"},
		{"player token", func() string { s, _ := signer.PlayerToken("eve", time.Hour); return s }(), "not a server token"},
	} {
		if got := exchange(t, dial(), "HELLO ?token="+tc.tok); !strings.HasPrefix(got, "REFUSED") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q, want REFUSED ... %s", tc.name, got, tc.want)
		}
	}

	stop() // SIGTERM with grace: fakeue exits cleanly, the wrapper tells Agones Shutdown.
	if err := w.Wait(); err != nil {
		t.Fatalf("wrapper: %v", err)
	}
	waitLog(t, cfg.ServerLog, nil, "LogExit: Exiting.")
	waitState(t, sdkSrv, "Shutdown")
}

// TestMaxMatchEndsTheServer: a build that keeps running after its match (as an Unreal server
// going back to its lobby map does) is stopped once its match has run for max-match since the
// first admission, and the GameServer is shut down, so the server is replaced, never reused.
func TestMaxMatchEndsTheServer(t *testing.T) {
	requireRunsc(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bin := filepath.Join(t.TempDir(), "fakeue")
	goBuild(t, "fakeue", bin)
	bucket, m := storeBuild(t, "studio-a", packBuild(t, bin, "Duel"))
	signer, err := token.GenerateSigner(token.DefaultIssuer)
	if err != nil {
		t.Fatal(err)
	}
	port := freeUDPPort(t)
	sdkSrv := startSDK(t, ctx, "duel-max", port)
	cfg := testConfig(t, bucket, m, signer)
	cfg.SDK, cfg.SDKAddr = true, sdkSrv.Addr()
	cfg.MaxMatch = time.Second
	w, err := Start(ctx, testLog(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.Ready():
	case <-w.Done():
		t.Fatalf("wrapper ended before ready: %v", w.Wait())
	}
	waitLog(t, cfg.ServerLog, nil, fmt.Sprintf("IpNetDriver listening on port %d", port))
	tok, err := signer.ServerToken(token.ServerClaims{PlayerID: "alice", SessionID: "match-1", Server: "duel-max", ID: "alice-1", ExpiresAt: time.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := exchange(t, c, "HELLO ?token="+tok); got != "WELCOME alice match-1" {
		t.Fatalf("alice: %q", got)
	}
	// Nobody stops the wrapper: the match's end does.
	if err := w.Wait(); err != nil {
		t.Fatalf("wrapper: %v", err)
	}
	waitLog(t, cfg.ServerLog, nil, "LogExit: Exiting.")
	waitState(t, sdkSrv, "Shutdown")
}

func waitState(t *testing.T, s *localsdk.Server, want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for s.GameServer().GetStatus().GetState() != want {
		if time.Now().After(deadline) {
			t.Fatalf("GameServer state %q, want %q", s.GameServer().GetStatus().GetState(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHostileBuild runs a hostile "server" under the sandbox: it cannot read the host's files (a
// key file the test writes, /etc/shadow), cannot reach a TCP listener on the host's 127.0.0.1
// (standing for the director's control API), its fork bomb stops at the process limit, and
// nothing of it outlives the wrapper.
func TestHostileBuild(t *testing.T) {
	requireRunsc(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bin := filepath.Join(t.TempDir(), "hostile")
	goBuild(t, "hostile", bin)
	bucket, m := storeBuild(t, "studio-evil", packBuild(t, bin, "Evil"))
	signer, _ := token.GenerateSigner(token.DefaultIssuer)

	key := filepath.Join(t.TempDir(), "director.key")
	if err := os.WriteFile(key, []byte("SECRET"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
			accepted <- struct{}{}
		}
	}()

	cfg := testConfig(t, bucket, m, signer)
	cfg.Name = "evil-1"
	cfg.MaxProcs = 48
	const forks = 400
	cfg.ServerArgs = []string{"-read=" + key + ",/etc/shadow,/etc/hostname", "-dial=" + ln.Addr().String(), fmt.Sprintf("-forks=%d", forks)}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	w, err := Start(wctx, slog.New(slog.DiscardHandler), cfg)
	if err != nil {
		t.Fatal(err)
	}
	id := w.SandboxID()
	log := waitLog(t, cfg.ServerLog, nil, "FORKS ")
	for _, p := range []string{key, "/etc/shadow", "/etc/hostname"} {
		if !strings.Contains(log, "READ "+p+" denied") {
			t.Errorf("sandboxed server read %s:\n%s", p, log)
		}
	}
	if !strings.Contains(log, "DIAL "+ln.Addr().String()+" denied") {
		t.Errorf("sandboxed server reached the host's 127.0.0.1 listener:\n%s", log)
	}
	select {
	case <-accepted:
		t.Error("the host listener accepted a connection from the sandbox")
	default:
	}
	if strings.Contains(log, fmt.Sprintf("FORKS %d", forks)) || !strings.Contains(log, "FORKERR") {
		t.Errorf("fork bomb was not stopped by the process limit:\n%s", log)
	}
	if n := hostProcs(id); n == 0 {
		t.Errorf("no host process of sandbox %s found while it runs (the orphan check below would prove nothing)", id)
	}

	stop()
	if err := w.Wait(); err != nil {
		t.Logf("wrapper: %v", err)
	}
	if n := hostProcs(id); n != 0 {
		t.Errorf("%d host processes of sandbox %s outlived the wrapper", n, id)
	}
}

// hostProcs counts host processes whose command line names the sandbox id (runsc, its gofer and
// sandbox, whose children are the sandboxed processes' stubs).
func hostProcs(id string) int {
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(data, []byte(id)) {
			n++
		}
	}
	return n
}

// TestRefusesUnsandboxed: an uploaded build never runs as a plain process by accident.
func TestRefusesUnsandboxed(t *testing.T) {
	cfg := Default()
	cfg.Bucket, cfg.Tenant, cfg.Build = "file:///x", "t", strings.Repeat("a", 64)
	cfg.Sandbox = SandboxNone
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "-unsafe-no-sandbox") {
		t.Fatalf("Validate: %v", err)
	}
	cfg.UnsafeNoSandbox = true
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestFetchRefusesTamperedBuild: bytes changed in the bucket after upload are refused before
// anything is unpacked.
func TestFetchRefusesTamperedBuild(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "fakeue")
	goBuild(t, "fakeue", bin)
	bucket, m := storeBuild(t, "studio-a", packBuild(t, bin, "Duel"))
	dir := strings.TrimPrefix(bucket, "file://")
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(builds.BlobKey(m.Tenant, m.SHA256))), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, bucket, m, mustSigner(t))
	cfg.Name = "x"
	_, err := Start(context.Background(), slog.New(slog.DiscardHandler), cfg)
	if err == nil || !strings.Contains(err.Error(), "digest mismatch") {
		t.Fatalf("Start on a tampered build: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.WorkDir, "root")); err == nil {
		t.Error("a tampered build was unpacked")
	}
}

func mustSigner(t *testing.T) *token.Signer {
	s, err := token.GenerateSigner(token.DefaultIssuer)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testLog sends the wrapper's log to the test's log.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
