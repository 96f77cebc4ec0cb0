package nodeoperator

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/api/option"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kumi-dev/kumi/nodeoperator/internal/gcefake"
	"github.com/kumi-dev/kumi/nodeoperator/v1alpha1"
)

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// eventLog collects events (client-go's fake recorder blocks when its channel is full).
type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (e *eventLog) Eventf(regarding runtime.Object, _ runtime.Object, typ, reason, _ string, note string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	name := regarding.(client.Object).GetName()
	e.events = append(e.events, fmt.Sprintf("%s %s %s: %s", name, typ, reason, fmt.Sprintf(note, args...)))
}

func (e *eventLog) count(node, reason string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.events {
		if strings.HasPrefix(ev, node+" ") && strings.Contains(ev, " "+reason+":") {
			n++
		}
	}
	return n
}

// tsAPI is a stand-in for the Tailscale v2 keys API (Tailscale's servers cannot run here): it checks
// the bearer token and the single-use/tagged shape of each request and records every key.
type tsAPI struct {
	*httptest.Server
	mu      sync.Mutex
	live    map[string]bool
	created int
}

func newTSAPI(t *testing.T) *tsAPI {
	a := &tsAPI{live: map[string]bool{}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer ts-api-token" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/api/v2/tailnet/-/keys":
			var body struct {
				Capabilities struct {
					Devices struct {
						Create struct {
							Reusable, Preauthorized bool
							Tags                    []string
						}
					}
				}
				ExpirySeconds int64
			}
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Capabilities.Devices.Create.Reusable ||
				len(body.Capabilities.Devices.Create.Tags) == 0 || body.ExpirySeconds <= 0 {
				http.Error(w, "want a single-use, tagged, expiring key", http.StatusBadRequest)
				return
			}
			a.created++
			id := fmt.Sprintf("k%d", a.created)
			a.live[id] = true
			_ = json.NewEncoder(w).Encode(map[string]string{"id": id, "key": "tskey-auth-" + id})
		case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/api/v2/tailnet/-/keys/"):
			id := strings.TrimPrefix(r.URL.Path, "/api/v2/tailnet/-/keys/")
			if !a.live[id] {
				http.NotFound(w, r)
				return
			}
			delete(a.live, id)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *tsAPI) liveKeys() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.live)
}

// directorAdmin is a stand-in for kumi director's admin drain endpoint (the director needs a whole
// match stack to run): it checks the bearer token and records the drained servers.
type directorAdmin struct {
	*httptest.Server
	mu      sync.Mutex
	drained []string
}

func newDirectorAdmin(t *testing.T) *directorAdmin {
	d := &directorAdmin{}
	d.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/drain" || r.URL.RawQuery != "" || r.Header.Get("Authorization") != "Bearer director-token" {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		var body struct{ Server string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Server == "" {
			http.Error(w, "want {\"server\": NAME}", http.StatusBadRequest)
			return
		}
		d.mu.Lock()
		d.drained = append(d.drained, body.Server)
		d.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]string{"draining": body.Server})
	}))
	t.Cleanup(d.Close)
	return d
}

func (d *directorAdmin) list() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.drained...)
}

// env is one operator against a Kubernetes API, a fake GCE and a loopback tailnet.
type env struct {
	t        *testing.T
	ctx      context.Context
	cfg      Config
	kube     client.Client
	gce      *gcefake.Server
	clk      *clocktesting.FakeClock
	tailnet  *loopTailnet
	peers    *Tailnet
	keys     *tsAPI
	director *directorAdmin
	events   *eventLog
	metrics  *Metrics
	op       *Operator
	nodes    []string
}

const testZone = "europe-west4-a"

func newEnv(t *testing.T, nodes int, mutate func(*Config)) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	e := &env{t: t, ctx: ctx, kube: newKube(t), gce: gcefake.New(), clk: clocktesting.NewFakeClock(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)),
		keys: newTSAPI(t), director: newDirectorAdmin(t), events: &eventLog{}}
	t.Cleanup(e.gce.Close)
	dir := t.TempDir()
	write := func(name, v string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := Default()
	cfg.GCPProject = "kumi-test"
	cfg.Default.Zone = testZone
	cfg.CACertHash = "" // computed from kube-public/cluster-info, as in a kubeadm cluster
	cfg.RetryInitial, cfg.RetryCap = 5*time.Millisecond, 20*time.Millisecond
	cfg.Tailnet.Timeout = time.Second
	cfg.Tailnet.APIKeyFile = write("ts-api", "ts-api-token")
	cfg.DirectorTokenFile = write("director", "director-token")
	if mutate != nil {
		mutate(&cfg)
	}
	e.cfg = cfg
	// The fake refuses (and records) any VM delete while an Allocated or Reserved GameServer runs on
	// that node: the invariant every test checks at cleanup.
	e.gce.OnDelete = func(name string) error {
		var l unstructured.UnstructuredList
		l.SetGroupVersionKind(GameServerList)
		if err := e.kube.List(context.Background(), &l); err != nil {
			return fmt.Errorf("delete %s while game servers could not be counted: %w", name, err)
		}
		for _, gs := range l.Items {
			n, _, _ := unstructured.NestedString(gs.Object, "status", "nodeName")
			s, _, _ := unstructured.NestedString(gs.Object, "status", "state")
			if n == name && (s == "Allocated" || s == "Reserved") {
				return fmt.Errorf("VM %s deleted while GameServer %s is %s on it", name, gs.GetName(), s)
			}
		}
		return nil
	}
	t.Cleanup(func() {
		for _, v := range e.gce.Violations() {
			t.Errorf("invariant broken: %v", v)
		}
	})
	e.createClusterInfo()
	e.tailnet = shared
	t.Cleanup(func() { shared.restoreAll(t) })
	for i := range nodes {
		name := fmt.Sprintf("onprem-%d", i)
		e.nodes = append(e.nodes, name)
		e.createNode(name, map[string]string{"kumi.dev/onprem": "true", "kumi.dev/pool": "games"}, true)
	}
	e.peers = shared.peers(cfg.Tailnet.Timeout)
	e.restart()
	return e
}

// restart builds a fresh Operator on the same cluster, cloud and tailnet (an operator pod restart).
func (e *env) restart() {
	e.t.Helper()
	cloud, err := NewGCE(e.ctx, e.cfg.GCPProject, []string{testZone}, e.cfg.Backoff(), testLog(e.t),
		option.WithEndpoint(e.gce.Endpoint()), option.WithoutAuthentication(), option.WithHTTPClient(e.gce.Client()))
	if err != nil {
		e.t.Fatal(err)
	}
	e.metrics = NewMetrics(prometheus.NewRegistry())
	e.op, err = New(e.cfg, Deps{Client: e.kube, Cloud: cloud, Peers: e.peers,
		AuthKeys: &TailscaleAPI{BaseURL: e.keys.URL, Tailnet: "-", KeyFile: e.cfg.Tailnet.APIKeyFile, Tags: e.cfg.Tailnet.VMTags},
		Director: &DirectorAdmin{BaseURL: e.director.URL, TokenFile: e.cfg.DirectorTokenFile},
		Events:   e.events, Clock: e.clk, Metrics: e.metrics, Log: testLog(e.t).With("operator", "test")})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) sync() {
	e.t.Helper()
	if err := e.op.Sync(e.ctx); err != nil {
		e.t.Fatalf("sync: %v", err)
	}
}

func (e *env) createNode(name string, labels map[string]string, ready bool) {
	e.t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := e.kube.Create(e.ctx, n); err != nil {
		e.t.Fatal(err)
	}
	e.setReady(name, ready)
}

// setReady plays the node lifecycle controller: the Ready condition of the node's kubelet.
func (e *env) setReady(name string, ready bool) {
	e.t.Helper()
	var n corev1.Node
	if err := e.kube.Get(e.ctx, client.ObjectKey{Name: name}, &n); err != nil {
		e.t.Fatal(err)
	}
	st, reason := corev1.ConditionTrue, "KubeletReady"
	if !ready {
		st, reason = corev1.ConditionUnknown, "NodeStatusUnknown"
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st, Reason: reason,
		LastHeartbeatTime: metav1.NewTime(e.clk.Now()), LastTransitionTime: metav1.NewTime(e.clk.Now())}}
	if err := e.kube.Status().Update(e.ctx, &n); err != nil {
		e.t.Fatal(err)
	}
}

// dark takes an on-prem node's kubelet and tailnet peer down; back brings both up.
func (e *env) dark(names ...string) {
	for _, n := range names {
		e.setReady(n, false)
		e.tailnet.down(n)
	}
}

func (e *env) back(names ...string) {
	for _, n := range names {
		if err := e.tailnet.up(e.ctx, n); err != nil {
			e.t.Fatal(err)
		}
		e.setReady(n, true)
	}
}

func (e *env) nf(name string) *v1alpha1.NodeFailover {
	e.t.Helper()
	var nf v1alpha1.NodeFailover
	if err := e.kube.Get(e.ctx, client.ObjectKey{Name: name}, &nf); err != nil {
		e.t.Fatal(err)
	}
	return &nf
}

func (e *env) wantPhase(name string, want v1alpha1.Phase) {
	e.t.Helper()
	if got := e.nf(name); got.Status.Phase != want {
		e.t.Fatalf("%s: phase %s (%s), want %s", name, got.Status.Phase, got.Status.Message, want)
	}
}

// join plays the fallback VM booting: its kubelet registers the Node (Ready) with the labels its
// startup script passes. No VM boots here, so the test checks the script carries what it needs.
func (e *env) join(vm string) {
	e.t.Helper()
	_, raw := e.gce.Instance(testZone, vm)
	script := startupScriptOf(raw)
	if !strings.Contains(script, "kubeadm join") || !strings.Contains(script, "tskey-auth-") {
		e.t.Fatalf("startup script of %s lacks the joins:\n%s", vm, script)
	}
	if e.bootstrapSecrets(vm) != 1 {
		e.t.Fatalf("%s: want exactly one bootstrap token Secret while joining, have %d", vm, e.bootstrapSecrets(vm))
	}
	e.createNode(vm, map[string]string{LabelFallback: "true"}, true)
}

func startupScriptOf(raw map[string]any) string {
	md, _ := raw["metadata"].(map[string]any)
	items, _ := md["items"].([]any)
	for _, it := range items {
		m, _ := it.(map[string]any)
		if m["key"] == "startup-script" {
			s, _ := m["value"].(string)
			return s
		}
	}
	return ""
}

func (e *env) bootstrapSecrets(vm string) int {
	var l corev1.SecretList
	if err := e.kube.List(e.ctx, &l, client.InNamespace("kube-system"), client.MatchingLabels{LabelVM: vm}); err != nil {
		e.t.Fatal(err)
	}
	return len(l.Items)
}

// addGS creates an Agones GameServer on node in state.
func (e *env) addGS(name, node, state string) {
	e.t.Helper()
	gs := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "agones.dev/v1", "kind": "GameServer",
		"metadata": map[string]any{"name": name, "namespace": "default"},
		"spec": map[string]any{"ports": []any{}, "template": map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"name": "gameserver", "image": "kumi"}}}}},
		"status": map[string]any{"state": state, "nodeName": node}}}
	if err := e.kube.Create(e.ctx, gs); err != nil {
		e.t.Fatal(err)
	}
	e.setGSStatus(name, node, state)
}

func (e *env) setGSStatus(name, node, state string) {
	e.t.Helper()
	gs := &unstructured.Unstructured{}
	gs.SetGroupVersionKind(GameServerList.GroupVersion().WithKind("GameServer"))
	if err := e.kube.Get(e.ctx, client.ObjectKey{Namespace: "default", Name: name}, gs); err != nil {
		e.t.Fatal(err)
	}
	_ = unstructured.SetNestedField(gs.Object, state, "status", "state")
	_ = unstructured.SetNestedField(gs.Object, node, "status", "nodeName")
	if err := e.kube.Update(e.ctx, gs); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) deleteGS(name string) {
	gs := &unstructured.Unstructured{}
	gs.SetGroupVersionKind(GameServerList.GroupVersion().WithKind("GameServer"))
	gs.SetNamespace("default")
	gs.SetName(name)
	if err := e.kube.Delete(e.ctx, gs); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) gsExists(name string) bool {
	gs := &unstructured.Unstructured{}
	gs.SetGroupVersionKind(GameServerList.GroupVersion().WithKind("GameServer"))
	return e.kube.Get(e.ctx, client.ObjectKey{Namespace: "default", Name: name}, gs) == nil
}

func (e *env) failovers(outcome string) float64 {
	return testutil.ToFloat64(e.metrics.failovers.WithLabelValues(outcome))
}

func (e *env) hasTaint(node string) bool {
	var n corev1.Node
	if err := e.kube.Get(e.ctx, client.ObjectKey{Name: node}, &n); err != nil {
		e.t.Fatal(err)
	}
	for _, tn := range n.Spec.Taints {
		if tn.Key == TaintOutOfService {
			return true
		}
	}
	return false
}

func (e *env) nodeExists(name string) bool {
	var n corev1.Node
	return e.kube.Get(e.ctx, client.ObjectKey{Name: name}, &n) == nil
}

// failover drives onprem-0 dark through the grace into a joined, Ready fallback; returns its VM.
func (e *env) failover(node string) string {
	e.t.Helper()
	e.dark(node)
	e.sync()
	e.clk.Step(e.cfg.FlapGrace)
	e.sync()
	e.wantPhase(node, v1alpha1.PhaseProvisioning)
	vm := e.nf(node).Status.VMName
	e.join(vm)
	e.sync()
	e.wantPhase(node, v1alpha1.PhaseActive)
	return vm
}

// createClusterInfo publishes kube-public/cluster-info the way kubeadm does, with a fresh CA.
func (e *env) createClusterInfo() {
	e.t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubernetes"}, IsCA: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		e.t.Fatal(err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters[""] = &clientcmdapi.Cluster{Server: "https://kube-apiserver:6443",
		CertificateAuthorityData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	b, err := clientcmd.Write(*kc)
	if err != nil {
		e.t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-public", Name: "cluster-info"}, Data: map[string]string{"kubeconfig": string(b)}}
	if err := e.kube.Create(e.ctx, cm); err != nil {
		e.t.Fatal(err)
	}
}
