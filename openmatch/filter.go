package openmatch

import (
	"fmt"
	"math"
	"slices"

	pb "github.com/kumi-dev/kumi/api/openmatch"
)

// filter is a Pool compiled for matching: every filter ANDed (reference §8).
type filter struct {
	dbl           []dblFilter
	str           []strArg
	tags          []string
	before, after int64 // unix nanos; valid when hasBefore / hasAfter
	hasBefore     bool
	hasAfter      bool
}

type dblFilter struct {
	key    string
	lo, hi float64
	ex     pb.DoubleRangeFilter_Exclude
}

// compilePool validates p and compiles it. Errors name the offending filter so the caller can fix
// it; they become InvalidArgument.
func compilePool(p *pb.Pool) (*filter, error) {
	if p == nil {
		return nil, fmt.Errorf(".pool is required")
	}
	f := &filter{}
	for i, d := range p.DoubleRangeFilters {
		if d == nil {
			return nil, fmt.Errorf("pool %q: double_range_filters[%d] is null", p.Name, i)
		}
		if d.DoubleArg == "" {
			return nil, fmt.Errorf("pool %q: double_range_filters[%d].double_arg is empty", p.Name, i)
		}
		if math.IsNaN(d.Min) || math.IsNaN(d.Max) {
			return nil, fmt.Errorf("pool %q: double_range_filters[%d] (%q) has a NaN bound", p.Name, i, d.DoubleArg)
		}
		if d.Min > d.Max {
			return nil, fmt.Errorf("pool %q: double_range_filters[%d] (%q) has min %v > max %v", p.Name, i, d.DoubleArg, d.Min, d.Max)
		}
		if _, ok := pb.DoubleRangeFilter_Exclude_name[int32(d.Exclude)]; !ok {
			return nil, fmt.Errorf("pool %q: double_range_filters[%d] (%q) has unknown exclude value %d (want NONE, MIN, MAX or BOTH)", p.Name, i, d.DoubleArg, d.Exclude)
		}
		f.dbl = append(f.dbl, dblFilter{d.DoubleArg, d.Min, d.Max, d.Exclude})
	}
	for i, s := range p.StringEqualsFilters {
		if s == nil || s.StringArg == "" {
			return nil, fmt.Errorf("pool %q: string_equals_filters[%d].string_arg is empty", p.Name, i)
		}
		f.str = append(f.str, strArg{s.StringArg, s.Value})
	}
	for i, t := range p.TagPresentFilters {
		if t == nil || t.Tag == "" {
			return nil, fmt.Errorf("pool %q: tag_present_filters[%d].tag is empty", p.Name, i)
		}
		f.tags = append(f.tags, t.Tag)
	}
	if p.CreatedBefore != nil {
		if err := p.CreatedBefore.CheckValid(); err != nil {
			return nil, fmt.Errorf("pool %q: invalid created_before: %w", p.Name, err)
		}
		f.before, f.hasBefore = p.CreatedBefore.AsTime().UnixNano(), true
	}
	if p.CreatedAfter != nil {
		if err := p.CreatedAfter.CheckValid(); err != nil {
			return nil, fmt.Errorf("pool %q: invalid created_after: %w", p.Name, err)
		}
		f.after, f.hasAfter = p.CreatedAfter.AsTime().UnixNano(), true
	}
	return f, nil
}

func (f *filter) match(created int64, ix *searchIndex) bool {
	if f.hasBefore && created >= f.before {
		return false
	}
	if f.hasAfter && created <= f.after {
		return false
	}
dbl:
	for i := range f.dbl {
		d := &f.dbl[i]
		for j := range ix.dbl {
			if ix.dbl[j].key == d.key {
				if within(ix.dbl[j].v, d.lo, d.hi, d.ex) {
					continue dbl
				}
				return false
			}
		}
		return false
	}
str:
	for i := range f.str {
		for j := range ix.str {
			if ix.str[j].key == f.str[i].key {
				if ix.str[j].v == f.str[i].v {
					continue str
				}
				return false
			}
		}
		return false
	}
	for _, t := range f.tags {
		if !slices.Contains(ix.tags, t) {
			return false
		}
	}
	return true
}
