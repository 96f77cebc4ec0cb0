package agones

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/allocation"
	"github.com/kumi-dev/kumi/director/pool"
	"github.com/kumi-dev/kumi/internal/kubetest/agonesalloc"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var fleet = map[string]string{"agones.dev/fleet": "voice"}

func gameServer(name, state string, count, capacity int64, extra map[string]string) allocation.GameServer {
	l := map[string]string{"agones.dev/fleet": "voice"}
	for k, v := range extra {
		l[k] = v
	}
	return allocation.GameServer{Name: name, State: state, Address: "10.0.0.7", Labels: l, NodeName: "node-1",
		Ports:    []allocation.Port{{Name: "default", Port: 7001}},
		Counters: map[string]allocation.CounterStatus{allocation.CounterSessions: {Count: count, Capacity: capacity}}}
}

type cluster struct{ *agonesalloc.Cluster }

func newCluster(t *testing.T, batchWait time.Duration) cluster {
	t.Helper()
	cfg := agonesalloc.DefaultConfig()
	cfg.BatchWait = batchWait
	return cluster{agonesalloc.StartCluster(t, "games", cfg)}
}

func (c cluster) backend(t *testing.T, mod func(*Config)) *Backend {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Namespace = c.Namespace
	if mod != nil {
		mod(&cfg)
	}
	b, err := NewForRESTConfig(c.Alloc.RESTConfig(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAllocateHighDensity(t *testing.T) {
	c := newCluster(t, 0)
	c.Put(t, gameServer("gs-a", allocation.StateReady, 0, 10, nil))
	c.Put(t, gameServer("gs-b", allocation.StateReady, 0, 10, nil))
	c.Put(t, gameServer("gs-full", allocation.StateAllocated, 10, 10, nil))
	other := gameServer("other-fleet", allocation.StateReady, 0, 10, nil)
	other.Labels["agones.dev/fleet"] = "duel"
	c.Put(t, other)
	b := c.backend(t, func(c *Config) { c.Retries = 0 })
	ctx := context.Background()
	spec := pool.AllocationSpec("main", fleet)

	steps := []struct {
		name       string
		before     func()
		wantState  string
		wantServer string
		wantCount  int64
	}{
		{name: "ready server, counter incremented, pool label set", wantState: allocation.AllocationAllocated, wantServer: "gs-a", wantCount: 1},
		{name: "pooled servers are not re-allocated: next Ready one", wantState: allocation.AllocationAllocated, wantServer: "gs-b", wantCount: 1},
		{
			name:       "an Allocated server with room outside any pool comes first",
			before:     func() { c.Put(t, gameServer("gs-orphan", allocation.StateAllocated, 3, 10, nil)) },
			wantState:  allocation.AllocationAllocated,
			wantServer: "gs-orphan", wantCount: 4,
		},
		{name: "nothing left: UnAllocated, not an error", wantState: allocation.AllocationUnAllocated},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.before != nil {
				st.before()
			}
			res, err := b.Allocate(ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			if res.State != st.wantState || res.GameServerName != st.wantServer {
				t.Fatalf("got %s %q, want %s %q", res.State, res.GameServerName, st.wantState, st.wantServer)
			}
			if st.wantServer == "" {
				return
			}
			if cs := res.Counters[allocation.CounterSessions]; cs.Count != st.wantCount {
				t.Fatalf("sessions count %d, want %d", cs.Count, st.wantCount)
			}
			if res.Metadata == nil || res.Metadata.Labels[allocation.LabelPool] != "main" {
				t.Fatalf("pool label missing from %+v", res.Metadata)
			}
			info := pool.ServerFromAllocation("agones", "default", res)
			if info.Address != "10.0.0.7:7001" || info.Capacity != 10 || info.Used != int(st.wantCount-1) {
				t.Fatalf("pool view %+v", info)
			}
			gs := c.Get(t, st.wantServer)
			if gs.State != allocation.StateAllocated || gs.Annotations["agones.dev/last-allocated"] == "" || gs.Labels[allocation.LabelPool] != "main" {
				t.Fatalf("stored server after allocation: %+v", gs)
			}
		})
	}

	// The request went out exactly as built: the responder decoded the same spec.
	got := c.Alloc.Requests()
	if len(got) != 4 {
		t.Fatalf("%d allocation requests, want 4", len(got))
	}
	want, _ := json.Marshal(spec)
	if have, _ := json.Marshal(got[0]); string(have) != string(want) {
		t.Fatalf("request spec\n%s\nwant\n%s", have, want)
	}
	sel := got[0].Selectors
	if len(sel) != 2 || sel[0].GameServerState != "Allocated" || sel[1].GameServerState != "Ready" ||
		sel[0].Counters[allocation.CounterSessions].MinAvailable != 1 || got[0].Scheduling != "Packed" ||
		got[0].Priorities[0].Order != "Ascending" || *got[0].Counters[allocation.CounterSessions].Action != "Increment" {
		t.Fatalf("request is not the high-density shape: %+v", got[0])
	}
}

func TestAllocateInvalid(t *testing.T) {
	c := newCluster(t, 0)
	b := c.backend(t, nil)
	bad := "Jump"
	for _, tc := range []struct {
		spec allocation.Spec
		want string
	}{
		{allocation.Spec{Selectors: []allocation.Selector{{GameServerState: "Reserved"}}}, "gameServerState"},
		{allocation.Spec{Counters: map[string]allocation.CounterAction{"sessions": {Action: &bad}}}, "action"},
		{allocation.Spec{Priorities: []allocation.Priority{{Type: "Players", Key: "x"}}}, "priorities[0].type"},
	} {
		_, err := b.Allocate(context.Background(), tc.spec)
		var se *apierrors.StatusError
		if !errors.As(err, &se) || se.ErrStatus.Code != 422 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Allocate(%+v) = %v, want a 422 naming %q", tc.spec, err, tc.want)
		}
	}
	if n := b.Retries(); n != 0 {
		t.Fatalf("%v retries of refused requests, want none", n)
	}
}

// TestRetriesThroughBatchContention: eight concurrent allocations over four high-density servers
// in Agones-like batches (some of them contended, issue #4142) all end Allocated thanks to the
// backend's jittered retries, each counted.
func TestRetriesThroughBatchContention(t *testing.T) {
	c := newCluster(t, 50*time.Millisecond)
	for i := range 4 {
		c.Put(t, gameServer(fmt.Sprintf("gs-%d", i), allocation.StateAllocated, 0, 10, map[string]string{allocation.LabelPool: "main"}))
	}
	b := c.backend(t, nil)
	spec := pool.AllocationSpec("main", fleet)
	// Re-allocate the pool's own servers: the spec's first selector otherwise wants servers of no pool.
	spec.Selectors[0].MatchLabels = map[string]string{allocation.LabelPool: "main"}
	spec.Selectors[0].MatchExpressions = nil
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			res, err := b.Allocate(ctx, spec)
			if err == nil && res.State != allocation.AllocationAllocated {
				err = fmt.Errorf("allocation %d: %s", i, res.State)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	for i := range 4 {
		total += c.Get(t, fmt.Sprintf("gs-%d", i)).Counters[allocation.CounterSessions].Count
	}
	if total != n {
		t.Fatalf("stored session counts sum to %d, want %d (lost or doubled updates)", total, n)
	}
	st := c.Alloc.Stats()
	if float64(st.UnAllocated) != b.Retries() {
		t.Fatalf("responder answered UnAllocated %d times, backend retried %v times", st.UnAllocated, b.Retries())
	}
	t.Logf("responder %+v", st)
}

func TestListAndWatch(t *testing.T) {
	c := newCluster(t, 0)
	c.Put(t, gameServer("gs-1", allocation.StateReady, 0, 8, nil))
	c.Put(t, gameServer("gs-2", allocation.StateAllocated, 5, 8, map[string]string{allocation.LabelPool: "main"}))
	c.Put(t, gameServer("gs-3", allocation.StateAllocated, 1, 8, map[string]string{allocation.LabelPool: "other"}))
	b := c.backend(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sel := map[string]string{allocation.LabelPool: "main"}

	list, err := b.List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "gs-2" || list[0].Counters[allocation.CounterSessions].Count != 5 || list[0].Address != "10.0.0.7" {
		t.Fatalf("list %+v", list)
	}

	wctx, wcancel := context.WithCancel(ctx)
	ch, err := b.Watch(wctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	next := func() allocation.Event {
		t.Helper()
		select {
		case ev := <-ch:
			return ev
		case <-ctx.Done():
			t.Fatal("no watch event")
		}
		return allocation.Event{}
	}
	if ev := next(); ev.Server.Name != "gs-2" || ev.Deleted {
		t.Fatalf("initial event %+v", ev)
	}
	// gs-1 gets allocated into the pool: it appears.
	if _, err := b.Allocate(ctx, pool.AllocationSpec("main", fleet)); err != nil {
		t.Fatal(err)
	}
	if ev := next(); ev.Server.Name != "gs-1" || ev.Server.State != allocation.StateAllocated {
		t.Fatalf("allocation event %+v", ev)
	}
	gs2 := c.Get(t, "gs-2")
	gs2.State = allocation.StateShutdown
	c.Put(t, gs2)
	if ev := next(); ev.Server.Name != "gs-2" || ev.Server.State != allocation.StateShutdown {
		t.Fatalf("state event %+v", ev)
	}
	c.Delete(t, "gs-2")
	if ev := next(); ev.Server.Name != "gs-2" || !ev.Deleted {
		t.Fatalf("delete event %+v", ev)
	}
	c.Delete(t, "gs-3") // another pool: never seen
	wcancel()
	for ev := range ch {
		if ev.Server.Name == "gs-3" {
			t.Fatalf("event of another pool: %+v", ev)
		}
	}
}

func TestLeaderElection(t *testing.T) {
	c := newCluster(t, 0)
	fast := func(id string) func(*Config) {
		return func(c *Config) {
			c.LeaseName, c.Identity = "kumi-director", id
			c.LeaseDuration, c.RenewDeadline, c.RetryPeriod = 3*time.Second, 2*time.Second, 100*time.Millisecond
		}
	}
	a, b := c.backend(t, fast("a")), c.backend(t, fast("b"))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	actx, acancel := context.WithCancel(ctx)
	aLeads := make(chan struct{})
	aDone := make(chan error, 1)
	go func() {
		aDone <- a.LeadWith(actx, log, func(lctx context.Context) error { close(aLeads); <-lctx.Done(); return nil })
	}()
	<-aLeads
	bLeads := make(chan struct{})
	bDone := make(chan error, 1)
	go func() {
		bDone <- b.LeadWith(ctx, log, func(lctx context.Context) error { close(bLeads); <-lctx.Done(); return nil })
	}()
	// b keeps trying every RetryPeriod; while a renews, the real Lease stays a's.
	for range 5 {
		time.Sleep(100 * time.Millisecond)
		select {
		case <-bLeads:
			t.Fatal("two leaders at once")
		default:
		}
		l, err := c.Env.Kube.CoordinationV1().Leases("games").Get(ctx, "kumi-director", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if h := l.Spec.HolderIdentity; h == nil || *h != "a" {
			t.Fatalf("lease holder %v, want a", h)
		}
	}
	acancel()
	if err := <-aDone; err != nil {
		t.Fatalf("a: %v", err)
	}
	select {
	case <-bLeads: // took over after a released the lease
	case <-ctx.Done():
		t.Fatal("b never led after a stopped")
	}
	cancel()
	if err := <-bDone; err != nil {
		t.Fatalf("b: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, mod := range []func(*Config){
		func(c *Config) { c.Name = "" },
		func(c *Config) { c.Namespace = "" },
		func(c *Config) { c.Timeout = 0 },
		func(c *Config) { c.LeaseName = "x"; c.RenewDeadline = c.LeaseDuration },
		func(c *Config) { c.Retries = -1 },
		func(c *Config) { c.RetryBackoff = 0 },
		func(c *Config) { c.BatchWait = -time.Second },
	} {
		c := DefaultConfig()
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}
