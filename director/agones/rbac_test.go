package agones

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestRBACCoversRequests checks that rbac.yaml grants every verb this backend uses, and that the
// copy in doc.go says the same.
func TestRBACCoversRequests(t *testing.T) {
	raw, err := os.ReadFile("rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs := bytes.Split(raw, []byte("\n---\n"))
	var role struct {
		Kind  string `json:"kind"`
		Rules []struct {
			APIGroups []string `json:"apiGroups"`
			Resources []string `json:"resources"`
			Verbs     []string `json:"verbs"`
		} `json:"rules"`
	}
	if err := yaml.Unmarshal(docs[0], &role); err != nil || role.Kind != "Role" {
		t.Fatalf("rbac.yaml first document: %v %q", err, role.Kind)
	}
	grants := map[string]bool{}
	for _, r := range role.Rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					grants[g+"/"+res+":"+v] = true
				}
			}
		}
	}
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, need := range []string{
		"allocation.agones.dev/gameserverallocations:create",          // Allocate
		"agones.dev/gameservers:list", "agones.dev/gameservers:watch", // List, Watch (informer)
		"coordination.k8s.io/leases:get", "coordination.k8s.io/leases:create", "coordination.k8s.io/leases:update", // LeadWith
	} {
		if !grants[need] {
			t.Errorf("rbac.yaml does not grant %s", need)
		}
		res := need[strings.Index(need, "/")+1 : strings.Index(need, ":")]
		if !strings.Contains(string(doc), res) {
			t.Errorf("doc.go RBAC section does not mention %s", res)
		}
	}
}
