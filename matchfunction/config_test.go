package matchfunction

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/kumi-dev/kumi/api/openmatch"
)

const goodYAML = `
profiles:
- name: voice
  kind: rendezvous
  group_arg: chat_group
  max_members: 8
  pools:
  - name: voice
    string_equals: {mode: voice}
- name: duel
  kind: match
  players: 2
  group_by: [mode, region]
  skill_arg: skill
  skill_window: 100
  skill_window_growth: 20
  skill_window_max: 1000
  pools:
  - name: duel
    string_equals: {region: eu, mode: duel}
    double_ranges: [{arg: skill, min: 0, max: 5000}]
    tags: [ranked]
`

func TestParseProfiles(t *testing.T) {
	ps, err := ParseProfiles([]byte(goodYAML))
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[0].Name != "voice" || ps[0].MaxMembers != 8 || ps[1].SkillWindowGrowth != 20 {
		t.Fatalf("parsed %+v", ps)
	}
	// The MatchProfile the director sends is built from the same file.
	want := &openmatch.MatchProfile{Name: "duel", Pools: []*openmatch.Pool{{
		Name: "duel",
		StringEqualsFilters: []*openmatch.StringEqualsFilter{
			{StringArg: "mode", Value: "duel"}, {StringArg: "region", Value: "eu"},
		},
		DoubleRangeFilters: []*openmatch.DoubleRangeFilter{{DoubleArg: "skill", Min: 0, Max: 5000}},
		TagPresentFilters:  []*openmatch.TagPresentFilter{{Tag: "ranked"}},
	}}}
	if got := ps[1].MatchProfile(); !proto.Equal(got, want) {
		t.Fatalf("MatchProfile = %v\nwant %v", got, want)
	}

	// JSON is accepted as well.
	js := `{"profiles":[{"name":"v","kind":"rendezvous","group_arg":"g","max_members":2,"pools":[{"name":"all"}]}]}`
	if ps, err := ParseProfiles([]byte(js)); err != nil || ps[0].GroupArg != "g" {
		t.Fatalf("json: %+v %v", ps, err)
	}
	if err := ValidateProfiles(DefaultProfiles()); err != nil {
		t.Fatalf("default profiles invalid: %v", err)
	}
}

func TestParseProfilesErrors(t *testing.T) {
	pool := "\n  pools: [{name: p}]"
	tests := []struct {
		name string
		doc  string
		want []string // every substring must appear in the error
	}{
		{"empty", "", []string{"empty document"}},
		{"no profiles", "profiles: []", []string{"at least one profile"}},
		{"not yaml", "profiles: [", []string{"parse"}},
		{"unknown field", "profiles:\n- name: v\n  kind: rendezvous\n  group_arg: g\n  max_members: 2\n  maxmembers: 3" + pool, []string{`unknown field "maxmembers"`}},
		{"wrong type", "profiles:\n- name: v\n  kind: match\n  players: two" + pool, []string{"players"}},
		{"bad kind", "profiles:\n- name: v\n  kind: lobby" + pool, []string{`profiles[0] ("v"): kind: must be "rendezvous" or "match", got "lobby"`}},
		{"no name", "profiles:\n- kind: match\n  players: 2" + pool, []string{"name: required"}},
		{"rendezvous needs group and limit", "profiles:\n- name: v\n  kind: rendezvous" + pool, []string{"group_arg: required", "max_members: must be ≥ 1"}},
		{"rendezvous refuses match fields", "profiles:\n- name: v\n  kind: rendezvous\n  group_arg: g\n  max_members: 2\n  players: 4" + pool, []string{`players: only applies to kind "match"`}},
		{"players", "profiles:\n- name: m\n  kind: match\n  players: 0" + pool, []string{"players: must be ≥ 1"}},
		{"max below players", "profiles:\n- name: m\n  kind: match\n  players: 4\n  max_members: 2" + pool, []string{"max_members: 2 is below players (4)"}},
		{"negative window", "profiles:\n- name: m\n  kind: match\n  players: 2\n  skill_arg: s\n  skill_window: -1" + pool, []string{"skill_window: must be a finite number ≥ 0"}},
		{"window without skill", "profiles:\n- name: m\n  kind: match\n  players: 2\n  skill_window: 10" + pool, []string{"skill_arg: required"}},
		{"cap below window", "profiles:\n- name: m\n  kind: match\n  players: 2\n  skill_arg: s\n  skill_window: 10\n  skill_window_max: 5" + pool, []string{"skill_window_max: 5 is below skill_window (10)"}},
		{"party size without party", "profiles:\n- name: m\n  kind: match\n  players: 2\n  party_size_arg: n" + pool, []string{"party_size_arg: needs party_arg"}},
		{"no pools", "profiles:\n- name: m\n  kind: match\n  players: 2", []string{"pools: at least one pool"}},
		{"pool problems", "profiles:\n- name: m\n  kind: match\n  players: 2\n  pools: [{name: a, double_ranges: [{arg: s, min: 5, max: 1}]}, {name: a}, {tags: ['']}]",
			[]string{"pools[0].double_ranges[0]: want min ≤ max", `pools[1].name: "a" used twice`, "pools[2].name: required", "pools[2].tags[0]: empty tag"}},
		{"duplicate names", "profiles:\n- {name: m, kind: match, players: 2, pools: [{name: p}]}\n- {name: m, kind: match, players: 3, pools: [{name: p}]}",
			[]string{`profiles[1] ("m"): name: already used by profiles[0]`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseProfiles([]byte(tt.doc))
			if err == nil {
				t.Fatalf("accepted:\n%s", tt.doc)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadProfilesAndConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "profiles.yaml")
	if err := os.WriteFile(path, []byte(goodYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Default()
	cfg.ProfilesFile = path
	ps, err := cfg.profiles()
	if err != nil || len(ps) != 2 {
		t.Fatalf("profiles() = %d, %v", len(ps), err)
	}
	// In-code profiles add to the file, and a name clash is refused.
	cfg.Profiles = []Profile{DefaultProfiles()[0]}
	if _, err := cfg.profiles(); err == nil || !strings.Contains(err.Error(), `name: already used`) {
		t.Fatalf("clash: %v", err)
	}
	// No file and no profiles: the defaults.
	if ps, err := (&Config{}).profiles(); err != nil || len(ps) != len(DefaultProfiles()) {
		t.Fatalf("defaults: %d %v", len(ps), err)
	}
	cfg = Default()
	cfg.ProfilesFile = filepath.Join(dir, "missing.yaml")
	if _, err := cfg.profiles(); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("missing file: %v", err)
	}
}
