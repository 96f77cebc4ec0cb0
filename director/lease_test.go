package director_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/allocation"
	"github.com/kumi-dev/kumi/director"
	"github.com/kumi-dev/kumi/director/agones"
	"github.com/kumi-dev/kumi/internal/kubetest/agonesalloc"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// replica is one director replica under leader election.
type replica struct {
	id      string
	resp    *agonesalloc.Responder // its own way to the API server: closing it "kills" the replica
	leading chan *director.Director
	mu      sync.Mutex
	led     bool
	started time.Time // began leading
	stopped time.Time // its director had stopped after leading
	done    chan error
}

// TestLeaderFailoverOnRealLease runs two director replicas over the Agones backend with leader
// election on a real Lease. Only the leader places; when the leader is cut off from the API
// server (as if it crashed: it can neither renew nor release), the other takes over once the
// Lease expires, rebuilds the pool from the GameServer objects and places the following tickets.
// The deposed leader stops before the new one starts, and every ticket is assigned exactly once.
func TestLeaderFailoverOnRealLease(t *testing.T) {
	e := newEnv(t)
	api := agonesalloc.StartCluster(t, "games", agonesalloc.DefaultConfig())
	for i := range 4 {
		api.Put(t, allocation.GameServer{Name: fmt.Sprintf("gs-%d", i), State: allocation.StateReady, Address: "10.1.0.1",
			Labels: map[string]string{"agones.dev/fleet": "voice"}, Ports: []allocation.Port{{Name: "default", Port: int32(7000 + i)}},
			Counters: map[string]allocation.CounterStatus{allocation.CounterSessions: {Capacity: 10}}})
	}
	const (
		leaseDuration = 6 * time.Second
		renewDeadline = 2 * time.Second
		retryPeriod   = 200 * time.Millisecond
	)
	cfg := e.directorConfig()
	cfg.ControlAddr = "127.0.0.1:0" // replicas are separate pods; here, separate ports
	cfg.ServerLabels = []string{"agones.dev/fleet=voice"}
	cfg.Pool.MinFreeSlots = 12
	cfg.RebuildTimeout = 0 // these GameServer objects have no process behind them to report
	// What `kumi director` does under a Lease: a deposed leader's last placements end before the
	// next leader can start.
	cfg.ShutdownGrace = leaseDuration - renewDeadline - retryPeriod

	start := func(id string) *replica {
		r := &replica{id: id, resp: agonesalloc.Start(t, api.Env.Config, agonesalloc.DefaultConfig()),
			leading: make(chan *director.Director, 1), done: make(chan error, 1)}
		acfg := agones.DefaultConfig()
		acfg.Namespace, acfg.LeaseName, acfg.Identity = "games", "kumi-director", id
		acfg.LeaseDuration, acfg.RenewDeadline, acfg.RetryPeriod = leaseDuration, renewDeadline, retryPeriod
		kb, err := agones.NewForRESTConfig(r.resp.RESTConfig(), acfg, testLog(t))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			r.done <- kb.LeadWith(e.ctx, testLog(t), func(lctx context.Context) error {
				d, err := director.Start(lctx, testLog(t), cfg, prometheus.NewRegistry(), kb)
				if err != nil {
					return err
				}
				r.mu.Lock()
				r.led, r.started = true, time.Now()
				r.mu.Unlock()
				r.leading <- d
				err = d.Wait()
				r.mu.Lock()
				r.stopped = time.Now()
				r.mu.Unlock()
				return err
			})
		}()
		return r
	}
	holder := func() string {
		l, err := api.Env.Kube.CoordinationV1().Leases("games").Get(e.ctx, "kumi-director", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}

	a := start("a")
	var da *director.Director
	select {
	case da = <-a.leading:
	case <-e.ctx.Done():
		t.Fatal("a never led")
	}
	b := start("b")
	waitFor(t, "pool filled by a", 60*time.Second, func() bool { return da.Pool().Free("agones", time.Now()) >= 12 })
	ts := e.tickets()
	for i := range 6 {
		ts.create(fmt.Sprintf("p%d", i), fmt.Sprintf("room-%d", i))
	}
	ts.await(6, 30*time.Second)
	if h := holder(); h != "a" {
		t.Fatalf("lease holder %q while a leads", h)
	}
	b.mu.Lock()
	bLed := b.led
	b.mu.Unlock()
	if bLed {
		t.Fatal("b led while a held the lease")
	}

	// Cut a off from the API server.
	a.resp.Close()
	killed := time.Now()
	var db *director.Director
	select {
	case db = <-b.leading:
	case <-e.ctx.Done():
		t.Fatal("b never took over")
	}
	t.Logf("b leads %s after a was cut off (lease duration %s)", time.Since(killed).Round(time.Millisecond), leaseDuration)
	if err := <-a.done; !errors.Is(err, agones.ErrLostLease) {
		t.Fatalf("a: %v, want ErrLostLease", err)
	}
	a.mu.Lock()
	aStopped := a.stopped
	a.mu.Unlock()
	b.mu.Lock()
	bStarted := b.started
	b.mu.Unlock()
	if !aStopped.Before(bStarted) {
		t.Fatalf("a stopped at %s, after b started leading at %s: two leaders placed at once", aStopped, bStarted)
	}
	waitFor(t, "lease held by b", 30*time.Second, func() bool { return holder() == "b" })

	// b rebuilt its pool from the labelled GameServers and places the next tickets.
	waitFor(t, "b's pool has room", 60*time.Second, func() bool { return db.Pool().Free("agones", time.Now()) >= 6 })
	for i := 6; i < 12; i++ {
		ts.create(fmt.Sprintf("p%d", i), fmt.Sprintf("room-%d", i))
	}
	ts.await(6, 30*time.Second)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	sessions, tokens := map[string]string{}, map[string]string{}
	for _, x := range ts.all {
		if x.count != 1 {
			t.Errorf("ticket %s assigned %d times", x.ticket, x.count)
		}
		if prev, dup := sessions[x.session]; dup {
			t.Errorf("session %s given to %s and %s (groups are distinct)", x.session, prev, x.player)
		}
		sessions[x.session] = x.player
		if prev, dup := tokens[x.token]; x.token == "" || dup {
			t.Errorf("ticket %s: token %q empty or also minted for %s", x.ticket, x.token, prev)
		}
		tokens[x.token] = x.ticket
	}
}
