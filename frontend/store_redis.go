package frontend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"k8s.io/apimachinery/pkg/util/wait"
)

// redisStore shares live tickets between frontend replicas through Redis (the same kind of Redis a
// real Open Match uses). Per player it keeps two keys: <prefix>live:<player>, a hash {id, key} that
// expires with the ticket's lifetime, and <prefix>lock:<player>, a random token set with NX and a
// TTL while one replica runs that player's create, cancel or expiry. The token is checked on
// release (a Lua script), so a replica whose hold timed out cannot release another's.
//
// Who can reach it: whoever can reach RedisAddr can read player ids and their ticket ids and can
// block a player's calls; keep Redis on the frontends' private network, with a password
// (RedisPasswordFile) when the network is shared.
type redisStore struct {
	rdb     *redis.Client
	prefix  string
	ttl     time.Duration
	timeout time.Duration
	mu      sync.Mutex
	tokens  map[string]string // player → lock token this replica holds
}

// releaseScript stores or clears the live ticket and deletes the lock, only while this replica's
// token holds it. KEYS: lock, live. ARGV: token, ticket id ("" clears), key, ttl in ms.
var releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == "" then
  redis.call("DEL", KEYS[2])
else
  redis.call("HSET", KEYS[2], "id", ARGV[2], "key", ARGV[3])
  redis.call("PEXPIRE", KEYS[2], ARGV[4])
end
redis.call("DEL", KEYS[1])
return 1
`)

func newRedisStore(ctx context.Context, cfg StoreConfig) (*redisStore, error) {
	opt := &redis.Options{Addr: cfg.RedisAddr, DB: cfg.RedisDB, DialTimeout: cfg.Timeout, ReadTimeout: cfg.Timeout, WriteTimeout: cfg.Timeout}
	if cfg.RedisPasswordFile != "" {
		b, err := os.ReadFile(cfg.RedisPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("frontend: redis password: %w", err)
		}
		opt.Password = strings.TrimSpace(string(b))
	}
	rdb := redis.NewClient(opt)
	pctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("frontend: live-ticket store redis %s: %w", cfg.RedisAddr, err)
	}
	s := &redisStore{rdb: rdb, prefix: cfg.KeyPrefix, ttl: cfg.LockTTL, timeout: cfg.Timeout,
		tokens: map[string]string{}}
	return s, nil
}

func (s *redisStore) lockKey(player string) string { return s.prefix + "lock:" + player }
func (s *redisStore) liveKey(player string) string { return s.prefix + "live:" + player }

// Acquire sets the lock token with NX, retrying with jittered backoff while another replica holds
// it, then reads the live ticket.
func (s *redisStore) Acquire(ctx context.Context, player string) (Live, error) {
	var buf [16]byte
	_, _ = rand.Read(buf[:])
	token := hex.EncodeToString(buf[:])
	// wait.ExponentialBackoffWithContext would stop retrying as soon as the delay reaches Cap (its
	// Steps drop to 0), failing a call that merely queued behind another replica's for ~250 ms; so
	// retry here until the caller's context ends, or a little over the lock TTL, by which time even
	// a crashed holder's lock has expired.
	backoff := wait.Backoff{Duration: 2 * time.Millisecond, Factor: 2, Jitter: 0.5, Steps: math.MaxInt32, Cap: 100 * time.Millisecond}
	lctx, cancel := context.WithTimeout(ctx, s.ttl+s.timeout)
	defer cancel()
	for {
		octx, ocancel := context.WithTimeout(lctx, s.timeout)
		ok, err := s.rdb.SetNX(octx, s.lockKey(player), token, s.ttl).Result()
		ocancel()
		if err != nil {
			// Redis unreachable: fail the call rather than risk a second live ticket.
			return Live{}, fmt.Errorf("live-ticket store: lock player %q: %w", player, err)
		}
		if ok {
			break
		}
		t := time.NewTimer(backoff.Step())
		select {
		case <-lctx.Done():
			t.Stop()
			return Live{}, fmt.Errorf("live-ticket store: lock player %q: still held by another call: %w", player, lctx.Err())
		case <-t.C:
		}
	}
	s.mu.Lock()
	s.tokens[player] = token
	s.mu.Unlock()
	octx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	m, err := s.rdb.HGetAll(octx, s.liveKey(player)).Result()
	if err != nil {
		_ = s.release(ctx, player, token, nil, 0)
		return Live{}, fmt.Errorf("live-ticket store: read player %q: %w", player, err)
	}
	return Live{TicketID: m["id"], Key: m["key"]}, nil
}

func (s *redisStore) Release(ctx context.Context, player string, live Live, ttl time.Duration) error {
	s.mu.Lock()
	token, ok := s.tokens[player]
	delete(s.tokens, player)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("live-ticket store: release player %q: not held", player)
	}
	return s.release(ctx, player, token, &live, ttl)
}

// release runs releaseScript; live nil releases the lock and leaves the live ticket as it is.
func (s *redisStore) release(ctx context.Context, player, token string, live *Live, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	if live == nil {
		_, err := s.rdb.Eval(ctx, `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`,
			[]string{s.lockKey(player)}, token).Result()
		return err
	}
	n, err := releaseScript.Run(ctx, s.rdb, []string{s.lockKey(player), s.liveKey(player)},
		token, live.TicketID, live.Key, max(ttl, time.Millisecond).Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("live-ticket store: save player %q: %w", player, err)
	}
	if n == 0 {
		return fmt.Errorf("live-ticket store: player %q: the lock expired before release (store-lock-ttl too short?)", player)
	}
	return nil
}

func (s *redisStore) Current(ctx context.Context, player string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	id, err := s.rdb.HGet(ctx, s.liveKey(player), "id").Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("live-ticket store: read player %q: %w", player, err)
	}
	return id, nil
}

func (s *redisStore) Close() error { return s.rdb.Close() }
