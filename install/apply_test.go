package install_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"

	"github.com/kumi-dev/kumi/internal/kubetest"
)

// apiServer is a real kube-apiserver (internal/kubetest) with Agones' CRD fixtures and the
// ServiceMonitor CRD fixture installed, and the namespace the chart is rendered for.
type apiServer struct {
	env    *kubetest.Env
	mapper meta.RESTMapper
}

func startAPIServer(t *testing.T) *apiServer {
	t.Helper()
	sm, err := os.ReadFile("testdata/servicemonitor-crd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := kubetest.Start(t, kubetest.WithAgonesCRDs(), kubetest.WithCRDYAML(sm))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := env.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "games"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(env.Kube.Discovery()))
	return &apiServer{env: env, mapper: mapper}
}

// apply creates o on the API server with strict field validation; dryRun asks the server to
// validate, default and admit it without storing it.
func (a *apiServer) apply(ctx context.Context, o *unstructured.Unstructured, dryRun bool) error {
	gvk := o.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return err
	}
	opts := metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	r := a.env.Dynamic.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		// The release namespace, unless the chart names another (kube-system for the node
		// operator's bootstrap tokens, the build namespace for the builds reconciler).
		ns := o.GetNamespace()
		if ns == "" {
			ns = "games"
		}
		if err := a.ensureNamespace(ctx, ns); err != nil {
			return err
		}
		_, err = r.Namespace(ns).Create(ctx, o, opts)
	} else {
		_, err = r.Create(ctx, o, opts)
	}
	return err
}

// ensureNamespace creates namespace ns unless it exists.
func (a *apiServer) ensureNamespace(ctx context.Context, ns string) error {
	_, err := a.env.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// TestChartAcceptedByAPIServer applies every object of every matrix case to a real kube-apiserver
// with server-side dry run and strict field validation, then shows that a misspelt field, in a
// built-in object and in an Agones object, is refused.
func TestChartAcceptedByAPIServer(t *testing.T) {
	api := startAPIServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, tc := range chartMatrix() {
		t.Run(tc.name, func(t *testing.T) {
			objs, _ := render(t, tc.set, tc.flags...)
			for _, o := range objs {
				if err := api.apply(ctx, o, true); err != nil {
					t.Errorf("%s %s refused: %v", o.GetKind(), o.GetName(), err)
				}
			}
		})
	}
	t.Run("typos are refused", func(t *testing.T) {
		objs, _ := render(t, nil)
		for _, tc := range []struct{ kind, name, from, to string }{
			{"Deployment", "kumi-director", "readinessProbe:", "readinesProbe:"},
			{"Service", "kumi-frontend", "targetPort:", "targetPrt:"},
			{"NetworkPolicy", "kumi-gameserver", "policyTypes:", "policyType:"},
			{"Fleet", "kumi-gameserver", "portPolicy:", "portPolicyy:"},
			{"Fleet", "kumi-gameserver", "capacity:", "capacty:"},
			{"FleetAutoscaler", "kumi-gameserver", "bufferSize:", "bufferSzie:"},
		} {
			text := toYAML(t, find(t, objs, tc.kind, tc.name))
			if !strings.Contains(text, tc.from) {
				t.Fatalf("%s %s has no %s", tc.kind, tc.name, tc.from)
			}
			bad := decodeAll(t, strings.Replace(text, tc.from, tc.to, 1))[0]
			err := api.apply(ctx, bad, true)
			if err == nil {
				t.Errorf("%s with %s accepted", tc.kind, tc.to)
				continue
			}
			if !apierrors.IsBadRequest(err) && !apierrors.IsInvalid(err) {
				t.Errorf("%s with %s: unexpected error kind: %v", tc.kind, tc.to, err)
			}
			if !strings.Contains(err.Error(), strings.TrimSuffix(tc.to, ":")) {
				t.Errorf("%s with %s: error does not name the field: %v", tc.kind, tc.to, err)
			}
		}
	})
}
