package selection

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/allocation"
)

func gs(name, state, node string, created int, count, capacity int64, labels map[string]string) *allocation.GameServer {
	return &allocation.GameServer{Name: name, State: state, NodeName: node, Labels: labels,
		Created:  time.Unix(int64(created), 0),
		Counters: map[string]allocation.CounterStatus{"sessions": {Count: count, Capacity: capacity}}}
}

func names(l []*allocation.GameServer) []string {
	var out []string
	for _, g := range l {
		out = append(out, g.Name)
	}
	return out
}

// TestCandidates covers what the local fleet cannot show: node packing, and the first matching
// selector winning.
func TestCandidates(t *testing.T) {
	voice := map[string]string{"agones.dev/fleet": "voice"}
	servers := []*allocation.GameServer{
		gs("a1", "Ready", "node-a", 1, 0, 10, voice),
		gs("b1", "Ready", "node-b", 2, 0, 10, voice),
		gs("b2", "Allocated", "node-b", 3, 10, 10, voice),
		gs("c1", "Allocated", "node-c", 4, 2, 10, voice),
		gs("c2", "Allocated", "node-c", 5, 6, 10, voice),
		gs("d1", "Ready", "node-d", 0, 0, 10, map[string]string{"agones.dev/fleet": "duel"}),
	}
	room := map[string]allocation.CounterSelector{"sessions": {MinAvailable: 1}}
	asc := []allocation.Priority{{Type: "Counter", Key: "sessions"}}
	for _, tc := range []struct {
		name string
		spec allocation.Spec
		want []string
	}{
		{"no selectors: Ready servers, nodes with Allocated servers first", allocation.Spec{}, []string{"b1", "d1", "a1"}},
		{"first matching selector wins, fullest first", allocation.Spec{Priorities: asc, Selectors: []allocation.Selector{
			{MatchLabels: voice, GameServerState: "Allocated", Counters: room}, {MatchLabels: voice}}}, []string{"c2", "c1"}},
		{"falls through to the next selector", allocation.Spec{Selectors: []allocation.Selector{
			{MatchLabels: map[string]string{"agones.dev/fleet": "none"}, GameServerState: "Allocated"}, {MatchLabels: voice}}}, []string{"b1", "a1"}},
		{"matchExpressions", allocation.Spec{Selectors: []allocation.Selector{{MatchExpressions: []allocation.LabelRequirement{
			{Key: "agones.dev/fleet", Operator: "NotIn", Values: []string{"voice"}}}}}}, []string{"d1"}},
		{"nothing matches", allocation.Spec{Selectors: []allocation.Selector{{GameServerState: "Allocated", Counters: map[string]allocation.CounterSelector{"sessions": {MinAvailable: 9}}}}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := names(Candidates(tc.spec, slices.Clone(servers), rand.New(rand.NewPCG(1, 2))))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("candidates %v, want %v", got, tc.want)
			}
		})
	}
}

func TestApplyLeavesSharedMapsAlone(t *testing.T) {
	orig := gs("a", "Ready", "n", 1, 1, 4, map[string]string{"k": "v"})
	orig.Lists = map[string]allocation.ListStatus{"players": {Capacity: 3, Values: []string{"x"}}}
	cp := *orig
	inc := "Increment"
	one := int64(1)
	Apply(allocation.Spec{Metadata: &allocation.MetaPatch{Labels: map[string]string{"k": "new"}},
		Counters: map[string]allocation.CounterAction{"sessions": {Action: &inc, Amount: &one}},
		Lists:    map[string]allocation.ListAction{"players": {AddValues: []string{"y"}}}}, &cp, time.Unix(0, 0))
	if orig.Labels["k"] != "v" || orig.Counters["sessions"].Count != 1 || len(orig.Lists["players"].Values) != 1 || orig.Annotations != nil {
		t.Fatalf("the original changed: %+v", orig)
	}
	if cp.Labels["k"] != "new" || cp.Counters["sessions"].Count != 2 || len(cp.Lists["players"].Values) != 2 || cp.State != "Allocated" {
		t.Fatalf("the copy: %+v", cp)
	}
}
