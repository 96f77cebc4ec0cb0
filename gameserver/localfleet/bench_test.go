package localfleet_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/allocation"
	sdkpb "github.com/kumi-dev/kumi/api/agones/sdk"
	"github.com/kumi-dev/kumi/gameserver/localfleet"
	"github.com/kumi-dev/kumi/gameserver/localsdk"
	"github.com/kumi-dev/kumi/gameserver/sdk"
)

func highDensitySpec() allocation.Spec {
	inc, one := "Increment", int64(1)
	return allocation.Spec{
		Selectors: []allocation.Selector{
			{GameServerState: "Allocated", MatchLabels: map[string]string{"kumi.dev/pool": "p"}, Counters: map[string]allocation.CounterSelector{"sessions": {MinAvailable: 1}}},
			{GameServerState: "Ready", MatchLabels: map[string]string{"kumi.dev/pool": "p"}, Counters: map[string]allocation.CounterSelector{"sessions": {MinAvailable: 1}}},
		},
		Priorities: []allocation.Priority{{Type: "Counter", Key: "sessions"}},
		Counters:   map[string]allocation.CounterAction{"sessions": {Action: &inc, Amount: &one}},
	}
}

// BenchmarkSelect is the allocator's pure work per request over n servers: match the first
// selector, order by priority, apply the actions to the winner. Baseline: only matching.
func BenchmarkSelect(b *testing.B) {
	spec := highDensitySpec()
	for _, n := range []int{100, 1000} {
		servers := make([]*sdkpb.GameServer, n)
		for i := range servers {
			state := "Ready"
			if i%2 == 0 {
				state = "Allocated"
			}
			servers[i] = &sdkpb.GameServer{
				ObjectMeta: &sdkpb.GameServer_ObjectMeta{Name: fmt.Sprint("gs-", i), CreationTimestamp: int64(i), Labels: map[string]string{"kumi.dev/pool": "p"}},
				Status: &sdkpb.GameServer_Status{State: state, Counters: map[string]*sdkpb.GameServer_Status_CounterStatus{
					"sessions": {Count: int64(i % 1000), Capacity: 1000},
				}},
			}
		}
		b.Run(fmt.Sprintf("baseline-match/n=%d", n), func(b *testing.B) {
			cpu0 := cpuTime()
			defer func() { reportCPU(b, cpu0) }()
			for b.Loop() {
				matched := 0
				for _, gs := range servers {
					if localfleet.Matches(spec.Selectors[0], gs) {
						matched++
					}
				}
				if matched == 0 {
					b.Fatal("nothing matched")
				}
			}
		})
		b.Run(fmt.Sprintf("match-order-apply/n=%d", n), func(b *testing.B) {
			rnd := rand.New(rand.NewPCG(1, 2))
			b.ReportAllocs()
			cpu0 := cpuTime()
			defer func() { reportCPU(b, cpu0) }()
			for b.Loop() {
				var matched []*sdkpb.GameServer
				for _, gs := range servers {
					if localfleet.Matches(spec.Selectors[0], gs) {
						matched = append(matched, gs)
					}
				}
				localfleet.Order(spec, matched, rnd)
				winner := &sdkpb.GameServer{
					ObjectMeta: &sdkpb.GameServer_ObjectMeta{Name: matched[0].ObjectMeta.Name},
					Status:     &sdkpb.GameServer_Status{Counters: map[string]*sdkpb.GameServer_Status_CounterStatus{"sessions": {Count: 1, Capacity: 1000}}},
				}
				localfleet.Apply(spec, winner, time.Now())
			}
		})
	}
}

// BenchmarkFleetAllocate measures Fleet.Allocate end to end over 20 live servers (real processes,
// each with its own SDK endpoint): validation, fresh reads of every server, selection, and the
// atomic update of the winner.
func BenchmarkFleetAllocate(b *testing.B) {
	const n = 20
	cfg := localfleet.Default()
	cfg.Name = "bench"
	cfg.Command = []string{"/bin/sleep", "600"} // a process that holds its slot; Ready is driven below
	cfg.BufferSize, cfg.MaxReplicas = n, n
	cfg.SessionCapacity = 1 << 40
	cfg.Labels = map[string]string{"kumi.dev/pool": "p"}
	cfg.Health.Disabled = true
	cfg.StopGrace = time.Second
	ctx, cancel := context.WithCancel(context.Background())
	f, err := localfleet.Start(ctx, testLogger(), cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cancel(); _ = f.Wait() })
	events, err := f.Watch(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	readied := map[string]bool{}
	for len(readied) < n {
		ev := <-events
		if ev.Deleted || readied[ev.Server.Name] {
			continue
		}
		for _, s := range f.Servers() {
			if s.Name == ev.Server.Name {
				c, err := sdk.Dial(ctx, s.SDKAddr)
				if err != nil {
					b.Fatal(err)
				}
				if err := c.Ready(ctx); err != nil {
					b.Fatal(err)
				}
				_ = c.Close()
				readied[s.Name] = true
			}
		}
	}
	for {
		l, _ := f.List(ctx, nil)
		if slices.ContainsFunc(l, func(gs allocation.GameServer) bool { return gs.State != localsdk.StateReady }) || len(l) < n {
			<-events
			continue
		}
		break
	}
	spec := highDensitySpec()
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		st, err := f.Allocate(ctx, spec)
		if err != nil || st.State != allocation.AllocationAllocated {
			b.Fatalf("Allocate = %+v, %v", st, err)
		}
	}
	reportCPU(b, cpu0)
}
