package director_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/allocation"
	"github.com/kumi-dev/kumi/director"
	"github.com/kumi-dev/kumi/director/agones"
	"github.com/kumi-dev/kumi/director/pool"
	"github.com/kumi-dev/kumi/internal/kubetest/agonesalloc"
)

// BenchmarkTicketToAssignment drives the whole placement path (embedded Open Match core, real
// match function, director, local fleet of real game-server processes) with 1,000 voice tickets/s
// (chat groups of 5, members arriving one after another) for 3 s, with the fleet's allocations
// taking 0, 100 or 500 ms. It reports ticket→assignment latency as the client sees it
// (CreateTicket returned → WatchAssignments delivered), and the servers used against the sessions
// placed (one-session-per-server would need one server per session).
//
//	go test -run '^$' -bench TicketToAssignment -benchtime 1x ./director/
func BenchmarkTicketToAssignment(b *testing.B) {
	for _, lat := range []time.Duration{0, 100 * time.Millisecond, 500 * time.Millisecond} {
		b.Run(fmt.Sprintf("alloc=%s", lat), func(b *testing.B) {
			for range b.N {
				benchLoad(b, lat)
			}
		})
	}
}

// BenchmarkWarmPool offers 100 new sessions per second for 3 s to a fleet whose allocations take
// 500 ms, once with 100 slots kept warm and once with none (the baseline of the same run: every
// placement waits for an allocation), and reports ticket→assignment latency as the client sees it.
// The ratio warm/cold p99 is what the warm pool buys (TestWarmPoolHidesAllocationLatency asserts the
// property itself from events).
//
//	go test -run '^$' -bench WarmPool -benchtime 1x ./director/
func BenchmarkWarmPool(b *testing.B) {
	const allocWait = 500 * time.Millisecond
	for range b.N {
		warm := warmPoolMeasure(b, allocWait, 100)
		cold := warmPoolMeasure(b, allocWait, 0)
		b.ReportMetric(float64(warm.p50.Microseconds())/1000, "warm-p50-ms")
		b.ReportMetric(float64(warm.p99.Microseconds())/1000, "warm-p99-ms")
		b.ReportMetric(float64(cold.p50.Microseconds())/1000, "cold-p50-ms")
		b.ReportMetric(float64(cold.p99.Microseconds())/1000, "cold-p99-ms")
		b.ReportMetric(float64(warm.p99)/float64(max(cold.p99, 1)), "warm/cold-p99")
		b.ReportMetric(warm.waits, "warm-waits")
		b.ReportMetric(warm.unplaced+cold.unplaced, "released")
	}
}

// BenchmarkTicketToAssignmentAgones compares, in one run, the same load as
// BenchmarkTicketToAssignment placed through the Agones backend against a real kube-apiserver
// (allocations through the test allocation responder with Agones' 500 ms batch wait; the
// GameServers are objects without processes) and through the local fleet with 500 ms allocations.
//
//	go test -run '^$' -bench TicketToAssignmentAgones -benchtime 1x ./director/
func BenchmarkTicketToAssignmentAgones(b *testing.B) {
	b.Run("backend=local,alloc=500ms", func(b *testing.B) {
		for range b.N {
			benchLoad(b, 500*time.Millisecond)
		}
	})
	b.Run("backend=agones,batch-wait=500ms", func(b *testing.B) {
		for range b.N {
			benchLoadWith(b, func(e *env) allocation.Backend {
				api := agonesalloc.StartCluster(b, "games", agonesalloc.DefaultConfig())
				for i := range 40 {
					api.Put(b, allocation.GameServer{Name: fmt.Sprintf("gs-%02d", i), State: allocation.StateReady, Address: "10.1.0.1",
						Labels: map[string]string{"agones.dev/fleet": "bench"}, Ports: []allocation.Port{{Name: "default", Port: int32(7000 + i)}},
						Counters: map[string]allocation.CounterStatus{allocation.CounterSessions: {Capacity: 100}}})
				}
				acfg := agones.DefaultConfig()
				acfg.Namespace = "games"
				kb, err := agones.NewForRESTConfig(api.Alloc.RESTConfig(), acfg, testLog(b))
				if err != nil {
					b.Fatal(err)
				}
				return kb
			}, func(cfg *director.Config) {
				cfg.ServerLabels = []string{"agones.dev/fleet=bench"}
				cfg.RebuildTimeout = 0 // objects without processes: no reports to wait for
			})
		}
	})
}

func benchLoad(b *testing.B, allocLatency time.Duration) {
	benchLoadWith(b, func(e *env) allocation.Backend {
		return e.startFleet(fleetOpts{name: "bench", capacity: 100, buffer: 4, max: 40, allocWait: allocLatency})
	}, nil)
}

func benchLoadWith(b *testing.B, backend func(*env) allocation.Backend, mod func(*director.Config)) {
	const (
		rate    = 1000 // tickets per second
		seconds = 3
		group   = 5
	)
	e := newEnv(b)
	f := backend(e)
	cfg := e.directorConfig()
	cfg.Pool.MinFreeSlots = 100
	if mod != nil {
		mod(&cfg)
	}
	d, _ := e.startDirector(e.ctx, cfg, f)
	waitFor(b, "warm pool", 60*time.Second, func() bool { return d.Pool().Free(f.Name(), time.Now()) >= 100 })

	ts := e.tickets()
	b.ResetTimer()
	start := time.Now()
	n := rate * seconds
	var wg sync.WaitGroup
	for i := range n {
		// Open-loop pacing on a schedule (a Ticker drops ticks when the loop falls behind).
		if wait := time.Until(start.Add(time.Duration(i) * time.Second / rate)); wait > 0 {
			time.Sleep(wait)
		}
		// Concurrent creates: one client's round trips must not cap the offered rate.
		wg.Go(func() { ts.create(fmt.Sprintf("p%d", i), fmt.Sprintf("chat-%d", i/group)) })
	}
	wg.Wait()
	sent := time.Since(start)
	got := ts.await(n, 60*time.Second)
	b.StopTimer()
	lat := make([]time.Duration, len(got))
	servers := map[string]bool{}
	sessions := map[string]bool{}
	for i, a := range got {
		lat[i] = a.latency
		servers[a.conn] = true
		sessions[a.session] = true
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(percentile(lat, 0.5)), "p50_ms")
	b.ReportMetric(ms(percentile(lat, 0.99)), "p99_ms")
	b.ReportMetric(ms(percentile(lat, 1)), "max_ms")
	b.ReportMetric(float64(n)/sent.Seconds(), "tickets/s")
	b.ReportMetric(float64(len(sessions)), "sessions")
	b.ReportMetric(float64(len(servers)), "servers")
	b.ReportMetric(float64(len(sessions))/float64(len(servers)), "sessions/server")
	b.ReportMetric(e.counter("kumi_director_unplaced_matches_total"), "unplaced")
	b.ReportMetric(ms(e.quantile("kumi_director_match_handling_seconds", 0.99)), "director_p99_ms")
	b.ReportMetric(e.counter("kumi_director_allocations_total"), "allocations")
}

// BenchmarkPlace is the pool's placement alone: a new session among 100 servers of capacity 1000
// (packing scans them), and a late arrival joining its group's session (a map lookup), side by side.
func BenchmarkPlace(b *testing.B) {
	now := time.Now()
	newPool := func() *pool.Pool {
		cfg := pool.DefaultConfig()
		p := pool.New(cfg)
		for i := range 100 {
			p.AddServer(pool.ServerInfo{Name: fmt.Sprintf("s%03d", i), Backend: "local", Address: "127.0.0.1:7000", Capacity: 1000}, now)
		}
		return p
	}
	b.Run("new-session", func(b *testing.B) {
		p := newPool()
		ids := make([]string, b.N)
		for i := range ids {
			ids[i] = pool.NewSessionID("")
		}
		b.ResetTimer()
		for i := range b.N {
			if i%50000 == 49999 {
				b.StopTimer()
				p = newPool() // stay below total capacity
				b.StartTimer()
			}
			if _, err := p.Place(pool.Request{SessionID: ids[i], Players: []string{"p"}}, now); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("late-arrival", func(b *testing.B) {
		p := newPool()
		if _, err := p.Place(pool.Request{SessionID: pool.NewSessionID("g"), Group: "g", Players: []string{"first"}}, now); err != nil {
			b.Fatal(err)
		}
		players := []string{"late"}
		b.ResetTimer()
		for range b.N {
			if _, err := p.Place(pool.Request{Group: "g", Players: players}, now); err != nil {
				b.Fatal(err)
			}
		}
	})
}
