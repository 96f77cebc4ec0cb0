package director_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/director"
	"github.com/kumi-dev/kumi/gameserver"
	"github.com/kumi-dev/kumi/internal/serverid"
	"github.com/kumi-dev/kumi/matchfunction"
	"github.com/prometheus/client_golang/prometheus"
)

// TestDirectorAdoptsLoneGameServer: a hand-started game server (no SDK, no backend lists it) that
// reports with the control secret joins the pool of a director whose only backend is the local
// fleet: GET /pool shows it as adopted and sessions are placed on it. A server that reports without
// an address players could use is not adopted.
func TestDirectorAdoptsLoneGameServer(t *testing.T) {
	e := newEnv(t)
	const secret = "adoption-secret-0123456789"
	secretFile := filepath.Join(t.TempDir(), "control.secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	// The fleet's one server (capacity 1) would also take sessions; the adopted one takes the rest.
	f := e.startFleet(fleetOpts{name: "local", capacity: 1, buffer: 0, max: 1, secretFile: secretFile})
	cfg := e.directorConfig()
	cfg.ControlSecretFile = secretFile
	cfg.Pool.MinFreeSlots = 0
	// The lone server proves its name with a bootstrap secret the director knows (the fleet's
	// servers use the fleet's own per-process secrets).
	var proofs serverid.Secrets
	cfg.Bootstrap = []serverid.Verifier{&proofs}
	proofFile := filepath.Join(t.TempDir(), "by-hand.bootstrap")
	if err := os.WriteFile(proofFile, []byte(proofs.Mint("by-hand")), 0o600); err != nil {
		t.Fatal(err)
	}
	d, _ := e.startDirector(e.ctx, cfg, f)

	gcfg := gameserver.Default()
	gcfg.Name = "by-hand"
	gcfg.ListenAddr = "127.0.0.1:0"
	gcfg.Director = d.ControlAddr()
	gcfg.DirectorSecretFile = secretFile
	gcfg.DirectorBootstrapFile = proofFile
	gcfg.ReportInterval = 200 * time.Millisecond
	gcfg.Capacity = 20
	gcfg.MaxMembers = maxMembers
	gcfg.Token.PublicKeys = []string{e.keyArg}
	// Its own context: the env's ends only in the env's cleanup, after this one, so waiting for a
	// server on it would last until the env's 5-minute timeout.
	gctx, gcancel := context.WithCancel(e.ctx)
	gs, err := gameserver.Start(gctx, testLog(t), gcfg, prometheus.NewRegistry())
	if err != nil {
		gcancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { gcancel(); _ = gs.Wait() })

	type poolDoc struct {
		Servers []struct {
			Name, Address string
			Adopted       bool
			Capacity      int
		}
	}
	var adopted string
	waitFor(t, "the hand-started server adopted into GET /pool", 30*time.Second, func() bool {
		req, err := http.NewRequest(http.MethodGet, "http://"+d.AdminAddr()+"/pool", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET /pool: %s", res.Status)
		}
		var doc poolDoc
		if err := json.NewDecoder(res.Body).Decode(&doc); err != nil {
			t.Fatal(err)
		}
		for _, s := range doc.Servers {
			if s.Name == "by-hand" && s.Adopted && s.Capacity == 20 {
				adopted = s.Address
				return true
			}
		}
		return false
	})

	ts := e.tickets()
	const rooms = 6
	for i := range rooms {
		ts.create(fmt.Sprintf("p%d", i), fmt.Sprintf("room-%d", i))
	}
	onAdopted := 0
	for _, a := range ts.await(rooms, 60*time.Second) {
		if a.conn == adopted {
			onAdopted++
		}
	}
	if onAdopted < rooms-1 { // at most one fits on the fleet's capacity-1 server
		t.Fatalf("%d of %d sessions on the adopted server %s", onAdopted, rooms, adopted)
	}
}

// TestDefaultProfilesCoverMatchFunction: a director with default settings fetches every profile a
// match function with default settings serves, so no kind of ticket waits forever.
func TestDefaultProfilesCoverMatchFunction(t *testing.T) {
	var mf []string
	for _, p := range matchfunction.DefaultProfiles() {
		mf = append(mf, p.Name)
	}
	got := director.Default().Profiles
	if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(mf))) {
		t.Fatalf("director profiles %v, match function profiles %v", got, mf)
	}
	if !strings.Contains(fmt.Sprint(got), "duel") {
		t.Fatalf("duel missing from %v", got)
	}
}

// TestDefaultLockFile: the lock lives in the user's runtime dir, one per control address.
func TestDefaultLockFile(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", dir)
	a, err := director.DefaultLockFile(":50610")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := director.DefaultLockFile("127.0.0.1:50620")
	if filepath.Dir(a) != filepath.Join(dir, "kumi") || a == b || strings.ContainsAny(filepath.Base(a), ":/") {
		t.Fatalf("lock files %q and %q", a, b)
	}
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("XDG_CACHE_HOME", dir)
	if c, err := director.DefaultLockFile(":50610"); err != nil || filepath.Dir(c) != filepath.Join(dir, "kumi") {
		t.Fatalf("without XDG_RUNTIME_DIR: %q %v", c, err)
	}
}
