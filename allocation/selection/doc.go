// Package selection is kumi's one implementation of how Agones' allocator picks and changes a
// GameServer for a GameServerAllocation: spec validation (what Agones answers with 422), selector
// matching (labels through k8s.io/apimachinery/pkg/labels, state, Counter and List bounds),
// candidate ordering (Packed: servers on nodes with the most Allocated servers first, then
// Counter/List priorities, then oldest; Distributed: priorities, ties random) and the allocation
// itself (state, metadata, last-allocated stamp, clamped Counter and truncated List actions).
//
// The local fleet (gameserver/localfleet) and the test allocation responder in front of a real
// kube-apiserver (internal/kubetest/agonesalloc) both use it, so the director meets the same
// selection whichever backend it talks to.
package selection
