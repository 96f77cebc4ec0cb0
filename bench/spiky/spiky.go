package spiky

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/kumi-dev/kumi/director/pool"
)

// Config is every setting of the spiky-load replay.
type Config struct {
	Duration     time.Duration `flag:"duration" help:"simulated length of the trace"`
	Period       time.Duration `flag:"period" help:"simulated time from one peak to the next"`
	PeakRate     float64       `flag:"peak-rate" help:"new sessions per simulated second at peak"`
	Swing        float64       `flag:"swing" help:"peak arrival rate divided by off-peak arrival rate"`
	MeanLifetime time.Duration `flag:"mean-lifetime" help:"mean simulated session lifetime (exponentially distributed)"`
	Members      int           `flag:"members" help:"players per session"`
	Capacity     int           `flag:"capacity" help:"sessions per shared game server"`
	LeadTime     time.Duration `flag:"lead-time" help:"simulated allocation lead time (Agones allocation latency)"`
	ReportEvery  time.Duration `flag:"report-every" help:"simulated period of a quiet server's load report"`
	DrainGrace   time.Duration `flag:"drain-grace" help:"simulated time a draining server waits before moving its sessions"`
	RejectAfter  time.Duration `flag:"reject-after" help:"a session not placed within this simulated time counts as rejected"`
	Seed         uint64        `flag:"seed" help:"random seed of the trace"`
	AgonesBuffer int           `flag:"agones-buffer" help:"Agones baseline: FleetAutoscaler Counter bufferSize, free sessions Counter capacity kept over the fleet"`
	AgonesSync   time.Duration `flag:"agones-sync" help:"Agones baseline: FleetAutoscaler sync interval (Agones' default fixedInterval is 30s)"`
	Out          string        `flag:"out" help:"directory for spiky.md and spiky.svg (kumi bench spiky: empty writes into a new temporary directory)"`

	// Pool is the director's pool configuration used for the shared-server policy.
	Pool pool.Config `prefix:"pool-"`

	// Progress, when set, is called once per simulated minute with the policy being replayed.
	Progress func(policy string, at time.Duration)
}

// Default returns the settings BENCHMARKS.md quotes.
func Default() Config {
	pc := pool.DefaultConfig()
	pc.MinFreeSlots = 20
	// Low hysteresis: a drain never leaves the pool short (Pool.ScaleIn counts the sessions
	// that must move), so a small watermark trims idle capacity without drain-then-refill churn.
	pc.HighWatermark = 20
	pc.ScaleInAfter = 30 * time.Second
	pc.ReservationTTL = 30 * time.Second
	return Config{
		Duration:     4 * time.Hour,
		Period:       2 * time.Hour,
		PeakRate:     10,
		Swing:        10,
		MeanLifetime: 5 * time.Minute,
		Members:      4,
		Capacity:     100,
		LeadTime:     2 * time.Second,
		ReportEvery:  5 * time.Second,
		DrainGrace:   30 * time.Second,
		RejectAfter:  30 * time.Second,
		Seed:         1,
		AgonesBuffer: 50,
		AgonesSync:   30 * time.Second,
		Pool:         pc,
	}
}

// Validate names the first bad setting.
func (c Config) Validate() error {
	switch {
	case c.Duration < time.Second:
		return fmt.Errorf("spiky: duration %v: want at least 1s", c.Duration)
	case c.Period < time.Second:
		return fmt.Errorf("spiky: period %v: want at least 1s", c.Period)
	case c.PeakRate <= 0:
		return fmt.Errorf("spiky: peak-rate %v: want > 0", c.PeakRate)
	case c.Swing < 1:
		return fmt.Errorf("spiky: swing %v: want >= 1", c.Swing)
	case c.MeanLifetime < time.Second:
		return fmt.Errorf("spiky: mean-lifetime %v: want at least 1s", c.MeanLifetime)
	case c.Members < 1:
		return fmt.Errorf("spiky: members %d: want >= 1", c.Members)
	case c.Capacity < 1:
		return fmt.Errorf("spiky: capacity %d: want >= 1", c.Capacity)
	case c.ReportEvery < time.Second:
		return fmt.Errorf("spiky: report-every %v: want at least 1s", c.ReportEvery)
	case c.AgonesBuffer < 1:
		return fmt.Errorf("spiky: agones-buffer %d: want >= 1", c.AgonesBuffer)
	case c.AgonesSync < time.Second || c.AgonesSync%time.Second != 0:
		return fmt.Errorf("spiky: agones-sync %v: want a whole number of seconds, at least 1s", c.AgonesSync)
	}
	return c.Pool.Validate()
}

// Sample is the state at one simulated second.
type Sample struct {
	T        time.Duration
	Demand   int // live sessions plus sessions waiting for a slot
	Capacity int // session slots on every live server, draining ones included
	Servers  int
}

// Result is one policy's outcome over the trace.
type Result struct {
	Policy        string
	Sessions      int
	Rejected      int
	Moves         int
	Drains        int
	PeakServers   int
	PeakDemand    int
	AvgIdle       float64 // time-average of (capacity − demand) / capacity
	ServerSeconds float64
	P50, P99      time.Duration // simulated wait for a free slot (1 s resolution)
	MaxPlace      time.Duration
	Series        []Sample
	// Wall is the real time the replay took; it is not part of the report, which depends only on
	// the settings and the seed.
	Wall time.Duration
}

// Results are the three policies' outcomes over one trace.
type Results struct {
	Shared   Result // kumi's pool: shared servers, scale-in by draining and moving sessions
	Agones   Result // Agones' high-density Counters pattern: packed allocation, Counter buffer, no moves
	Baseline Result // one session per server
}

// All lists the results in report order.
func (r Results) All() []Result { return []Result{r.Shared, r.Agones, r.Baseline} }

// Run replays one trace under the shared-server policy, the Agones Counters pattern and the
// one-session-per-server baseline.
func Run(ctx context.Context, cfg Config) (Results, error) {
	var out Results
	if err := cfg.Validate(); err != nil {
		return out, err
	}
	trace := newTrace(cfg)
	var err error
	if out.Shared, err = simulate(ctx, cfg, trace, "shared servers (kumi pool)", cfg.Capacity, cfg.Pool); err != nil {
		return out, err
	}
	if out.Agones, err = simulateAgones(ctx, cfg, trace); err != nil {
		return out, err
	}
	// The baseline is the same pool logic with one session per server: what a
	// one-allocation-per-session design spends for the same demand.
	bp := cfg.Pool
	bp.DefaultCap = 1
	bp.HighWatermark = max(1, cfg.Pool.HighWatermark/cfg.Capacity)
	out.Baseline, err = simulate(ctx, cfg, trace, "one session per server", 1, bp)
	return out, err
}

// arrival is one session of the trace.
type arrival struct {
	at       time.Duration
	lifetime time.Duration
}

func newTrace(cfg Config) []arrival {
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6b756d69))
	var out []arrival
	low := cfg.PeakRate / cfg.Swing
	for s := time.Duration(0); s < cfg.Duration; s += time.Second {
		phase := 2 * math.Pi * float64(s) / float64(cfg.Period)
		rate := low + (cfg.PeakRate-low)*(0.5-0.5*math.Cos(phase))
		for range poisson(rng, rate) {
			at := s + time.Duration(rng.Float64()*float64(time.Second))
			life := time.Duration(rng.ExpFloat64() * float64(cfg.MeanLifetime))
			out = append(out, arrival{at: at, lifetime: max(life, time.Second)})
		}
	}
	return out
}

// poisson draws from Poisson(lambda) (Knuth for small lambda, normal approximation above 30).
func poisson(rng *rand.Rand, lambda float64) int {
	if lambda > 30 {
		return max(0, int(math.Round(lambda+math.Sqrt(lambda)*rng.NormFloat64())))
	}
	l, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

type simSession struct {
	id      string
	players []string
	arrived time.Duration
	ends    time.Duration
	server  *simServer
}

type simServer struct {
	name       string
	capacity   int
	sessions   map[string]*simSession
	draining   bool
	drainAt    time.Duration
	moved      bool
	dirty      bool
	nextReport time.Duration
}

func simulate(ctx context.Context, cfg Config, trace []arrival, policy string, capacity int, pc pool.Config) (Result, error) {
	start := time.Now()
	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := pool.New(pc)
	const backend = "sim"
	p.AddBackend(backend)
	res := Result{Policy: policy}
	servers := map[string]*simServer{}
	var (
		waiting   []*simSession
		live      []*simSession // ordered by end time via a heap would be faster; a sorted insert suffices here
		inflight  []time.Duration
		nextID    int
		nextSrv   int
		latencies []time.Duration
		next      int
	)
	addLive := func(s *simSession) {
		i, _ := slices.BinarySearchFunc(live, s.ends, func(a *simSession, t time.Duration) int { return cmpDur(a.ends, t) })
		live = slices.Insert(live, i, s)
	}
	for t := time.Duration(0); t < cfg.Duration; t += time.Second {
		if t%(time.Minute) == 0 {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			if cfg.Progress != nil {
				cfg.Progress(policy, t)
			}
		}
		now := epoch.Add(t)
		// 1. Arrivals of this second.
		for next < len(trace) && trace[next].at < t+time.Second {
			a := trace[next]
			next++
			nextID++
			id := "s" + strconv.Itoa(nextID)
			players := make([]string, cfg.Members)
			for i := range players {
				players[i] = id + "p" + strconv.Itoa(i)
			}
			waiting = append(waiting, &simSession{id: id, players: players, arrived: a.at, ends: a.at + a.lifetime})
			res.Sessions++
		}
		// 2. Sessions ending.
		for len(live) > 0 && live[0].ends <= t {
			s := live[0]
			live = live[1:]
			if s.server != nil {
				delete(s.server.sessions, s.id)
				s.server.dirty = true
			}
		}
		// 3. Allocations completing.
		kept := inflight[:0]
		for _, ready := range inflight {
			if ready > t {
				kept = append(kept, ready)
				continue
			}
			nextSrv++
			srv := &simServer{name: "gs-" + strconv.Itoa(nextSrv), capacity: capacity, sessions: map[string]*simSession{}, nextReport: t}
			servers[srv.name] = srv
			p.AddServer(pool.ServerInfo{Name: srv.name, Backend: backend, Address: "10.0.0.1:7000", Capacity: capacity}, now)
			p.ObserveAllocation(backend, cfg.LeadTime)
		}
		inflight = kept
		// 4. Placement, oldest first.
		stillWaiting := waiting[:0]
		for _, s := range waiting {
			pl, err := p.Place(pool.Request{SessionID: s.id, Players: s.players}, now)
			switch {
			case err == nil:
				srv := servers[pl.Server]
				s.server = srv
				srv.sessions[s.id] = s
				srv.dirty = true
				latencies = append(latencies, max(0, t-s.arrived))
				if s.ends <= t {
					s.ends = t + time.Second
				}
				addLive(s)
			case errors.Is(err, pool.ErrNoRoom):
				if t-s.arrived > cfg.RejectAfter {
					res.Rejected++
					continue
				}
				stillWaiting = append(stillWaiting, s)
			default:
				return res, fmt.Errorf("place %s: %w", s.id, err)
			}
		}
		waiting = stillWaiting
		// 5. Reports: at once after a change (debounced to this second), else periodically.
		// Servers are visited in name order and sessions in id order, so a seed replays exactly.
		names := slices.Sorted(maps.Keys(servers))
		for _, name := range names {
			srv := servers[name]
			if !srv.dirty && t < srv.nextReport {
				continue
			}
			srv.dirty = false
			srv.nextReport = t + cfg.ReportEvery
			r := p.Report(report(srv), now)
			if r.Drain && !srv.draining {
				srv.draining, srv.drainAt = true, t
				res.Drains++
			}
		}
		// 6. Draining servers: move what is left after the grace, leave when empty.
		for _, name := range names {
			srv := servers[name]
			if !srv.draining {
				continue
			}
			if !srv.moved && t-srv.drainAt >= cfg.DrainGrace {
				srv.moved = true
				for _, id := range slices.Sorted(maps.Keys(srv.sessions)) {
					s := srv.sessions[id]
					pl, err := p.Move(srv.name, id, s.players, now)
					if err != nil {
						continue // no room: the session stays until it ends (real servers send RECONNECT)
					}
					dst := servers[pl.Server]
					delete(srv.sessions, id)
					s.server = dst
					dst.sessions[id] = s
					dst.dirty = true
					res.Moves++
				}
			}
			if len(srv.sessions) == 0 {
				p.RemoveServer(name)
				delete(servers, name)
			}
		}
		// 7. Refill the pool in the background and scale in.
		pending := len(inflight) * capacity
		if d := p.Deficit(backend, now) - pending; d > 0 {
			for range (d + capacity - 1) / capacity {
				inflight = append(inflight, t+cfg.LeadTime)
			}
		}
		p.ScaleIn(now)
		p.Sweep(now)
		// 8. Record.
		smp := Sample{T: t, Demand: len(live) + len(waiting), Servers: len(servers)}
		for _, srv := range servers {
			smp.Capacity += srv.capacity
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

func report(srv *simServer) pool.Report {
	r := pool.Report{Server: srv.name, Address: "10.0.0.1:7000", State: pool.Accepting, Capacity: srv.capacity}
	if srv.draining {
		r.State = pool.Draining
	}
	r.Sessions = make([]pool.SessionLoad, 0, len(srv.sessions))
	for _, id := range slices.Sorted(maps.Keys(srv.sessions)) {
		r.Sessions = append(r.Sessions, pool.SessionLoad{ID: id, Players: srv.sessions[id].players})
	}
	return r
}

func cmpDur(a, b time.Duration) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
