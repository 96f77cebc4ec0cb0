package pool

import (
	"math"
	"sort"
	"time"
)

// ObserveAllocation feeds one allocation's latency into the backend's lead time estimate.
func (p *Pool) ObserveAllocation(backend string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.lead[backend]; ok {
		p.lead[backend] = (old*7 + d) / 8
	} else {
		p.lead[backend] = d
	}
}

// Rate is the recent rate of new sessions per second.
func (p *Pool) Rate(now time.Time) float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rate.perSecond(now)
}

// Target is the free slots the pool keeps on backend: its weight's share of
// MinFreeSlots + RateShare × rate × lead time (at least 1 while its weight is above 0).
func (p *Pool) Target(backend string, now time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.targetLocked(backend, now)
}

func (p *Pool) targetLocked(backend string, now time.Time) int {
	w := p.weightLocked(backend)
	if w == 0 {
		return 0
	}
	total := 0
	for b := range p.backends {
		total += p.weightLocked(b)
	}
	lead := max(p.cfg.LeadTime, p.lead[backend])
	t := float64(p.cfg.MinFreeSlots) + p.cfg.RateShare*p.rate.perSecond(now)*lead.Seconds()
	return max(int(math.Ceil(t*float64(w)/float64(total))), 1)
}

// Free is the free session slots on backend's accepting servers.
func (p *Pool) Free(backend string, now time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.freeLocked(backend, now)
}

func (p *Pool) freeLocked(backend string, now time.Time) int {
	n := 0
	for _, s := range p.servers {
		if s.Backend == backend && p.accepting(s, now) {
			n += s.free()
		}
	}
	return n
}

// Deficit is how many free slots backend lacks to reach its target (0 when it has enough).
func (p *Pool) Deficit(backend string, now time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(p.targetLocked(backend, now)-p.freeLocked(backend, now), 0)
}

// ScaleIn marks servers to drain: once a backend's free slots have stayed above target +
// HighWatermark for ScaleInAfter, it drains its least-loaded accepting servers, in order, while
// the servers that stay can take the drained servers' sessions and still keep the target free,
// and free slots were above target + HighWatermark before each.
// The drained servers leave the pool for placement at once and are told to drain on their next
// report. Returns their names.
func (p *Pool) ScaleIn(now time.Time) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var drained []string
	for _, b := range p.backendNames() {
		target := p.targetLocked(b, now)
		free := p.freeLocked(b, now)
		if free <= target+p.cfg.HighWatermark {
			delete(p.above, b)
			continue
		}
		since, ok := p.above[b]
		if !ok {
			p.above[b] = now
			continue
		}
		if now.Sub(since) < p.cfg.ScaleInAfter {
			continue
		}
		cands := make([]*server, 0)
		for _, s := range p.servers {
			if s.Backend == b && p.accepting(s, now) {
				cands = append(cands, s)
			}
		}
		sort.Slice(cands, func(i, j int) bool {
			if cands[i].used() != cands[j].used() {
				return cands[i].used() < cands[j].used()
			}
			return cands[i].Name < cands[j].Name
		})
		for _, s := range cands {
			if free <= target+p.cfg.HighWatermark {
				break
			}
			// Its sessions move to the servers that stay: what they keep free afterwards is free
			// minus the drained server's free slots and its sessions, i.e. minus its capacity.
			// Counting only its free slots would drain a server whose sessions then cannot all
			// move (it lingers until they end) or push the pool below target, so the refill
			// allocates a server while one drains.
			left := free - max(s.Capacity, s.used())
			if left < target {
				break // draining a busier server instead would move more sessions
			}
			free = left
			s.drain = true
			s.state = Draining
			drained = append(drained, s.Name)
		}
		p.above[b] = now // one step per period: let load settle before draining more
	}
	return drained
}

// rateWindow counts events in one-second buckets over a window.
type rateWindow struct {
	buckets []int
	last    int64 // unix second of the newest bucket
}

func newRateWindow(w time.Duration) rateWindow {
	return rateWindow{buckets: make([]int, int(w/time.Second))}
}

func (r *rateWindow) advance(now time.Time) {
	sec := now.Unix()
	n := int64(len(r.buckets))
	if r.last == 0 || sec-r.last >= n {
		clear(r.buckets)
	} else {
		for t := r.last + 1; t <= sec; t++ {
			r.buckets[t%n] = 0
		}
	}
	if sec > r.last {
		r.last = sec
	}
}

func (r *rateWindow) add(now time.Time, k int) {
	r.advance(now)
	r.buckets[now.Unix()%int64(len(r.buckets))] += k
}

// perSecond is the rate over the window, or over the current and the previous second when that is
// higher, so a burst raises the pool's target within a fraction of a second while a lull lowers it
// slowly.
func (r *rateWindow) perSecond(now time.Time) float64 {
	r.advance(now)
	n := int64(len(r.buckets))
	sum := 0
	for _, v := range r.buckets {
		sum += v
	}
	avg := float64(sum) / float64(n)
	sec := now.Unix()
	frac := float64(now.Sub(time.Unix(sec, 0))) / float64(time.Second)
	recent := float64(r.buckets[sec%n]+r.buckets[(sec-1+n)%n]) / (1 + frac)
	return max(avg, recent)
}
