package localfleet

import (
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/kumi-dev/kumi/allocation"
	"github.com/kumi-dev/kumi/allocation/selection"
	sdkpb "github.com/kumi-dev/kumi/api/agones/sdk"
)

// The selection itself lives in allocation/selection, shared with the allocation responder that
// kumi's tests put in front of a real kube-apiserver; these adapt it to the SDK's GameServer
// messages the local fleet keeps.

// ValidateSpec reports what Agones' validation of a GameServerAllocation would refuse.
func ValidateSpec(spec allocation.Spec) error { return selection.Validate(spec) }

// Matches reports whether gs satisfies the selector; a server being deleted never does.
func Matches(sel allocation.Selector, gs *sdkpb.GameServer) bool {
	if gs.GetObjectMeta().GetDeletionTimestamp() != 0 {
		return false
	}
	g := ToGameServer(gs)
	return selection.Matches(sel, &g)
}

// Order sorts candidates the way the allocator tries them (selection.Order; one machine, so no
// node packing: Packed is priorities, then oldest first).
func Order(spec allocation.Spec, cands []*sdkpb.GameServer, rnd *rand.Rand) {
	views := make([]*allocation.GameServer, len(cands))
	by := make(map[*allocation.GameServer]*sdkpb.GameServer, len(cands))
	for i, gs := range cands {
		g := ToGameServer(gs)
		views[i] = &g
		by[&g] = gs
	}
	selection.Order(spec, views, nil, rnd)
	for i, v := range views {
		cands[i] = by[v]
	}
}

// Apply performs the allocation on gs (selection.Apply) and returns the action warnings.
func Apply(spec allocation.Spec, gs *sdkpb.GameServer, now time.Time) (warnings []string) {
	if gs.ObjectMeta == nil {
		gs.ObjectMeta = &sdkpb.GameServer_ObjectMeta{}
	}
	if gs.Status == nil {
		gs.Status = &sdkpb.GameServer_Status{}
	}
	g := ToGameServer(gs)
	warnings = selection.Apply(spec, &g, now)
	gs.Status.State = g.State
	gs.ObjectMeta.Labels = g.Labels
	gs.ObjectMeta.Annotations = g.Annotations
	for k, c := range g.Counters {
		gs.Status.Counters[k] = &sdkpb.GameServer_Status_CounterStatus{Count: c.Count, Capacity: c.Capacity}
	}
	for k, l := range g.Lists {
		gs.Status.Lists[k] = &sdkpb.GameServer_Status_ListStatus{Capacity: l.Capacity, Values: l.Values}
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
	for _, a := range gs.GetStatus().GetAddresses() {
		out.Addresses = append(out.Addresses, allocation.Address{Type: a.GetType(), Address: a.GetAddress()})
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
	g.NodeName = nodeName
	return selection.Status(&g, "local")
}
