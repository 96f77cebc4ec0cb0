package pool

import (
	"errors"
	"fmt"
	"time"
)

// Move reserves a slot for a session leaving a draining server on another accepting server, keeping
// its id and group; the members get reservations there. ErrNoRoom when nowhere has room.
func (p *Pool) Move(from, sessionID string, players []string, now time.Time) (Placement, error) {
	if sessionID == "" {
		return Placement{}, errors.New("pool: move needs a session id")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ss, ok := p.sessions[sessionID]
	if ok && ss.server != from {
		// Asked again (e.g. the reply was lost): answer with the home it already moved to.
		if s := p.servers[ss.server]; s != nil {
			ss.reserve(players, now.Add(p.cfg.ReservationTTL))
			return Placement{Server: s.Name, Backend: s.Backend, Address: s.Address, SessionID: sessionID}, nil
		}
	}
	if _, known := p.servers[from]; !known {
		return Placement{}, fmt.Errorf("%w: server %q is not in the pool", ErrUnknownSession, from)
	}
	dst := p.pickLocked(sessionID, from, now)
	if dst == nil {
		return Placement{}, ErrNoRoom
	}
	if !ok {
		ss = &session{id: sessionID, group: groupOfSession(sessionID), members: make(map[string]time.Time)}
		p.sessions[sessionID] = ss
		if ss.group != "" {
			if _, taken := p.groups[ss.group]; !taken {
				p.groups[ss.group] = sessionID
			}
		}
	} else if src := p.servers[ss.server]; src != nil {
		delete(src.sessions, sessionID)
	}
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
