// Package sdk is kumi's client of the Agones SDK sidecar API (agones.dev.sdk and its beta
// Counters/Lists service), written from the documented wire contract without importing Agones.
// It speaks gRPC to AGONES_SDK_GRPC_HOST:AGONES_SDK_GRPC_PORT (default localhost:9357), so the same
// code drives the real sidecar in a Kubernetes pod and kumi's local SDK server (gameserver/localsdk)
// on one machine.
package sdk
