package builds

import (
	"math/rand/v2"
	"testing"
)

func TestPickVersion(t *testing.T) {
	cases := []struct {
		name    string
		weights map[string]int
		want    map[string][2]int // version -> [min, max] picks out of 10000
	}{
		{"all old", map[string]int{"v1": 100, "v2": 0}, map[string][2]int{"v1": {10000, 10000}}},
		{"canary 1%", map[string]int{"v1": 99, "v2": 1}, map[string][2]int{"v1": {9800, 9960}, "v2": {40, 200}}},
		{"half", map[string]int{"v1": 50, "v2": 50}, map[string][2]int{"v1": {4700, 5300}, "v2": {4700, 5300}}},
		{"all new", map[string]int{"v1": 0, "v2": 100}, map[string][2]int{"v2": {10000, 10000}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			got := map[string]int{}
			for range 10000 {
				got[PickVersion(tc.weights, r.Float64())]++
			}
			for v, n := range got {
				b, ok := tc.want[v]
				if !ok || n < b[0] || n > b[1] {
					t.Errorf("version %q picked %d times, want %v (all: %v)", v, n, tc.want, got)
				}
			}
		})
	}
	if v := PickVersion(map[string]int{"v1": 0}, 0.5); v != "" {
		t.Errorf("no weight: got %q, want \"\"", v)
	}
	if v := PickVersion(map[string]int{"v1": 1, "v2": 1}, 0.999999); v != "v2" {
		t.Errorf("u near 1: got %q, want v2", v)
	}
	if err := CheckWeights(map[string]int{"v1": -1, "v2": 5}); err == nil {
		t.Error("negative weight accepted")
	}
	if err := CheckWeights(map[string]int{"v1": 0}); err == nil {
		t.Error("all-zero weights accepted")
	}
}
