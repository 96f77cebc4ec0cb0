package kubetest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/internal/kubetest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"
)

var gameServers = schema.GroupVersionResource{Group: "agones.dev", Version: "v1", Resource: "gameservers"}

const gameServerYAML = `
apiVersion: agones.dev/v1
kind: GameServer
metadata:
  name: gs-1
  labels: {agones.dev/fleet: voice}
spec:
  ports: [{name: default, portPolicy: Dynamic, containerPort: 7654, protocol: UDP}]
  counters: {sessions: {count: 0, capacity: 8}}
  template:
    spec:
      containers: [{name: gameserver, image: kumi}]
`

func TestStartInstallsAgonesCRDsAndStoresAGameServer(t *testing.T) {
	env := kubetest.Start(t, kubetest.WithAgonesCRDs())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(gameServerYAML), &obj.Object); err != nil {
		t.Fatal(err)
	}
	gs := env.Dynamic.Resource(gameServers).Namespace("default")
	created, err := gs.Create(ctx, obj, metav1.CreateOptions{FieldValidation: "Strict"})
	if err != nil {
		t.Fatalf("create GameServer: %v", err)
	}
	// No status subresource, as in Agones: status is written with the object in one update.
	if err := unstructured.SetNestedField(created.Object, "Ready", "status", "state"); err != nil {
		t.Fatal(err)
	}
	updated, err := gs.Update(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("update GameServer status: %v", err)
	}
	if s, _, _ := unstructured.NestedString(updated.Object, "status", "state"); s != "Ready" {
		t.Fatalf("status.state %q after update, want Ready", s)
	}

	cases := []struct {
		name, from, to, want string
	}{
		{"unknown spec field", "counters:", "countres:", `unknown field "spec.countres"`},
		{"bad port policy", "Dynamic", "Dynamik", "spec.ports[0].portPolicy"},
		{"list capacity above 1000", "counters: {sessions: {count: 0, capacity: 8}}", "lists: {players: {capacity: 1001}}", "spec.lists.players.capacity"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := &unstructured.Unstructured{}
			doc := strings.Replace(strings.Replace(gameServerYAML, "gs-1", "gs-bad", 1), c.from, c.to, 1)
			if err := yaml.Unmarshal([]byte(doc), &bad.Object); err != nil {
				t.Fatal(err)
			}
			_, err := gs.Create(ctx, bad, metav1.CreateOptions{FieldValidation: "Strict"})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("create with %s: err %v, want one mentioning %q", c.name, err, c.want)
			}
		})
	}

	for _, crd := range []string{"gameservers.agones.dev", "gameserversets.agones.dev", "fleets.agones.dev", "fleetautoscalers.autoscaling.agones.dev"} {
		if _, err := env.Kube.Discovery().ServerResourcesForGroupVersion(strings.SplitN(crd, ".", 2)[1] + "/v1"); err != nil {
			t.Fatalf("%s not served: %v", crd, err)
		}
	}
}
