// Package pool is the director's second-tier pool as pure, clock-free logic: which game servers are
// in the pool and how much room they have, where a match's session goes, which servers to drain on
// scale-in, where a moving session lands, and how traffic is split across backends by weight.
//
// It does no I/O and reads no clock: every method takes now, so the director drives it from real
// time and tests drive it from a table. A Pool is safe for concurrent use.
//
// Accounting: a server's used slots are its sessions (reported live ones plus reservations for
// sessions placed but not yet joined, which expire after ReservationTTL) — or, before its first
// report, the sessions counter the allocation backend showed. Only accepting servers count towards
// free slots; a server that reports full, draining or stopping, or that the director asked to drain,
// stops taking sessions at once.
//
// Late members of a rendezvous group join its live session even while that session's server
// drains (the game server admits them during its drain grace and moves the session with every
// member), so a group is split only when its session is full (the next session of the group then
// takes its late arrivals).
//
// Session ids of rendezvous sessions carry a digest of their group ("<xid>-g<16 hex>"), so a
// restarted director rebuilds the group→session mapping from the servers' reports alone.
//
// Files by concern: pool.go (config, types, snapshot), weights.go (traffic weights and the weighted
// choice), registry.go (servers joining and leaving), reports.go (load reports and expiry),
// placement.go (new sessions and late members), moves.go (sessions leaving a draining server),
// scalein.go (pool target, refill deficit and scale-in).
package pool
