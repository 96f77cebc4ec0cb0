// Package agonestest is a STAND-IN for the Kubernetes API server with Agones installed, for tests
// of kumi's Agones backend where no cluster can run. It serves, over real HTTP on 127.0.0.1, what
// that backend uses, reproducing Agones 1.56's GameServer/Fleet (agones.dev/v1), GameServerAllocation
// (allocation.agones.dev/v1) and high-density (counters and lists) behaviour:
//
//   - POST /apis/allocation.agones.dev/v1/namespaces/{ns}/gameserverallocations: validates the
//     request (gameServerState only Ready or Allocated, counter actions Increment/Decrement with
//     amount > 0, priorities Counter|List with Ascending|Descending, scheduling Packed|Distributed)
//     and answers a Kubernetes Status with 422 on failure; otherwise tries the ordered selectors
//     (state, matchLabels, matchExpressions, counters min/max count/available) and orders candidates
//     by the priorities (Ascending = least available first), then name; applies state Allocated,
//     metadata labels/annotations, agones.dev/last-allocated, counter actions clamped to [0,
//     capacity]; answers 201 with status Allocated (server, address, ports, counters, metadata) or
//     UnAllocated. An optional delay emulates the allocator's batching latency.
//   - GET (list and watch, incl. sendInitialEvents with the initial-events-end bookmark) of
//     /apis/agones.dev/v1/namespaces/{ns}/gameservers with labelSelector; watches send ADDED when an
//     object starts matching the selector and DELETED when it stops matching or is deleted.
//   - GET/POST/PUT of /apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name} with
//     resourceVersion conflict checks (409), enough for client-go leader election.
//
// It does not reproduce authentication, node packing, multi-cluster allocation, lists' actions, or
// any other resource.
package agonestest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kumi-dev/kumi/allocation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
)

// Server is the stand-in API server.
type Server struct {
	ns  string
	srv *httptest.Server

	mu          sync.Mutex
	rv          int64
	servers     map[string]*allocation.GameServer
	events      []event
	changed     chan struct{}
	leases      map[string]map[string]any
	allocations []allocation.Spec
	delay       time.Duration
	closed      chan struct{}
	closeOnce   sync.Once
}

type event struct {
	rv       int64
	typ      string // ADDED, MODIFIED, DELETED
	prev, gs *allocation.GameServer
}

// New starts the stand-in on 127.0.0.1 serving namespace ns. Close it when done.
func New(ns string) *Server {
	s := &Server{ns: ns, servers: make(map[string]*allocation.GameServer), leases: make(map[string]map[string]any),
		changed: make(chan struct{}), closed: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Close stops the server, ending open watches.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closed) })
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// RESTConfig is a client configuration for the stand-in.
func (s *Server) RESTConfig() *rest.Config { return &rest.Config{Host: s.srv.URL} }

// SetAllocationDelay makes every allocation take d (the allocator's batching latency).
func (s *Server) SetAllocationDelay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

// Allocations returns every allocation spec received, in order.
func (s *Server) Allocations() []allocation.Spec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]allocation.Spec(nil), s.allocations...)
}

// Put creates or replaces a GameServer.
func (s *Server) Put(gs allocation.GameServer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.servers[gs.Name]
	c := clone(&gs)
	if c.Created.IsZero() {
		c.Created = time.Now().Truncate(time.Second)
	}
	s.servers[gs.Name] = c
	typ := "ADDED"
	if prev != nil {
		typ = "MODIFIED"
	}
	s.emitLocked(typ, prev, c)
}

// Get returns a GameServer.
func (s *Server) Get(name string) (allocation.GameServer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, ok := s.servers[name]
	if !ok {
		return allocation.GameServer{}, false
	}
	return *clone(gs), true
}

// Delete removes a GameServer.
func (s *Server) Delete(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev, ok := s.servers[name]; ok {
		delete(s.servers, name)
		s.emitLocked("DELETED", prev, prev)
	}
}

// LeaseHolder returns the holderIdentity of a Lease ("" when absent).
func (s *Server) LeaseHolder(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.leases[name]
	if !ok {
		return ""
	}
	spec, _ := l["spec"].(map[string]any)
	h, _ := spec["holderIdentity"].(string)
	return h
}

func (s *Server) emitLocked(typ string, prev, gs *allocation.GameServer) {
	s.rv++
	s.events = append(s.events, event{rv: s.rv, typ: typ, prev: clone(prev), gs: clone(gs)})
	close(s.changed)
	s.changed = make(chan struct{})
}

func clone(gs *allocation.GameServer) *allocation.GameServer {
	if gs == nil {
		return nil
	}
	raw, _ := json.Marshal(gs)
	var c allocation.GameServer
	_ = json.Unmarshal(raw, &c)
	return &c
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	// apis/<group>/<version>/namespaces/<ns>/<resource>[/<name>]
	if len(parts) < 6 || parts[0] != "apis" || parts[3] != "namespaces" {
		writeStatus(w, http.StatusNotFound, "NotFound", "the server could not find the requested resource")
		return
	}
	if parts[4] != s.ns {
		writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("namespace %q not served by this stand-in", parts[4]))
		return
	}
	group, resource := parts[1], parts[5]
	name := ""
	if len(parts) > 6 {
		name = parts[6]
	}
	switch {
	case group == "allocation.agones.dev" && resource == "gameserverallocations" && r.Method == http.MethodPost && name == "":
		s.allocate(w, r)
	case group == "agones.dev" && resource == "gameservers" && r.Method == http.MethodGet && name == "":
		if w1 := r.URL.Query().Get("watch"); w1 == "true" || w1 == "1" {
			s.watch(w, r)
		} else {
			s.list(w, r)
		}
	case group == "coordination.k8s.io" && resource == "leases":
		s.lease(w, r, name)
	default:
		writeStatus(w, http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method+" "+r.URL.Path+" is not supported")
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeStatus(w http.ResponseWriter, code int, reason, msg string) {
	writeJSON(w, code, map[string]any{"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": msg, "reason": reason, "code": code})
}

type gsaRequest struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Spec       allocation.Spec `json:"spec"`
}

func validate(req gsaRequest) []string {
	var errs []string
	if req.APIVersion != "allocation.agones.dev/v1" || req.Kind != "GameServerAllocation" {
		errs = append(errs, fmt.Sprintf("apiVersion/kind %q/%q: want allocation.agones.dev/v1 GameServerAllocation", req.APIVersion, req.Kind))
	}
	sp := req.Spec
	for i, sel := range sp.Selectors {
		if st := sel.GameServerState; st != "" && st != allocation.StateReady && st != allocation.StateAllocated {
			errs = append(errs, fmt.Sprintf("spec.selectors[%d].gameServerState: Unsupported value: %q: supported values: \"Ready\", \"Allocated\"", i, st))
		}
		for j, e := range sel.MatchExpressions {
			switch e.Operator {
			case "In", "NotIn":
				if len(e.Values) == 0 {
					errs = append(errs, fmt.Sprintf("spec.selectors[%d].matchExpressions[%d].values: Required value: must be specified when `operator` is 'In' or 'NotIn'", i, j))
				}
			case "Exists", "DoesNotExist":
				if len(e.Values) != 0 {
					errs = append(errs, fmt.Sprintf("spec.selectors[%d].matchExpressions[%d].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'", i, j))
				}
			default:
				errs = append(errs, fmt.Sprintf("spec.selectors[%d].matchExpressions[%d].operator: Invalid value: %q: not a valid selector operator", i, j, e.Operator))
			}
		}
	}
	if sc := sp.Scheduling; sc != "" && sc != "Packed" && sc != "Distributed" {
		errs = append(errs, fmt.Sprintf("spec.scheduling: Unsupported value: %q", sc))
	}
	for i, p := range sp.Priorities {
		if p.Type != "Counter" && p.Type != "List" {
			errs = append(errs, fmt.Sprintf("spec.priorities[%d].type: Unsupported value: %q", i, p.Type))
		}
		if p.Order != "" && p.Order != "Ascending" && p.Order != "Descending" {
			errs = append(errs, fmt.Sprintf("spec.priorities[%d].order: Unsupported value: %q", i, p.Order))
		}
	}
	for k, a := range sp.Counters {
		if a.Action != nil {
			if *a.Action != "Increment" && *a.Action != "Decrement" {
				errs = append(errs, fmt.Sprintf("spec.counters[%s].action: Invalid value: %q: must be \"Increment\" or \"Decrement\"", k, *a.Action))
			}
			if a.Amount == nil || *a.Amount <= 0 {
				errs = append(errs, fmt.Sprintf("spec.counters[%s].amount: Invalid value: must be greater than 0", k))
			}
		}
	}
	return errs
}

func (s *Server) allocate(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeStatus(w, http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		writeStatus(w, http.StatusUnsupportedMediaType, "UnsupportedMediaType", "the body of the request was in an unknown format: "+ct)
		return
	}
	var req gsaRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeStatus(w, http.StatusBadRequest, "BadRequest", "decode GameServerAllocation: "+err.Error())
		return
	}
	if errs := validate(req); len(errs) > 0 {
		writeStatus(w, http.StatusUnprocessableEntity, "Invalid", "GameServerAllocation.allocation.agones.dev \"\" is invalid: ["+strings.Join(errs, ", ")+"]")
		return
	}
	s.mu.Lock()
	s.allocations = append(s.allocations, req.Spec)
	delay := s.delay
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		case <-s.closed:
			return
		}
	}
	s.mu.Lock()
	st := s.allocateLocked(req.Spec)
	s.mu.Unlock()
	out := map[string]any{"apiVersion": "allocation.agones.dev/v1", "kind": "GameServerAllocation",
		"metadata": map[string]any{"namespace": s.ns, "name": st.GameServerName, "creationTimestamp": nil},
		"spec":     req.Spec, "status": st}
	writeJSON(w, http.StatusCreated, out)
}

func (s *Server) allocateLocked(sp allocation.Spec) allocation.Status {
	for _, sel := range sp.Selectors {
		var cands []*allocation.GameServer
		for _, gs := range s.servers {
			if matches(sel, gs) {
				cands = append(cands, gs)
			}
		}
		if len(cands) == 0 {
			continue
		}
		sort.Slice(cands, func(i, j int) bool {
			for _, p := range sp.Priorities {
				ai, aj := available(p, cands[i]), available(p, cands[j])
				if ai != aj {
					if p.Order == "Descending" {
						return ai > aj
					}
					return ai < aj
				}
			}
			return cands[i].Name < cands[j].Name
		})
		prev := clone(cands[0])
		gs := cands[0]
		gs.State = allocation.StateAllocated
		if gs.Labels == nil {
			gs.Labels = map[string]string{}
		}
		if gs.Annotations == nil {
			gs.Annotations = map[string]string{}
		}
		if sp.Metadata != nil {
			for k, v := range sp.Metadata.Labels {
				gs.Labels[k] = v
			}
			for k, v := range sp.Metadata.Annotations {
				gs.Annotations[k] = v
			}
		}
		gs.Annotations["agones.dev/last-allocated"] = time.Now().UTC().Format(time.RFC3339Nano)
		for k, a := range sp.Counters {
			c, ok := gs.Counters[k]
			if !ok {
				continue // unknown key: a warning event in Agones, the allocation still succeeds
			}
			if a.Capacity != nil {
				c.Capacity = *a.Capacity
			}
			if a.Action != nil && a.Amount != nil {
				if *a.Action == "Increment" {
					c.Count = min(c.Count+*a.Amount, c.Capacity)
				} else {
					c.Count = max(c.Count-*a.Amount, 0)
				}
			}
			gs.Counters[k] = c
		}
		s.emitLocked("MODIFIED", prev, gs)
		return allocation.Status{State: allocation.AllocationAllocated, GameServerName: gs.Name, Ports: gs.Ports,
			Address: gs.Address, Source: "local", Counters: gs.Counters, Lists: gs.Lists,
			Metadata: &allocation.MetaPatch{Labels: gs.Labels, Annotations: gs.Annotations}}
	}
	return allocation.Status{State: allocation.AllocationUnAllocated}
}

func available(p allocation.Priority, gs *allocation.GameServer) int64 {
	if p.Type == "Counter" {
		if c, ok := gs.Counters[p.Key]; ok {
			return c.Capacity - c.Count
		}
	} else if l, ok := gs.Lists[p.Key]; ok {
		return l.Capacity - int64(len(l.Values))
	}
	return 1 << 62 // servers without the key sort last
}

func matches(sel allocation.Selector, gs *allocation.GameServer) bool {
	want := sel.GameServerState
	if want == "" {
		want = allocation.StateReady
	}
	if gs.State != want {
		return false
	}
	for k, v := range sel.MatchLabels {
		if gs.Labels[k] != v {
			return false
		}
	}
	for _, e := range sel.MatchExpressions {
		v, has := gs.Labels[e.Key]
		in := false
		for _, x := range e.Values {
			in = in || x == v
		}
		switch e.Operator {
		case "In":
			if !has || !in {
				return false
			}
		case "NotIn":
			if has && in {
				return false
			}
		case "Exists":
			if !has {
				return false
			}
		case "DoesNotExist":
			if has {
				return false
			}
		}
	}
	for k, cs := range sel.Counters {
		c, ok := gs.Counters[k]
		if !ok {
			return false
		}
		avail := c.Capacity - c.Count
		if c.Count < cs.MinCount || (cs.MaxCount > 0 && c.Count > cs.MaxCount) ||
			avail < cs.MinAvailable || (cs.MaxAvailable > 0 && avail > cs.MaxAvailable) {
			return false
		}
	}
	for k, ls := range sel.Lists {
		l, ok := gs.Lists[k]
		if !ok {
			return false
		}
		avail := l.Capacity - int64(len(l.Values))
		if avail < ls.MinAvailable || (ls.MaxAvailable > 0 && avail > ls.MaxAvailable) {
			return false
		}
		if ls.ContainsValue != "" {
			found := false
			for _, v := range l.Values {
				found = found || v == ls.ContainsValue
			}
			if !found {
				return false
			}
		}
	}
	return true
}

func (s *Server) object(gs *allocation.GameServer, rv int64) map[string]any {
	return map[string]any{
		"apiVersion": "agones.dev/v1", "kind": "GameServer",
		"metadata": map[string]any{"name": gs.Name, "namespace": s.ns, "labels": gs.Labels, "annotations": gs.Annotations,
			"resourceVersion": strconv.FormatInt(rv, 10), "uid": "uid-" + gs.Name,
			"creationTimestamp": gs.Created.UTC().Format(time.RFC3339)},
		"spec":   map[string]any{},
		"status": map[string]any{"state": gs.State, "address": gs.Address, "ports": gs.Ports, "counters": gs.Counters, "lists": gs.Lists},
	}
}

func selectorOf(w http.ResponseWriter, r *http.Request) (labels.Selector, bool) {
	sel, err := labels.Parse(r.URL.Query().Get("labelSelector"))
	if err != nil {
		writeStatus(w, http.StatusBadRequest, "BadRequest", "labelSelector: "+err.Error())
		return nil, false
	}
	return sel, true
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	sel, ok := selectorOf(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	items := []any{}
	names := make([]string, 0, len(s.servers))
	for n := range s.servers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if gs := s.servers[n]; sel.Matches(labels.Set(gs.Labels)) {
			items = append(items, s.object(gs, s.rv))
		}
	}
	rv := s.rv
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"apiVersion": "agones.dev/v1", "kind": "GameServerList",
		"metadata": map[string]any{"resourceVersion": strconv.FormatInt(rv, 10)}, "items": items})
}

func (s *Server) watch(w http.ResponseWriter, r *http.Request) {
	sel, ok := selectorOf(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	from, _ := strconv.ParseInt(q.Get("resourceVersion"), 10, 64)
	timeout := 5 * time.Minute
	if ts, err := strconv.Atoi(q.Get("timeoutSeconds")); err == nil && ts > 0 {
		timeout = time.Duration(ts) * time.Second
	}
	fl, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	send := func(typ string, obj any) bool {
		if err := enc.Encode(map[string]any{"type": typ, "object": obj}); err != nil {
			return false
		}
		if fl != nil {
			fl.Flush()
		}
		return true
	}
	s.mu.Lock()
	if q.Get("sendInitialEvents") == "true" {
		// Watch-list: the current state as ADDED events, then the bookmark that ends them.
		for _, gs := range s.servers {
			if sel.Matches(labels.Set(gs.Labels)) && !send("ADDED", s.object(gs, s.rv)) {
				s.mu.Unlock()
				return
			}
		}
		from = s.rv
		if !send("BOOKMARK", map[string]any{"apiVersion": "agones.dev/v1", "kind": "GameServer", "metadata": map[string]any{
			"resourceVersion": strconv.FormatInt(from, 10), "annotations": map[string]any{"k8s.io/initial-events-end": "true"}}}) {
			s.mu.Unlock()
			return
		}
	}
	s.mu.Unlock()
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		var pending []event
		for _, e := range s.events {
			if e.rv > from {
				pending = append(pending, e)
			}
		}
		changed := s.changed
		s.mu.Unlock()
		for _, e := range pending {
			from = e.rv
			was := e.prev != nil && sel.Matches(labels.Set(e.prev.Labels))
			is := e.gs != nil && sel.Matches(labels.Set(e.gs.Labels))
			typ := e.typ
			switch {
			case typ == "DELETED" && !was:
				continue
			case typ == "DELETED":
			case is && !was:
				typ = "ADDED"
			case !is && was:
				typ = "DELETED"
			case !is:
				continue
			}
			if !send(typ, s.object(e.gs, e.rv)) {
				return
			}
		}
		select {
		case <-changed:
		case <-deadline:
			return
		case <-r.Context().Done():
			return
		case <-s.closed:
			return
		}
	}
}

func (s *Server) lease(w http.ResponseWriter, r *http.Request, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.Method {
	case http.MethodGet:
		l, ok := s.leases[name]
		if !ok {
			writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("leases.coordination.k8s.io %q not found", name))
			return
		}
		writeJSON(w, http.StatusOK, l)
	case http.MethodPost, http.MethodPut:
		var l map[string]any
		if err := json.NewDecoder(r.Body).Decode(&l); err != nil {
			writeStatus(w, http.StatusBadRequest, "BadRequest", err.Error())
			return
		}
		md, _ := l["metadata"].(map[string]any)
		if md == nil {
			writeStatus(w, http.StatusUnprocessableEntity, "Invalid", "metadata is required")
			return
		}
		n, _ := md["name"].(string)
		cur, exists := s.leases[n]
		if r.Method == http.MethodPost && exists {
			writeStatus(w, http.StatusConflict, "AlreadyExists", fmt.Sprintf("leases.coordination.k8s.io %q already exists", n))
			return
		}
		if r.Method == http.MethodPut {
			if !exists || n != name {
				writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("leases.coordination.k8s.io %q not found", name))
				return
			}
			curRV := cur["metadata"].(map[string]any)["resourceVersion"]
			if md["resourceVersion"] != curRV {
				writeStatus(w, http.StatusConflict, "Conflict", fmt.Sprintf("Operation cannot be fulfilled on leases.coordination.k8s.io %q: the object has been modified; please apply your changes to the latest version and try again", n))
				return
			}
		}
		s.rv++
		md["resourceVersion"] = strconv.FormatInt(s.rv, 10)
		md["namespace"] = s.ns
		l["apiVersion"], l["kind"] = "coordination.k8s.io/v1", "Lease"
		s.leases[n] = l
		code := http.StatusOK
		if r.Method == http.MethodPost {
			code = http.StatusCreated
		}
		writeJSON(w, code, l)
	default:
		writeStatus(w, http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method+" on leases is not supported")
	}
}
