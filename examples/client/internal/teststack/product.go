package teststack

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/director"
	"github.com/kumi-dev/kumi/frontend"
	"github.com/kumi-dev/kumi/gameserver"
	"github.com/kumi-dev/kumi/gameserver/localfleet"
	"github.com/kumi-dev/kumi/gameserver/localsdk"
	"github.com/kumi-dev/kumi/internal/token"
	"github.com/kumi-dev/kumi/matchfunction"
	"github.com/kumi-dev/kumi/openmatch"
	"github.com/prometheus/client_golang/prometheus"
)

// The test binary doubles as the game-server process the local fleet starts, so the fleet runs real
// `kumi gameserver` code in real processes (RunChildIfAsked in TestMain).
const (
	childEnv      = "KUMI_EXAMPLE_CLIENT_CHILD"
	childJWKS     = "KUMI_EXAMPLE_CLIENT_JWKS"
	childDirector = "KUMI_EXAMPLE_CLIENT_DIRECTOR"
)

// ProductMaxMembers is the session member limit of the product stack's voice profile.
const ProductMaxMembers = 4

// RunChildIfAsked runs a game server and exits when this process was started by the local fleet
// of StartProduct; otherwise it returns at once. Call it first in TestMain.
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
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.HealthPeriod = 50 * time.Millisecond
	cfg.Director = os.Getenv(childDirector)
	cfg.ReportInterval, cfg.ReportDebounce = 200*time.Millisecond, 10*time.Millisecond
	cfg.DrainGrace, cfg.ExitWhenDrained = 0, true
	cfg.Capacity, cfg.MaxMembers = 8, ProductMaxMembers
	cfg.Token.JWKSFile = os.Getenv(childJWKS)
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

// Product is the whole of kumi's player path, nothing stood in: the embedded Open Match core, the
// match function, the frontend, the director and a local fleet of game-server processes.
type Product struct {
	Signer   *token.Signer
	KeyFile  string
	Frontend *frontend.Server
	Director *director.Director
}

// StartProduct starts the product stack; it stops when the test ends.
func StartProduct(t testing.TB) *Product {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	var waits []func() error
	t.Cleanup(func() {
		cancel()
		for i := len(waits) - 1; i >= 0; i-- {
			if err := waits[i](); err != nil {
				t.Logf("stop: %v", err)
			}
		}
	})
	log := Quiet()
	kcfg := token.DefaultKeygenConfig()
	kcfg.Dir = t.TempDir()
	signer, _, err := token.Keygen(kcfg)
	if err != nil {
		t.Fatal(err)
	}
	// Game servers learn the director's control address when they start, so it is fixed up front.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctlAddr := l.Addr().String()
	l.Close()

	ocfg := openmatch.Default()
	ocfg.FrontendAddr, ocfg.BackendAddr, ocfg.QueryAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	core, err := openmatch.Start(ctx, log, ocfg, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	waits = append(waits, core.Wait)

	mcfg := matchfunction.Default()
	mcfg.ListenAddr, mcfg.QueryAddr = "127.0.0.1:0", core.QueryAddr()
	voice := matchfunction.DefaultProfiles()[0]
	voice.MaxMembers = ProductMaxMembers
	mcfg.Profiles = []matchfunction.Profile{voice}
	mmf, err := matchfunction.Start(ctx, log, mcfg, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	waits = append(waits, mmf.Wait)

	fcfg := frontend.Default()
	fcfg.GRPCAddr, fcfg.HTTPAddr, fcfg.OpenMatchAddr = "127.0.0.1:0", "", core.FrontendAddr()
	fcfg.JWT.Keys = []token.PublicKey{signer.PublicKey()}
	fe, err := frontend.Start(ctx, log, fcfg, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	waits = append(waits, fe.Wait)

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	fleetCfg := localfleet.Default()
	fleetCfg.Name = "example"
	fleetCfg.Command = []string{exe}
	fleetCfg.Env = []string{childEnv + "=gameserver", childJWKS + "=" + filepath.Join(kcfg.Dir, token.JWKSFile),
		childDirector + "=" + ctlAddr, "GORACE=atexit_sleep_ms=0"}
	fleetCfg.BufferSize, fleetCfg.MaxReplicas = 2, 4
	fleetCfg.SessionCapacity = 8
	fleetCfg.Health = localsdk.Health{Period: 500 * time.Millisecond, FailureThreshold: 5, InitialDelay: 5 * time.Second}
	fleetCfg.SyncInterval = 200 * time.Millisecond
	fleetCfg.StopGrace = 2 * time.Second
	fleet, err := localfleet.Start(ctx, log, fleetCfg, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	waits = append(waits, fleet.Wait)

	dcfg := director.Default()
	dcfg.ControlAddr, dcfg.AdminAddr, dcfg.BackendAddr = ctlAddr, "127.0.0.1:0", core.BackendAddr()
	host, port, _ := net.SplitHostPort(mmf.Addr())
	dcfg.MMFHost = host
	dcfg.MMFPort, _ = strconv.Atoi(port)
	dcfg.Profiles = []string{voice.Name}
	dcfg.PoolName = "example"
	dcfg.Signer = signer
	dcfg.ReportInterval = 200 * time.Millisecond
	dcfg.RebuildTimeout = 3 * time.Second
	dcfg.Pool.MinFreeSlots = 10
	dcfg.Pool.ReportTimeout = 3 * time.Second
	dcfg.Pool.ScaleInAfter = time.Hour
	d, err := director.Start(ctx, log, dcfg, prometheus.NewRegistry(), fleet)
	if err != nil {
		t.Fatal(err)
	}
	waits = append(waits, d.Wait)
	return &Product{Signer: signer, KeyFile: filepath.Join(kcfg.Dir, token.PrivateKeyFile), Frontend: fe, Director: d}
}

// DrainSession asks the director's admin API to drain the game server hosting session; the server
// then moves its sessions through the director (MOVE to every member).
func (p *Product) DrainSession(t testing.TB, session string) {
	t.Helper()
	name, ok := p.Director.Pool().SessionServer(session)
	if !ok {
		t.Fatalf("director knows no server for session %s", session)
	}
	resp, err := http.Post("http://"+p.Director.AdminAddr()+"/drain?server="+url.QueryEscape(name), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("drain %s: HTTP %d", name, resp.StatusCode)
	}
}
