package selection

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/kumi-dev/kumi/allocation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Spec values Agones accepts.
const (
	SchedulingPacked      = "Packed"
	SchedulingDistributed = "Distributed"
	PriorityCounter       = "Counter"
	PriorityList          = "List"
	OrderAscending        = "Ascending"
	OrderDescending       = "Descending"
	ActionIncrement       = "Increment"
	ActionDecrement       = "Decrement"
)

// ListMaxCapacity is the largest capacity Agones allows a List.
const ListMaxCapacity = 1000

// AnnotationLastAllocated is stamped (RFC 3339) on every allocation, re-allocation included.
const AnnotationLastAllocated = "agones.dev/last-allocated"

// Validate reports what Agones' validation of a GameServerAllocation would refuse (it answers
// those with HTTP 422 before any selection).
func Validate(spec allocation.Spec) error {
	var errs []error
	for i, sel := range spec.Selectors {
		switch sel.GameServerState {
		case "", allocation.StateReady, allocation.StateAllocated:
		default:
			errs = append(errs, fmt.Errorf("selectors[%d].gameServerState %q must be Ready or Allocated", i, sel.GameServerState))
		}
		if _, err := LabelSelector(sel); err != nil {
			errs = append(errs, fmt.Errorf("selectors[%d]: %w", i, err))
		}
		for k, c := range sel.Counters {
			if c.MinCount < 0 || c.MaxCount < 0 || c.MinAvailable < 0 || c.MaxAvailable < 0 {
				errs = append(errs, fmt.Errorf("selectors[%d].counters[%s]: bounds must not be negative", i, k))
			}
			if c.MaxCount != 0 && c.MaxCount < c.MinCount {
				errs = append(errs, fmt.Errorf("selectors[%d].counters[%s]: maxCount %d below minCount %d", i, k, c.MaxCount, c.MinCount))
			}
			if c.MaxAvailable != 0 && c.MaxAvailable < c.MinAvailable {
				errs = append(errs, fmt.Errorf("selectors[%d].counters[%s]: maxAvailable %d below minAvailable %d", i, k, c.MaxAvailable, c.MinAvailable))
			}
		}
		for k, l := range sel.Lists {
			if l.MinAvailable < 0 || l.MaxAvailable < 0 {
				errs = append(errs, fmt.Errorf("selectors[%d].lists[%s]: bounds must not be negative", i, k))
			}
			if l.MaxAvailable != 0 && l.MaxAvailable < l.MinAvailable {
				errs = append(errs, fmt.Errorf("selectors[%d].lists[%s]: maxAvailable %d below minAvailable %d", i, k, l.MaxAvailable, l.MinAvailable))
			}
		}
	}
	switch spec.Scheduling {
	case "", SchedulingPacked, SchedulingDistributed:
	default:
		errs = append(errs, fmt.Errorf("scheduling %q must be Packed or Distributed", spec.Scheduling))
	}
	for i, p := range spec.Priorities {
		if p.Type != PriorityCounter && p.Type != PriorityList {
			errs = append(errs, fmt.Errorf("priorities[%d].type %q must be Counter or List", i, p.Type))
		}
		if p.Key == "" {
			errs = append(errs, fmt.Errorf("priorities[%d].key must be set", i))
		}
		if p.Order != "" && p.Order != OrderAscending && p.Order != OrderDescending {
			errs = append(errs, fmt.Errorf("priorities[%d].order %q must be Ascending or Descending", i, p.Order))
		}
	}
	for k, a := range spec.Counters {
		if a.Action != nil {
			if *a.Action != ActionIncrement && *a.Action != ActionDecrement {
				errs = append(errs, fmt.Errorf("counters[%s].action %q must be Increment or Decrement", k, *a.Action))
			}
			if a.Amount == nil || *a.Amount <= 0 {
				errs = append(errs, fmt.Errorf("counters[%s].amount must be set and positive with an action", k))
			}
		} else if a.Amount != nil {
			errs = append(errs, fmt.Errorf("counters[%s].amount needs an action (Increment or Decrement)", k))
		}
		if a.Capacity != nil && *a.Capacity < 0 {
			errs = append(errs, fmt.Errorf("counters[%s].capacity %d must not be negative", k, *a.Capacity))
		}
	}
	for k, a := range spec.Lists {
		if a.Capacity != nil && (*a.Capacity < 0 || *a.Capacity > ListMaxCapacity) {
			errs = append(errs, fmt.Errorf("lists[%s].capacity %d must be within [0, %d]", k, *a.Capacity, ListMaxCapacity))
		}
	}
	if spec.Metadata != nil {
		for _, k := range slices.Sorted(maps.Keys(spec.Metadata.Labels)) {
			for _, msg := range validation.IsQualifiedName(k) {
				errs = append(errs, fmt.Errorf("metadata.labels: key %q: %s", k, msg))
			}
			for _, msg := range validation.IsValidLabelValue(spec.Metadata.Labels[k]) {
				errs = append(errs, fmt.Errorf("metadata.labels: value of %q: %s", k, msg))
			}
		}
	}
	return errors.Join(errs...)
}

// LabelSelector is the label part of sel (matchLabels and matchExpressions) as a
// k8s.io/apimachinery labels.Selector; an empty one matches everything.
func LabelSelector(sel allocation.Selector) (labels.Selector, error) {
	ls := &metav1.LabelSelector{MatchLabels: sel.MatchLabels}
	for _, r := range sel.MatchExpressions {
		ls.MatchExpressions = append(ls.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: r.Key, Operator: metav1.LabelSelectorOperator(r.Operator), Values: r.Values,
		})
	}
	s, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return nil, fmt.Errorf("label selector: %w", err)
	}
	return s, nil
}

// Matches reports whether gs satisfies the selector (state, labels, counters, lists). An
// invalid label selector matches nothing (Validate reports it).
func Matches(sel allocation.Selector, gs *allocation.GameServer) bool {
	if gs.State != cmp.Or(sel.GameServerState, allocation.StateReady) {
		return false
	}
	if len(sel.MatchLabels) > 0 || len(sel.MatchExpressions) > 0 {
		ls, err := LabelSelector(sel)
		if err != nil || !ls.Matches(labels.Set(gs.Labels)) {
			return false
		}
	}
	for k, cs := range sel.Counters {
		c, ok := gs.Counters[k]
		if !ok {
			return false
		}
		avail := c.Capacity - c.Count
		if c.Count < cs.MinCount || (cs.MaxCount != 0 && c.Count > cs.MaxCount) ||
			avail < cs.MinAvailable || (cs.MaxAvailable != 0 && avail > cs.MaxAvailable) {
			return false
		}
	}
	for k, ls := range sel.Lists {
		l, ok := gs.Lists[k]
		if !ok {
			return false
		}
		avail := l.Capacity - int64(len(l.Values))
		if (ls.ContainsValue != "" && !slices.Contains(l.Values, ls.ContainsValue)) ||
			avail < ls.MinAvailable || (ls.MaxAvailable != 0 && avail > ls.MaxAvailable) {
			return false
		}
	}
	return true
}

// available is the free capacity of a Counter or List, and whether gs has it.
func available(p allocation.Priority, gs *allocation.GameServer) (int64, bool) {
	if p.Type == PriorityList {
		l, ok := gs.Lists[p.Key]
		return l.Capacity - int64(len(l.Values)), ok
	}
	c, ok := gs.Counters[p.Key]
	return c.Capacity - c.Count, ok
}

// comparePriorities orders a before b by the priorities: Ascending puts the least available
// capacity first; servers lacking the key go last.
func comparePriorities(ps []allocation.Priority, a, b *allocation.GameServer) int {
	for _, p := range ps {
		av, aok := available(p, a)
		bv, bok := available(p, b)
		switch {
		case aok && !bok:
			return -1
		case !aok && bok:
			return 1
		case !aok && !bok:
			continue
		}
		c := cmp.Compare(av, bv)
		if p.Order == OrderDescending {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

// Order sorts candidates the way Agones' allocator tries them. Packed: servers on nodes holding
// more Allocated servers first (bin-packing nodes), then the priorities as tie-breakers, then
// oldest first. Distributed: the priorities are the whole ordering, ties in random order.
// nodeAllocated counts Allocated servers per node over the whole fleet (nil: no node packing,
// as for the local fleet where every server shares one machine).
func Order(spec allocation.Spec, cands []*allocation.GameServer, nodeAllocated map[string]int, rnd *rand.Rand) {
	if spec.Scheduling == SchedulingDistributed {
		rnd.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
		slices.SortStableFunc(cands, func(a, b *allocation.GameServer) int { return comparePriorities(spec.Priorities, a, b) })
		return
	}
	slices.SortStableFunc(cands, func(a, b *allocation.GameServer) int {
		return cmp.Or(
			-cmp.Compare(nodeAllocated[a.NodeName], nodeAllocated[b.NodeName]),
			comparePriorities(spec.Priorities, a, b),
			a.Created.Compare(b.Created),
			cmp.Compare(a.Name, b.Name),
		)
	})
}

// NodeAllocated counts the Allocated servers per node, Order's packing input.
func NodeAllocated(servers []*allocation.GameServer) map[string]int {
	m := map[string]int{}
	for _, gs := range servers {
		if gs.State == allocation.StateAllocated {
			m[gs.NodeName]++
		}
	}
	return m
}

// Candidates returns, for the first selector (in order) that matches any server, its matching
// servers in the order to try them; nil when nothing matches. A spec without selectors selects
// Ready servers.
func Candidates(spec allocation.Spec, servers []*allocation.GameServer, rnd *rand.Rand) []*allocation.GameServer {
	selectors := spec.Selectors
	if len(selectors) == 0 {
		selectors = []allocation.Selector{{}}
	}
	var nodes map[string]int
	for _, sel := range selectors {
		var matched []*allocation.GameServer
		for _, gs := range servers {
			if Matches(sel, gs) {
				matched = append(matched, gs)
			}
		}
		if len(matched) == 0 {
			continue
		}
		if nodes == nil {
			nodes = NodeAllocated(servers)
		}
		Order(spec, matched, nodes, rnd)
		return matched
	}
	return nil
}

// Apply performs the allocation on gs as Agones' allocator does: state Allocated (also when it
// already was), metadata merged, agones.dev/last-allocated stamped, then Counter actions
// (capacity, lowering a larger count to it, then Increment/Decrement clamped to [0, capacity])
// and List actions (capacity with truncation, deletes of present values, adds skipping
// duplicates and truncated at capacity). Problems with actions (an undeclared key) never fail the
// allocation; they are returned as warnings, the counterpart of Agones' CounterActionError /
// ListActionError events. gs's maps are replaced, never mutated, so callers may share them.
func Apply(spec allocation.Spec, gs *allocation.GameServer, now time.Time) (warnings []string) {
	gs.State = allocation.StateAllocated
	gs.Labels = maps.Clone(gs.Labels)
	gs.Annotations = maps.Clone(gs.Annotations)
	if gs.Labels == nil {
		gs.Labels = map[string]string{}
	}
	if gs.Annotations == nil {
		gs.Annotations = map[string]string{}
	}
	if spec.Metadata != nil {
		maps.Copy(gs.Labels, spec.Metadata.Labels)
		maps.Copy(gs.Annotations, spec.Metadata.Annotations)
	}
	gs.Annotations[AnnotationLastAllocated] = now.UTC().Format(time.RFC3339Nano)
	gs.Counters = maps.Clone(gs.Counters)
	for _, k := range slices.Sorted(maps.Keys(spec.Counters)) {
		a := spec.Counters[k]
		c, ok := gs.Counters[k]
		if !ok {
			warnings = append(warnings, fmt.Sprintf("CounterActionError: counter %q not found on GameServer %s", k, gs.Name))
			continue
		}
		if a.Capacity != nil {
			if *a.Capacity < 0 {
				warnings = append(warnings, fmt.Sprintf("CounterActionError: capacity %d for counter %q is negative", *a.Capacity, k))
			} else {
				c.Capacity = *a.Capacity
				c.Count = min(c.Count, c.Capacity) // as Agones' UpdateCounterCapacity
			}
		}
		if a.Action != nil && a.Amount != nil {
			switch *a.Action {
			case ActionIncrement:
				c.Count = max(min(c.Count+*a.Amount, c.Capacity), 0)
			case ActionDecrement:
				c.Count = max(min(c.Count-*a.Amount, c.Capacity), 0)
			default:
				warnings = append(warnings, fmt.Sprintf("CounterActionError: action %q for counter %q is not Increment or Decrement", *a.Action, k))
			}
		}
		gs.Counters[k] = c
	}
	gs.Lists = maps.Clone(gs.Lists)
	for _, k := range slices.Sorted(maps.Keys(spec.Lists)) {
		a := spec.Lists[k]
		l, ok := gs.Lists[k]
		if !ok {
			warnings = append(warnings, fmt.Sprintf("ListActionError: list %q not found on GameServer %s", k, gs.Name))
			continue
		}
		l.Values = slices.Clone(l.Values)
		if a.Capacity != nil {
			if *a.Capacity < 0 || *a.Capacity > ListMaxCapacity {
				warnings = append(warnings, fmt.Sprintf("ListActionError: capacity %d for list %q is outside [0, %d]", *a.Capacity, k, ListMaxCapacity))
			} else {
				l.Capacity = *a.Capacity
				if int64(len(l.Values)) > l.Capacity {
					l.Values = l.Values[:l.Capacity]
				}
			}
		}
		l.Values = slices.DeleteFunc(l.Values, func(v string) bool { return slices.Contains(a.DeleteValues, v) })
		for _, v := range a.AddValues {
			if int64(len(l.Values)) >= l.Capacity {
				break // silently truncated, as in Agones
			}
			if !slices.Contains(l.Values, v) {
				l.Values = append(l.Values, v)
			}
		}
		gs.Lists[k] = l
	}
	return warnings
}

// Status is the GameServerAllocation status for an allocated gs; source is "local" for the
// cluster's own allocator.
func Status(gs *allocation.GameServer, source string) allocation.Status {
	return allocation.Status{
		State:          allocation.AllocationAllocated,
		GameServerName: gs.Name,
		Ports:          slices.Clone(gs.Ports),
		Address:        gs.Address,
		Addresses:      slices.Clone(gs.Addresses),
		NodeName:       gs.NodeName,
		Source:         source,
		Metadata:       &allocation.MetaPatch{Labels: maps.Clone(gs.Labels), Annotations: maps.Clone(gs.Annotations)},
		Counters:       maps.Clone(gs.Counters),
		Lists:          maps.Clone(gs.Lists),
	}
}
