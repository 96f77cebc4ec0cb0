package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/internal/token"
	"github.com/kumi-dev/kumi/local"
)

// The test binary doubles as the kumi binary for the game-server processes the local fleet
// starts, so the whole product runs with real processes, sockets and signatures.
const asKumiEnv = "KUMI_TEST_AS_KUMI"

func TestMain(m *testing.M) {
	if os.Getenv(asKumiEnv) == "1" {
		os.Exit(realMain(os.Args[1:], os.Stderr))
	}
	os.Exit(m.Run())
}

func TestLocalCrowd(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := local.Default()
	cfg.Players, cfg.Duration, cfg.GroupSize = 24, 4*time.Second, 4
	cfg.LateShare, cfg.LeaveShare = 0.3, 0.1
	cfg.OMFrontendAddr, cfg.OMBackendAddr, cfg.OMQueryAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.MMFAddr, cfg.FrontendAddr, cfg.FrontendHTTP = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.ControlAddr, cfg.AdminAddr, cfg.MetricsAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.ConsoleAddr = "127.0.0.1:0"
	cfg.KeyDir = filepath.Join(t.TempDir(), "not", "yet") // created by kumi local
	cfg.GameServerCommand = []string{exe, "gameserver"}
	cfg.GameServerEnv = []string{asKumiEnv + "=1", "KUMI_LOG_LEVEL=warn", "GORACE=atexit_sleep_ms=0"}
	var out bytes.Buffer
	cfg.Out = &out

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	s, err := local.Start(ctx, log, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The written player key signs tokens the frontend accepts: `examples/client -key` derives the
	// kid from the key (its thumbprint), so the stack must use that kid too.
	fileSigner, err := token.LoadSigner(filepath.Join(cfg.KeyDir, "player.key.pem"), "", token.DefaultIssuer)
	if err != nil || fileSigner.KID() != s.PlayerSigner.KID() {
		t.Fatalf("player.key.pem gives kid %v (%v), the frontend trusts %q", fileSigner, err, s.PlayerSigner.KID())
	}
	sum, err := local.RunCrowd(ctx, log, cfg, s)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, srv := range s.Fleet.Servers() {
		pids = append(pids, srv.PID)
	}
	cancel()
	if err := s.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		t.Logf("stop: %v", err)
	}
	sum.Print(&out)
	t.Log("\n" + out.String())

	if sum.Failed != 0 || sum.OK != cfg.Players {
		t.Fatalf("%d of %d players failed: %v", sum.Failed, sum.Players, sum.Failures)
	}
	if sum.LateTotal == 0 || sum.LateJoinedGroup != sum.LateTotal {
		t.Errorf("late group members in their group's session: %d of %d", sum.LateJoinedGroup, sum.LateTotal)
	}
	// Only a late member placed just before its session started moving may be refused by the
	// draining server and file a second ticket (which lands in the moved session); everyone else
	// follows MOVE.
	if len(sum.Drained) != 1 || sum.Moves == 0 || sum.Reconnects > sum.LateTotal {
		t.Errorf("scale-in drained %v with %d moves and %d reconnects (late members %d); want one drain whose sessions all move", sum.Drained, sum.Moves, sum.Reconnects, sum.LateTotal)
	}
	// A player refused by the draining server files a second ticket, so it has two assignments.
	if n := sum.Player.TicketToAssignment.N; sum.Player.FramesReceived == 0 || n < cfg.Players || n > cfg.Players+sum.Reconnects {
		t.Errorf("frames received %d, assignments %d", sum.Player.FramesReceived, sum.Player.TicketToAssignment.N)
	}
	if !strings.Contains(out.String(), "players: waiting") {
		t.Error("no progress line printed")
	}
	// The last progress line and the summary count the same servers.
	progress := regexp.MustCompile(`servers used (\d+) `).FindAllStringSubmatch(out.String(), -1)
	summary := regexp.MustCompile(`game servers used: (\d+)`).FindStringSubmatch(out.String())
	if len(progress) == 0 || summary == nil || progress[len(progress)-1][1] != summary[1] || summary[1] != strconv.Itoa(sum.ServersUsed) || sum.ServersUsed == 0 {
		t.Errorf("server count: progress %v, summary %v, ServersUsed %d; want them equal and > 0", progress, summary, sum.ServersUsed)
	}
	// No orphans: every game-server process is gone once the stack has stopped.
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("game server pid %d still exists after stop (kill 0: %v)", pid, err)
		}
	}
}

func TestLocalRejectsBadConfig(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-players=-1"}, "players -1"},
		{[]string{"-group-size=40"}, "exceeds max-members"},
		{[]string{"-servers=2", "-max-servers=2"}, "max-servers"},
	}
	for _, tc := range tests {
		err := runLocal(context.Background(), slog.New(slog.DiscardHandler), tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("kumi local %v: %v, want error containing %q", tc.args, err, tc.want)
		}
	}
}

// A port already taken (say, by another kumi local) is named with a hint what to do.
func TestLocalPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = runLocal(context.Background(), slog.New(slog.DiscardHandler), []string{"-players=0", "-key-dir=" + t.TempDir(), "-metrics-addr=" + l.Addr().String()})
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "127.0.0.1:0 picks a free port") {
		t.Fatalf("err = %v, want EADDRINUSE with a hint", err)
	}
}

// signalWriter closes seen once what was written contains want.
type signalWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := strings.Contains(w.buf.String(), w.want)
	w.buf.Write(p)
	if !had && strings.Contains(w.buf.String(), w.want) {
		close(w.seen)
	}
	return len(p), nil
}

// kumi local removes the temporary key directory it made on exit, and leaves one given with
// -key-dir alone.
func TestLocalKeyDirCleanup(t *testing.T) {
	for _, given := range []bool{false, true} {
		t.Run(fmt.Sprintf("key-dir given %v", given), func(t *testing.T) {
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp) // where os.MkdirTemp puts kumi local's own directory
			cfg := local.Default()
			cfg.Players = 0
			cfg.OMFrontendAddr, cfg.OMBackendAddr, cfg.OMQueryAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
			cfg.MMFAddr, cfg.FrontendAddr, cfg.FrontendHTTP = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
			cfg.ControlAddr, cfg.AdminAddr, cfg.MetricsAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
			cfg.ConsoleAddr = "127.0.0.1:0"
			exe, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			cfg.GameServerCommand = []string{exe, "gameserver"}
			cfg.GameServerEnv = []string{asKumiEnv + "=1", "KUMI_LOG_LEVEL=warn", "GORACE=atexit_sleep_ms=0"}
			keyDir := filepath.Join(t.TempDir(), "keys")
			if given {
				cfg.KeyDir = keyDir
			}
			w := &signalWriter{want: "serving;", seen: make(chan struct{})}
			cfg.Out = w
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			errc := make(chan error, 1)
			go func() { errc <- local.Run(ctx, slog.New(slog.DiscardHandler), cfg) }()
			select {
			case <-w.seen:
			case err := <-errc:
				t.Fatalf("kumi local ended before serving: %v", err)
			}
			cancel()
			if err := <-errc; err != nil {
				t.Fatalf("kumi local: %v", err)
			}
			left, err := os.ReadDir(tmp)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range left {
				if strings.HasPrefix(e.Name(), "kumi-local-") {
					names = append(names, e.Name())
				}
			}
			if len(names) != 0 {
				t.Errorf("temporary key directories left behind: %v", names)
			}
			if _, err := os.Stat(filepath.Join(keyDir, "player.key.pem")); given && err != nil {
				t.Errorf("-key-dir %s: %v, want its keys kept", keyDir, err)
			}
		})
	}
}
