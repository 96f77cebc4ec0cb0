//go:build kubetest

package nodeoperator

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kumi-dev/kumi/internal/kubetest"
	"github.com/kumi-dev/kumi/nodeoperator/v1alpha1"
)

// newKube (build tag kubetest: go test -tags kubetest ./nodeoperator) starts a real kube-apiserver + etcd for the test (internal/kubetest), with kumi's
// NodeFailover CRD from install/crds and the Agones CRD fixtures installed, and waits for the
// system namespaces the operator writes to.
func newKube(t *testing.T) client.Client {
	t.Helper()
	env := kubetest.Start(t, kubetest.WithCRDPaths("../install/crds/nodefailover.yaml"), kubetest.WithAgonesCRDs())
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(env.Config, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, ns := range []string{"kube-system", "kube-public", "kube-node-lease"} {
		err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			return c.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}) == nil, nil
		})
		if err != nil {
			t.Fatalf("namespace %s never appeared: %v", ns, err)
		}
	}
	return c
}
