// Package spiky is kumi's spiky-load cost report: it replays a trace whose demand swings between
// off-peak and peak (10× by default; sessions with random lifetimes) through the director's real
// second-tier pool logic (director/pool: refill targets, packing, reservations, scale-in by
// draining, session moves), with game servers simulated in process so the trace can run at scale
// in seconds, and reports average idle capacity, peak servers, rejected sessions and placement
// latency. The same trace runs under a one-session-per-server policy in the same run as the
// baseline, and a plot of capacity against demand is written next to the report.
//
// The clock is simulated (the pool takes `now` on every call), allocation lead time and drain
// grace are simulated durations, and placement latency is the simulated wait for a free slot.
// Servers and sessions are visited in a fixed order, so the same settings and seed give a
// byte-identical report and plot (the replay's wall time is logged, not reported). The report
// lists the pool settings used next to the director's defaults, since the bench's own defaults
// (Default) differ from them.
package spiky
