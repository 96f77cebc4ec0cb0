package install_test

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestChartObservability: observability.enabled ships the dashboard unchanged in a ConfigMap the
// Grafana sidecar picks up, and the alert rules as a PrometheusRule only where its CRD exists;
// off by default. (That the files use only exported metric names is cmd/kumi/observability_test.go.)
func TestChartObservability(t *testing.T) {
	objs, _ := render(t, nil, "--api-versions", "monitoring.coreos.com/v1/PrometheusRule")
	if has(objs, "PrometheusRule", "") || has(objs, "ConfigMap", "kumi-dashboard") {
		t.Error("observability objects rendered by default")
	}
	objs, _ = render(t, []string{"observability.enabled=true"})
	if has(objs, "PrometheusRule", "") {
		t.Error("PrometheusRule rendered without the CRD's API")
	}
	objs, _ = render(t, []string{"observability.enabled=true", "observability.ruleLabels.release=prom"},
		"--api-versions", "monitoring.coreos.com/v1/PrometheusRule")

	cm := find(t, objs, "ConfigMap", "kumi-dashboard")
	if cm.GetLabels()["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap labels %v lack grafana_dashboard: \"1\"", cm.GetLabels())
	}
	got, _, _ := unstructured.NestedString(cm.Object, "data", "kumi-dashboard.json")
	want, err := os.ReadFile("observability/kumi-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEqual(t, []byte(got), want) {
		t.Error("dashboard in the ConfigMap differs from install/observability/kumi-dashboard.json")
	}

	pr := find(t, objs, "PrometheusRule", "kumi")
	if pr.GetLabels()["release"] != "prom" {
		t.Errorf("PrometheusRule labels %v lack the extra label", pr.GetLabels())
	}
	raw, err := os.ReadFile("observability/kumi-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]any
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	spec, _, _ := unstructured.NestedMap(pr.Object, "spec")
	a, _ := json.Marshal(spec)
	b, _ := json.Marshal(file)
	if !bytes.Equal(a, b) {
		t.Errorf("PrometheusRule spec differs from install/observability/kumi-alerts.yaml:\n%s\n%s", a, b)
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return bytes.Equal(ja, jb)
}
