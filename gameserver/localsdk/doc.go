// Package localsdk is a Kubernetes-free server of the Agones SDK gRPC API (agones.dev.sdk and
// agones.dev.sdk.beta), the stand-in for the Agones SDK sidecar plus the part of the Agones
// controller that acts on one GameServer, in the spirit of Agones' `sdk-server --local`.
//
// What it reproduces: the GameServer state machine as the SDK sees it (Ready writes RequestReady
// and a stand-in controller step turns it into Ready; Allocate stamps agones.dev/last-allocated;
// Reserve with its timer back to Ready, 0 meaning indefinitely; Ready/Allocate/Shutdown cancel the
// timer; Shutdown and Unhealthy are terminal and further state requests are ignored), labels and
// annotations under the agones.dev/sdk- prefix with Kubernetes syntax checks (InvalidArgument),
// Counters and Lists with Agones' rules and error texts (keys must be declared, count within
// [0, capacity], list capacity 0..1000, duplicates refused, truncation on a lowered capacity),
// WatchGameServer pushing the GameServer after every change, and missed health pings (more than
// period × failureThreshold after the initial delay) turning the server Unhealthy.
//
// Control-plane actions on the GameServer (the local fleet's allocator) go through Server.Update.
//
// Known differences from the real sidecar (Agones sdk-server v1.56, also run as `sdk-server
// --local`); gameserver/sdk's TestGameServerLifecycle runs against either (KUMI_SDK_ADDR), so code
// that passes it does not depend on them:
//   - Counter and List writes are applied and visible at once; the sidecar batches them and writes
//     the GameServer about once a second, so a watcher sees them later and coalesced.
//   - RequestReady becomes Ready after ReadyDelay by a stand-in controller step; on a cluster the
//     Agones controller does it, after the pod's other containers are up.
//   - Missed health pings turn the server Unhealthy here; on a cluster the controller decides, and
//     then deletes the pod, which this server does not do.
//   - There are no Kubernetes objects (no pod, node or events), no alpha player tracking and no
//     HTTP/REST gateway (the sidecar serves one on its HTTP port, 9358 by default).
package localsdk
