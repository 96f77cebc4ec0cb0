package frontend

import (
	"context"
	"hash/maphash"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
)

// limiter applies the global and per-player token buckets.
type limiter struct {
	global      *rate.Limiter // nil = unlimited
	playerRate  rate.Limit
	playerBurst int
	seed        maphash.Seed
	shards      [64]limShard
	now         func() time.Time
}

type limShard struct {
	mu sync.Mutex
	m  map[string]*playerLimit
}

type playerLimit struct {
	lim      *rate.Limiter
	lastSeen atomic.Int64 // unix nanos
}

func newLimiter(cfg Config, now func() time.Time) *limiter {
	l := &limiter{playerRate: rate.Limit(cfg.PlayerRate), playerBurst: cfg.PlayerBurst, seed: maphash.MakeSeed(), now: now}
	if cfg.GlobalRate > 0 {
		l.global = rate.NewLimiter(rate.Limit(cfg.GlobalRate), cfg.GlobalBurst)
	}
	for i := range l.shards {
		l.shards[i].m = make(map[string]*playerLimit)
	}
	return l
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

// allowGlobal is checked before the token is verified, so a flood of bad tokens is bounded too.
func (l *limiter) allowGlobal() *apiError {
	if l.global == nil {
		return nil
	}
	if d, ok := take(l.global, l.now()); !ok {
		return &apiError{code: codes.ResourceExhausted, msg: "frontend is at its global request limit; retry after " + d.Round(time.Millisecond).String(), retryAfter: d}
	}
	return nil
}

func (l *limiter) allowPlayer(player string) *apiError {
	now := l.now()
	sh := &l.shards[maphash.String(l.seed, player)%uint64(len(l.shards))]
	sh.mu.Lock()
	pl := sh.m[player]
	if pl == nil {
		pl = &playerLimit{lim: rate.NewLimiter(l.playerRate, l.playerBurst)}
		sh.m[player] = pl
	}
	sh.mu.Unlock()
	pl.lastSeen.Store(now.UnixNano())
	if d, ok := take(pl.lim, now); !ok {
		return &apiError{code: codes.ResourceExhausted, msg: "too many requests from player " + strconv.Quote(player) + "; retry after " + d.Round(time.Millisecond).String(), retryAfter: d}
	}
	return nil
}

// idleAfter is when a player's bucket is full again, so dropping it loses nothing.
func (l *limiter) idleAfter() time.Duration {
	return time.Duration(float64(l.playerBurst)/float64(l.playerRate)*float64(time.Second)) + time.Second
}

// sweep drops buckets of players idle long enough to have refilled; it returns how many remain.
func (l *limiter) sweep() int {
	cutoff := l.now().Add(-l.idleAfter()).UnixNano()
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for p, pl := range sh.m {
			if pl.lastSeen.Load() < cutoff {
				delete(sh.m, p)
			}
		}
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
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
