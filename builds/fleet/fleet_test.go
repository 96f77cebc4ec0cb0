package fleet

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/builds"
)

func manifest() builds.Manifest {
	return builds.Manifest{Tenant: "studio-a", Project: "Duel", Version: "1.2.0+hotfix", SHA256: strings.Repeat("ab", 32),
		Entrypoint: "Duel/Binaries/Linux/DuelServer", Created: time.Unix(0, 0), State: builds.StateReady, Format: builds.FormatTarGz}
}

// TestRenderedFleetIsLockedDown: the rendered Fleet runs under the kata runtime class with the
// locked-down pod spec, one match per server, and the NetworkPolicy denies egress but DNS and the
// storage endpoints.
func TestRenderedFleetIsLockedDown(t *testing.T) {
	f, np, err := Render(Default(), manifest())
	if err != nil {
		t.Fatal(err)
	}
	pod := f.Spec.Template.Spec.Template.Spec
	if pod.RuntimeClassName == nil || *pod.RuntimeClassName != "kata" {
		t.Fatalf("runtimeClassName %v, want kata", pod.RuntimeClassName)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("service-account token is mounted")
	}
	if pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot || pod.SecurityContext.SeccompProfile.Type != "RuntimeDefault" {
		t.Error("pod security context is not non-root + seccomp RuntimeDefault")
	}
	for _, c := range append(pod.InitContainers, pod.Containers...) {
		sc := c.SecurityContext
		if sc == nil || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
			t.Errorf("container %s: security context %+v", c.Name, sc)
		}
		if c.Resources.Limits.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("container %s has no resource limits", c.Name)
		}
	}
	for _, c := range pod.Containers {
		for _, m := range c.VolumeMounts {
			if m.Name == "bucket" {
				t.Errorf("container %s mounts the bucket credentials; only the fetch init container may", c.Name)
			}
		}
		if !strings.Contains(strings.Join(c.Args, " "), "-sandbox=pod") {
			t.Errorf("server container args %v", c.Args)
		}
	}
	if got := f.Spec.Template.Spec.Counters["sessions"].Capacity; got != 1 {
		t.Errorf("sessions capacity %d, want 1 (one match per server)", got)
	}
	if len(f.Name) > 63 || strings.ContainsAny(f.Name, "+.") || f.Labels["kumi.dev/version"] != "1-2-0-hotfix" {
		t.Errorf("name %q labels %v", f.Name, f.Labels)
	}
	if len(np.Spec.Egress) != 2 || np.Spec.Egress[1].To[0].IPBlock.CIDR != "199.36.153.8/30" || len(np.Spec.PolicyTypes) != 2 {
		t.Errorf("network policy egress %+v", np.Spec.Egress)
	}
	data, err := json.Marshal(f)
	if err != nil || !strings.Contains(string(data), `"apiVersion":"agones.dev/v1"`) || !strings.Contains(string(data), `"runtimeClassName":"kata"`) {
		t.Fatalf("fleet JSON: %v %s", err, data)
	}
	cfg := Default()
	cfg.RuntimeClassName = ""
	if _, _, err := Render(cfg, manifest()); err == nil {
		t.Error("rendered a Fleet without a runtime class")
	}
}
