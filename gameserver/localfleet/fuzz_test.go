package localfleet

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/allocation"
	sdkpb "github.com/kumi-dev/kumi/api/agones/sdk"
)

// FuzzAllocationSpec feeds arbitrary GameServerAllocation JSON through validation, matching,
// ordering and Apply: nothing panics, and an accepted spec keeps every Counter within
// [0, capacity] and every List within its capacity.
func FuzzAllocationSpec(f *testing.F) {
	for _, seed := range []string{
		`{}`,
		`{"selectors":[{"gameServerState":"Allocated","counters":{"sessions":{"minAvailable":1}}},{"gameServerState":"Ready"}],"priorities":[{"type":"Counter","key":"sessions"}],"counters":{"sessions":{"action":"Increment","amount":1}}}`,
		`{"scheduling":"Distributed","lists":{"players":{"addValues":["a","b","c","d","e"],"deleteValues":["x"],"capacity":3}}}`,
		`{"counters":{"sessions":{"action":"Decrement","amount":99,"capacity":2}},"metadata":{"labels":{"a":"b"}}}`,
		`{"counters":{"sessions":{"capacity":2}}}`,
		`{"selectors":[{"matchExpressions":[{"key":"pool","operator":"In","values":["p"]}],"lists":{"players":{"containsValue":"x"}}}]}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data string) {
		var spec allocation.Spec
		if json.Unmarshal([]byte(data), &spec) != nil {
			return
		}
		valid := ValidateSpec(spec) == nil
		cands := []*sdkpb.GameServer{
			mkGS("a", "Ready", 1, label("pool", "p"), counter("sessions", 3, 10), list("players", 4, "x", "y")),
			mkGS("b", "Allocated", 2, counter("sessions", 10, 10), list("players", 0)),
			mkGS("c", "Ready", 3),
		}
		for _, sel := range spec.Selectors {
			for _, gs := range cands {
				Matches(sel, gs)
			}
		}
		Order(spec, cands, rand.New(rand.NewPCG(1, 1)))
		if !valid {
			return
		}
		for _, gs := range cands {
			Apply(spec, gs, time.Unix(0, 0))
			for k, c := range gs.Status.Counters {
				if c.Count < 0 || c.Count > c.Capacity || c.Capacity < 0 {
					t.Fatalf("counter %s = %d/%d after %s", k, c.Count, c.Capacity, data)
				}
			}
			for k, l := range gs.Status.Lists {
				if int64(len(l.Values)) > l.Capacity || l.Capacity < 0 {
					t.Fatalf("list %s = %v cap %d after %s", k, l.Values, l.Capacity, data)
				}
			}
		}
	})
}
