package frontend

import (
	"context"
	"hash/maphash"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
)

// limiter applies the per-source buckets (checked before the token, so a flood of bad tokens from
// one address is bounded without touching anyone else) and the per-player buckets (after it).
// There is no global bucket: one would let a small flood lock every legitimate player out.
type limiter struct {
	sources *buckets
	players *buckets
	now     func() time.Time
}

// buckets is a sharded map of token buckets, one per key, dropped once idle long enough to be full.
type buckets struct {
	rate   rate.Limit
	burst  int
	seed   maphash.Seed
	shards [64]limShard
}

type limShard struct {
	mu sync.Mutex
	m  map[string]*keyLimit
}

type keyLimit struct {
	lim      *rate.Limiter
	lastSeen atomic.Int64 // unix nanos
}

func newBuckets(r float64, burst int) *buckets {
	b := &buckets{rate: rate.Limit(r), burst: burst, seed: maphash.MakeSeed()}
	for i := range b.shards {
		b.shards[i].m = make(map[string]*keyLimit)
	}
	return b
}

func newLimiter(cfg Config, now func() time.Time) *limiter {
	return &limiter{sources: newBuckets(cfg.SourceRate, cfg.SourceBurst), players: newBuckets(cfg.PlayerRate, cfg.PlayerBurst), now: now}
}

// take spends one token from b, or returns how long until one is available without spending.
func take(b *rate.Limiter, now time.Time) (time.Duration, bool) {
	r := b.ReserveN(now, 1)
	if !r.OK() {
		return time.Second, false
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, false
	}
	return 0, true
}

func (b *buckets) take(key string, now time.Time) (time.Duration, bool) {
	sh := &b.shards[maphash.String(b.seed, key)%uint64(len(b.shards))]
	sh.mu.Lock()
	kl := sh.m[key]
	if kl == nil {
		kl = &keyLimit{lim: rate.NewLimiter(b.rate, b.burst)}
		sh.m[key] = kl
	}
	sh.mu.Unlock()
	kl.lastSeen.Store(now.UnixNano())
	return take(kl.lim, now)
}

// sourceKey is the client's IP without the port; IPv6 addresses count per /64, the block one
// subscriber gets, so rotating through it does not multiply the limit.
func sourceKey(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// allowSource is checked before the token is verified.
func (l *limiter) allowSource(addr string) *apiError {
	if l.sources.rate <= 0 {
		return nil
	}
	if d, ok := l.sources.take(sourceKey(addr), l.now()); !ok {
		return &apiError{code: codes.ResourceExhausted, msg: "too many requests from your address; retry after " + d.Round(time.Millisecond).String(), retryAfter: d}
	}
	return nil
}

func (l *limiter) allowPlayer(player string) *apiError {
	if d, ok := l.players.take(player, l.now()); !ok {
		return &apiError{code: codes.ResourceExhausted, msg: "too many requests from player " + strconv.Quote(player) + "; retry after " + d.Round(time.Millisecond).String(), retryAfter: d}
	}
	return nil
}

// idleAfter is when a bucket is full again, so dropping it loses nothing.
func (b *buckets) idleAfter() time.Duration {
	if b.rate <= 0 {
		return time.Second
	}
	return time.Duration(float64(b.burst)/float64(b.rate)*float64(time.Second)) + time.Second
}

// sweep drops buckets idle long enough to have refilled; it returns how many remain.
func (b *buckets) sweep(now time.Time) int {
	cutoff := now.Add(-b.idleAfter()).UnixNano()
	n := 0
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		for k, kl := range sh.m {
			if kl.lastSeen.Load() < cutoff {
				delete(sh.m, k)
			}
		}
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// sweep sweeps both bucket sets; it returns how many player and source buckets remain.
func (l *limiter) sweep() (players, sources int) {
	now := l.now()
	return l.players.sweep(now), l.sources.sweep(now)
}

// runSweeper sweeps every interval until ctx ends.
func (l *limiter) runSweeper(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.sweep()
		}
	}
}
