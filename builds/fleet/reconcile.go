package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"gocloud.dev/blob"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kumi-dev/kumi/builds"
	"github.com/kumi-dev/kumi/internal/config"
)

// Resources the reconciler manages.
var (
	FleetResource         = schema.GroupVersionResource{Group: "agones.dev", Version: "v1", Resource: "fleets"}
	NetworkPolicyResource = schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"}
)

// Manager is the field manager of server-side apply and the value of the managed-by label on
// every object the reconciler owns; objects without it are never touched.
const Manager = "kumi-builds"

const managedBy = "app.kubernetes.io/managed-by"

// Reconciler keeps the cluster's build Fleets equal to the builds stored in the bucket: one Fleet
// and NetworkPolicy (Render) per stored build version, updated when the rendering changes, and
// deleted when the build is. The bucket is the only source of truth; the reconciler keeps no
// state, so a restarted one converges to the same objects (server-side apply by name: no
// duplicates). It needs get/list/create/update/patch/delete on fleets.agones.dev and
// networkpolicies in Config.Namespace only (install/helm: the builds reconciler Role).
type Reconciler struct {
	log   *slog.Logger
	cfg   Config
	store *builds.Store
	dyn   dynamic.Interface

	mu   sync.Mutex
	last time.Time // end of the last successful Sync
}

// NewReconciler returns a reconciler of the builds in store onto the cluster dyn reaches.
func NewReconciler(log *slog.Logger, cfg Config, store *builds.Store, dyn dynamic.Interface) *Reconciler {
	return &Reconciler{log: log, cfg: cfg, store: store, dyn: dyn}
}

// Run syncs every interval until ctx ends. A failed sync is logged and retried on the next tick.
func (r *Reconciler) Run(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := r.Sync(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("build fleets not reconciled", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sync makes one pass: apply every stored build's Fleet and NetworkPolicy, then delete the
// managed ones no stored build renders. If the bucket cannot be listed nothing is deleted.
func (r *Reconciler) Sync(ctx context.Context) error {
	ms, err := r.store.ListAll(ctx)
	if err != nil {
		return fmt.Errorf("fleet: listing builds: %w", err)
	}
	want := map[string]bool{}
	var firstErr error
	for _, m := range ms {
		if m.State != builds.StateReady {
			continue
		}
		f, np, err := Render(r.cfg, m)
		if err != nil {
			return err // a config error: every build would fail the same way
		}
		want[f.Name] = true
		for _, o := range []struct {
			res schema.GroupVersionResource
			obj any
		}{{FleetResource, f}, {NetworkPolicyResource, np}} {
			if err := r.apply(ctx, o.res, o.obj); err != nil {
				r.log.Warn("build fleet not applied", "build", m.SHA256, "tenant", m.Tenant, "project", m.Project, "version", m.Version, "err", err)
				if firstErr == nil {
					firstErr = err
				}
			}
		}
	}
	for _, res := range []schema.GroupVersionResource{FleetResource, NetworkPolicyResource} {
		if err := r.prune(ctx, res, want); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if firstErr == nil {
		r.mu.Lock()
		r.last = time.Now()
		r.mu.Unlock()
	}
	return firstErr
}

// apply server-side applies obj (a Fleet or NetworkPolicy) with the managed-by label.
func (r *Reconciler) apply(ctx context.Context, res schema.GroupVersionResource, obj any) error {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return fmt.Errorf("fleet: converting %s: %w", res.Resource, err)
	}
	u := &unstructured.Unstructured{Object: m}
	labels := u.GetLabels()
	labels[managedBy] = Manager
	u.SetLabels(labels)
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "spec", "template", "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "spec", "template", "spec", "template", "metadata", "creationTimestamp")
	if _, err := r.dyn.Resource(res).Namespace(r.cfg.Namespace).Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: Manager, Force: true}); err != nil {
		return fmt.Errorf("fleet: applying %s %s/%s: %w", res.Resource, r.cfg.Namespace, u.GetName(), err)
	}
	return nil
}

// prune deletes the managed objects of res whose name no stored build renders.
func (r *Reconciler) prune(ctx context.Context, res schema.GroupVersionResource, want map[string]bool) error {
	c := r.dyn.Resource(res).Namespace(r.cfg.Namespace)
	list, err := c.List(ctx, metav1.ListOptions{LabelSelector: managedBy + "=" + Manager})
	if err != nil {
		return fmt.Errorf("fleet: listing %s: %w", res.Resource, err)
	}
	for _, o := range list.Items {
		if want[o.GetName()] {
			continue
		}
		if err := c.Delete(ctx, o.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("fleet: deleting %s %s: %w", res.Resource, o.GetName(), err)
		}
		r.log.Info("build deleted: removed its object", "resource", res.Resource, "name", o.GetName(), "sha256", o.GetAnnotations()["kumi.dev/sha256"])
	}
	return nil
}

// ReconcileConfig is every setting of `kumi builds reconcile`.
type ReconcileConfig struct {
	Kubeconfig string        `flag:"kubeconfig" help:"kubeconfig file; empty: the in-cluster service account"`
	HealthAddr string        `flag:"health-addr" help:"address of /healthz (200 while the last sync succeeded within 3 intervals); empty: none"`
	Interval   time.Duration `flag:"interval" help:"how often the bucket is listed and the Fleets reconciled"`
	Fleet      Config        `prefix:""`
}

// DefaultReconcile returns the defaults: in-cluster, every 10 s, Default() Fleets.
func DefaultReconcile() ReconcileConfig {
	return ReconcileConfig{Interval: 10 * time.Second, HealthAddr: ":9104", Fleet: Default()}
}

// RunReconciler opens the bucket and the cluster and reconciles until ctx ends. Callers import
// the blob drivers the bucket URL needs.
func RunReconciler(ctx context.Context, log *slog.Logger, cfg ReconcileConfig) error {
	config.Log(ctx, log, "builds-reconcile", cfg)
	if cfg.Interval <= 0 {
		return fmt.Errorf("fleet: interval %s: want > 0", cfg.Interval)
	}
	var rc *rest.Config
	var err error
	if cfg.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return fmt.Errorf("fleet: kubernetes config: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	b, err := blob.OpenBucket(ctx, cfg.Fleet.Bucket)
	if err != nil {
		return fmt.Errorf("fleet: bucket %s: %w", cfg.Fleet.Bucket, err)
	}
	defer b.Close()
	r := NewReconciler(log, cfg.Fleet, builds.NewStore(b, builds.DefaultLimits(), ""), dyn)
	if cfg.HealthAddr != "" {
		// Who reaches it: the kubelet's probes (and anyone in the cluster); it tells only whether
		// the last sync is fresh.
		srv := &http.Server{Addr: cfg.HealthAddr, ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if last := r.LastSync(); time.Since(last) > 3*cfg.Interval {
				http.Error(w, "no successful sync since "+last.Format(time.RFC3339), http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok\n"))
		})}
		ln, err := net.Listen("tcp", cfg.HealthAddr)
		if err != nil {
			return fmt.Errorf("fleet: health: %w", err)
		}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
	}
	return r.Run(ctx, cfg.Interval)
}

// LastSync is when the last Sync without error ended (zero before the first).
func (r *Reconciler) LastSync() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}
