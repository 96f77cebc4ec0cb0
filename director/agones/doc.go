// Package agones is the director's allocation.Backend on Kubernetes + Agones: it creates
// allocation.agones.dev/v1 GameServerAllocations through the Kubernetes API (client-go's dynamic
// client, JSON as Agones spells it, no Agones import), lists and watches agones.dev/v1 GameServers
// with a dynamic informer, and runs the director's Kubernetes Lease leader election.
//
// # RBAC
//
// The director's ServiceAccount needs, in the game servers' namespace:
//
//	apiVersion: rbac.authorization.k8s.io/v1
//	kind: Role
//	metadata:
//	  name: kumi-director
//	rules:
//	- apiGroups: ["allocation.agones.dev"]
//	  resources: ["gameserverallocations"]
//	  verbs: ["create"]
//	- apiGroups: ["agones.dev"]
//	  resources: ["gameservers"]
//	  verbs: ["get", "list", "watch"]
//	- apiGroups: ["coordination.k8s.io"]   # leader election (Lease named by --lease-name)
//	  resources: ["leases"]
//	  verbs: ["get", "create", "update"]
//	- apiGroups: [""]                      # leader election events
//	  resources: ["events"]
//	  verbs: ["create", "patch"]
//
// bound to it with a RoleBinding. GameServerAllocation is served by Agones' aggregated API
// (APIService v1.allocation.agones.dev) and only has the create verb; the 201 response carries the
// result, state Allocated or UnAllocated, so no get/list on allocations is needed.
package agones
