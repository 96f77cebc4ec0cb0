package spiky

import (
	"context"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/kumi-dev/kumi/internal/stats"
)

// agonesServer is one GameServer of the Agones high-density pattern: a `sessions` Counter of
// count/capacity. It is Ready while the count is 0 (the game server calls SDK Ready when its last
// session ends) and Allocated otherwise.
type agonesServer struct {
	name     string
	count    int
	capacity int
}

// agonesPick is the GameServerAllocation of the Counters pattern: selectors Allocated then Ready
// with `counters.sessions.minAvailable: 1`, priorities `[{Counter, sessions, Ascending}]`, so the
// server with the least available capacity (the fullest with room) wins. An Allocated server
// (count > 0) always has less available than a Ready one of the same capacity, so one ordering by
// available capacity covers both selectors. Ties go to the oldest server (lowest index), which keeps
// the replay deterministic; Agones' node packing, the tie-breaker before priorities under
// `scheduling: Packed`, has no counterpart here (no nodes are simulated). It returns -1 when no
// server has room (Agones answers 429 / ResourceExhausted).
func agonesPick(servers []*agonesServer) int {
	best, bestAvail := -1, 0
	for i, s := range servers {
		avail := s.capacity - s.count
		if avail < 1 {
			continue
		}
		if best < 0 || avail < bestAvail {
			best, bestAvail = i, avail
		}
	}
	return best
}

// agonesSync is one FleetAutoscaler sync with a Counter policy {key: sessions, bufferSize: buffer}:
// it keeps buffer units of available Counter capacity (capacity − count, summed over the fleet)
// by changing the replica count. Servers still starting (pending) count at the template capacity,
// as their replicas are already requested. It returns how many servers to add, and the indexes of
// the servers to delete: a scale-down deletes only Ready (empty) GameServers — Allocated ones are
// never deleted and their sessions never move — newest first, and only while the buffer still holds
// without them.
func agonesSync(servers []*agonesServer, pending, capacity, buffer int) (add int, remove []int) {
	avail := pending * capacity
	for _, s := range servers {
		avail += s.capacity - s.count
	}
	if avail < buffer {
		return (buffer - avail + capacity - 1) / capacity, nil
	}
	for i := len(servers) - 1; i >= 0; i-- {
		s := servers[i]
		if s.count == 0 && avail-s.capacity >= buffer {
			avail -= s.capacity
			remove = append(remove, i)
		}
	}
	return 0, remove
}

// simulateAgones replays the trace under Agones' own high-density pattern (see agonesPick and
// agonesSync). It is a stand-in for Agones' allocator and FleetAutoscaler controllers, which cannot
// run here, written from their documented behaviour; it is generous to Agones in two ways: the
// allocator sees every Counter change at once (the real cache lags about 1 s behind SDK updates),
// and a deleted server's capacity is gone in the same second.
func simulateAgones(ctx context.Context, cfg Config, trace []arrival) (Result, error) {
	start := time.Now()
	res := Result{Policy: "Agones counters (packed, buffer)"}
	type agSession struct {
		arrived, ends time.Duration
		server        *agonesServer
	}
	var (
		servers   []*agonesServer
		waiting   []*agSession
		live      []*agSession // sorted by end time
		inflight  []time.Duration
		nextSrv   int
		latencies []time.Duration
		next      int
	)
	for t := time.Duration(0); t < cfg.Duration; t += time.Second {
		if t%time.Minute == 0 {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			if cfg.Progress != nil {
				cfg.Progress(res.Policy, t)
			}
		}
		// 1. Arrivals of this second.
		for next < len(trace) && trace[next].at < t+time.Second {
			a := trace[next]
			next++
			waiting = append(waiting, &agSession{arrived: a.at, ends: a.at + a.lifetime})
			res.Sessions++
		}
		// 2. Sessions ending: the game server decrements its Counter.
		for len(live) > 0 && live[0].ends <= t {
			live[0].server.count--
			live = live[1:]
		}
		// 3. Servers becoming Ready.
		kept := inflight[:0]
		for _, ready := range inflight {
			if ready > t {
				kept = append(kept, ready)
				continue
			}
			nextSrv++
			servers = append(servers, &agonesServer{name: "gs-" + strconv.Itoa(nextSrv), capacity: cfg.Capacity})
		}
		inflight = kept
		// 4. Allocation, oldest request first; a request that finds no room is retried next second.
		stillWaiting := waiting[:0]
		for _, s := range waiting {
			i := agonesPick(servers)
			if i < 0 {
				if t-s.arrived > cfg.RejectAfter {
					res.Rejected++
					continue
				}
				stillWaiting = append(stillWaiting, s)
				continue
			}
			s.server = servers[i]
			s.server.count++
			latencies = append(latencies, max(0, t-s.arrived))
			if s.ends <= t {
				s.ends = t + time.Second
			}
			at, _ := slices.BinarySearchFunc(live, s.ends, func(a *agSession, e time.Duration) int { return cmpDur(a.ends, e) })
			live = slices.Insert(live, at, s)
		}
		waiting = stillWaiting
		// 5. FleetAutoscaler sync.
		if t%cfg.AgonesSync == 0 {
			add, remove := agonesSync(servers, len(inflight), cfg.Capacity, cfg.AgonesBuffer)
			for range add {
				inflight = append(inflight, t+cfg.LeadTime)
			}
			for _, i := range remove { // descending indexes: deleting one leaves the others valid
				servers = slices.Delete(servers, i, i+1)
				res.Drains++
			}
		}
		// 6. Record.
		smp := Sample{T: t, Demand: len(live) + len(waiting), Servers: len(servers)}
		for _, s := range servers {
			smp.Capacity += s.capacity
		}
		res.Series = append(res.Series, smp)
		res.ServerSeconds += float64(len(servers))
		res.PeakServers = max(res.PeakServers, len(servers))
		res.PeakDemand = max(res.PeakDemand, smp.Demand)
	}
	finish(&res, latencies)
	res.Wall = time.Since(start)
	return res, nil
}

// finish fills the averages and quantiles of res from its series and placement waits.
func finish(res *Result, latencies []time.Duration) {
	var idle float64
	for _, s := range res.Series {
		if s.Capacity > 0 {
			idle += math.Max(0, float64(s.Capacity-s.Demand)) / float64(s.Capacity)
		}
	}
	res.AvgIdle = idle / float64(max(1, len(res.Series)))
	slices.Sort(latencies)
	res.P50, res.P99 = stats.Quantile(latencies, 0.50), stats.Quantile(latencies, 0.99)
	if len(latencies) > 0 {
		res.MaxPlace = latencies[len(latencies)-1]
	}
}
