package director

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kumi-dev/kumi/allocation"
	"github.com/kumi-dev/kumi/director/pool"
)

// backendLoop is one backend and its refill state.
type backendLoop struct {
	b    allocation.Backend
	wake chan struct{}
	// lastCap is the capacity of the last server allocated, to size how many allocations a
	// deficit needs.
	lastCap atomic.Int64
}

func (bl *backendLoop) poke() {
	select {
	case bl.wake <- struct{}{}:
	default:
	}
}

// refill keeps the backend's free slots at or above its target: it starts allocations while the
// deficit exceeds what the allocations in flight will bring, up to MaxAllocations at once, and backs
// off exponentially while the backend has nothing to give (UnAllocated) or fails.
func (d *Director) refill(ctx context.Context, bl *backendLoop) {
	name := bl.b.Name()
	var (
		mu       sync.Mutex
		inflight int
		backoff  = newBackoff(100*time.Millisecond, d.cfg.AllocBackoffMax)
		until    time.Time // no new allocation before this
		wg       sync.WaitGroup
	)
	defer wg.Wait()
	tick := time.NewTicker(200 * time.Millisecond) // rate changes move the target without a placement
	defer tick.Stop()
	for {
		now := time.Now()
		deficit := d.pool.Deficit(name, now)
		mu.Lock()
		per := bl.lastCap.Load()
		if per <= 0 {
			per = int64(d.cfg.Pool.DefaultCap)
		}
		for deficit > 0 && inflight < d.cfg.MaxAllocations && int64(inflight)*per < int64(deficit) && !now.Before(until) {
			inflight++
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok := d.allocateOne(ctx, bl)
				mu.Lock()
				inflight--
				if ok {
					backoff = newBackoff(100*time.Millisecond, d.cfg.AllocBackoffMax)
				} else {
					until = time.Now().Add(backoff.Step())
				}
				mu.Unlock()
				bl.poke()
			}()
		}
		wait := time.Until(until)
		mu.Unlock()
		var timer *time.Timer
		var after <-chan time.Time
		if wait > 0 {
			timer = time.NewTimer(wait)
			after = timer.C
		}
		select {
		case <-ctx.Done():
		case <-bl.wake:
		case <-tick.C:
		case <-after:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// allocateOne performs one allocation and adds the server to the pool; false when it brought no
// new capacity.
func (d *Director) allocateOne(ctx context.Context, bl *backendLoop) bool {
	name := bl.b.Name()
	// The watch may add the server before Allocate returns; "already pooled" means pooled before.
	before := map[string]bool{}
	for _, s := range d.pool.Snapshot(time.Now()).Servers {
		before[s.Name] = true
	}
	start := time.Now()
	st, err := bl.b.Allocate(ctx, d.spec)
	lat := time.Since(start)
	d.m.allocLatency.WithLabelValues(name).Observe(lat.Seconds())
	if err != nil {
		if ctx.Err() == nil {
			d.m.allocations.WithLabelValues(name, "error").Inc()
			d.log.Warn("allocation failed", "backend", name, "err", err)
		}
		return false
	}
	d.pool.ObserveAllocation(name, lat)
	if st.State != allocation.AllocationAllocated {
		d.m.allocations.WithLabelValues(name, "unallocated").Inc()
		d.log.Debug("allocation found no server", "backend", name, "state", st.State)
		return false
	}
	if before[st.GameServerName] {
		d.m.allocations.WithLabelValues(name, "already_pooled").Inc()
		d.log.Warn("allocation returned a server already in the pool", "backend", name, "server", st.GameServerName)
		return false
	}
	info := pool.ServerFromAllocation(name, d.cfg.PortName, st)
	if info.Capacity > 0 {
		bl.lastCap.Store(int64(info.Capacity))
	}
	d.pool.AddServer(info, time.Now())
	d.m.allocations.WithLabelValues(name, "allocated").Inc()
	d.log.Info("server allocated into the pool", "backend", name, "server", info.Name, "address", info.Address,
		"capacity", info.Capacity, "latency", lat)
	return true
}
