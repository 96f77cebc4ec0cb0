// Package allocation is the contract between the director and the places game servers come from:
// Agones on Kubernetes (a GameServerAllocation through the Kubernetes API) or kumi's local fleet of
// game-server processes. Its types mirror the JSON of allocation.agones.dev/v1 GameServerAllocation
// and agones.dev/v1 GameServer (field names as Agones spells them), so the Agones backend can send
// them as they are and the local fleet reproduces the same selection semantics.
package allocation
