package frontend

import (
	"crypto/sha256"
	"sync"
	"time"
)

// tokenCache remembers player tokens that verified, so a player's later calls with the same token
// (watch, get, cancel after create) skip the signature check, the largest CPU cost per call. It is
// keyed by the SHA-256 of the exact token bytes, and an entry never outlives the token's exp or the
// cache TTL (which bounds how long a key withdrawn from the JWKS keeps working).
type tokenCache struct {
	ttl      time.Duration
	perShard int
	shards   [16]tokenShard
}

type tokenShard struct {
	mu sync.Mutex
	m  map[[32]byte]cachedToken
}

type cachedToken struct {
	c     caller
	until time.Time
}

// newTokenCache holds up to size tokens; size 0 disables caching (nil cache).
func newTokenCache(size int, ttl time.Duration) *tokenCache {
	if size <= 0 || ttl <= 0 {
		return nil
	}
	c := &tokenCache{ttl: ttl, perShard: max(1, size/16)}
	for i := range c.shards {
		c.shards[i].m = make(map[[32]byte]cachedToken)
	}
	return c
}

func (c *tokenCache) get(raw string, now time.Time) (caller, bool) {
	if c == nil {
		return caller{}, false
	}
	k := sha256.Sum256([]byte(raw))
	sh := &c.shards[k[0]%16]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[k]
	if !ok {
		return caller{}, false
	}
	if !now.Before(e.until) {
		delete(sh.m, k)
		return caller{}, false
	}
	return e.c, true
}

func (c *tokenCache) put(raw string, who caller, exp, now time.Time) {
	if c == nil {
		return
	}
	until := now.Add(c.ttl)
	if exp.Before(until) {
		until = exp
	}
	k := sha256.Sum256([]byte(raw))
	sh := &c.shards[k[0]%16]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if len(sh.m) >= c.perShard {
		// Full: drop expired entries, then (still full) an arbitrary quarter; map order is random.
		for key, e := range sh.m {
			if !now.Before(e.until) {
				delete(sh.m, key)
			}
		}
		drop := len(sh.m) - c.perShard*3/4
		for key := range sh.m {
			if drop <= 0 {
				break
			}
			delete(sh.m, key)
			drop--
		}
	}
	sh.m[k] = cachedToken{c: who, until: until}
}

func (c *tokenCache) len() int {
	if c == nil {
		return 0
	}
	n := 0
	for i := range c.shards {
		c.shards[i].mu.Lock()
		n += len(c.shards[i].m)
		c.shards[i].mu.Unlock()
	}
	return n
}
