package frontend

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// StoreConfig chooses where each player's one live ticket is kept. Memory (the default) serves one
// frontend replica; with RedisAddr every replica sharing that Redis sees the same live tickets, so
// a player cannot hold two by reaching two replicas (behind a load balancer, on reconnect).
type StoreConfig struct {
	RedisAddr         string        `flag:"redis-addr" help:"host:port of a Redis shared by every frontend replica for the one-live-ticket rule (empty: in memory, one replica)"`
	RedisPasswordFile string        `flag:"redis-password-file" help:"file holding the Redis password (AUTH); empty sends none"`
	RedisDB           int           `flag:"redis-db" help:"Redis database number"`
	KeyPrefix         string        `flag:"key-prefix" help:"prefix of every Redis key the frontend writes (share one Redis between deployments with different prefixes)"`
	LockTTL           time.Duration `flag:"lock-ttl" help:"longest a replica holds a player's lock in Redis (it is released when the call ends; the TTL frees it after a crash)"`
	Timeout           time.Duration `flag:"timeout" help:"timeout of each store operation"`
}

// DefaultStoreConfig keeps live tickets in memory.
func DefaultStoreConfig() StoreConfig {
	return StoreConfig{KeyPrefix: "kumi:frontend:", LockTTL: 15 * time.Second, Timeout: 2 * time.Second}
}

func (c StoreConfig) validate() error {
	if c.RedisAddr == "" {
		return nil
	}
	switch {
	case c.LockTTL < time.Second:
		return fmt.Errorf("frontend: store-lock-ttl %s must be at least 1s", c.LockTTL)
	case c.Timeout <= 0:
		return fmt.Errorf("frontend: store-timeout %s must be positive", c.Timeout)
	case c.KeyPrefix == "":
		return errors.New("frontend: store-key-prefix must not be empty with a Redis store")
	}
	return nil
}

// Live is a player's live ticket: its id ("" when none) and the canonical key of its attributes
// (the one-live-ticket comparison: an identical CreateTicket returns the live ticket).
type Live struct {
	TicketID string
	Key      string
}

// Store keeps each player's live ticket. The players map (players.go) serialises one player's
// calls inside a replica and loads and saves the player's Live through the store, so the store
// only has to serialise across replicas.
type Store interface {
	// Acquire holds player's lock across every replica sharing the store until Release, waiting
	// for it until ctx ends, and returns the player's live ticket.
	Acquire(ctx context.Context, player string) (Live, error)
	// Release records live as player's live ticket (TicketID "" clears it), keeps it at most ttl,
	// and releases the hold.
	Release(ctx context.Context, player string, live Live, ttl time.Duration) error
	// Current is player's live ticket id, "" when none; it takes no hold.
	Current(ctx context.Context, player string) (string, error)
	// Close releases the store's connections.
	Close() error
}

// newStore opens the store cfg names.
func newStore(ctx context.Context, cfg StoreConfig) (Store, error) {
	if cfg.RedisAddr == "" {
		return newMemoryStore(), nil
	}
	return newRedisStore(ctx, cfg)
}

// memoryStore is the single-replica store: a map, its holds given by the players map's per-player
// lock (one process, so nothing else can race).
type memoryStore struct {
	mu   sync.Mutex
	live map[string]memoryLive
}

type memoryLive struct {
	Live
	until time.Time
}

func newMemoryStore() *memoryStore { return &memoryStore{live: map[string]memoryLive{}} }

func (m *memoryStore) get(player string) Live {
	l, ok := m.live[player]
	if !ok {
		return Live{}
	}
	if time.Now().After(l.until) {
		delete(m.live, player)
		return Live{}
	}
	return l.Live
}

func (m *memoryStore) Acquire(_ context.Context, player string) (Live, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.get(player), nil
}

func (m *memoryStore) Release(_ context.Context, player string, live Live, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if live.TicketID == "" {
		delete(m.live, player)
		return nil
	}
	m.live[player] = memoryLive{Live: live, until: time.Now().Add(ttl)}
	return nil
}

func (m *memoryStore) Current(_ context.Context, player string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.get(player).TicketID, nil
}

func (m *memoryStore) Close() error { return nil }

// storeTTL is how long the store keeps a live ticket: past the ticket's lifetime, so the expiry
// (which runs at the lifetime and retries when Open Match is unreachable) still finds it, yet
// bounded, so a crashed replica's records go away on their own.
func storeTTL(lifetime time.Duration) time.Duration { return 2*lifetime + time.Minute }
