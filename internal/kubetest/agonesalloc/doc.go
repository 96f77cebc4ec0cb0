// Package agonesalloc is a test-only stand-in for Agones' allocation service in front of a real
// kube-apiserver: a reverse proxy that serves
//
//	POST /apis/allocation.agones.dev/v1/namespaces/{ns}/gameserverallocations
//
// by selecting and updating real agones.dev/v1 GameServer objects, and forwards every other
// request to the API server unchanged. Agones serves GameServerAllocation from an aggregated API
// server that cannot be installed here; this is the thin part of it the director meets.
//
// What it reproduces of Agones (pkg/gameserverallocations/allocator.go), because the director
// must cope with it:
//   - batching: requests queue and are answered in batches; after a batch (or when idle) the
//     loop sleeps Config.BatchWait (Agones' ALLOCATION_BATCH_WAIT_TIME, 500 ms by default), so a
//     sequential caller waits about that long per allocation;
//   - within one batch a server already chosen for an earlier request is out of the candidate
//     list, so concurrent re-allocations of a few high-density servers come back UnAllocated
//     although they have free capacity (Agones issue #4142);
//   - selection, ordering and the allocation itself are allocation/selection, the same code as
//     the local fleet; the chosen GameServer is written with one Update carrying its
//     resourceVersion, so a concurrent writer makes that allocation UnAllocated, never a lost
//     update;
//   - responses are HTTP 201 with the GameServerAllocation and status.state Allocated or
//     UnAllocated; an invalid spec is a 422 Status (reason Invalid).
//
// What it does not: multi-cluster allocation, the allocator gRPC service, player filters,
// informer staleness (each batch lists the GameServers afresh).
//
// Security: it listens on 127.0.0.1 only and requires the random bearer token of RESTConfig;
// forwarded requests are sent with the API server credentials it was given, so whoever holds the
// token acts with those — acceptable for a test-scoped process that stops with the test.
package agonesalloc
