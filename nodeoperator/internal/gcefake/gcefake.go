// Package gcefake is an in-process stand-in for the Compute Engine v1 REST API (instances and zone
// operations), served by httptest on 127.0.0.1, for tests of the node operator: Compute Engine
// cannot run here. It follows the real API's wire shapes: Operation resources that stay RUNNING
// for a while, errors in Google's JSON envelope (409 alreadyExists, 404 notFound, 429
// rateLimitExceeded, 5xx, 403 quotaExceeded), int64 values as strings, label filters and paging.
// Every call is logged so tests can assert "created exactly once".
package gcefake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Call is one request the fake answered.
type Call struct {
	Method, Path string
	Instance     string // instance name for insert/get/delete
	Code         int    // HTTP status returned
}

// Fault is an error the fake returns instead of serving a matching request.
type Fault struct {
	Method string // "POST", "DELETE", "GET"; "" matches any
	Code   int    // 429, 500, 503, 403 (quota), ...
	Reason string // Google error reason: rateLimitExceeded, backendError, quotaExceeded
}

type instance struct {
	Name              string            `json:"name"`
	ID                string            `json:"id"`
	Zone              string            `json:"zone"`
	Status            string            `json:"status"`
	Labels            map[string]string `json:"labels,omitempty"`
	MachineType       string            `json:"machineType"`
	CreationTimestamp string            `json:"creationTimestamp"`
	Raw               map[string]any    `json:"-"`
	ready             time.Time
}

type operation struct {
	ID, Name, Zone, Type, Target string
	done                         time.Time
	onDone                       func()
	finished                     bool
	errCode, errMsg              string
}

// Server is the fake. Create with New; Close when done.
type Server struct {
	*httptest.Server
	// OpLatency is how long an operation stays RUNNING (wall time; nothing in a test may depend on
	// it beyond "not instant").
	OpLatency time.Duration
	// Quota caps the number of instances; an insert beyond it fails its operation with QUOTA_EXCEEDED.
	Quota int
	// OnDelete, when set, is called before an instance is deleted; a non-nil error fails the test
	// harness's invariant (the fake records it and still answers 200, like the real API would).
	OnDelete func(name string) error

	mu        sync.Mutex
	instances map[string]*instance // zone/name
	ops       map[string]*operation
	faults    []Fault
	calls     []Call
	violation []error
	nextID    uint64
}

var pathRe = regexp.MustCompile(`^/compute/v1/projects/([^/]+)/zones/([^/]+)/(instances|operations)(?:/([^/]+))?(?:/(wait))?$`)

// New starts the fake on 127.0.0.1.
func New() *Server {
	s := &Server{OpLatency: 50 * time.Millisecond, instances: map[string]*instance{}, ops: map[string]*operation{}, nextID: 1000}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Endpoint is the value for option.WithEndpoint.
func (s *Server) Endpoint() string { return s.URL + "/compute/v1/" }

// Fail queues faults; each is used once by the next matching request.
func (s *Server) Fail(f ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f...)
}

// Calls returns a copy of the call log.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// Inserts counts insert requests that created an instance (200 with a new instance).
func (s *Server) Inserts() int {
	n := 0
	for _, c := range s.Calls() {
		if c.Method == "POST" && strings.HasSuffix(c.Path, "/instances") && c.Code == 200 {
			n++
		}
	}
	return n
}

// Violations returns the errors OnDelete reported.
func (s *Server) Violations() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.violation...)
}

// Instances returns the names of live (not yet deleted) instances, sorted.
func (s *Server) Instances() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleLocked()
	var out []string
	for _, in := range s.instances {
		out = append(out, in.Name)
	}
	sort.Strings(out)
	return out
}

// Put adds an instance directly (e.g. an orphan from an earlier operator), RUNNING.
func (s *Server) Put(zone, name string, labels map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	s.instances[zone+"/"+name] = &instance{Name: name, ID: strconv.FormatUint(s.nextID, 10), Zone: zone, Status: "RUNNING",
		Labels: labels, CreationTimestamp: time.Now().Format(time.RFC3339)}
}

// Labels returns an instance's labels (nil if absent) and its request body as sent.
func (s *Server) Instance(zone, name string) (map[string]string, map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[zone+"/"+name]
	if in == nil {
		return nil, nil
	}
	return in.Labels, in.Raw
}

func (s *Server) settleLocked() {
	now := time.Now()
	for _, op := range s.ops {
		if !op.finished && !now.Before(op.done) {
			op.finished = true
			if op.onDone != nil {
				op.onDone()
			}
		}
	}
	for _, in := range s.instances {
		if in.Status == "PROVISIONING" && !now.Before(in.ready) {
			in.Status = "RUNNING"
		}
	}
}

func gerr(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "message": msg,
		"errors": []map[string]string{{"domain": "global", "reason": reason, "message": msg}}}})
}

func (s *Server) opJSON(op *operation) map[string]any {
	m := map[string]any{"kind": "compute#operation", "id": op.ID, "name": op.Name, "zone": op.Zone,
		"operationType": op.Type, "targetLink": op.Target, "status": "RUNNING", "progress": 0}
	if op.finished {
		m["status"], m["progress"] = "DONE", 100
		if op.errCode != "" {
			m["error"] = map[string]any{"errors": []map[string]string{{"code": op.errCode, "message": op.errMsg}}}
		}
	}
	return m
}

func (s *Server) newOpLocked(zone, typ, target string, onDone func()) *operation {
	s.nextID++
	op := &operation{ID: strconv.FormatUint(s.nextID, 10), Name: "operation-" + strconv.FormatUint(s.nextID, 10),
		Zone: zone, Type: typ, Target: target, done: time.Now().Add(s.OpLatency), onDone: onDone}
	s.ops[op.Name] = op
	return op
}

type recorder struct {
	http.ResponseWriter
	code int
}

func (r *recorder) WriteHeader(c int) { r.code = c; r.ResponseWriter.WriteHeader(c) }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	rec := &recorder{ResponseWriter: w, code: 200}
	m := pathRe.FindStringSubmatch(r.URL.Path)
	call := Call{Method: r.Method, Path: r.URL.Path}
	defer func() {
		call.Code = rec.code
		s.mu.Lock()
		s.calls = append(s.calls, call)
		s.mu.Unlock()
	}()
	if m == nil {
		gerr(rec, 404, "notFound", "no such API path "+r.URL.Path)
		return
	}
	zone, kind, name, wait := m[2], m[3], m[4], m[5]
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleLocked()
	if kind == "instances" {
		for i, f := range s.faults {
			if f.Method == "" || f.Method == r.Method {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
				gerr(rec, f.Code, f.Reason, fmt.Sprintf("injected fault %d %s", f.Code, f.Reason))
				return
			}
		}
	}
	switch {
	case kind == "operations":
		op := s.ops[name]
		if op == nil {
			gerr(rec, 404, "notFound", "operation "+name+" not found")
			return
		}
		if wait != "" && !op.finished {
			// The real wait holds the call up to two minutes; this holds it until the op is done.
			d := time.Until(op.done)
			s.mu.Unlock()
			time.Sleep(d)
			s.mu.Lock()
			s.settleLocked()
		}
		writeJSON(rec, s.opJSON(op))
	case kind == "instances" && r.Method == http.MethodPost && name == "":
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			gerr(rec, 400, "invalid", "bad instance JSON: "+err.Error())
			return
		}
		iname, _ := body["name"].(string)
		call.Instance = iname
		if iname == "" {
			gerr(rec, 400, "required", "name is required")
			return
		}
		if _, ok := s.instances[zone+"/"+iname]; ok {
			gerr(rec, 409, "alreadyExists", fmt.Sprintf("The resource 'projects/%s/zones/%s/instances/%s' already exists", m[1], zone, iname))
			return
		}
		labels := map[string]string{}
		if l, ok := body["labels"].(map[string]any); ok {
			for k, v := range l {
				labels[k], _ = v.(string)
			}
		}
		if s.Quota > 0 && len(s.instances) >= s.Quota {
			op := s.newOpLocked(zone, "insert", iname, nil)
			op.errCode, op.errMsg = "QUOTA_EXCEEDED", "Quota 'CPUS' exceeded."
			call.Code = 200
			writeJSON(rec, s.opJSON(op))
			return
		}
		s.nextID++
		in := &instance{Name: iname, ID: strconv.FormatUint(s.nextID, 10), Zone: zone, Status: "PROVISIONING", Labels: labels,
			CreationTimestamp: time.Now().Format(time.RFC3339), Raw: body, ready: time.Now().Add(s.OpLatency)}
		s.instances[zone+"/"+iname] = in
		op := s.newOpLocked(zone, "insert", iname, nil)
		writeJSON(rec, s.opJSON(op))
	case kind == "instances" && r.Method == http.MethodGet && name == "":
		s.list(rec, r, zone)
	case kind == "instances" && r.Method == http.MethodGet:
		call.Instance = name
		in := s.instances[zone+"/"+name]
		if in == nil {
			gerr(rec, 404, "notFound", "instance "+name+" not found")
			return
		}
		writeJSON(rec, in)
	case kind == "instances" && r.Method == http.MethodDelete:
		call.Instance = name
		in := s.instances[zone+"/"+name]
		if in == nil || in.Status == "STOPPING" {
			gerr(rec, 404, "notFound", "instance "+name+" not found")
			return
		}
		if s.OnDelete != nil {
			if err := s.OnDelete(name); err != nil {
				s.violation = append(s.violation, err)
			}
		}
		in.Status = "STOPPING"
		key := zone + "/" + name
		op := s.newOpLocked(zone, "delete", name, func() { delete(s.instances, key) })
		writeJSON(rec, s.opJSON(op))
	default:
		gerr(rec, 405, "badRequest", r.Method+" not supported on "+r.URL.Path)
	}
}

var filterTerm = regexp.MustCompile(`labels\.([a-z0-9_-]+)\s*=\s*"?([a-z0-9_-]*)"?`)

func (s *Server) list(w http.ResponseWriter, r *http.Request, zone string) {
	want := map[string]string{}
	for _, m := range filterTerm.FindAllStringSubmatch(r.URL.Query().Get("filter"), -1) {
		want[m[1]] = m[2]
	}
	var items []*instance
	for _, in := range s.instances {
		if in.Zone != zone {
			continue
		}
		ok := true
		for k, v := range want {
			if in.Labels[k] != v {
				ok = false
			}
		}
		if ok {
			items = append(items, in)
		}
	}
	sort.Slice(items, func(i, j int) bool { return items[i].Name < items[j].Name })
	max, _ := strconv.Atoi(r.URL.Query().Get("maxResults"))
	if max <= 0 || max > 500 {
		max = 500
	}
	start, _ := strconv.Atoi(r.URL.Query().Get("pageToken"))
	end := min(start+max, len(items))
	if start > len(items) {
		start = end
	}
	resp := map[string]any{"kind": "compute#instanceList", "items": items[start:end]}
	if end < len(items) {
		resp["nextPageToken"] = strconv.Itoa(end)
	}
	writeJSON(w, resp)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
