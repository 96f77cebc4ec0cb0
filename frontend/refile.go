package frontend

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/kumi-dev/kumi/api/openmatch"
)

// An Open Match core without storage (kumi's embedded core) forgets every ticket when it restarts.
// A player waiting on a watch would then be told "ticket no longer exists" and lose their place.
// Instead the watch (watch.go), on finding its ticket gone right after its stream broke, asks the
// frontend to file the same ticket again; the player's live ticket becomes the new id and the old id
// keeps answering as an alias, so the client never notices.
//
// Only a break followed by NotFound triggers it: a ticket cancelled, expired or replaced through
// this frontend is no longer the player's live ticket and is never filed again, and a ticket that
// was assigned is never NotFound while its watch runs (the watch returns at the assignment).

// errNotLive: the ticket is no longer the player's live ticket (cancelled, expired, replaced).
var errNotLive = errors.New("ticket is no longer the player's live ticket")

// aliases maps ticket ids a core lost to the ids they were filed again under.
type aliases struct {
	mu sync.Mutex
	m  map[string]alias
}

type alias struct {
	to    string
	until time.Time // the ticket's lifetime end: the alias is useless after it
}

func newAliases() *aliases { return &aliases{m: map[string]alias{}} }

// set records that old was filed again as to, until the ticket's lifetime ends.
func (a *aliases) set(old, to string, until, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	// Sweep on write: entries are few (one per re-filed ticket) and short-lived.
	maps.DeleteFunc(a.m, func(_ string, v alias) bool { return now.After(v.until) })
	a.m[old] = alias{to: to, until: until}
}

// resolve follows id's aliases (a ticket re-filed twice after two restarts) to the current id.
func (a *aliases) resolve(id string, now time.Time) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	for range 8 { // bounded: a chain is as long as the restarts during one ticket's lifetime
		v, ok := a.m[id]
		if !ok || now.After(v.until) {
			break
		}
		id = v.to
	}
	return id
}

// refile files lost ticket t (last known as id) again for its player, if it is still the player's
// live ticket, and returns the new id. The ticket keeps its search fields and extensions (re-sealed
// now, so the director's seal-age check starts again) and its original expiry deadline.
func (s *service) refile(ctx context.Context, t *openmatch.Ticket, id string) (string, error) {
	player := owner(t)
	e, err := s.players.lockExisting(ctx, player)
	if err != nil {
		return "", err
	}
	if e == nil {
		return "", errNotLive
	}
	defer s.players.unlock(ctx, player, e)
	if e.ticketID != id {
		return "", errNotLive
	}
	ext := maps.Clone(t.GetExtensions())
	if s.seal != nil {
		s.seal.Seal(ext, player, t.GetSearchFields(), s.now())
	}
	octx, cancel := s.omCtx(ctx)
	defer cancel()
	nt, err := s.om.CreateTicket(octx, &openmatch.CreateTicketRequest{Ticket: &openmatch.Ticket{SearchFields: t.GetSearchFields(), Extensions: ext}})
	if err != nil {
		return "", err
	}
	deadline := s.now().Add(s.cfg.TicketLifetime)
	if ct := t.GetCreateTime(); ct != nil {
		deadline = ct.AsTime().Add(s.cfg.TicketLifetime)
	}
	e.ticketID = nt.GetId()
	s.aliases.set(t.GetId(), nt.GetId(), deadline, s.now())
	if id != t.GetId() {
		s.aliases.set(id, nt.GetId(), deadline, s.now())
	}
	s.expiry.push(expiryItem{ticketID: nt.GetId(), player: player, deadline: deadline})
	s.m.refiled.Inc()
	s.log.LogAttrs(ctx, slog.LevelWarn, "ticket lost by Open Match (core restarted?); filed again",
		slog.String("player", player), slog.String("ticket", t.GetId()), slog.String("lost", id), slog.String("new", nt.GetId()))
	return nt.GetId(), nil
}
