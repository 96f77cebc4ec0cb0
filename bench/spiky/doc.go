// Package spiky is kumi's spiky-load cost report: it replays a trace whose demand swings between
// off-peak and peak (10× by default; sessions with random lifetimes) through the director's real
// second-tier pool logic (director/pool: refill targets, packing, reservations, scale-in by
// draining, session moves), with game servers simulated in process so the trace can run at scale
// in seconds, and reports average idle capacity, peak servers, rejected sessions and placement
// latency. The same trace runs in the same run under two baselines: Agones' own high-density
// pattern (a `sessions` Counter, allocation by Counter priority onto the fullest server with room, a
// FleetAutoscaler Counter buffer synced every 30 s, only empty servers deleted, no session moves;
// agones.go, a stand-in for Agones' controllers) and one session per server. One table and one plot
// of every policy's capacity against demand are written.
//
// The clock is simulated (the pool takes `now` on every call), allocation lead time and drain
// grace are simulated durations, and placement latency is the simulated wait for a free slot.
// Servers and sessions are visited in a fixed order, so the same settings and seed give a
// byte-identical report and plot (the replay's wall time is logged, not reported). The report
// lists the pool settings used next to the director's defaults, since the bench's own defaults
// (Default) differ from them.
package spiky
