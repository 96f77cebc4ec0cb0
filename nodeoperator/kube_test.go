//go:build !kubetest

package nodeoperator

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/kumi-dev/kumi/nodeoperator/v1alpha1"
)

// newKube returns the Kubernetes API the tests run against: controller-runtime's in-memory client
// (with the status subresource on NodeFailover and Node, as the CRD and the API server have). With
// the build tag kubetest the same tests run against a real kube-apiserver (kube_real_test.go).
func newKube(t *testing.T) client.Client {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(s).WithStatusSubresource(&v1alpha1.NodeFailover{}, &corev1.Node{}).Build()
}
