package agonesalloc

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/allocation"
	"github.com/kumi-dev/kumi/internal/kubetest"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

var allocations = schema.GroupVersionResource{Group: "allocation.agones.dev", Version: "v1", Resource: "gameserverallocations"}

func ptr[T any](v T) *T { return &v }

// highDensity is the director's spec: re-allocate Allocated servers with room, else a Ready one,
// fullest first, one more session.
func highDensity(pool string) allocation.Spec {
	fleet := map[string]string{"agones.dev/fleet": "voice"}
	room := map[string]allocation.CounterSelector{"sessions": {MinAvailable: 1}}
	return allocation.Spec{
		Selectors: []allocation.Selector{
			{MatchLabels: fleet, GameServerState: allocation.StateAllocated, Counters: room},
			{MatchLabels: fleet, GameServerState: allocation.StateReady, Counters: room},
		},
		Scheduling: "Packed",
		Priorities: []allocation.Priority{{Type: "Counter", Key: "sessions"}},
		Metadata:   &allocation.MetaPatch{Labels: map[string]string{"kumi.dev/pool": pool}},
		Counters:   map[string]allocation.CounterAction{"sessions": {Action: ptr("Increment"), Amount: ptr[int64](1)}},
	}
}

func putGameServer(t *testing.T, dyn dynamic.Interface, name, state, node string, count, capacity int64) {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "agones.dev/v1", "kind": "GameServer",
		"metadata": map[string]any{"name": name, "namespace": "games", "labels": map[string]any{"agones.dev/fleet": "voice"}},
		"spec": map[string]any{
			"ports":    []any{map[string]any{"name": "default", "containerPort": int64(7654)}},
			"counters": map[string]any{"sessions": map[string]any{"count": count, "capacity": capacity}},
			"template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "gs", "image": "kumi"}}}},
		},
		"status": map[string]any{
			"state": state, "address": "10.0.0.1", "nodeName": node,
			"ports":    []any{map[string]any{"name": "default", "port": int64(7000)}},
			"counters": map[string]any{"sessions": map[string]any{"count": count, "capacity": capacity}},
		},
	}}
	if _, err := dyn.Resource(GameServers).Namespace("games").Create(context.Background(), u, metav1.CreateOptions{FieldValidation: "Strict"}); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
}

func newNamespace(t *testing.T, env *kubetest.Env) {
	t.Helper()
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "games"}}}
	if _, err := env.Dynamic.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func allocate(ctx context.Context, dyn dynamic.Interface, spec allocation.Spec) (allocation.Status, error) {
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "allocation.agones.dev/v1", "kind": "GameServerAllocation",
		"metadata": map[string]any{"namespace": "games"}, "spec": toJSONMap(spec),
	}}
	res, err := dyn.Resource(allocations).Namespace("games").Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		return allocation.Status{}, err
	}
	var st allocation.Status
	raw, _, _ := unstructured.NestedMap(res.Object, "status")
	if err := fromJSONMap(raw, &st); err != nil {
		return allocation.Status{}, err
	}
	if st.State == allocation.AllocationAllocated && res.GetName() != st.GameServerName {
		return st, fmt.Errorf("allocation named %q, want the GameServer's name %q", res.GetName(), st.GameServerName)
	}
	return st, nil
}

func sessions(t *testing.T, dyn dynamic.Interface, name string) (int64, string, map[string]string) {
	t.Helper()
	u, err := dyn.Resource(GameServers).Namespace("games").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, _, _ := unstructured.NestedInt64(u.Object, "status", "counters", "sessions", "count")
	s, _, _ := unstructured.NestedString(u.Object, "status", "state")
	return c, s, u.GetLabels()
}

func TestAllocateAgainstRealAPIServer(t *testing.T) {
	env := kubetest.Start(t, kubetest.WithAgonesCRDs())
	newNamespace(t, env)
	cfg := DefaultConfig()
	cfg.BatchWait = 0
	r := Start(t, env.Config, cfg)
	dyn, err := dynamic.NewForConfig(r.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// node-b already hosts an Allocated server: Packed prefers its Ready server over node-a's.
	putGameServer(t, env.Dynamic, "a-ready", "Ready", "node-a", 0, 4)
	putGameServer(t, env.Dynamic, "b-ready", "Ready", "node-b", 0, 4)
	putGameServer(t, env.Dynamic, "b-full", "Allocated", "node-b", 4, 4)

	steps := []struct {
		want      string
		wantCount int64
	}{
		{"b-ready", 1}, // packed onto node-b
		{"b-ready", 2}, // now Allocated with room: the first selector re-allocates it
		{"b-ready", 3},
		{"b-ready", 4},
		{"a-ready", 1}, // b-ready full
	}
	// Each request gets a batch of its own: one that came before the loop closed the previous
	// batch would find that batch's pick taken (TestBatchContention), which is not what this
	// sequence checks.
	next := func(spec allocation.Spec) (allocation.Status, error) {
		if err := r.WaitBatchEnd(ctx); err != nil {
			return allocation.Status{}, err
		}
		return allocate(ctx, dyn, spec)
	}
	for i, st := range steps {
		res, err := next(highDensity("main"))
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if res.State != allocation.AllocationAllocated || res.GameServerName != st.want || res.Counters["sessions"].Count != st.wantCount {
			t.Fatalf("step %d: %+v, want %s with %d sessions", i, res, st.want, st.wantCount)
		}
		if res.Address != "10.0.0.1" || len(res.Ports) != 1 || res.Ports[0].Port != 7000 || res.NodeName == "" {
			t.Fatalf("step %d: status lacks where to connect: %+v", i, res)
		}
		// The real object changed, not just the answer.
		c, state, labels := sessions(t, env.Dynamic, st.want)
		if c != st.wantCount || state != "Allocated" || labels["kumi.dev/pool"] != "main" {
			t.Fatalf("step %d: stored %s: count %d state %s labels %v", i, st.want, c, state, labels)
		}
	}
	// a-ready has 3 left; then nothing: UnAllocated is an answer, not an error.
	for range 3 {
		if res, err := next(highDensity("main")); err != nil || res.GameServerName != "a-ready" {
			t.Fatalf("%+v %v", res, err)
		}
	}
	if res, err := next(highDensity("main")); err != nil || res.State != allocation.AllocationUnAllocated {
		t.Fatalf("full fleet: %+v %v", res, err)
	}

	// Invalid specs are 422 Invalid, as from Agones' API server.
	_, err = allocate(ctx, dyn, allocation.Spec{Selectors: []allocation.Selector{{GameServerState: "Reserved"}}})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("invalid spec: %v, want 422 Invalid", err)
	}
	// Everything else is the real API server: reads through the proxy see the same objects.
	l, err := dyn.Resource(GameServers).Namespace("games").List(ctx, metav1.ListOptions{LabelSelector: "kumi.dev/pool=main"})
	if err != nil || len(l.Items) != 2 {
		t.Fatalf("list through the proxy: %v, %d items", err, len(l.Items))
	}
	// Without the token nothing passes.
	resp, err := http.Get(r.URL() + "/api")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: HTTP %d", resp.StatusCode)
	}
}

// TestBatchContention reproduces Agones issue #4142: twenty concurrent re-allocations of four
// high-density servers with 40 free slots, all in one batch, get one server each — four
// Allocated, sixteen UnAllocated although capacity is free — and no update is lost.
func TestBatchContention(t *testing.T) {
	env := kubetest.Start(t, kubetest.WithAgonesCRDs())
	newNamespace(t, env)
	for i := range 4 {
		putGameServer(t, env.Dynamic, fmt.Sprintf("gs-%d", i), "Allocated", "node-a", 0, 10)
	}
	cfg := DefaultConfig()
	cfg.BatchWait = time.Hour // the loop idles until kicked, so the test can line the batch up
	r := Start(t, env.Config, cfg)
	dyn, err := dynamic.NewForConfig(r.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 20
	results := make([]allocation.Status, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i], errs[i] = allocate(ctx, dyn, highDensity("main")) })
	}
	for len(r.queue) < n {
		select {
		case <-ctx.Done():
			t.Fatalf("only %d of %d requests queued", len(r.queue), n)
		case <-time.After(10 * time.Millisecond):
		}
	}
	r.kick <- struct{}{}
	wg.Wait()
	perServer := map[string]int{}
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if results[i].State == allocation.AllocationAllocated {
			perServer[results[i].GameServerName]++
		}
	}
	if len(perServer) != 4 {
		t.Fatalf("allocated %v, want each of the 4 servers exactly once in the batch", perServer)
	}
	for name, k := range perServer {
		if c, _, _ := sessions(t, env.Dynamic, name); k != 1 || c != 1 {
			t.Fatalf("%s: %d allocations, stored count %d; want 1 and 1", name, k, c)
		}
	}
	st := r.Stats()
	if st.Batches != 1 || st.Allocated != 4 || st.UnAllocated != 16 || st.Contended != 16 {
		t.Fatalf("stats %+v, want one batch: 4 allocated, 16 unallocated by contention", st)
	}
}
