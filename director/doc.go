// Package director places Open Match matches on shared game servers.
//
// For each configured match profile it fetches matches back to back (FetchMatches; backoff only on
// errors), places every match at once from the second-tier pool (director/pool: servers allocated in
// advance, packed fullest first, rendezvous groups kept in one session), mints one server token per
// player and assigns the tickets in one AssignTickets call per batch; a match that cannot be placed
// is released at once (ReleaseTickets). In the background it refills the pool through its
// allocation backends (Agones on Kubernetes, or the local fleet) so that placement never waits on an
// allocation, drains the least-loaded servers when free capacity stays high, and answers the game
// servers' control API (kumi.control.v1.Director: load reports, session moves).
//
// On start it rebuilds the pool from the backends (servers labelled kumi.dev/pool=<pool> and their
// sessions counters) and waits briefly for those servers' reports, which restore live sessions and
// the group→session mapping, before it places anything. One director runs at a time: a local flock
// (LockFile) or, on Kubernetes, a Lease (director/agones LeadWith, wired by `kumi director`).
//
// Dedicated servers (dedicated.go): ServeDedicated serves one uploaded game (package builds) whose
// servers hold one match each. Each build version keeps a few servers allocated in advance
// (replaced as soon as a match takes one), each match of the game's profile takes one, and the
// version is picked by traffic weights (builds.PickVersion), which SetDedicatedWeights changes for
// the next match: a canary at 1 %, then 100 %, or an instant rollback.
//
// Entry: Start(ctx, log, cfg, reg, backends...) returns once the control API (and the admin API)
// listen; ControlAddr/AdminAddr give the bound addresses; Wait blocks until everything stopped.
package director
