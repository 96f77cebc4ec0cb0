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
// What it does not: no Kubernetes objects, no ~1 s batching of Counter/List writes (changes are
// visible at once), no alpha player tracking, no REST gateway. Control-plane actions on the
// GameServer (the local fleet's allocator) go through Server.Update.
package localsdk
