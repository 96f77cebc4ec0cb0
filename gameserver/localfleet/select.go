package localfleet

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/kumi-dev/kumi/allocation"
	sdkpb "github.com/kumi-dev/kumi/api/agones/sdk"
	"github.com/kumi-dev/kumi/gameserver/localsdk"
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

// ValidateSpec reports what Agones' validation of a GameServerAllocation would refuse (it answers
// those with HTTP 422 before any selection).
func ValidateSpec(spec allocation.Spec) error {
	var errs []error
	for i, sel := range spec.Selectors {
		switch sel.GameServerState {
		case "", allocation.StateReady, allocation.StateAllocated:
		default:
			errs = append(errs, fmt.Errorf("selectors[%d].gameServerState %q must be Ready or Allocated", i, sel.GameServerState))
		}
		for j, r := range sel.MatchExpressions {
			if err := validRequirement(r); err != nil {
				errs = append(errs, fmt.Errorf("selectors[%d].matchExpressions[%d]: %w", i, j, err))
			}
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
		if a.Capacity != nil && (*a.Capacity < 0 || *a.Capacity > localsdk.ListMaxCapacity) {
			errs = append(errs, fmt.Errorf("lists[%s].capacity %d must be within [0, %d]", k, *a.Capacity, localsdk.ListMaxCapacity))
		}
	}
	if spec.Metadata != nil {
		for k, v := range spec.Metadata.Labels {
			if err := localsdk.ValidateLabel(k, v); err != nil {
				errs = append(errs, fmt.Errorf("metadata.labels: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

func validRequirement(r allocation.LabelRequirement) error {
	if r.Key == "" {
		return errors.New("key must be set")
	}
	switch r.Operator {
	case "In", "NotIn":
		if len(r.Values) == 0 {
			return fmt.Errorf("operator %s needs values", r.Operator)
		}
	case "Exists", "DoesNotExist":
		if len(r.Values) != 0 {
			return fmt.Errorf("operator %s takes no values", r.Operator)
		}
	default:
		return fmt.Errorf("operator %q must be In, NotIn, Exists or DoesNotExist", r.Operator)
	}
	return nil
}

// Matches reports whether gs satisfies the selector (state, labels, counters, lists).
func Matches(sel allocation.Selector, gs *sdkpb.GameServer) bool {
	want := cmp.Or(sel.GameServerState, allocation.StateReady)
	if gs.GetStatus().GetState() != want || gs.GetObjectMeta().GetDeletionTimestamp() != 0 {
		return false
	}
	labels := gs.GetObjectMeta().GetLabels()
	for k, v := range sel.MatchLabels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	for _, r := range sel.MatchExpressions {
		v, ok := labels[r.Key]
		switch r.Operator {
		case "In":
			if !ok || !slices.Contains(r.Values, v) {
				return false
			}
		case "NotIn":
			if ok && slices.Contains(r.Values, v) {
				return false
			}
		case "Exists":
			if !ok {
				return false
			}
		case "DoesNotExist":
			if ok {
				return false
			}
		default:
			return false
		}
	}
	for k, cs := range sel.Counters {
		c, ok := gs.GetStatus().GetCounters()[k]
		if !ok {
			return false
		}
		avail := c.GetCapacity() - c.GetCount()
		if c.GetCount() < cs.MinCount || (cs.MaxCount != 0 && c.GetCount() > cs.MaxCount) ||
			avail < cs.MinAvailable || (cs.MaxAvailable != 0 && avail > cs.MaxAvailable) {
			return false
		}
	}
	for k, ls := range sel.Lists {
		l, ok := gs.GetStatus().GetLists()[k]
		if !ok {
			return false
		}
		avail := l.GetCapacity() - int64(len(l.GetValues()))
		if (ls.ContainsValue != "" && !slices.Contains(l.GetValues(), ls.ContainsValue)) ||
			avail < ls.MinAvailable || (ls.MaxAvailable != 0 && avail > ls.MaxAvailable) {
			return false
		}
	}
	return true
}

// available is the free capacity of a Counter or List, and whether gs has it.
func available(p allocation.Priority, gs *sdkpb.GameServer) (int64, bool) {
	if p.Type == PriorityList {
		l, ok := gs.GetStatus().GetLists()[p.Key]
		return l.GetCapacity() - int64(len(l.GetValues())), ok
	}
	c, ok := gs.GetStatus().GetCounters()[p.Key]
	return c.GetCapacity() - c.GetCount(), ok
}

// comparePriorities orders a before b by the priorities: Ascending puts the least available
// capacity first; servers lacking the key go last.
func comparePriorities(ps []allocation.Priority, a, b *sdkpb.GameServer) int {
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

// Order sorts candidates the way the allocator tries them. Packed: priorities as tie-breakers
// after packing (one node here, so all tie), then oldest first for a stable, packing order.
// Distributed: priorities are the whole ordering, ties in random order.
func Order(spec allocation.Spec, cands []*sdkpb.GameServer, rnd *rand.Rand) {
	if spec.Scheduling == SchedulingDistributed {
		rnd.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
		slices.SortStableFunc(cands, func(a, b *sdkpb.GameServer) int { return comparePriorities(spec.Priorities, a, b) })
		return
	}
	slices.SortStableFunc(cands, func(a, b *sdkpb.GameServer) int {
		return cmp.Or(
			comparePriorities(spec.Priorities, a, b),
			cmp.Compare(a.GetObjectMeta().GetCreationTimestamp(), b.GetObjectMeta().GetCreationTimestamp()),
			cmp.Compare(a.GetObjectMeta().GetName(), b.GetObjectMeta().GetName()),
		)
	})
}

// Apply performs the allocation on gs as Agones' allocator does: state Allocated (also when it
// already was), metadata merged, agones.dev/last-allocated stamped, then Counter actions (capacity,
// lowering a larger count to it, then Increment/Decrement clamped to [0, capacity]) and List actions (capacity with truncation,
// deletes of present values, adds skipping duplicates and truncated at capacity). Problems with
// actions (an undeclared key) never fail the allocation; they are returned as warnings, the
// counterpart of Agones' CounterActionError/ListActionError events.
func Apply(spec allocation.Spec, gs *sdkpb.GameServer, now time.Time) (warnings []string) {
	if gs.ObjectMeta == nil {
		gs.ObjectMeta = &sdkpb.GameServer_ObjectMeta{}
	}
	if gs.Status == nil {
		gs.Status = &sdkpb.GameServer_Status{}
	}
	gs.Status.State = allocation.StateAllocated
	if spec.Metadata != nil {
		if gs.ObjectMeta.Labels == nil {
			gs.ObjectMeta.Labels = map[string]string{}
		}
		if gs.ObjectMeta.Annotations == nil {
			gs.ObjectMeta.Annotations = map[string]string{}
		}
		maps.Copy(gs.ObjectMeta.Labels, spec.Metadata.Labels)
		maps.Copy(gs.ObjectMeta.Annotations, spec.Metadata.Annotations)
	}
	localsdk.StampAllocated(gs, now)
	for _, k := range slices.Sorted(maps.Keys(spec.Counters)) {
		a := spec.Counters[k]
		c, ok := gs.Status.Counters[k]
		if !ok {
			warnings = append(warnings, fmt.Sprintf("CounterActionError: counter %q not found on GameServer %s", k, gs.ObjectMeta.Name))
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
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Lists)) {
		a := spec.Lists[k]
		l, ok := gs.Status.Lists[k]
		if !ok {
			warnings = append(warnings, fmt.Sprintf("ListActionError: list %q not found on GameServer %s", k, gs.ObjectMeta.Name))
			continue
		}
		if a.Capacity != nil {
			if *a.Capacity < 0 || *a.Capacity > localsdk.ListMaxCapacity {
				warnings = append(warnings, fmt.Sprintf("ListActionError: capacity %d for list %q is outside [0, %d]", *a.Capacity, k, localsdk.ListMaxCapacity))
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
	}
	return warnings
}

// ToGameServer converts the SDK's view of a GameServer into the director's.
func ToGameServer(gs *sdkpb.GameServer) allocation.GameServer {
	out := allocation.GameServer{
		Name:        gs.GetObjectMeta().GetName(),
		State:       gs.GetStatus().GetState(),
		Address:     gs.GetStatus().GetAddress(),
		Labels:      maps.Clone(gs.GetObjectMeta().GetLabels()),
		Annotations: maps.Clone(gs.GetObjectMeta().GetAnnotations()),
		Created:     time.Unix(gs.GetObjectMeta().GetCreationTimestamp(), 0),
	}
	for _, p := range gs.GetStatus().GetPorts() {
		out.Ports = append(out.Ports, allocation.Port{Name: p.GetName(), Port: p.GetPort()})
	}
	if cs := gs.GetStatus().GetCounters(); len(cs) > 0 {
		out.Counters = make(map[string]allocation.CounterStatus, len(cs))
		for k, c := range cs {
			out.Counters[k] = allocation.CounterStatus{Count: c.GetCount(), Capacity: c.GetCapacity()}
		}
	}
	if ls := gs.GetStatus().GetLists(); len(ls) > 0 {
		out.Lists = make(map[string]allocation.ListStatus, len(ls))
		for k, l := range ls {
			out.Lists[k] = allocation.ListStatus{Capacity: l.GetCapacity(), Values: slices.Clone(l.GetValues())}
		}
	}
	return out
}

// statusOf is the GameServerAllocation status for an allocated gs.
func statusOf(gs *sdkpb.GameServer, nodeName string) allocation.Status {
	g := ToGameServer(gs)
	st := allocation.Status{
		State:          allocation.AllocationAllocated,
		GameServerName: g.Name,
		Ports:          g.Ports,
		Address:        g.Address,
		NodeName:       nodeName,
		Source:         "local",
		Metadata:       &allocation.MetaPatch{Labels: g.Labels, Annotations: g.Annotations},
		Counters:       g.Counters,
		Lists:          g.Lists,
	}
	for _, a := range gs.GetStatus().GetAddresses() {
		st.Addresses = append(st.Addresses, allocation.Address{Type: a.GetType(), Address: a.GetAddress()})
	}
	return st
}
