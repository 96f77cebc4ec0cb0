package agonesalloc

import (
	"context"
	"testing"

	"github.com/kumi-dev/kumi/allocation"
	"github.com/kumi-dev/kumi/internal/kubetest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Cluster is what a director test needs of "Kubernetes with Agones": a real kube-apiserver with
// kumi's Agones CRD fixtures, a namespace for the game servers, and the allocation responder in
// front of it. Point the director at Alloc.RESTConfig().
type Cluster struct {
	Env       *kubetest.Env
	Alloc     *Responder
	Namespace string
}

// StartCluster starts a Cluster for t (stopped on t.Cleanup).
func StartCluster(t testing.TB, namespace string, cfg Config) *Cluster {
	t.Helper()
	env := kubetest.Start(t, kubetest.WithAgonesCRDs())
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": namespace}}}
	if _, err := env.Dynamic.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("agonesalloc: create namespace %s: %v", namespace, err)
	}
	return &Cluster{Env: env, Alloc: Start(t, env.Config, cfg), Namespace: namespace}
}

// Put creates or updates a GameServer (see the package function Put).
func (c *Cluster) Put(t testing.TB, gs allocation.GameServer) {
	t.Helper()
	if err := Put(context.Background(), c.Env.Dynamic, c.Namespace, gs); err != nil {
		t.Fatal(err)
	}
}

// Get reads a GameServer.
func (c *Cluster) Get(t testing.TB, name string) allocation.GameServer {
	t.Helper()
	gs, err := Get(context.Background(), c.Env.Dynamic, c.Namespace, name)
	if err != nil {
		t.Fatal(err)
	}
	return gs
}

// Delete removes a GameServer at once.
func (c *Cluster) Delete(t testing.TB, name string) {
	t.Helper()
	if err := Delete(context.Background(), c.Env.Dynamic, c.Namespace, name); err != nil {
		t.Fatal(err)
	}
}
