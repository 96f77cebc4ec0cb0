package pool

import (
	"net"
	"strconv"

	"github.com/kumi-dev/kumi/allocation"
)

// AllocationSpec is the high-density GameServerAllocation the pool refills with (agones.md (e)):
// first an Allocated kumi server that still has a free `sessions` slot and belongs to no pool
// (a server allocated outside a director, adopted rather than left idle), then a Ready one; fullest
// first (Counter sessions, Ascending) under Packed scheduling; the sessions counter is incremented
// so the allocation's own result shows the claim, and the server is labelled kumi.dev/pool=pool.
//
// Servers already in this pool are excluded from the first selector on purpose: the director packs
// its own servers itself, and a re-allocation of one of them would add no capacity, so a refill
// that matched them would never grow the pool.
func AllocationSpec(pool string, serverLabels map[string]string) allocation.Spec {
	increment, one := "Increment", int64(1)
	sessions := map[string]allocation.CounterSelector{allocation.CounterSessions: {MinAvailable: 1}}
	lbl := make(map[string]string, len(serverLabels))
	for k, v := range serverLabels {
		lbl[k] = v
	}
	return allocation.Spec{
		Selectors: []allocation.Selector{
			{
				GameServerState:  allocation.StateAllocated,
				MatchLabels:      lbl,
				MatchExpressions: []allocation.LabelRequirement{{Key: allocation.LabelPool, Operator: "DoesNotExist"}},
				Counters:         sessions,
			},
			{GameServerState: allocation.StateReady, MatchLabels: lbl, Counters: sessions},
		},
		Scheduling: "Packed",
		Priorities: []allocation.Priority{{Type: "Counter", Key: allocation.CounterSessions, Order: "Ascending"}},
		Metadata:   &allocation.MetaPatch{Labels: map[string]string{allocation.LabelPool: pool}},
		Counters:   map[string]allocation.CounterAction{allocation.CounterSessions: {Action: &increment, Amount: &one}},
	}
}

// ServerFromAllocation turns a successful allocation into the pool's view of the server: address
// from status.address and the port named portName (the first port when empty or absent), capacity
// and used slots from the sessions counter after the allocation's increment (which is the claim,
// not a session).
func ServerFromAllocation(backend, portName string, st allocation.Status) ServerInfo {
	info := ServerInfo{Name: st.GameServerName, Backend: backend, Address: address(st.Address, st.Ports, portName)}
	if c, ok := st.Counters[allocation.CounterSessions]; ok {
		info.Capacity = int(c.Capacity)
		info.Used = max(int(c.Count)-1, 0)
	}
	return info
}

// ServerFromGameServer turns a listed or watched GameServer into the pool's view.
func ServerFromGameServer(backend, portName string, gs allocation.GameServer) ServerInfo {
	info := ServerInfo{Name: gs.Name, Backend: backend, Address: address(gs.Address, gs.Ports, portName)}
	if c, ok := gs.Counters[allocation.CounterSessions]; ok {
		info.Capacity = int(c.Capacity)
		info.Used = int(c.Count)
	}
	info.Draining = gs.Labels[allocation.LabelDrain] == "true" || gs.Annotations[allocation.LabelDrain] == "true"
	return info
}

func address(host string, ports []allocation.Port, name string) string {
	if host == "" || len(ports) == 0 {
		return ""
	}
	p := ports[0]
	for _, q := range ports {
		if q.Name == name {
			p = q
			break
		}
	}
	return joinHostPort(host, p.Port)
}

func joinHostPort(host string, port int32) string {
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}
