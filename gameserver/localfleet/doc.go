// Package localfleet is the one-machine stand-in for an Agones Fleet with a Buffer
// FleetAutoscaler and the Agones allocator, so the director can run with no Kubernetes. It
// implements allocation.Backend.
//
// It reproduces: game servers as real processes (by default `kumi gameserver`) on 127.0.0.1, each
// with its own local SDK endpoint (gameserver/localsdk, passed as AGONES_SDK_GRPC_HOST/PORT), a
// GameServer name, address 127.0.0.1 and a free UDP port in status.ports (like a Passthrough port:
// the process reads it from GetGameServer), labels agones.dev/fleet plus the template's, and the
// Counter `sessions`; the GameServer life cycle (Scheduled → RequestReady → Ready → Allocated,
// Shutdown and Unhealthy deleted and replaced; a process that exits is Unhealthy, as a container
// exiting after Ready is); a Buffer policy keeping bufferSize Ready servers over the Allocated
// ones within [minReplicas, maxReplicas], scale-down never touching Allocated or Reserved servers;
// and GameServerAllocation semantics: ordered selectors on state Ready/Allocated with
// matchLabels/matchExpressions and Counter/List bounds, Packed/Distributed, Counter/List
// priorities, metadata, agones.dev/last-allocated, Counter/List actions with clamping and
// truncation, UnAllocated (nil error) when nothing matches, and an optional allocation latency to
// stand for Agones' batching.
//
// It does not reproduce: nodes and node packing (one machine), the allocator's eventually
// consistent cache and Contention (selection reads each server's state directly and applies the
// allocation atomically), fleet rolling updates, Counter/List autoscaler policies, port ranges or
// several ports per server, player tracking, pod restarts of a crashed container (a crash always
// means a new server), and the ~1 s batching of SDK Counter writes.
package localfleet
