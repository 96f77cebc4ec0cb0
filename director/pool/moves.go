package pool

import (
	"errors"
	"fmt"
	"time"
)

// Move reserves a slot for a session leaving a draining server on another accepting server, keeping
// its id and group; the members get reservations there. ErrNoRoom when nowhere has room.
//
// Only the session's host may move it, and only its members (joined or reserved): from must host
// the session, or be the server it was last moved away from (a retry after a lost reply), and
// every player must be a member. Otherwise ErrNotHosted or ErrNotMember, so a game server cannot
// mint tokens for another server's session or for players who are not in its own
// (director/control.go checks that from is the caller).
func (p *Pool) Move(from, sessionID string, players []string, now time.Time) (Placement, error) {
	if sessionID == "" {
		return Placement{}, errors.New("pool: move needs a session id")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, known := p.servers[from]; !known {
		return Placement{}, fmt.Errorf("%w: server %q is not in the pool", ErrUnknownSession, from)
	}
	ss, ok := p.sessions[sessionID]
	if !ok {
		return Placement{}, fmt.Errorf("%w: session %q is not on server %q", ErrUnknownSession, sessionID, from)
	}
	if ss.server != from && ss.movedFrom != from {
		return Placement{}, fmt.Errorf("%w: session %q is on server %q, not %q", ErrNotHosted, sessionID, ss.server, from)
	}
	for _, pl := range players {
		if _, in := ss.members[pl]; !in {
			return Placement{}, fmt.Errorf("%w: player %q is not a member of session %q", ErrNotMember, pl, sessionID)
		}
	}
	if ss.server != from {
		// Asked again (e.g. the reply was lost): answer with the home it already moved to.
		if s := p.servers[ss.server]; s != nil {
			ss.reserve(players, now.Add(p.cfg.ReservationTTL))
			return Placement{Server: s.Name, Backend: s.Backend, Address: s.Address, SessionID: sessionID}, nil
		}
	}
	dst := p.pickLocked(sessionID, from, now)
	if dst == nil {
		return Placement{}, ErrNoRoom
	}
	if src := p.servers[ss.server]; src != nil {
		delete(src.sessions, sessionID)
	}
	ss.movedFrom = from
	ss.server = dst.Name
	ss.confirmed = false
	ss.expires = now.Add(p.cfg.ReservationTTL)
	ss.members = make(map[string]time.Time, len(players))
	ss.reserve(players, ss.expires)
	if dst.maxMembers > 0 && (ss.maxMembers == 0 || dst.maxMembers < ss.maxMembers) {
		ss.maxMembers = dst.maxMembers
	}
	dst.sessions[sessionID] = ss
	return Placement{Server: dst.Name, Backend: dst.Backend, Address: dst.Address, SessionID: sessionID}, nil
}
