package install_test

import (
	"os"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"
)

// skaffoldSchema is skaffold's published JSON schema of skaffold.yaml v4beta14 (skaffold v2.24;
// the skaffold binary cannot be installed here, so the schema is what checks the file).
const skaffoldSchema = "testdata/skaffold-v4beta14.json"

func compileSkaffoldSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(skaffoldSchema)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("skaffold-v4beta14.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("skaffold-v4beta14.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// yamlToJSONValue decodes YAML into the generic values jsonschema validates.
func yamlToJSONValue(t *testing.T, raw []byte) any {
	t.Helper()
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(string(js)))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSkaffoldSchema validates the repository's skaffold.yaml, and checks that the schema does
// catch a misspelt field (so a pass means something).
func TestSkaffoldSchema(t *testing.T) {
	s := compileSkaffoldSchema(t)
	raw, err := os.ReadFile("../skaffold.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(yamlToJSONValue(t, raw)); err != nil {
		t.Fatalf("skaffold.yaml does not validate against %s:\n%v", skaffoldSchema, err)
	}
	typo := strings.Replace(string(raw), "chartPath:", "chartPaht:", 1)
	if err := s.Validate(yamlToJSONValue(t, []byte(typo))); err == nil {
		t.Error("a misspelt chartPath validated: the schema check is not strict")
	}
}

// TestSkaffoldContent checks what the README promises of skaffold.yaml: the chart deployed with
// helm, the image wired into it, the frontend port-forwarded, local and cloud profiles.
func TestSkaffoldContent(t *testing.T) {
	raw, err := os.ReadFile("../skaffold.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type release struct {
		Name              string            `json:"name"`
		ChartPath         string            `json:"chartPath"`
		RemoteChart       string            `json:"remoteChart"`
		Repo              string            `json:"repo"`
		Version           string            `json:"version"`
		SetValues         map[string]any    `json:"setValues"`
		SetValueTemplates map[string]string `json:"setValueTemplates"`
	}
	type deploy struct {
		Helm struct {
			Releases []release `json:"releases"`
		} `json:"helm"`
	}
	var cfg struct {
		APIVersion string `json:"apiVersion"`
		Build      struct {
			Artifacts []map[string]any `json:"artifacts"`
		} `json:"build"`
		Deploy      deploy `json:"deploy"`
		PortForward []struct {
			ResourceName string `json:"resourceName"`
			Port         any    `json:"port"`
		} `json:"portForward"`
		Profiles []struct {
			Name   string `json:"name"`
			Deploy deploy `json:"deploy"`
			Build  struct {
				Artifacts []map[string]any `json:"artifacts"`
			} `json:"build"`
		} `json:"profiles"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.APIVersion != "skaffold/v4beta14" {
		t.Errorf("apiVersion %q", cfg.APIVersion)
	}
	if len(cfg.Build.Artifacts) != 1 || cfg.Build.Artifacts[0]["ko"] == nil {
		t.Errorf("default build is not one ko artifact: %v", cfg.Build.Artifacts)
	}
	checkRelease := func(where string, d deploy) {
		rs := d.Helm.Releases
		if len(rs) == 0 || rs[len(rs)-1].ChartPath != "install/helm/kumi" {
			t.Errorf("%s: helm releases %+v, want the install/helm/kumi chart last", where, rs)
			return
		}
		r := rs[len(rs)-1]
		if r.SetValueTemplates["image.repository"] != "{{.IMAGE_REPO_kumi}}" || !strings.HasPrefix(r.SetValueTemplates["image.tag"], "{{.IMAGE_TAG_kumi}}") {
			t.Errorf("%s: built image not wired into the chart: %v", where, r.SetValueTemplates)
		}
	}
	checkRelease("deploy", cfg.Deploy)
	ports := map[string]bool{}
	for _, p := range cfg.PortForward {
		if p.ResourceName == "kumi-frontend" {
			ports[strings.TrimSpace(strings.Trim(toString(p.Port), `"`))] = true
		}
	}
	if !ports["50600"] || !ports["8080"] {
		t.Errorf("frontend gRPC and HTTP ports not forwarded: %v", cfg.PortForward)
	}
	profiles := map[string]bool{}
	for _, p := range cfg.Profiles {
		profiles[p.Name] = true
		checkRelease("profile "+p.Name, p.Deploy)
		if p.Name == "local" && len(p.Deploy.Helm.Releases) == 2 {
			// Agones first (its CRDs and webhooks before the Fleet), at the chart's pinned version.
			a, k := p.Deploy.Helm.Releases[0], p.Deploy.Helm.Releases[1]
			if a.RemoteChart != "agones" || a.Version != stubDeps["agones"] || a.Repo != "https://agones.dev/chart/stable" {
				t.Errorf("local profile: first release %+v, want Agones %s", a, stubDeps["agones"])
			}
			if toString(k.SetValues["gameservers.replicas"]) != "1" {
				t.Errorf("local profile: one game server wanted: %v", k.SetValues)
			}
		} else if p.Name == "local" {
			t.Errorf("local profile: want the Agones and kumi releases, got %+v", p.Deploy.Helm.Releases)
		}
		if p.Name == "cloud" && (len(p.Build.Artifacts) != 1 || p.Build.Artifacts[0]["docker"] == nil) {
			t.Errorf("cloud profile does not build install/docker/Dockerfile: %v", p.Build.Artifacts)
		}
	}
	if !profiles["local"] || !profiles["cloud"] {
		t.Errorf("profiles %v, want local and cloud", profiles)
	}
}

func toString(v any) string {
	b, _ := yaml.Marshal(v)
	return strings.TrimSpace(string(b))
}
