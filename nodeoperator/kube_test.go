package nodeoperator

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kumi-dev/kumi/internal/kubetest"
	"github.com/kumi-dev/kumi/nodeoperator/v1alpha1"
)

// kubeAPI is the package's Kubernetes API: one real kube-apiserver + etcd (internal/kubetest) with
// kumi's NodeFailover CRD from install/crds and the Agones CRD fixtures installed, started by
// TestMain and shared by the tests. Nodes and NodeFailovers are cluster-scoped, so each test
// empties the cluster when it ends (reset) instead of paying for a control plane of its own.
type kubeAPI struct {
	c    client.Client
	stop func() error
}

func startKube() (*kubeAPI, error) {
	env, stop, err := kubetest.StartShared(kubetest.WithCRDPaths("../install/crds/nodefailover.yaml"), kubetest.WithAgonesCRDs())
	if err != nil {
		return nil, err
	}
	k := &kubeAPI{stop: stop}
	s := runtime.NewScheme()
	err = errors.Join(clientgoscheme.AddToScheme(s), v1alpha1.AddToScheme(s))
	if err == nil {
		k.c, err = client.New(env.Config, client.Options{Scheme: s})
	}
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// The system namespaces the operator and the tests write to appear shortly after start.
		for _, ns := range []string{metav1.NamespaceSystem, "kube-public", corev1.NamespaceNodeLease, "default"} {
			err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
				return k.c.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}) == nil, nil
			})
			if err != nil {
				err = fmt.Errorf("namespace %s never appeared: %w", ns, err)
				break
			}
		}
	}
	if err != nil {
		return nil, errors.Join(err, stop())
	}
	return k, nil
}

// newKube hands a test the shared API server and empties it when the test ends.
func newKube(t *testing.T) client.Client {
	t.Helper()
	t.Cleanup(func() {
		if err := sharedKube.reset(); err != nil {
			t.Errorf("reset the shared API server: %v", err)
		}
	})
	return sharedKube.c
}

// reset deletes every object a test can have made and waits until the lists are empty.
func (k *kubeAPI) reset() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	gs := &unstructured.Unstructured{}
	gs.SetGroupVersionKind(GameServerList.GroupVersion().WithKind("GameServer"))
	gsl := &unstructured.UnstructuredList{}
	gsl.SetGroupVersionKind(GameServerList)
	kinds := []struct {
		obj  client.Object
		list client.ObjectList
		opts []client.DeleteAllOfOption
	}{
		{&v1alpha1.NodeFailover{}, &v1alpha1.NodeFailoverList{}, nil},
		{&corev1.Node{}, &corev1.NodeList{}, nil},
		{gs, gsl, []client.DeleteAllOfOption{client.InNamespace("default")}},
		{&corev1.Secret{}, &corev1.SecretList{}, []client.DeleteAllOfOption{client.InNamespace(metav1.NamespaceSystem), client.MatchingLabels{LabelManagedBy: "kumi"}}},
		{&coordinationv1.Lease{}, &coordinationv1.LeaseList{}, []client.DeleteAllOfOption{client.InNamespace(corev1.NamespaceNodeLease)}},
	}
	for _, kd := range kinds {
		if err := k.c.DeleteAllOf(ctx, kd.obj, kd.opts...); err != nil {
			return fmt.Errorf("delete all %T: %w", kd.obj, err)
		}
	}
	cm := &corev1.ConfigMap{}
	cm.Namespace, cm.Name = "kube-public", "cluster-info"
	if err := k.c.Delete(ctx, cm); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("delete cluster-info: %w", err)
	}
	for _, kd := range kinds {
		var listOpts []client.ListOption
		for _, o := range kd.opts {
			if lo, ok := o.(client.ListOption); ok {
				listOpts = append(listOpts, lo)
			}
		}
		err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			if err := k.c.List(ctx, kd.list, listOpts...); err != nil {
				return false, err
			}
			return meta.LenList(kd.list) == 0, nil
		})
		if err != nil {
			return fmt.Errorf("%T left behind: %w", kd.obj, err)
		}
	}
	return nil
}
