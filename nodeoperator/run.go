package nodeoperator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/go-logr/logr"
	"google.golang.org/api/option"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/kumi-dev/kumi/internal/config"
	"github.com/kumi-dev/kumi/nodeoperator/v1alpha1"
)

// poolKey is the one work item: every Node event asks for a pass over the whole pool.
var poolKey = reconcile.Request{NamespacedName: types.NamespacedName{Name: "pool"}}

// Run runs the operator until ctx ends: controller-runtime manager (leader election, Node
// informer, health probes, /metrics), the operator's tailnet node, and GCE.
func Run(ctx context.Context, log *slog.Logger, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	classes, err := cfg.Classes()
	if err != nil {
		return err
	}
	config.Log(ctx, log, "nodeoperator", &cfg)
	ctrl.SetLogger(logr.FromSlogHandler(log.Handler()))

	var rc *rest.Config
	if cfg.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return fmt.Errorf("kubernetes config (-kubeconfig): %w", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(rc, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: orOff(cfg.MetricsAddr)},
		HealthProbeBindAddress:  orOff(cfg.HealthAddr),
		LeaderElection:          cfg.LeaderElect,
		LeaderElectionID:        "kumi-nodeoperator",
		LeaderElectionNamespace: cfg.LeaderNamespace,
		// Secrets, ConfigMaps and Leases are read one by one, never cached: caching them would need
		// list/watch on every Secret in the cluster.
		// NodeFailovers are read fresh so a pass never acts on a status it wrote itself moments ago.
		Client: client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}, &corev1.ConfigMap{},
			&coordinationv1.Lease{}, &v1alpha1.NodeFailover{}}}},
	})
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}

	zones := []string{}
	for _, t := range classes {
		if !slices.Contains(zones, t.Zone) {
			zones = append(zones, t.Zone)
		}
	}
	opts := []option.ClientOption{}
	if cfg.GCPCredentials != "" {
		opts = append(opts, option.WithAuthCredentialsFile(option.ServiceAccount, cfg.GCPCredentials))
	}
	if cfg.ComputeEndpoint != "" {
		opts = append(opts, option.WithEndpoint(cfg.ComputeEndpoint))
	}
	cloud, err := NewGCE(ctx, cfg.GCPProject, zones, cfg.Backoff(), log.With("component", "gce"), opts...)
	if err != nil {
		return err
	}

	d := Deps{Client: mgr.GetClient(), Cloud: cloud, Events: mgr.GetEventRecorder("kumi-nodeoperator"), Clock: clock.RealClock{},
		Metrics: NewMetrics(ctrlmetrics.Registry), Log: log}
	if !cfg.Tailnet.Disabled {
		tn, err := StartTailnet(ctx, cfg.Tailnet, log.With("component", "tailnet"))
		if err != nil {
			return err
		}
		defer tn.Close()
		d.Peers = tn
	} else {
		log.Warn("tailnet signal disabled: darkness rests on the kubelet alone")
	}
	if cfg.Tailnet.APIKeyFile != "" {
		d.AuthKeys = &TailscaleAPI{BaseURL: cfg.Tailnet.APIURL, Tailnet: cfg.Tailnet.Tailnet, KeyFile: cfg.Tailnet.APIKeyFile, Tags: cfg.Tailnet.VMTags}
	} else {
		log.Warn("no -tailnet-api-key-file: fallback VMs get no tailnet auth key; their image must join the tailnet another way")
	}
	if cfg.DirectorAdminURL != "" {
		d.Director = &DirectorAdmin{BaseURL: cfg.DirectorAdminURL, TokenFile: cfg.DirectorTokenFile}
	} else {
		log.Warn("no -director-admin-url: sessions on a fallback are not moved; it is kept until they end")
	}
	op, err := New(cfg, d)
	if err != nil {
		return err
	}
	sel, err := labels.Parse(cfg.NodeSelector)
	if err != nil {
		return err
	}
	toPool := handler.TypedEnqueueRequestsFromMapFunc(func(context.Context, *corev1.Node) []reconcile.Request {
		return []reconcile.Request{poolKey}
	})
	err = ctrl.NewControllerManagedBy(mgr).Named("nodeoperator").
		WatchesRawSource(source.Kind(mgr.GetCache(), &corev1.Node{}, toPool)).
		Complete(reconcile.Func(func(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
			if err := op.Sync(ctx); err != nil {
				log.Error("pass failed; retrying", "err", err)
			}
			// Time-driven transitions (grace, timeouts) need a pass even when nothing changes.
			return reconcile.Result{RequeueAfter: cfg.SyncPeriod}, nil
		}))
	if err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	log.Info("node operator starting", "selector", sel.String(), "classes", len(classes), "zones", zones)
	if err := mgr.Start(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("manager: %w", err)
	}
	return nil
}

func orOff(addr string) string {
	if addr == "" {
		return "0"
	}
	return addr
}
