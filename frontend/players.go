package frontend

import (
	"hash/maphash"
	"sync"
)

// players maps a player to their one live ticket. An entry exists only while a player has a live
// ticket or a call in progress, so memory follows the number of waiting players.
type players struct {
	seed   maphash.Seed
	shards [64]playerShard
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

func newPlayers() *players {
	p := &players{seed: maphash.MakeSeed()}
	for i := range p.shards {
		p.shards[i].m = make(map[string]*entry)
	}
	return p
}

func (p *players) shard(player string) *playerShard {
	return &p.shards[maphash.String(p.seed, player)%uint64(len(p.shards))]
}

// lock returns player's entry, created if absent, locked. Release it with unlock.
func (p *players) lock(player string) *entry {
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

// lockExisting is lock without creating: nil when the player has no entry.
func (p *players) lockExisting(player string) *entry {
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

// unlock releases e, dropping it from the map when it holds no ticket.
func (p *players) unlock(player string, e *entry) {
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
// expired).
func (p *players) forget(player, id string) {
	if e := p.lockExisting(player); e != nil {
		if e.ticketID == id {
			e.ticketID, e.key = "", ""
		}
		p.unlock(player, e)
	}
}

// current is player's live ticket id, "" when none.
func (p *players) current(player string) string {
	sh := p.shard(player)
	sh.mu.Lock()
	e := sh.m[player]
	sh.mu.Unlock()
	if e == nil {
		return ""
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ticketID
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
