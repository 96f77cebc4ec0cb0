package conformance

import (
	"math"
	"slices"
	"testing"

	pb "github.com/kumi-dev/kumi/api/openmatch"
)

func TestQueryFilters(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	a := h.create(t, &pb.SearchFields{DoubleArgs: map[string]float64{"skill": 5}, StringArgs: map[string]string{"mode": "ctf"}, Tags: []string{"x"}})
	b := h.create(t, &pb.SearchFields{DoubleArgs: map[string]float64{"skill": 10}, StringArgs: map[string]string{"mode": "dm"}, Tags: []string{"x", "y"}})
	c := h.create(t, &pb.SearchFields{DoubleArgs: map[string]float64{"skill": math.NaN()}})
	d := h.create(t, nil)
	rng := func(lo, hi float64, ex pb.DoubleRangeFilter_Exclude) *pb.Pool {
		return &pb.Pool{DoubleRangeFilters: []*pb.DoubleRangeFilter{{DoubleArg: "skill", Min: lo, Max: hi, Exclude: ex}}}
	}
	for _, tc := range []struct {
		name string
		pool *pb.Pool
		want []string
	}{
		{"empty pool: every active ticket", &pb.Pool{}, []string{a.Id, b.Id, c.Id, d.Id}},
		{"range inclusive", rng(5, 10, pb.DoubleRangeFilter_NONE), []string{a.Id, b.Id}},
		{"exclude min", rng(5, 10, pb.DoubleRangeFilter_MIN), []string{b.Id}},
		{"exclude max", rng(5, 10, pb.DoubleRangeFilter_MAX), []string{a.Id}},
		{"exclude both", rng(5, 10, pb.DoubleRangeFilter_BOTH), nil},
		{"exclude both, wider", rng(4.5, 10.5, pb.DoubleRangeFilter_BOTH), []string{a.Id, b.Id}},
		{"NaN never matches, missing key never matches", rng(math.Inf(-1), math.Inf(1), pb.DoubleRangeFilter_NONE), []string{a.Id, b.Id}},
		{"string equals", &pb.Pool{StringEqualsFilters: []*pb.StringEqualsFilter{{StringArg: "mode", Value: "ctf"}}}, []string{a.Id}},
		{"string equals, no such value", &pb.Pool{StringEqualsFilters: []*pb.StringEqualsFilter{{StringArg: "mode", Value: "CTF"}}}, nil},
		{"tag present", &pb.Pool{TagPresentFilters: []*pb.TagPresentFilter{{Tag: "y"}}}, []string{b.Id}},
		{"filters are ANDed", &pb.Pool{DoubleRangeFilters: []*pb.DoubleRangeFilter{{DoubleArg: "skill", Min: 0, Max: 7}},
			TagPresentFilters: []*pb.TagPresentFilter{{Tag: "x"}}}, []string{a.Id}},
		{"created before (strict)", &pb.Pool{CreatedBefore: b.CreateTime}, []string{a.Id}},
		{"created after (strict)", &pb.Pool{CreatedAfter: b.CreateTime}, []string{c.Id, d.Id}},
		{"created window", &pb.Pool{CreatedAfter: a.CreateTime, CreatedBefore: c.CreateTime}, []string{b.Id}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := h.ids(t, h.Pool(tc.pool))
			want := sorted(tc.want...)
			if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
}
