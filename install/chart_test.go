package install_test

import (
	"crypto"
	"encoding/base64"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/kumi-dev/kumi/internal/token"
)

// chartCase is one values combination of the acceptance matrix.
type chartCase struct {
	name  string
	set   []string
	flags []string
	check func(t *testing.T, objs []*unstructured.Unstructured)
}

// monitoringAPI makes helm template behave as on a cluster with the Prometheus Operator's CRDs.
var monitoringAPI = []string{"--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"}

// chartMatrix is the values matrix issue 11 names: defaults, real Open Match, Agones off, kata on,
// existingSecret, ServiceMonitor on (plus the Agones dependency on and file-based player keys).
func chartMatrix() []chartCase {
	return []chartCase{
		{name: "builds on", set: []string{"builds.enabled=true", "builds.jwt.jwksUrl=https://id.example/jwks.json", "builds.bucket=gs://studio-builds"},
			check: func(t *testing.T, objs []*unstructured.Unstructured) {
				api := containerArgs(t, find(t, objs, "Deployment", "kumi-builds"))
				for _, want := range []string{"builds", "-bucket=gs://studio-builds", "-jwt-jwks-url=https://id.example/jwks.json"} {
					if !slices.Contains(api, want) {
						t.Errorf("builds API args lack %s: %v", want, api)
					}
				}
				find(t, objs, "Service", "kumi-builds")
				rec := containerArgs(t, find(t, objs, "Deployment", "kumi-builds-reconciler"))
				for _, want := range []string{"reconcile", "-runtime-class=kata", "-namespace=kumi-builds", "-bucket=gs://studio-builds"} {
					if !slices.Contains(rec, want) {
						t.Errorf("reconciler args lack %s: %v", want, rec)
					}
				}
				role := find(t, objs, "Role", "kumi-builds-reconciler")
				rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
				var res []string
				for _, r := range rules {
					for _, x := range r.(map[string]any)["resources"].([]any) {
						res = append(res, x.(string))
					}
				}
				if slices.Sort(res); !slices.Equal(res, []string{"fleets", "networkpolicies"}) {
					t.Errorf("reconciler Role grants %v, want fleets and networkpolicies only", res)
				}
				if role.GetNamespace() != "kumi-builds" {
					t.Errorf("reconciler Role in %q, want the build namespace", role.GetNamespace())
				}
			}},
		{name: "defaults", check: func(t *testing.T, objs []*unstructured.Unstructured) {
			d := find(t, objs, "Deployment", "kumi-director")
			if r, _, _ := unstructured.NestedInt64(d.Object, "spec", "replicas"); r != 2 {
				t.Errorf("director replicas = %d, want 2", r)
			}
			args := containerArgs(t, d)
			for _, want := range []string{"-backends=agones", "-agones-lease-name=kumi-director", "-agones-identity=$(POD_NAME)",
				"-backend-addr=kumi-openmatch.games.svc:50505", "-mmf-host=kumi-matchfunction.games.svc",
				"-server-labels=agones.dev/fleet=kumi-gameserver", "-token-key=/etc/kumi/keys/token.key",
				"-control-secret-file=/etc/kumi/keys/control.secret", "-agones-namespace=games"} {
				if !slices.Contains(args, want) {
					t.Errorf("director args lack %s: %v", want, args)
				}
			}
			if p, _, _ := unstructured.NestedMap(container(t, d), "readinessProbe", "httpGet"); p["path"] != "/readyz" || p["port"] != "metrics" {
				t.Errorf("director readiness is not /readyz on the metrics port (200 only on the leader): %v", p)
			}
			checkSecretPair(t, find(t, objs, "Secret", "kumi-keys"))
			fleet := find(t, objs, "Fleet", "kumi-gameserver")
			if c, _, _ := unstructured.NestedInt64(fleet.Object, "spec", "template", "spec", "counters", "sessions", "capacity"); c != 100 {
				t.Errorf("sessions Counter capacity = %d, want 100", c)
			}
			ports, _, _ := unstructured.NestedSlice(fleet.Object, "spec", "template", "spec", "ports")
			if len(ports) != 1 || ports[0].(map[string]any)["portPolicy"] != "Dynamic" || ports[0].(map[string]any)["protocol"] != "UDP" {
				t.Errorf("Fleet ports = %v, want one Dynamic UDP port", ports)
			}
			gsArgs := containerArgsAt(t, fleet, "spec", "template", "spec", "template", "spec")
			for _, want := range []string{"-sdk", "-director=kumi-director.games.svc:50610", "-token-public-keys=/etc/kumi/keys/token.crt", "-capacity=100"} {
				if !slices.Contains(gsArgs, want) {
					t.Errorf("game server args lack %s: %v", want, gsArgs)
				}
			}
			fa := find(t, objs, "FleetAutoscaler", "kumi-gameserver")
			if k, _, _ := unstructured.NestedString(fa.Object, "spec", "policy", "counter", "key"); k != "sessions" {
				t.Errorf("FleetAutoscaler counter key = %q, want sessions", k)
			}
			if has(objs, "RuntimeClass", "") || has(objs, "ServiceMonitor", "") {
				t.Error("RuntimeClass or ServiceMonitor rendered by default")
			}
			if has(objs, "Deployment", "kumi-nodeoperator") || has(objs, "CustomResourceDefinition", "nodefailovers.kumi.dev") || has(objs, "ClusterRole", "kumi-nodeoperator") {
				t.Error("node operator rendered by default (it buys cloud VMs: opt-in only)")
			}
		}},
		{name: "real Open Match", set: []string{"openmatch.embedded=false", "open-match.enabled=true"}, check: func(t *testing.T, objs []*unstructured.Unstructured) {
			if has(objs, "Deployment", "kumi-openmatch") {
				t.Error("embedded core still deployed")
			}
			if a := containerArgs(t, find(t, objs, "Deployment", "kumi-frontend")); !slices.Contains(a, "-om-frontend-addr=open-match-frontend.games.svc:50504") {
				t.Errorf("frontend not pointed at open-match-frontend: %v", a)
			}
			if a := containerArgs(t, find(t, objs, "Deployment", "kumi-director")); !slices.Contains(a, "-backend-addr=open-match-backend.games.svc:50505") {
				t.Errorf("director not pointed at open-match-backend: %v", a)
			}
			find(t, objs, "NetworkPolicy", "kumi-open-match-backend")
		}},
		{name: "external Open Match", set: []string{"openmatch.embedded=false", "openmatch.external.frontend=om-fe:50504", "openmatch.external.backend=om-be:50505", "openmatch.external.query=om-q:50503"}, check: func(t *testing.T, objs []*unstructured.Unstructured) {
			if a := containerArgs(t, find(t, objs, "Deployment", "kumi-director")); !slices.Contains(a, "-backend-addr=om-be:50505") {
				t.Errorf("director not pointed at the external backend: %v", a)
			}
		}},
		{name: "Agones dependency on", set: []string{"agones.enabled=true"}},
		{name: "Agones off", set: []string{"gameservers.enabled=false"}, check: func(t *testing.T, objs []*unstructured.Unstructured) {
			for _, o := range objs {
				if strings.Contains(o.GetAPIVersion(), "agones.dev") {
					t.Errorf("%s %s rendered with gameservers off", o.GetKind(), o.GetName())
				}
			}
		}},
		{name: "kata on", set: []string{"runtimeClass.kata.create=true", "runtimeClass.kata.handler=kata-qemu", "gameservers.runtimeClassName=kata"}, check: func(t *testing.T, objs []*unstructured.Unstructured) {
			rc := find(t, objs, "RuntimeClass", "kata")
			if h, _, _ := unstructured.NestedString(rc.Object, "handler"); h != "kata-qemu" {
				t.Errorf("RuntimeClass handler = %q", h)
			}
			fleet := find(t, objs, "Fleet", "kumi-gameserver")
			if n, _, _ := unstructured.NestedString(fleet.Object, "spec", "template", "spec", "template", "spec", "runtimeClassName"); n != "kata" {
				t.Errorf("Fleet runtimeClassName = %q, want kata", n)
			}
		}},
		{name: "existingSecret", set: []string{"secrets.existingSecret=studio-kumi-keys"}, check: func(t *testing.T, objs []*unstructured.Unstructured) {
			if has(objs, "Secret", "kumi-keys") {
				t.Error("chart generated keys although existingSecret is set")
			}
			if !strings.Contains(toYAML(t, find(t, objs, "Deployment", "kumi-director")), "secretName: studio-kumi-keys") {
				t.Error("director does not mount the existing secret")
			}
			if !strings.Contains(toYAML(t, find(t, objs, "Fleet", "kumi-gameserver")), "secretName: studio-kumi-keys") {
				t.Error("game servers do not mount the existing secret")
			}
		}},
		{name: "ServiceMonitor on", set: []string{"metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prom"}, flags: monitoringAPI, check: func(t *testing.T, objs []*unstructured.Unstructured) {
			for _, c := range []string{"frontend", "matchfunction", "director", "openmatch"} {
				sm := find(t, objs, "ServiceMonitor", "kumi-"+c)
				if sm.GetLabels()["release"] != "prom" {
					t.Errorf("ServiceMonitor %s lacks the extra label", c)
				}
				find(t, objs, "Service", "kumi-"+c+"-metrics")
			}
		}},
		{name: "node operator on", set: []string{"nodeOperator.enabled=true", "nodeOperator.gcp.project=kumi-prod", "nodeOperator.tailnet.apiKeySecret=ts-api"}, check: func(t *testing.T, objs []*unstructured.Unstructured) {
			// The operator, its CRD and exactly the RBAC nodeoperator/*.go needs (nodeoperator's chaos
			// table runs those calls against a real API server).
			crd := find(t, objs, "CustomResourceDefinition", "nodefailovers.kumi.dev")
			if sub, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions"); len(sub) != 1 || sub[0].(map[string]any)["subresources"] == nil {
				t.Errorf("NodeFailover CRD lacks its status subresource: %v", sub)
			}
			if crd.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
				t.Error("NodeFailover CRD is deleted on uninstall (its records own live VMs)")
			}
			args := containerArgs(t, find(t, objs, "Deployment", "kumi-nodeoperator"))
			for _, want := range []string{"nodeoperator", "-gcp-project=kumi-prod", "-leader-namespace=games", "-tailnet-api-key-file=/etc/kumi/tailscale-api/apikey"} {
				if !slices.Contains(args, want) {
					t.Errorf("nodeoperator args lack %s: %v", want, args)
				}
			}
			find(t, objs, "ServiceAccount", "kumi-nodeoperator")
			find(t, objs, "ClusterRoleBinding", "kumi-nodeoperator")
			rules := func(kind, name string) []any {
				r, _, _ := unstructured.NestedSlice(find(t, objs, kind, name).Object, "rules")
				return r
			}
			allows := func(rs []any, res, verb string) bool {
				for _, r := range rs {
					r := r.(map[string]any)
					res0, _ := r["resources"].([]any)
					verbs, _ := r["verbs"].([]any)
					if slices.Contains(res0, any(res)) && slices.Contains(verbs, any(verb)) {
						return true
					}
				}
				return false
			}
			cr := rules("ClusterRole", "kumi-nodeoperator")
			for _, rv := range [][2]string{{"nodes", "watch"}, {"nodes", "patch"}, {"nodes", "delete"}, {"nodefailovers", "create"},
				{"nodefailovers/status", "update"}, {"gameservers", "list"}, {"gameservers", "delete"}, {"events", "create"}} {
				if !allows(cr, rv[0], rv[1]) {
					t.Errorf("ClusterRole kumi-nodeoperator does not allow %s %s", rv[1], rv[0])
				}
			}
			for _, rv := range [][2]string{{"secrets", "get"}, {"secrets", "list"}, {"gameservers", "update"}, {"nodes", "create"}} {
				if allows(cr, rv[0], rv[1]) {
					t.Errorf("ClusterRole kumi-nodeoperator allows %s %s (not needed)", rv[1], rv[0])
				}
			}
			bs := find(t, objs, "Role", "kumi-nodeoperator-bootstrap")
			if bs.GetNamespace() != "kube-system" || !allows(rules("Role", "kumi-nodeoperator-bootstrap"), "secrets", "deletecollection") ||
				allows(rules("Role", "kumi-nodeoperator-bootstrap"), "secrets", "get") {
				t.Errorf("bootstrap-token Role: namespace %q rules %v", bs.GetNamespace(), rules("Role", "kumi-nodeoperator-bootstrap"))
			}
		}},
		// TLS through Secrets the user supplies; TestChartTLS checks its wiring. This case is here so
		// TestChartAcceptedByAPIServer applies it too (cert-manager's CRDs are not installed there).
		{name: "TLS from supplied Secrets", set: tlsSecrets, check: func(t *testing.T, objs []*unstructured.Unstructured) {
			if has(objs, "Certificate", "") {
				t.Error("Certificates rendered although the Secrets are supplied")
			}
		}},
		{name: "player keys from values", set: []string{"frontend.jwt.jwksUrl=", "frontend.jwt.publicKeys.login\\.pem=-----BEGIN PUBLIC KEY-----"}, check: func(t *testing.T, objs []*unstructured.Unstructured) {
			find(t, objs, "Secret", "kumi-player-keys")
			if a := containerArgs(t, find(t, objs, "Deployment", "kumi-frontend")); !slices.Contains(a, "-jwt-public-keys=/etc/kumi/player-keys/login.pem") {
				t.Errorf("frontend args: %v", a)
			}
		}},
	}
}

// TestChartLint runs helm lint --strict with the required values.
func TestChartLint(t *testing.T) {
	args := []string{"lint", "--strict", "--kube-version", kubeVersion, testChart(t)}
	for _, s := range requiredValues {
		args = append(args, "--set", s)
	}
	if out, err := helm(t, args...); err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
}

// TestChartTemplate renders every case of the matrix and checks what holds for every rendered
// object (security, probes, resources, service-account tokens) and each case's own expectations.
func TestChartTemplate(t *testing.T) {
	for _, tc := range chartMatrix() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			objs, _ := render(t, tc.set, tc.flags...)
			checkWorkloads(t, objs)
			if tc.check != nil {
				tc.check(t, objs)
			}
		})
	}
}

// TestChartServiceMonitorNeedsCRD: without the monitoring.coreos.com API the ServiceMonitors are
// left out (an install would fail on a cluster without the Prometheus Operator).
func TestChartServiceMonitorNeedsCRD(t *testing.T) {
	objs, _ := render(t, []string{"metrics.serviceMonitor.enabled=true"})
	if has(objs, "ServiceMonitor", "") {
		t.Error("ServiceMonitor rendered without the CRD's API")
	}
}

// TestChartRefusesBadValues: a wrong value stops helm with a message naming it.
func TestChartRefusesBadValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  []string
		want string
	}{
		{"wrong type", []string{"director.replicas=two"}, "director/replicas"},
		{"unknown key (typo)", []string{"director.replicaz=2"}, "replicaz"},
		{"enum", []string{"frontend.service.type=Public"}, "frontend/service/type"},
		{"bad duration", []string{"director.leaderElection.leaseDuration=15"}, "leaseDuration"},
		{"bad log level", []string{"logLevel=verbose"}, "logLevel"},
		{"no player keys", []string{"frontend.jwt.jwksUrl="}, "frontend.jwt.jwksUrl or frontend.jwt.publicKeys must be set"},
		{"two Open Match cores", []string{"open-match.enabled=true"}, "pick one Open Match core"},
		{"no core at all", []string{"openmatch.embedded=false"}, "openmatch.external."},
		{"builds without developer keys", []string{"builds.enabled=true"}, "builds.jwt.jwksUrl or builds.jwt.publicKeys is required"},
		{"builds without a runtime class", []string{"builds.enabled=true", "builds.jwt.jwksUrl=https://id.example/jwks.json", "builds.reconciler.runtimeClassName="}, "runtimeClassName"},
		{"two directors without a Lease", []string{"director.leaderElection.enabled=false"}, "needs director.leaderElection.enabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := renderErr(t, tc.set)
			if err == nil {
				t.Fatalf("helm template accepted %v:\n%.300s", tc.set, out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error does not name %q:\n%v", tc.want, err)
			}
		})
	}
}

// TestChartDependencies checks the declarations of the charts that cannot be downloaded here:
// public https repositories, exact versions, and the conditions the values use.
func TestChartDependencies(t *testing.T) {
	raw, err := os.ReadFile(chartDir + "/Chart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		APIVersion   string `json:"apiVersion"`
		Dependencies []struct {
			Name, Version, Repository, Condition string
		} `json:"dependencies"`
	}
	if err := yaml.Unmarshal(raw, &chart); err != nil {
		t.Fatal(err)
	}
	if chart.APIVersion != "v2" {
		t.Errorf("apiVersion %q, want v2", chart.APIVersion)
	}
	want := map[string]struct{ repo, cond string }{
		"open-match": {"https://open-match.dev/chart/stable", "open-match.enabled"},
		"agones":     {"https://agones.dev/chart/stable", "agones.enabled"},
	}
	exact := regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)
	for _, d := range chart.Dependencies {
		w, ok := want[d.Name]
		if !ok {
			t.Errorf("unexpected dependency %s", d.Name)
			continue
		}
		delete(want, d.Name)
		if d.Repository != w.repo || d.Condition != w.cond {
			t.Errorf("%s: repository %q condition %q, want %q %q", d.Name, d.Repository, d.Condition, w.repo, w.cond)
		}
		if !exact.MatchString(d.Version) || d.Version != stubDeps[d.Name] {
			t.Errorf("%s: version %q is not pinned to the tested %s", d.Name, d.Version, stubDeps[d.Name])
		}
	}
	for n := range want {
		t.Errorf("dependency %s not declared", n)
	}
	values, err := os.ReadFile(chartDir + "/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(values, &v); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"open-match", "agones", "nodeOperator", "builds"} {
		sub, _ := v[k].(map[string]any)
		if e, ok := sub["enabled"]; !ok || e != false {
			t.Errorf("values %s.enabled = %v, want false by default", k, e)
		}
	}
}

// checkWorkloads checks every pod template rendered: non-root, read-only root filesystem, no
// capabilities, seccomp RuntimeDefault, resources, probes (Agones probes game servers itself),
// and no API token where a component does not call the API.
func checkWorkloads(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	apiCallers := map[string]bool{"kumi-director": true, "kumi-nodeoperator": true, "kumi-builds-reconciler": true}
	for _, o := range objs {
		var podPath []string
		switch o.GetKind() {
		case "Deployment":
			podPath = []string{"spec", "template", "spec"}
		case "Fleet":
			podPath = []string{"spec", "template", "spec", "template", "spec"}
		default:
			continue
		}
		pod, _, _ := unstructured.NestedMap(o.Object, podPath...)
		where := o.GetKind() + " " + o.GetName()
		if v, _, _ := unstructured.NestedBool(pod, "securityContext", "runAsNonRoot"); !v {
			t.Errorf("%s: pod runAsNonRoot not set", where)
		}
		if v, _, _ := unstructured.NestedString(pod, "securityContext", "seccompProfile", "type"); v != "RuntimeDefault" {
			t.Errorf("%s: pod seccomp %q", where, v)
		}
		if o.GetKind() == "Deployment" {
			auto, found, _ := unstructured.NestedBool(pod, "automountServiceAccountToken")
			if apiCallers[o.GetName()] == (found && !auto) {
				t.Errorf("%s: automountServiceAccountToken %v (found %v), API caller %v", where, auto, found, apiCallers[o.GetName()])
			}
		}
		cs, _, _ := unstructured.NestedSlice(pod, "containers")
		for _, c := range cs {
			c := c.(map[string]any)
			cw := where + " container " + c["name"].(string)
			if v, _, _ := unstructured.NestedBool(c, "securityContext", "readOnlyRootFilesystem"); !v {
				t.Errorf("%s: root filesystem writable", cw)
			}
			if v, _, _ := unstructured.NestedBool(c, "securityContext", "allowPrivilegeEscalation"); v {
				t.Errorf("%s: privilege escalation allowed", cw)
			}
			if d, _, _ := unstructured.NestedStringSlice(c, "securityContext", "capabilities", "drop"); !slices.Equal(d, []string{"ALL"}) {
				t.Errorf("%s: capabilities drop %v", cw, d)
			}
			if r, _, _ := unstructured.NestedMap(c, "resources", "requests"); len(r) == 0 {
				t.Errorf("%s: no resource requests", cw)
			}
			if l, _, _ := unstructured.NestedString(c, "resources", "limits", "memory"); l == "" {
				t.Errorf("%s: no memory limit", cw)
			}
			if o.GetKind() == "Deployment" && (c["readinessProbe"] == nil || c["livenessProbe"] == nil) {
				t.Errorf("%s: readiness and liveness probes needed", cw)
			}
		}
	}
}

// checkSecretPair: the generated token key and certificate are one key pair, so game servers
// verify what the director signs.
func checkSecretPair(t *testing.T, s *unstructured.Unstructured) {
	t.Helper()
	data, _, _ := unstructured.NestedStringMap(s.Object, "data")
	dec := func(k string) []byte {
		b, err := base64.StdEncoding.DecodeString(data[k])
		if err != nil || len(b) == 0 {
			t.Fatalf("secret %s: %q missing or not base64: %v", s.GetName(), k, err)
		}
		return b
	}
	key, err := token.ParsePrivateKeyPEM(dec("token.key"))
	if err != nil {
		t.Fatalf("token.key: %v", err)
	}
	pub, err := token.ParsePublicKeyPEM(dec("token.crt"))
	if err != nil {
		t.Fatalf("token.crt: %v", err)
	}
	if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
		t.Error("token.crt does not hold token.key's public key")
	}
	if len(dec("control.secret")) < 32 {
		t.Error("control.secret shorter than 32 bytes")
	}
}

func container(t *testing.T, o *unstructured.Unstructured) map[string]any {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
	if len(cs) == 0 {
		t.Fatalf("%s has no containers", o.GetName())
	}
	return cs[0].(map[string]any)
}

func containerArgs(t *testing.T, o *unstructured.Unstructured) []string {
	t.Helper()
	return containerArgsAt(t, o, "spec", "template", "spec")
}

func containerArgsAt(t *testing.T, o *unstructured.Unstructured, podPath ...string) []string {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(o.Object, append(podPath, "containers")...)
	if len(cs) == 0 {
		t.Fatalf("%s has no containers", o.GetName())
	}
	a, _, _ := unstructured.NestedStringSlice(cs[0].(map[string]any), "args")
	return a
}

func toYAML(t *testing.T, o *unstructured.Unstructured) string {
	t.Helper()
	b, err := yaml.Marshal(o.Object)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
