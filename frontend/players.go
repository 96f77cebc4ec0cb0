package frontend

import (
	"context"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"
)

// players maps a player to their one live ticket. An entry exists only while a player has a live
// ticket or a call in progress, so memory follows the number of waiting players. The entry's lock
// serialises one player's calls in this replica; the live ticket itself is loaded from and saved
// to store (store.go: memory, or Redis shared by every replica) while the entry is locked.
type players struct {
	seed     maphash.Seed
	shards   [64]playerShard
	store    Store
	lifetime time.Duration // how long the store keeps a live ticket (the ticket lifetime)
	timeout  time.Duration // store calls made without a caller's context
	log      *slog.Logger
}

type playerShard struct {
	mu sync.Mutex
	m  map[string]*entry
}

// entry is one player's state; its mutex serialises that player's create, cancel and expiry.
type entry struct {
	mu       sync.Mutex
	ticketID string // live ticket, "" when none
	key      string // canonical attributes of the live ticket
	removed  bool   // deleted from the map: lockers must retry with a fresh entry
}

func newPlayers(store Store, lifetime, timeout time.Duration, log *slog.Logger) *players {
	p := &players{seed: maphash.MakeSeed(), store: store, lifetime: lifetime, timeout: timeout, log: log}
	for i := range p.shards {
		p.shards[i].m = make(map[string]*entry)
	}
	return p
}

func (p *players) shard(player string) *playerShard {
	return &p.shards[maphash.String(p.seed, player)%uint64(len(p.shards))]
}

// lock returns player's entry, created if absent, locked and holding the store's hold with the
// player's live ticket loaded. Release it with unlock.
func (p *players) lock(ctx context.Context, player string) (*entry, error) {
	return p.load(ctx, player, p.lockLocal(player))
}

// lockExisting is lock for a player this replica has an entry for: nil, nil when it has none.
func (p *players) lockExisting(ctx context.Context, player string) (*entry, error) {
	e := p.lockExistingLocal(player)
	if e == nil {
		return nil, nil
	}
	return p.load(ctx, player, e)
}

func (p *players) load(ctx context.Context, player string, e *entry) (*entry, error) {
	live, err := p.store.Acquire(ctx, player)
	if err != nil {
		p.unlockLocal(player, e)
		return nil, err
	}
	e.ticketID, e.key = live.TicketID, live.Key
	return e, nil
}

// unlock saves e's live ticket to the store, releases the store's hold and the entry.
func (p *players) unlock(ctx context.Context, player string, e *entry) {
	if err := p.store.Release(ctx, player, Live{TicketID: e.ticketID, Key: e.key}, p.lifetime); err != nil {
		p.log.Warn("live-ticket store: saving a player's live ticket failed", "player", player, "ticket", e.ticketID, "err", err)
	}
	p.unlockLocal(player, e)
}

// storeCtx bounds store calls made outside a request (forget, current).
func (p *players) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), p.timeout)
}

// lockLocal returns player's entry, created if absent, locked. Release it with unlockLocal.
func (p *players) lockLocal(player string) *entry {
	sh := p.shard(player)
	for {
		sh.mu.Lock()
		e := sh.m[player]
		if e == nil {
			e = &entry{}
			sh.m[player] = e
		}
		sh.mu.Unlock()
		e.mu.Lock()
		if !e.removed {
			return e
		}
		e.mu.Unlock()
	}
}

// lockExistingLocal is lockLocal without creating: nil when the player has no entry.
func (p *players) lockExistingLocal(player string) *entry {
	sh := p.shard(player)
	for {
		sh.mu.Lock()
		e := sh.m[player]
		sh.mu.Unlock()
		if e == nil {
			return nil
		}
		e.mu.Lock()
		if !e.removed {
			return e
		}
		e.mu.Unlock()
	}
}

// unlockLocal releases e, dropping it from the map when it holds no ticket.
func (p *players) unlockLocal(player string, e *entry) {
	if e.ticketID == "" {
		sh := p.shard(player)
		sh.mu.Lock()
		if sh.m[player] == e {
			delete(sh.m, player)
		}
		sh.mu.Unlock()
		e.removed = true
	}
	e.mu.Unlock()
}

// forget clears player's live ticket if it is still id (the ticket was assigned, cancelled or
// expired). A store error leaves the id recorded; the next create finds it assigned or gone.
func (p *players) forget(player, id string) {
	ctx, cancel := p.storeCtx()
	defer cancel()
	e, err := p.lock(ctx, player)
	if err != nil {
		p.log.Warn("live-ticket store: forgetting a ticket failed", "player", player, "ticket", id, "err", err)
		return
	}
	if e.ticketID == id {
		e.ticketID, e.key = "", ""
	}
	p.unlock(ctx, player, e)
}

// current is player's live ticket id, "" when none (or when the store cannot be read).
func (p *players) current(player string) string {
	ctx, cancel := p.storeCtx()
	defer cancel()
	id, err := p.store.Current(ctx, player)
	if err != nil {
		p.log.Warn("live-ticket store: reading a player's live ticket failed", "player", player, "err", err)
		return ""
	}
	return id
}

// count is the number of players with an entry (for the live-players gauge).
func (p *players) count() int {
	n := 0
	for i := range p.shards {
		sh := &p.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
