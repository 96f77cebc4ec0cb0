package agones

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/kumi-dev/kumi/allocation"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// Resources this backend uses.
var (
	allocationsGVR = schema.GroupVersionResource{Group: "allocation.agones.dev", Version: "v1", Resource: "gameserverallocations"}
	gameServersGVR = schema.GroupVersionResource{Group: "agones.dev", Version: "v1", Resource: "gameservers"}
)

// Config holds the Agones backend's settings.
type Config struct {
	Name       string        `flag:"name" help:"backend name in logs, metrics and traffic weights"`
	Kubeconfig string        `flag:"kubeconfig" help:"kubeconfig file; empty uses the in-cluster service account"`
	Namespace  string        `flag:"namespace" help:"namespace of the game servers (and of the leader-election Lease)"`
	Timeout    time.Duration `flag:"timeout" help:"bound on one allocation or list request to the Kubernetes API"`
	QPS        float64       `flag:"qps" help:"client-side Kubernetes API request rate limit (requests/s)"`
	Burst      int           `flag:"burst" help:"client-side Kubernetes API request burst"`

	Retries      int           `flag:"unallocated-retries" help:"times an UnAllocated answer is retried before it is reported: Agones answers UnAllocated when concurrent requests of one batch wanted the same server although others have room (Agones issue #4142)"`
	RetryBackoff time.Duration `flag:"retry-backoff" help:"first pause before retrying an UnAllocated answer (doubles, with full jitter, each retry)"`
	BatchWait    time.Duration `flag:"batch-wait" help:"the cluster's Agones ALLOCATION_BATCH_WAIT_TIME; the director's pool lead time is at least this"`

	LeaseName     string        `flag:"lease-name" help:"Lease used for leader election among director replicas; empty runs without election"`
	Identity      string        `flag:"identity" help:"this replica's leader-election identity; empty uses the hostname"`
	LeaseDuration time.Duration `flag:"lease-duration" help:"how long a leader's Lease stays valid without renewal"`
	RenewDeadline time.Duration `flag:"renew-deadline" help:"how long the leader keeps trying to renew before giving up leadership"`
	RetryPeriod   time.Duration `flag:"retry-period" help:"interval between leader-election attempts"`
}

// DefaultConfig returns the defaults (client-go's usual leader-election timings).
func DefaultConfig() Config {
	return Config{
		Name:          "agones",
		Namespace:     "default",
		Timeout:       10 * time.Second,
		QPS:           50,
		Burst:         100,
		Retries:       3,
		RetryBackoff:  50 * time.Millisecond,
		BatchWait:     500 * time.Millisecond,
		LeaseDuration: 15 * time.Second,
		RenewDeadline: 10 * time.Second,
		RetryPeriod:   2 * time.Second,
	}
}

// Validate names the first bad setting.
func (c Config) Validate() error {
	switch {
	case c.Name == "":
		return errors.New("agones: name is empty")
	case c.Namespace == "":
		return errors.New("agones: namespace is empty")
	case c.Timeout <= 0:
		return fmt.Errorf("agones: timeout %s must be > 0", c.Timeout)
	case c.Retries < 0 || c.Retries > 10:
		return fmt.Errorf("agones: unallocated-retries %d must be within [0, 10]", c.Retries)
	case c.Retries > 0 && c.RetryBackoff <= 0:
		return fmt.Errorf("agones: retry-backoff %s must be > 0 with retries", c.RetryBackoff)
	case c.BatchWait < 0:
		return fmt.Errorf("agones: batch-wait %s must be ≥ 0", c.BatchWait)
	case c.LeaseName != "" && !(c.RetryPeriod > 0 && c.RenewDeadline > c.RetryPeriod && c.LeaseDuration > c.RenewDeadline):
		return fmt.Errorf("agones: want lease-duration (%s) > renew-deadline (%s) > retry-period (%s) > 0",
			c.LeaseDuration, c.RenewDeadline, c.RetryPeriod)
	}
	return nil
}

// Backend allocates Agones game servers through the Kubernetes API.
type Backend struct {
	cfg     Config
	log     *slog.Logger
	rc      *rest.Config
	dyn     dynamic.Interface
	retries prometheus.Counter
}

var _ allocation.Backend = (*Backend)(nil)

// New connects with cfg.Kubeconfig, or in-cluster credentials when it is empty.
func New(cfg Config, log *slog.Logger) (*Backend, error) {
	var rc *rest.Config
	var err error
	if cfg.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("agones: kubernetes client config (set --kubeconfig outside a cluster): %w", err)
	}
	return NewForRESTConfig(rc, cfg, log)
}

// NewForRESTConfig uses an existing client configuration.
func NewForRESTConfig(rc *rest.Config, cfg Config, log *slog.Logger) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rc = rest.CopyConfig(rc)
	rc.QPS, rc.Burst = float32(cfg.QPS), cfg.Burst
	rc.UserAgent = "kumi-director"
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("agones: dynamic client: %w", err)
	}
	return &Backend{cfg: cfg, log: log.With("backend", cfg.Name), rc: rc, dyn: dyn,
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "kumi_director_agones_unallocated_retries_total",
			Help:        "GameServerAllocations retried after an UnAllocated answer (batch contention, Agones issue #4142).",
			ConstLabels: prometheus.Labels{"backend": cfg.Name},
		})}, nil
}

// Register adds the backend's metrics to reg.
func (b *Backend) Register(reg prometheus.Registerer) error {
	if err := reg.Register(b.retries); err != nil {
		return fmt.Errorf("agones: register metrics: %w", err)
	}
	return nil
}

// Retries is how many UnAllocated answers were retried so far.
func (b *Backend) Retries() float64 {
	var m dto.Metric
	_ = b.retries.Write(&m)
	return m.GetCounter().GetValue()
}

// Name implements allocation.Backend.
func (b *Backend) Name() string { return b.cfg.Name }

// Allocate creates one GameServerAllocation and returns its status (State UnAllocated when nothing
// matched). A validation failure (422) or transport error is an error. Agones also answers
// UnAllocated when requests of one batch contended for the same server while others had room
// (issue #4142), so an UnAllocated answer is retried up to cfg.Retries times with jittered
// exponential backoff before it is returned.
func (b *Backend) Allocate(ctx context.Context, spec allocation.Spec) (allocation.Status, error) {
	var st allocation.Status
	attempts := 0
	bo := wait.Backoff{Duration: b.cfg.RetryBackoff, Factor: 2, Jitter: 1, Steps: b.cfg.Retries + 1}
	err := wait.ExponentialBackoffWithContext(ctx, bo, func(ctx context.Context) (bool, error) {
		if attempts > 0 {
			b.retries.Inc()
		}
		attempts++
		var err error
		st, err = b.allocateOnce(ctx, spec)
		return err == nil && st.State != allocation.AllocationUnAllocated, err
	})
	switch {
	case err == nil:
		return st, nil
	case ctx.Err() != nil:
		return allocation.Status{}, fmt.Errorf("agones: allocate: %w", context.Cause(ctx))
	case wait.Interrupted(err) && st.State == allocation.AllocationUnAllocated:
		return st, nil // retries used up: report the UnAllocated answer
	default:
		return allocation.Status{}, err
	}
}

func (b *Backend) allocateOnce(ctx context.Context, spec allocation.Spec) (allocation.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	specMap, err := toMap(spec)
	if err != nil {
		return allocation.Status{}, fmt.Errorf("agones: encode allocation spec: %w", err)
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "allocation.agones.dev/v1",
		"kind":       "GameServerAllocation",
		"metadata":   map[string]any{"namespace": b.cfg.Namespace},
		"spec":       specMap,
	}}
	res, err := b.dyn.Resource(allocationsGVR).Namespace(b.cfg.Namespace).Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		if apierrors.IsInvalid(err) {
			return allocation.Status{}, fmt.Errorf("agones: allocation refused as invalid: %w", err)
		}
		return allocation.Status{}, fmt.Errorf("agones: create gameserverallocation in %s: %w", b.cfg.Namespace, err)
	}
	var st allocation.Status
	if raw, ok := res.Object["status"]; ok {
		if err := fromAny(raw, &st); err != nil {
			return allocation.Status{}, fmt.Errorf("agones: decode allocation status: %w", err)
		}
	}
	if st.State == "" {
		return allocation.Status{}, errors.New("agones: allocation response has no status.state")
	}
	return st, nil
}

// List implements allocation.Backend.
func (b *Backend) List(ctx context.Context, matchLabels map[string]string) ([]allocation.GameServer, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	l, err := b.dyn.Resource(gameServersGVR).Namespace(b.cfg.Namespace).List(ctx,
		metav1.ListOptions{LabelSelector: labels.SelectorFromSet(matchLabels).String()})
	if err != nil {
		return nil, fmt.Errorf("agones: list gameservers in %s: %w", b.cfg.Namespace, err)
	}
	out := make([]allocation.GameServer, 0, len(l.Items))
	for i := range l.Items {
		gs, err := gameServerOf(&l.Items[i])
		if err != nil {
			// One malformed object must not keep the director from starting; Watch skips it too.
			b.log.Warn("skipping undecodable GameServer", "name", l.Items[i].GetName(), "err", err)
			continue
		}
		out = append(out, gs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Watch implements allocation.Backend with a dynamic informer filtered by matchLabels. Servers in
// a terminal state (Shutdown, Error, Unhealthy) are reported as they are; deletions as Deleted.
func (b *Backend) Watch(ctx context.Context, matchLabels map[string]string) (<-chan allocation.Event, error) {
	sel := labels.SelectorFromSet(matchLabels).String()
	f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(b.dyn, 0, b.cfg.Namespace, func(o *metav1.ListOptions) {
		o.LabelSelector = sel
	})
	inf := f.ForResource(gameServersGVR).Informer()
	ch := make(chan allocation.Event, 64)
	send := func(obj any, deleted bool) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return
		}
		gs, err := gameServerOf(u)
		if err != nil {
			b.log.Warn("skipping undecodable GameServer", "err", err)
			return
		}
		select {
		case ch <- allocation.Event{Server: gs, Deleted: deleted}:
		case <-ctx.Done():
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { send(o, false) },
		UpdateFunc: func(_, o any) { send(o, false) },
		DeleteFunc: func(o any) { send(o, true) },
	}); err != nil {
		return nil, fmt.Errorf("agones: watch gameservers: %w", err)
	}
	f.Start(ctx.Done())
	go func() {
		<-ctx.Done()
		f.Shutdown() // waits for the informer's goroutines, so nothing sends after close
		close(ch)
	}()
	return ch, nil
}

// gameServerOf decodes the parts of an agones.dev/v1 GameServer the director uses.
func gameServerOf(u *unstructured.Unstructured) (allocation.GameServer, error) {
	var gs struct {
		Status struct {
			State    string                              `json:"state"`
			Address  string                              `json:"address"`
			Ports    []allocation.Port                   `json:"ports"`
			Counters map[string]allocation.CounterStatus `json:"counters"`
			Lists    map[string]allocation.ListStatus    `json:"lists"`
		} `json:"status"`
	}
	if err := fromAny(u.Object, &gs); err != nil {
		return allocation.GameServer{}, fmt.Errorf("agones: decode GameServer %s: %w", u.GetName(), err)
	}
	return allocation.GameServer{
		Name:        u.GetName(),
		State:       gs.Status.State,
		Address:     gs.Status.Address,
		Ports:       gs.Status.Ports,
		Labels:      u.GetLabels(),
		Annotations: u.GetAnnotations(),
		Counters:    gs.Status.Counters,
		Lists:       gs.Status.Lists,
		Created:     u.GetCreationTimestamp().Time,
	}, nil
}

func toMap(v any) (map[string]any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	err = json.Unmarshal(raw, &m)
	return m, err
}

func fromAny(v any, out any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, out)
}

// identity is the configured leader-election identity or the hostname.
func (c Config) identity() string {
	if c.Identity != "" {
		return c.Identity
	}
	h, err := os.Hostname()
	if err != nil || strings.TrimSpace(h) == "" {
		return "kumi-director"
	}
	return h
}
