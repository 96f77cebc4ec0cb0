package gameserver

import (
	"net/netip"
	"time"

	"golang.org/x/time/rate"
)

// sourceLimits is a JOIN token bucket per source address, so one flooder spends its own bucket,
// not everyone's. Only JOINs with a valid cookie reach it, so every entry is an address that
// receives what is sent to it: spoofed sources create none. IPv6 sources count per /64 (one
// host's whole allocation). The relay workers share one under Server.sourcesMu.
type sourceLimits struct {
	rate    rate.Limit
	burst   int
	max     int
	buckets map[netip.Addr]*rate.Limiter
	pruned  time.Time
}

func newSourceLimits(cfg Config) *sourceLimits {
	return &sourceLimits{rate: rate.Limit(cfg.JoinSourceRate), burst: cfg.JoinSourceBurst, max: cfg.JoinSourceEntries,
		buckets: make(map[netip.Addr]*rate.Limiter)}
}

func sourceKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// allow takes one token from a's bucket.
func (l *sourceLimits) allow(a netip.Addr, now time.Time) bool {
	k := sourceKey(a)
	b := l.buckets[k]
	if b == nil {
		if len(l.buckets) >= l.max && !l.prune(now) {
			return false
		}
		b = rate.NewLimiter(l.rate, l.burst)
		l.buckets[k] = b
	}
	return b.AllowN(now, 1)
}

// prune forgets sources whose bucket is full again (idle long enough that forgetting them changes
// nothing) and reports whether there is room. It scans at most once a second, so a table full of
// busy sources costs one scan a second, not one per JOIN.
func (l *sourceLimits) prune(now time.Time) bool {
	if now.Sub(l.pruned) < time.Second {
		return false
	}
	l.pruned = now
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
	return len(l.buckets) < l.max
}
