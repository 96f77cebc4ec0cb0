package teststack

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/director"
	"github.com/kumi-dev/kumi/frontend"
	"github.com/kumi-dev/kumi/gameserver"
	"github.com/kumi-dev/kumi/internal/config"
	"github.com/kumi-dev/kumi/internal/token"
	"github.com/kumi-dev/kumi/local"
	"github.com/prometheus/client_golang/prometheus"
)

// The test binary doubles as the game-server process the local fleet starts, so the fleet runs real
// game-server code in real processes (RunChildIfAsked in TestMain), configured by the same flags
// `kumi gameserver` takes.
const childEnv = "KUMI_TESTSTACK_CHILD"

// ProductMaxMembers is the session member limit of the product stack's voice profile.
const ProductMaxMembers = 4

// RunChildIfAsked runs a game server from its command-line flags and exits when this process was
// started by the local fleet of StartProduct; otherwise it returns at once. Call it first in TestMain.
func RunChildIfAsked() {
	if os.Getenv(childEnv) != "gameserver" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute) // never outlive a test run
	defer cancel()
	cfg := gameserver.Default()
	cfg.SDK = true
	fs := flag.NewFlagSet("gameserver", flag.ContinueOnError)
	if err := config.Bind(fs, "", &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "child gameserver:", err)
		os.Exit(2)
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	s, err := gameserver.Start(ctx, Quiet(), cfg, prometheus.NewRegistry())
	if err != nil {
		fmt.Fprintln(os.Stderr, "child gameserver:", err)
		os.Exit(2)
	}
	if err := s.Wait(); err != nil {
		fmt.Fprintln(os.Stderr, "child gameserver:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Product is the whole of kumi's player path, nothing stood in: `kumi local`'s stack (embedded Open
// Match core, match function, frontend, director, local fleet of game-server processes).
type Product struct {
	Signer   *token.Signer
	KeyFile  string
	Frontend *frontend.Server
	Director *director.Director
	// AdminToken authorises the director's admin API.
	AdminToken string
}

// StartProduct starts the product stack; it stops when the test ends.
func StartProduct(t testing.TB) *Product {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := local.Default()
	cfg.Players = 0
	for _, a := range []*string{&cfg.OMFrontendAddr, &cfg.OMBackendAddr, &cfg.OMQueryAddr, &cfg.MMFAddr,
		&cfg.FrontendAddr, &cfg.ControlAddr, &cfg.AdminAddr} {
		*a = "127.0.0.1:0"
	}
	cfg.FrontendHTTP, cfg.MetricsAddr, cfg.ConsoleAddr = "", "", ""
	cfg.KeyDir = t.TempDir()
	cfg.Capacity, cfg.MaxMembers, cfg.GroupSize = 8, ProductMaxMembers, ProductMaxMembers
	cfg.Servers, cfg.MaxServers = 2, 4
	cfg.GameServerCommand = []string{exe}
	cfg.GameServerEnv = []string{childEnv + "=gameserver", "GORACE=atexit_sleep_ms=0"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	s, err := local.Start(ctx, Quiet(), cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := s.Wait(); err != nil {
			t.Logf("stop: %v", err)
		}
	})
	return &Product{Signer: s.PlayerSigner, KeyFile: filepath.Join(cfg.KeyDir, "player.key.pem"), Frontend: s.Frontend, Director: s.Director, AdminToken: s.AdminToken}
}

// DrainSession asks the director's admin API to drain the game server hosting session; the server
// then moves its sessions through the director (MOVE to every member).
func (p *Product) DrainSession(t testing.TB, session string) {
	t.Helper()
	name, ok := p.Director.Pool().SessionServer(session)
	if !ok {
		t.Fatalf("director knows no server for session %s", session)
	}
	body, _ := json.Marshal(map[string]string{"server": name})
	req, err := http.NewRequest(http.MethodPost, "http://"+p.Director.AdminAddr()+"/drain", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+p.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("drain %s: HTTP %d", name, resp.StatusCode)
	}
}
