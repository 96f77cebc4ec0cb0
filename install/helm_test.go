package install_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const chartDir = "helm/kumi"

// helmBin is the helm binary the tests run (Helm 4): $KUMI_HELM (scripts/tools.d/25-helm.sh), else helm
// on PATH. Missing helm fails the test with how to get it.
func helmBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("KUMI_HELM"); p != "" {
		return p
	}
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	t.Fatal("helm not found: run `. scripts/tools.d/25-helm.sh` (builds helm v4.3.2 with go install and exports KUMI_HELM), or put helm on PATH")
	return ""
}

// helm runs helm with args and returns stdout, or stderr as the error.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	// No user config: repositories, plugins and caches of this machine must not change results.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), errors.New(strings.TrimSpace(errb.String()) + ": " + err.Error())
	}
	return out.String(), nil
}

// stubDeps lists the chart's dependencies, which cannot be downloaded here; testChart puts empty
// stand-ins of the same names and versions into charts/ so helm renders kumi's own templates (a
// stand-in renders nothing even when enabled: the tests check kumi's side of the wiring).
var stubDeps = map[string]string{"open-match": "1.8.1", "agones": "1.56.0"}

// testChart copies the chart into a temporary directory with stub dependencies and returns its path.
func testChart(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "kumi")
	err := filepath.WalkDir(chartDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(chartDir, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		_, cerr := io.Copy(out, in)
		return errors.Join(cerr, out.Close())
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, version := range stubDeps {
		dir := filepath.Join(dst, "charts", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		meta := "# test stub of the " + name + " chart: renders nothing\napiVersion: v2\nname: " + name + "\nversion: " + version + "\n"
		if err := os.WriteFile(filepath.Join(dir, "Chart.yaml"), []byte(meta), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// kubeVersion is what helm assumes of the cluster: the version of internal/kubetest's API server.
const kubeVersion = "v1.37.1"

// requiredValues are the values every render needs (README "Deploy to Kubernetes").
var requiredValues = []string{"frontend.jwt.jwksUrl=https://login.example.com/.well-known/jwks.json"}

// render runs helm template on a test copy of the chart with the given --set values (plus the
// required ones) and extra helm flags, and decodes every object.
func render(t *testing.T, set []string, flags ...string) ([]*unstructured.Unstructured, string) {
	t.Helper()
	out, err := renderErr(t, set, flags...)
	if err != nil {
		t.Fatalf("helm template %v: %v", set, err)
	}
	return decodeAll(t, out), out
}

func renderErr(t *testing.T, set []string, flags ...string) (string, error) {
	t.Helper()
	args := []string{"template", "kumi", testChart(t), "--namespace", "games", "--kube-version", kubeVersion}
	for _, s := range append(append([]string{}, requiredValues...), set...) {
		args = append(args, "--set", s)
	}
	return helm(t, append(args, flags...)...)
}

// decodeAll splits a multi-document YAML stream into objects (empty documents skipped).
func decodeAll(t *testing.T, manifest string) []*unstructured.Unstructured {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatalf("rendered YAML does not parse: %v\n%s", err, doc)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// find returns the object of kind and name, failing the test when it is absent.
func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %q rendered", kind, name)
	return nil
}

func has(objs []*unstructured.Unstructured, kind, name string) bool {
	for _, o := range objs {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) {
			return true
		}
	}
	return false
}
