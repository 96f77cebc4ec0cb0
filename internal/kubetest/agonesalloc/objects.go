package agonesalloc

import (
	"context"
	"fmt"

	"github.com/kumi-dev/kumi/allocation"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"
)

// Object is the agones.dev/v1 GameServer for gs in namespace ns: its counters and lists declared
// in the spec and mirrored in the status, as the Agones controller and SDK sidecar leave them.
func Object(ns string, gs allocation.GameServer) *unstructured.Unstructured {
	var ports, statusPorts []any
	for _, p := range gs.Ports {
		ports = append(ports, map[string]any{"name": p.Name, "containerPort": int64(7654), "protocol": "UDP"})
		statusPorts = append(statusPorts, map[string]any{"name": p.Name, "port": int64(p.Port)})
	}
	spec := map[string]any{
		"template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "gameserver", "image": "kumi"}}}},
	}
	status := map[string]any{"state": gs.State, "address": gs.Address}
	if gs.NodeName != "" {
		status["nodeName"] = gs.NodeName
	}
	if len(ports) > 0 {
		spec["ports"], status["ports"] = ports, statusPorts
	}
	if len(gs.Addresses) > 0 {
		status["addresses"] = toJSONList(gs.Addresses)
	}
	if len(gs.Counters) > 0 {
		spec["counters"], status["counters"] = toJSONMap(gs.Counters), toJSONMap(gs.Counters)
	}
	if len(gs.Lists) > 0 {
		spec["lists"], status["lists"] = toJSONMap(gs.Lists), toJSONMap(gs.Lists)
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "agones.dev/v1", "kind": "GameServer",
		"metadata": map[string]any{"name": gs.Name, "namespace": ns},
		"spec":     spec, "status": status,
	}}
	u.SetLabels(gs.Labels)
	u.SetAnnotations(gs.Annotations)
	return u
}

// Put creates the GameServer gs, or replaces its labels, annotations and status when it exists
// (retrying on conflicts), the way Agones' controller and SDK sidecar write them.
func Put(ctx context.Context, dyn dynamic.Interface, ns string, gs allocation.GameServer) error {
	want := Object(ns, gs)
	res := dyn.Resource(GameServers).Namespace(ns)
	_, err := res.Create(ctx, want, metav1.CreateOptions{FieldValidation: "Strict"})
	if !apierrors.IsAlreadyExists(err) {
		if err != nil {
			return fmt.Errorf("create GameServer %s: %w", gs.Name, err)
		}
		return nil
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := res.Get(ctx, gs.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.SetLabels(gs.Labels)
		cur.SetAnnotations(gs.Annotations)
		cur.Object["status"] = want.Object["status"]
		_, err = res.Update(ctx, cur, metav1.UpdateOptions{FieldValidation: "Strict"})
		return err
	})
}

// Get reads GameServer name as the director's view.
func Get(ctx context.Context, dyn dynamic.Interface, ns, name string) (allocation.GameServer, error) {
	u, err := dyn.Resource(GameServers).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return allocation.GameServer{}, err
	}
	return View(u)
}

// Delete removes GameServer name at once (no kubelet here to wait for).
func Delete(ctx context.Context, dyn dynamic.Interface, ns, name string) error {
	zero := int64(0)
	return dyn.Resource(GameServers).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
}

func toJSONList(v any) []any {
	m := toJSONMap(map[string]any{"v": v})
	l, _ := m["v"].([]any)
	return l
}
