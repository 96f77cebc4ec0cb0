package localfleet

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/allocation"
	sdkpb "github.com/kumi-dev/kumi/api/agones/sdk"
	"github.com/kumi-dev/kumi/gameserver/localsdk"
)

type gsOpt func(*sdkpb.GameServer)

func mkGS(name, state string, created int64, opts ...gsOpt) *sdkpb.GameServer {
	gs := &sdkpb.GameServer{
		ObjectMeta: &sdkpb.GameServer_ObjectMeta{Name: name, CreationTimestamp: created, Labels: map[string]string{}, Annotations: map[string]string{}},
		Status: &sdkpb.GameServer_Status{
			State: state, Address: "127.0.0.1",
			Ports:    []*sdkpb.GameServer_Status_Port{{Name: "default", Port: 7000}},
			Counters: map[string]*sdkpb.GameServer_Status_CounterStatus{},
			Lists:    map[string]*sdkpb.GameServer_Status_ListStatus{},
		},
	}
	for _, o := range opts {
		o(gs)
	}
	return gs
}

func label(k, v string) gsOpt { return func(gs *sdkpb.GameServer) { gs.ObjectMeta.Labels[k] = v } }
func counter(k string, count, capacity int64) gsOpt {
	return func(gs *sdkpb.GameServer) {
		gs.Status.Counters[k] = &sdkpb.GameServer_Status_CounterStatus{Count: count, Capacity: capacity}
	}
}
func list(k string, capacity int64, values ...string) gsOpt {
	return func(gs *sdkpb.GameServer) {
		gs.Status.Lists[k] = &sdkpb.GameServer_Status_ListStatus{Capacity: capacity, Values: values}
	}
}

func ptr[T any](v T) *T { return &v }

func TestMatches(t *testing.T) {
	gs := mkGS("a", "Ready", 1, label("pool", "p1"), label("region", "eu"), counter("sessions", 3, 10), list("players", 5, "x", "y"))
	for _, tc := range []struct {
		name string
		sel  allocation.Selector
		want bool
	}{
		{"empty selector is Ready", allocation.Selector{}, true},
		{"state Allocated", allocation.Selector{GameServerState: "Allocated"}, false},
		{"labels match", allocation.Selector{MatchLabels: map[string]string{"pool": "p1"}}, true},
		{"labels differ", allocation.Selector{MatchLabels: map[string]string{"pool": "p2"}}, false},
		{"label missing", allocation.Selector{MatchLabels: map[string]string{"zone": "a"}}, false},
		{"In", allocation.Selector{MatchExpressions: []allocation.LabelRequirement{{Key: "region", Operator: "In", Values: []string{"us", "eu"}}}}, true},
		{"In miss", allocation.Selector{MatchExpressions: []allocation.LabelRequirement{{Key: "region", Operator: "In", Values: []string{"us"}}}}, false},
		{"NotIn", allocation.Selector{MatchExpressions: []allocation.LabelRequirement{{Key: "region", Operator: "NotIn", Values: []string{"us"}}}}, true},
		{"NotIn absent", allocation.Selector{MatchExpressions: []allocation.LabelRequirement{{Key: "zone", Operator: "NotIn", Values: []string{"a"}}}}, true},
		{"NotIn hit", allocation.Selector{MatchExpressions: []allocation.LabelRequirement{{Key: "region", Operator: "NotIn", Values: []string{"eu"}}}}, false},
		{"Exists", allocation.Selector{MatchExpressions: []allocation.LabelRequirement{{Key: "pool", Operator: "Exists"}}}, true},
		{"DoesNotExist", allocation.Selector{MatchExpressions: []allocation.LabelRequirement{{Key: "pool", Operator: "DoesNotExist"}}}, false},
		{"counter minAvailable ok", allocation.Selector{Counters: map[string]allocation.CounterSelector{"sessions": {MinAvailable: 7}}}, true},
		{"counter minAvailable short", allocation.Selector{Counters: map[string]allocation.CounterSelector{"sessions": {MinAvailable: 8}}}, false},
		{"counter maxAvailable", allocation.Selector{Counters: map[string]allocation.CounterSelector{"sessions": {MaxAvailable: 6}}}, false},
		{"counter count range", allocation.Selector{Counters: map[string]allocation.CounterSelector{"sessions": {MinCount: 3, MaxCount: 3}}}, true},
		{"counter maxCount 0 unbounded", allocation.Selector{Counters: map[string]allocation.CounterSelector{"sessions": {MinCount: 1}}}, true},
		{"counter minCount", allocation.Selector{Counters: map[string]allocation.CounterSelector{"sessions": {MinCount: 4}}}, false},
		{"counter maxCount", allocation.Selector{Counters: map[string]allocation.CounterSelector{"sessions": {MaxCount: 2}}}, false},
		{"counter missing", allocation.Selector{Counters: map[string]allocation.CounterSelector{"rooms": {}}}, false},
		{"list contains", allocation.Selector{Lists: map[string]allocation.ListSelector{"players": {ContainsValue: "y"}}}, true},
		{"list contains miss", allocation.Selector{Lists: map[string]allocation.ListSelector{"players": {ContainsValue: "z"}}}, false},
		{"list minAvailable", allocation.Selector{Lists: map[string]allocation.ListSelector{"players": {MinAvailable: 3}}}, true},
		{"list minAvailable short", allocation.Selector{Lists: map[string]allocation.ListSelector{"players": {MinAvailable: 4}}}, false},
		{"list maxAvailable", allocation.Selector{Lists: map[string]allocation.ListSelector{"players": {MaxAvailable: 2}}}, false},
		{"list missing", allocation.Selector{Lists: map[string]allocation.ListSelector{"rooms": {}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Matches(tc.sel, gs); got != tc.want {
				t.Errorf("Matches = %v, want %v", got, tc.want)
			}
		})
	}
	if Matches(allocation.Selector{}, mkGS("b", "Ready", 1, func(gs *sdkpb.GameServer) { gs.ObjectMeta.DeletionTimestamp = 5 })) {
		t.Error("a server being deleted matched")
	}
}

func TestOrder(t *testing.T) {
	servers := []*sdkpb.GameServer{
		mkGS("old-empty", "Ready", 1, counter("sessions", 0, 10)),
		mkGS("mid-half", "Ready", 2, counter("sessions", 5, 10)),
		mkGS("new-full", "Ready", 3, counter("sessions", 9, 10)),
		mkGS("no-counter", "Ready", 0),
		mkGS("new-half", "Ready", 4, counter("sessions", 5, 10)),
	}
	for _, tc := range []struct {
		name string
		spec allocation.Spec
		want []string
	}{
		{"packed oldest first", allocation.Spec{}, []string{"no-counter", "old-empty", "mid-half", "new-full", "new-half"}},
		{"ascending fills the fullest", allocation.Spec{Priorities: []allocation.Priority{{Type: "Counter", Key: "sessions"}}},
			[]string{"new-full", "mid-half", "new-half", "old-empty", "no-counter"}},
		{"descending spreads", allocation.Spec{Priorities: []allocation.Priority{{Type: "Counter", Key: "sessions", Order: "Descending"}}},
			[]string{"old-empty", "mid-half", "new-half", "new-full", "no-counter"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := slices.Clone(servers)
			Order(tc.spec, c, rand.New(rand.NewPCG(1, 2)))
			var got []string
			for _, gs := range c {
				got = append(got, gs.ObjectMeta.Name)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("order = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("distributed with priority", func(t *testing.T) {
		spec := allocation.Spec{Scheduling: "Distributed", Priorities: []allocation.Priority{{Type: "List", Key: "players", Order: "Descending"}}}
		c := []*sdkpb.GameServer{mkGS("a", "Ready", 1, list("players", 3, "x")), mkGS("b", "Ready", 2, list("players", 3)), mkGS("c", "Ready", 3, list("players", 3, "x", "y"))}
		Order(spec, c, rand.New(rand.NewPCG(3, 4)))
		if c[0].ObjectMeta.Name != "b" || c[1].ObjectMeta.Name != "a" || c[2].ObjectMeta.Name != "c" {
			t.Errorf("order = %s %s %s, want b a c", c[0].ObjectMeta.Name, c[1].ObjectMeta.Name, c[2].ObjectMeta.Name)
		}
	})
	t.Run("distributed without priority is random", func(t *testing.T) {
		firsts := map[string]bool{}
		rnd := rand.New(rand.NewPCG(5, 6))
		for range 50 {
			c := slices.Clone(servers)
			Order(allocation.Spec{Scheduling: "Distributed"}, c, rnd)
			firsts[c[0].ObjectMeta.Name] = true
		}
		if len(firsts) < 3 {
			t.Errorf("50 distributed orderings started with only %v", firsts)
		}
	})
}

func TestApply(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 8, time.UTC)
	for _, tc := range []struct {
		name         string
		spec         allocation.Spec
		wantCounter  [2]int64 // sessions count, capacity
		wantList     []string
		wantListCap  int64
		wantWarnings []string
	}{
		{"increment", allocation.Spec{Counters: map[string]allocation.CounterAction{"sessions": {Action: ptr("Increment"), Amount: ptr[int64](2)}}},
			[2]int64{5, 10}, []string{"a", "b"}, 4, nil},
		{"increment clamps at capacity", allocation.Spec{Counters: map[string]allocation.CounterAction{"sessions": {Action: ptr("Increment"), Amount: ptr[int64](50)}}},
			[2]int64{10, 10}, []string{"a", "b"}, 4, nil},
		{"decrement clamps at 0", allocation.Spec{Counters: map[string]allocation.CounterAction{"sessions": {Action: ptr("Decrement"), Amount: ptr[int64](5)}}},
			[2]int64{0, 10}, []string{"a", "b"}, 4, nil},
		{"capacity then increment", allocation.Spec{Counters: map[string]allocation.CounterAction{"sessions": {Action: ptr("Increment"), Amount: ptr[int64](5), Capacity: ptr[int64](6)}}},
			[2]int64{6, 6}, []string{"a", "b"}, 4, nil},
		{"capacity below count lowers the count", allocation.Spec{Counters: map[string]allocation.CounterAction{"sessions": {Capacity: ptr[int64](2)}}},
			[2]int64{2, 2}, []string{"a", "b"}, 4, nil},
		{"unknown counter warns", allocation.Spec{Counters: map[string]allocation.CounterAction{"rooms": {Action: ptr("Increment"), Amount: ptr[int64](1)}}},
			[2]int64{3, 10}, []string{"a", "b"}, 4, []string{`CounterActionError: counter "rooms" not found`}},
		{"list add skips duplicates and truncates", allocation.Spec{Lists: map[string]allocation.ListAction{"players": {AddValues: []string{"b", "c", "d", "e"}}}},
			[2]int64{3, 10}, []string{"a", "b", "c", "d"}, 4, nil},
		{"list delete ignores missing", allocation.Spec{Lists: map[string]allocation.ListAction{"players": {DeleteValues: []string{"a", "zz"}}}},
			[2]int64{3, 10}, []string{"b"}, 4, nil},
		{"list capacity truncates", allocation.Spec{Lists: map[string]allocation.ListAction{"players": {Capacity: ptr[int64](1)}}},
			[2]int64{3, 10}, []string{"a"}, 1, nil},
		{"unknown list warns", allocation.Spec{Lists: map[string]allocation.ListAction{"rooms": {AddValues: []string{"x"}}}},
			[2]int64{3, 10}, []string{"a", "b"}, 4, []string{`ListActionError: list "rooms" not found`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gs := mkGS("gs", "Ready", 1, counter("sessions", 3, 10), list("players", 4, "a", "b"))
			warnings := Apply(tc.spec, gs, now)
			if gs.Status.State != "Allocated" {
				t.Errorf("state = %s", gs.Status.State)
			}
			if got := gs.ObjectMeta.Annotations[localsdk.AnnotationLastAllocated]; got != "2026-03-04T05:06:07.000000008Z" {
				t.Errorf("last-allocated = %q", got)
			}
			c := gs.Status.Counters["sessions"]
			if c.Count != tc.wantCounter[0] || c.Capacity != tc.wantCounter[1] {
				t.Errorf("sessions = %d/%d, want %d/%d", c.Count, c.Capacity, tc.wantCounter[0], tc.wantCounter[1])
			}
			l := gs.Status.Lists["players"]
			if !slices.Equal(l.Values, tc.wantList) || l.Capacity != tc.wantListCap {
				t.Errorf("players = %v cap %d, want %v cap %d", l.Values, l.Capacity, tc.wantList, tc.wantListCap)
			}
			if len(warnings) != len(tc.wantWarnings) {
				t.Fatalf("warnings = %v, want %v", warnings, tc.wantWarnings)
			}
			for i, w := range tc.wantWarnings {
				if !strings.HasPrefix(warnings[i], w) {
					t.Errorf("warning %q, want prefix %q", warnings[i], w)
				}
			}
		})
	}
	t.Run("metadata merged", func(t *testing.T) {
		gs := mkGS("gs", "Allocated", 1, label("keep", "1"), label("over", "old"))
		Apply(allocation.Spec{Metadata: &allocation.MetaPatch{Labels: map[string]string{"over": "new", "add": "2"}, Annotations: map[string]string{"note": "n"}}}, gs, now)
		if l := gs.ObjectMeta.Labels; l["keep"] != "1" || l["over"] != "new" || l["add"] != "2" {
			t.Errorf("labels = %v", l)
		}
		if gs.ObjectMeta.Annotations["note"] != "n" {
			t.Errorf("annotations = %v", gs.ObjectMeta.Annotations)
		}
	})
}

func TestValidateSpec(t *testing.T) {
	for _, tc := range []struct {
		name    string
		spec    allocation.Spec
		wantErr string
	}{
		{"empty", allocation.Spec{}, ""},
		{"high density", allocation.Spec{
			Selectors: []allocation.Selector{
				{GameServerState: "Allocated", Counters: map[string]allocation.CounterSelector{"sessions": {MinAvailable: 1}}},
				{GameServerState: "Ready"},
			},
			Scheduling: "Packed",
			Priorities: []allocation.Priority{{Type: "Counter", Key: "sessions", Order: "Ascending"}},
			Counters:   map[string]allocation.CounterAction{"sessions": {Action: ptr("Increment"), Amount: ptr[int64](1)}},
		}, ""},
		{"bad state", allocation.Spec{Selectors: []allocation.Selector{{GameServerState: "Reserved"}}}, "gameServerState"},
		{"bad operator", allocation.Spec{Selectors: []allocation.Selector{{MatchExpressions: []allocation.LabelRequirement{{Key: "k", Operator: "Like"}}}}}, "operator"},
		{"In without values", allocation.Spec{Selectors: []allocation.Selector{{MatchExpressions: []allocation.LabelRequirement{{Key: "k", Operator: "In"}}}}}, "values set can't be empty"},
		{"max below min", allocation.Spec{Selectors: []allocation.Selector{{Counters: map[string]allocation.CounterSelector{"s": {MinAvailable: 3, MaxAvailable: 1}}}}}, "maxAvailable"},
		{"bad scheduling", allocation.Spec{Scheduling: "Spread"}, "scheduling"},
		{"bad priority type", allocation.Spec{Priorities: []allocation.Priority{{Type: "Gauge", Key: "k"}}}, "priorities[0].type"},
		{"bad priority order", allocation.Spec{Priorities: []allocation.Priority{{Type: "List", Key: "k", Order: "Up"}}}, "priorities[0].order"},
		{"bad action", allocation.Spec{Counters: map[string]allocation.CounterAction{"s": {Action: ptr("Add"), Amount: ptr[int64](1)}}}, "Increment or Decrement"},
		{"action without amount", allocation.Spec{Counters: map[string]allocation.CounterAction{"s": {Action: ptr("Increment")}}}, "amount must be set"},
		{"amount without action", allocation.Spec{Counters: map[string]allocation.CounterAction{"s": {Amount: ptr[int64](1)}}}, "needs an action"},
		{"list capacity", allocation.Spec{Lists: map[string]allocation.ListAction{"p": {Capacity: ptr[int64](1001)}}}, "lists[p].capacity"},
		{"bad metadata label", allocation.Spec{Metadata: &allocation.MetaPatch{Labels: map[string]string{"bad key": "v"}}}, "metadata.labels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateSpec(tc.spec)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ValidateSpec = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestNextBackoff: the pauses of a crash loop start at 100 ms, double, and stop at the limit.
func TestNextBackoff(t *testing.T) {
	for _, tc := range []struct {
		limit time.Duration
		want  []time.Duration
	}{
		{400 * time.Millisecond, []time.Duration{100, 200, 400, 400, 400}},
		{5 * time.Second, []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000}},
		{50 * time.Millisecond, []time.Duration{50, 50}},
		{0, []time.Duration{0, 0}},
	} {
		var cur time.Duration
		for i, w := range tc.want {
			if w < time.Millisecond {
				w *= time.Millisecond
			}
			if cur = nextBackoff(cur, tc.limit); cur != w {
				t.Fatalf("limit %s, pause %d = %s, want %s", tc.limit, i+1, cur, w)
			}
		}
	}
}
