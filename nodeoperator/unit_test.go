package nodeoperator

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/internal/config"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"defaults", func(*Config) {}, ""},
		{"empty selector", func(c *Config) { c.NodeSelector = "" }, "-node-selector"},
		{"bad selector", func(c *Config) { c.NodeSelector = "a in (" }, "-node-selector"},
		{"zero grace", func(c *Config) { c.FlapGrace = 0 }, "-flap-grace"},
		{"no attempts", func(c *Config) { c.MaxAttempts = 0 }, "-max-attempts"},
		{"percent over 100", func(c *Config) { c.MaxUnhealthyPct = 101 }, "-max-unhealthy"},
		{"negative stable", func(c *Config) { c.RecoveryStable = -time.Second }, "-recovery-stable"},
		{"probe port", func(c *Config) { c.Tailnet.ProbePort = 70000 }, "-tailnet-probe-port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one naming %s", err, tt.wantErr)
			}
		})
	}
}

func TestClassesFile(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "classes.json")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c := Default()
	c.ClassesFile = write(`{"gpu": {"zone": "us-central1-a", "machineType": "n2-standard-16", "image": "img", "diskGB": 200}}`)
	cl, err := c.Classes()
	if err != nil || cl["gpu"].MachineType != "n2-standard-16" || cl["default"].Zone != "europe-west4-a" {
		t.Fatalf("classes %v, %v", cl, err)
	}
	for _, bad := range []string{`{"x": {"zone": "z"}}`, `{"x": {"zone": "Bad Zone", "machineType": "m", "image": "i", "diskGB": 20}}`,
		`{"x": {"zone": "z", "machineType": "m", "image": "i", "diskGB": 20, "typo": 1}}`, `not json`} {
		c.ClassesFile = write(bad)
		if _, err := c.Classes(); err == nil {
			t.Fatalf("classes file %s accepted", bad)
		}
	}
}

func TestVMNames(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)
	seen := map[string]string{}
	for _, node := range []string{"onprem-0", "OnPrem.0", "onprem-0.", "rack7.site-b.example.com", strings.Repeat("x", 80), "-"} {
		name := VMName(node, 3)
		if !valid.MatchString(name) {
			t.Fatalf("VMName(%q) = %q is not a valid instance name", node, name)
		}
		if other, ok := seen[name]; ok {
			t.Fatalf("VMName(%q) = VMName(%q) = %q", node, other, name)
		}
		seen[name] = node
	}
	if VMName("onprem-0", 1) != "kumi-fb-onprem-0-1" {
		t.Fatal(VMName("onprem-0", 1))
	}
}

func TestStartupScriptQuotesNothingFromNodes(t *testing.T) {
	s, err := renderStartupScript(scriptData{VM: "kumi-fb-a-1", Node: "a", AuthKey: "tskey-auth-k1", Tags: "tag:kumi-fallback",
		Labels: "kumi.dev/fallback=true,kumi.dev/fallback-for=a", APIServer: "kube-apiserver:6443", Token: "abcdef.0123456789abcdef", CAHash: "sha256:00"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"tailscale up --auth-key='tskey-auth-k1'", "kubeadm join 'kube-apiserver:6443' --token 'abcdef.0123456789abcdef'", "TS_NO_LOGS_NO_SUPPORT=true"} {
		if !strings.Contains(s, want) {
			t.Fatalf("script lacks %q:\n%s", want, s)
		}
	}
}

// The chart's CRD template must stay the CRD in install/crds.
func TestCRDCopiesMatch(t *testing.T) {
	strip := func(path string, drop ...string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
	lines:
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "#") || strings.HasPrefix(l, "{{") || strings.TrimSpace(l) == "" {
				continue
			}
			for _, d := range drop {
				if strings.TrimSpace(l) == d {
					continue lines
				}
			}
			out = append(out, l)
		}
		return strings.Join(out, "\n")
	}
	crd := strip("../install/crds/nodefailover.yaml")
	tpl := strip("../install/helm/kumi/templates/nodeoperator-crd.yaml", "annotations:", "helm.sh/resource-policy: keep")
	if crd != tpl {
		t.Fatal("install/helm/kumi/templates/nodeoperator-crd.yaml differs from install/crds/nodefailover.yaml: copy the CRD into the template")
	}
}

// TestEveryKnobIsAFlag: `kumi nodeoperator -h` prints the flag set config.Bind builds from Config,
// so every leaf field of Config must become a flag with help (a field without a flag tag would be
// a knob nobody can set or read about).
func TestEveryKnobIsAFlag(t *testing.T) {
	cfg := Default()
	fs := flag.NewFlagSet("nodeoperator", flag.ContinueOnError)
	if err := config.Bind(fs, "", &cfg); err != nil {
		t.Fatal(err)
	}
	var leaves func(reflect.Type, string) []string
	leaves = func(rt reflect.Type, path string) []string {
		var out []string
		for i := range rt.NumField() {
			f := rt.Field(i)
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
				out = append(out, leaves(f.Type, path+f.Name+".")...)
				continue
			}
			out = append(out, path+f.Name)
		}
		return out
	}
	fields := leaves(reflect.TypeFor[Config](), "")
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		if strings.TrimSpace(f.Usage) == "" {
			t.Errorf("-%s has no help", f.Name)
		}
	})
	if n != len(fields) {
		t.Fatalf("%d flags for %d config fields %v: a field has no flag tag", n, len(fields), fields)
	}
	for _, name := range []string{"flap-grace", "taint-after", "max-unhealthy-percent", "startup-timeout", "max-lifetime", "orphan-grace",
		"vm-machine-type", "tailnet-state-dir", "tailnet-ephemeral", "tailnet-api-key-file", "director-admin-url", "gcp-credentials"} {
		if fs.Lookup(name) == nil {
			t.Errorf("no -%s flag", name)
		}
	}
}
