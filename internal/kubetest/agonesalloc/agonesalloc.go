package agonesalloc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/allocation"
	"github.com/kumi-dev/kumi/allocation/selection"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// GameServers is the agones.dev/v1 GameServer resource.
var GameServers = schema.GroupVersionResource{Group: "agones.dev", Version: "v1", Resource: "gameservers"}

var allocationPath = regexp.MustCompile(`^/apis/allocation\.agones\.dev/v1/namespaces/([^/]+)/gameserverallocations/?$`)

// Config tunes the responder.
type Config struct {
	// BatchWait is how long the batch loop sleeps when it finds no request (Agones'
	// ALLOCATION_BATCH_WAIT_TIME); 0 answers as soon as possible.
	BatchWait time.Duration
	// Seed makes Distributed orderings repeatable.
	Seed uint64
}

// DefaultConfig is Agones' default: a 500 ms batch wait.
func DefaultConfig() Config { return Config{BatchWait: 500 * time.Millisecond, Seed: 1} }

// Stats counts what the responder did.
type Stats struct {
	Batches     int // batches served
	Ended       int // batches the loop ended (it found the queue empty); < Batches while one is open
	Allocated   int // allocations answered Allocated
	UnAllocated int // answered UnAllocated, for any reason
	// Contended counts UnAllocated answers where a matching server existed but an earlier
	// request of the same batch had taken it (Agones issue #4142).
	Contended int
	// Conflicts counts updates refused because the GameServer changed since the batch listed it.
	Conflicts int
}

// Responder is the running proxy.
type Responder struct {
	cfg    Config
	log    *slog.Logger
	dyn    dynamic.Interface
	srv    *httptest.Server
	token  string
	queue  chan *request
	kick   chan struct{} // ends an idle sleep early (tests line up a batch, then release it)
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	stats    Stats
	ended    chan struct{} // closed and replaced when a batch ends
	requests []allocation.Spec
}

type request struct {
	ns    string
	spec  allocation.Spec
	reply chan allocation.Status
}

// Start runs a responder in front of the API server upstream reaches and stops it on t.Cleanup.
func Start(t testing.TB, upstream *rest.Config, cfg Config) *Responder {
	t.Helper()
	r, err := New(upstream, cfg, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatalf("agonesalloc: %v", err)
	}
	t.Cleanup(r.Close)
	return r
}

// New starts a responder on 127.0.0.1 in front of the API server upstream reaches.
func New(upstream *rest.Config, cfg Config, log *slog.Logger) (*Responder, error) {
	if cfg.BatchWait < 0 {
		return nil, fmt.Errorf("batch wait %s must be ≥ 0", cfg.BatchWait)
	}
	target, err := url.Parse(upstream.Host)
	if err != nil || target.Host == "" {
		if target, err = url.Parse("https://" + upstream.Host); err != nil {
			return nil, fmt.Errorf("upstream host %q: %w", upstream.Host, err)
		}
	}
	rt, err := rest.TransportFor(upstream)
	if err != nil {
		return nil, fmt.Errorf("upstream transport: %w", err)
	}
	dyn, err := dynamic.NewForConfig(upstream)
	if err != nil {
		return nil, fmt.Errorf("upstream client: %w", err)
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Responder{cfg: cfg, log: log, dyn: dyn, token: hex.EncodeToString(tok), queue: make(chan *request, 1024), kick: make(chan struct{}, 1), cancel: cancel, ended: make(chan struct{})}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Del("Authorization") // the upstream transport authenticates
		},
		Transport:     rt,
		FlushInterval: -1, // watches stream event by event
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Header.Get("Authorization") != "Bearer "+r.token {
			http.Error(w, "agonesalloc: missing or wrong bearer token", http.StatusUnauthorized)
			return
		}
		if m := allocationPath.FindStringSubmatch(req.URL.Path); m != nil && req.Method == http.MethodPost {
			r.serveAllocation(w, req, m[1])
			return
		}
		proxy.ServeHTTP(w, req)
	}))
	r.wg.Add(1)
	go r.loop(ctx)
	return r, nil
}

// RESTConfig reaches the API server through the responder.
func (r *Responder) RESTConfig() *rest.Config {
	return &rest.Config{Host: r.srv.URL, BearerToken: r.token, QPS: 500, Burst: 1000}
}

// URL is the responder's address.
func (r *Responder) URL() string { return r.srv.URL }

// Stats returns the counts so far.
func (r *Responder) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// Requests returns the specs of the valid allocation requests received so far, in order.
func (r *Responder) Requests() []allocation.Spec {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.requests)
}

// Close stops the batch loop and the listener; requests still queued are answered UnAllocated.
func (r *Responder) Close() {
	r.cancel()
	r.srv.CloseClientConnections()
	r.srv.Close()
	r.wg.Wait()
}

func (r *Responder) serveAllocation(w http.ResponseWriter, req *http.Request, ns string) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		writeStatus(w, apierrors.NewBadRequest("read body: "+err.Error()))
		return
	}
	var gsa struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
		Spec     allocation.Spec   `json:"spec"`
	}
	if err := json.Unmarshal(body, &gsa); err != nil {
		writeStatus(w, apierrors.NewBadRequest("decode GameServerAllocation: "+err.Error()))
		return
	}
	if err := selection.Validate(gsa.Spec); err != nil {
		writeStatus(w, apierrors.NewInvalid(schema.GroupKind{Group: "allocation.agones.dev", Kind: "GameServerAllocation"}, gsa.Metadata.Name,
			field.ErrorList{field.Invalid(field.NewPath("spec"), nil, err.Error())}))
		return
	}
	r.mu.Lock()
	r.requests = append(r.requests, gsa.Spec)
	r.mu.Unlock()
	rq := &request{ns: ns, spec: gsa.Spec, reply: make(chan allocation.Status, 1)}
	select {
	case r.queue <- rq:
	case <-req.Context().Done():
		return
	}
	var st allocation.Status
	select {
	case st = <-rq.reply:
	case <-req.Context().Done():
		return
	}
	meta := map[string]any{"namespace": ns, "creationTimestamp": time.Now().UTC().Format(time.RFC3339)}
	if st.State == allocation.AllocationAllocated {
		meta["name"] = st.GameServerName // as Agones: the GSA is named after the GameServer
	}
	out := map[string]any{
		"apiVersion": "allocation.agones.dev/v1",
		"kind":       "GameServerAllocation",
		"metadata":   meta,
		"spec":       gsa.Spec,
		"status":     st,
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(out)
}

func writeStatus(w http.ResponseWriter, err *apierrors.StatusError) {
	st := err.Status()
	st.Kind, st.APIVersion = "Status", "v1"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(st.Code))
	_ = json.NewEncoder(w).Encode(st)
}

// loop is Agones' batch loop: requests pending together are served from one listing, each
// taking its server out of that listing; when none is pending it forgets the listing and sleeps
// BatchWait.
func (r *Responder) loop(ctx context.Context) {
	defer r.wg.Done()
	rnd := mrand.New(mrand.NewPCG(r.cfg.Seed, r.cfg.Seed^0x9e3779b97f4a7c15))
	var updates sync.WaitGroup
	defer updates.Wait()
	var (
		listed map[string][]*unstructured.Unstructured // namespace → servers still on offer in this batch
		taken  map[string]map[string]bool              // namespace → servers taken in this batch
	)
	for {
		if ctx.Err() != nil {
			r.drain()
			return
		}
		var rq *request
		select {
		case rq = <-r.queue:
		default:
			if listed != nil {
				r.endBatch()
			}
			listed, taken = nil, nil // idle: the next request starts a new batch on a fresh listing
			if r.cfg.BatchWait > 0 {
				t := time.NewTimer(r.cfg.BatchWait)
				select {
				case <-ctx.Done():
				case <-t.C:
				case <-r.kick:
				}
				t.Stop()
				continue
			}
			select {
			case <-ctx.Done():
				continue
			case rq = <-r.queue:
			}
		}
		if listed == nil {
			listed, taken = map[string][]*unstructured.Unstructured{}, map[string]map[string]bool{}
			r.mu.Lock()
			r.stats.Batches++
			r.mu.Unlock()
		}
		if _, ok := listed[rq.ns]; !ok {
			l, err := r.dyn.Resource(GameServers).Namespace(rq.ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				r.log.Warn("list gameservers", "namespace", rq.ns, "err", err)
				r.answer(rq, allocation.Status{State: allocation.AllocationUnAllocated}, false, false)
				continue
			}
			items := make([]*unstructured.Unstructured, 0, len(l.Items))
			for i := range l.Items {
				if l.Items[i].GetDeletionTimestamp() == nil {
					items = append(items, &l.Items[i])
				}
			}
			listed[rq.ns], taken[rq.ns] = items, map[string]bool{}
		}
		r.pick(ctx, rq, listed[rq.ns], taken[rq.ns], rnd, &updates)
	}
}

// pick chooses rq's server among items not yet taken in this batch and updates it in the
// background.
func (r *Responder) pick(ctx context.Context, rq *request, items []*unstructured.Unstructured, taken map[string]bool, rnd *mrand.Rand, updates *sync.WaitGroup) {
	views := make([]*allocation.GameServer, 0, len(items))
	byName := make(map[string]*unstructured.Unstructured, len(items))
	var all []*allocation.GameServer
	for _, u := range items {
		g, err := View(u)
		if err != nil {
			r.log.Warn("skipping undecodable GameServer", "name", u.GetName(), "err", err)
			continue
		}
		all = append(all, &g)
		if !taken[g.Name] {
			views = append(views, &g)
			byName[g.Name] = u
		}
	}
	cands := selection.Candidates(rq.spec, views, rnd)
	if len(cands) == 0 {
		// Would it have matched without this batch's earlier picks? Then it is #4142 contention.
		contended := len(taken) > 0 && len(selection.Candidates(rq.spec, all, rnd)) > 0
		r.answer(rq, allocation.Status{State: allocation.AllocationUnAllocated}, contended, false)
		return
	}
	chosen := cands[0]
	taken[chosen.Name] = true
	u := byName[chosen.Name].DeepCopy()
	g := *chosen
	warnings := selection.Apply(rq.spec, &g, time.Now())
	for _, w := range warnings {
		r.log.Warn("allocation action", "gameserver", g.Name, "warning", w)
	}
	updates.Add(1)
	go func() {
		defer updates.Done()
		st, conflict := r.update(ctx, rq.ns, u, &g)
		r.answer(rq, st, false, conflict)
	}()
}

// update writes the allocated view back onto u with one Update carrying u's resourceVersion.
func (r *Responder) update(ctx context.Context, ns string, u *unstructured.Unstructured, g *allocation.GameServer) (allocation.Status, bool) {
	u.SetLabels(g.Labels)
	u.SetAnnotations(g.Annotations)
	status, _, _ := unstructured.NestedMap(u.Object, "status")
	if status == nil {
		status = map[string]any{}
	}
	status["state"] = g.State
	if g.Counters != nil {
		status["counters"] = toJSONMap(g.Counters)
	}
	if g.Lists != nil {
		status["lists"] = toJSONMap(g.Lists)
	}
	u.Object["status"] = status
	res, err := r.dyn.Resource(GameServers).Namespace(ns).Update(ctx, u, metav1.UpdateOptions{})
	if err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return allocation.Status{State: allocation.AllocationUnAllocated}, true
		}
		r.log.Warn("update gameserver", "name", u.GetName(), "err", err)
		return allocation.Status{State: allocation.AllocationUnAllocated}, false
	}
	after, err := View(res)
	if err != nil {
		r.log.Warn("decode updated gameserver", "name", res.GetName(), "err", err)
		return allocation.Status{State: allocation.AllocationUnAllocated}, false
	}
	return selection.Status(&after, "local"), false
}

func (r *Responder) answer(rq *request, st allocation.Status, contended, conflict bool) {
	r.mu.Lock()
	if st.State == allocation.AllocationAllocated {
		r.stats.Allocated++
	} else {
		r.stats.UnAllocated++
	}
	if contended {
		r.stats.Contended++
	}
	if conflict {
		r.stats.Conflicts++
	}
	r.mu.Unlock()
	rq.reply <- st
}

func (r *Responder) endBatch() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.Ended++
	close(r.ended)
	r.ended = make(chan struct{})
}

// WaitBatchEnd returns once every batch started so far has ended, so the next request starts a
// batch of its own. As in Agones, a request that arrives before the loop has seen its queue empty
// joins the open batch, whose earlier picks are out of its candidates: a caller that needs
// requests answered one batch each (a test asserting an exact sequence) waits for this between
// them.
func (r *Responder) WaitBatchEnd(ctx context.Context) error {
	for {
		r.mu.Lock()
		done, ch := r.stats.Ended == r.stats.Batches, r.ended
		r.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("agonesalloc: batch still open: %w", ctx.Err())
		}
	}
}

func (r *Responder) drain() {
	for {
		select {
		case rq := <-r.queue:
			r.answer(rq, allocation.Status{State: allocation.AllocationUnAllocated}, false, false)
		default:
			return
		}
	}
}

// View decodes the parts of an agones.dev/v1 GameServer that allocation uses.
func View(u *unstructured.Unstructured) (allocation.GameServer, error) {
	var gs struct {
		Status struct {
			State     string                              `json:"state"`
			Address   string                              `json:"address"`
			Addresses []allocation.Address                `json:"addresses"`
			NodeName  string                              `json:"nodeName"`
			Ports     []allocation.Port                   `json:"ports"`
			Counters  map[string]allocation.CounterStatus `json:"counters"`
			Lists     map[string]allocation.ListStatus    `json:"lists"`
		} `json:"status"`
	}
	raw, err := json.Marshal(u.Object)
	if err == nil {
		err = json.Unmarshal(raw, &gs)
	}
	if err != nil {
		return allocation.GameServer{}, fmt.Errorf("decode GameServer %s: %w", u.GetName(), err)
	}
	return allocation.GameServer{
		Name: u.GetName(), State: gs.Status.State, Address: gs.Status.Address, Addresses: gs.Status.Addresses,
		NodeName: gs.Status.NodeName, Ports: gs.Status.Ports, Labels: u.GetLabels(), Annotations: u.GetAnnotations(),
		Counters: gs.Status.Counters, Lists: gs.Status.Lists, Created: u.GetCreationTimestamp().Time,
	}, nil
}

func toJSONMap(v any) map[string]any {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs of strings and ints always marshal
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		panic(err)
	}
	return m
}

func fromJSONMap(m map[string]any, out any) error {
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, out)
}

// testWriter sends the responder's log to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
