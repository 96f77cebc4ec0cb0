package pool

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"
)

// accepting reports whether s takes new sessions now.
func (p *Pool) accepting(s *server, now time.Time) bool {
	if s.state != Accepting || s.drain || s.Address == "" {
		return false // no address yet: an assignment would have nowhere to send the player
	}
	if s.reported && now.Sub(s.lastReport) >= p.cfg.ReportTimeout {
		return false
	}
	return true
}

// joinable says whether late members may still join a live session on s: on an accepting server,
// and also on a draining one, whose game server admits members of its live sessions during the
// drain grace and then moves each session with all its members as one unit. Otherwise a late
// member would be split from its group into a fresh session.
func (p *Pool) joinable(s *server, now time.Time) bool {
	if s.state == Stopping || s.Address == "" {
		return false
	}
	return !s.reported || now.Sub(s.lastReport) < p.cfg.ReportTimeout
}

func (s *server) used() int { return s.baseline + len(s.sessions) }

func (s *server) free() int { return max(s.Capacity-s.used(), 0) }

// Place finds a place for one match: into its group's live session when there is room there
// (also while that session's server drains: see joinable), otherwise a new session on the fullest
// accepting server with a free slot of the backend the weights choose for the session id. When
// that backend has no free slot the answer is a ShortError, unless req.Failover allows another
// backend with weight > 0: a backend's weight caps its share of new sessions.
func (p *Pool) Place(req Request, now time.Time) (Placement, error) {
	if len(req.Players) == 0 {
		return Placement{}, errors.New("pool: a match needs at least one player")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var (
		gk     string
		live   *session // the group's live session, when the match only partly fits in it
		liveOn *server
		fit    int
	)
	if req.Group != "" {
		gk = GroupKey(req.Group)
		if id, ok := p.groups[gk]; ok {
			ss := p.sessions[id]
			s := p.servers[ss.server]
			if s != nil && p.joinable(s, now) {
				if ss.room(req.Players, now) {
					ss.reserve(req.Players, now.Add(p.cfg.ReservationTTL))
					return Placement{Server: s.Name, Backend: s.Backend, Address: s.Address, SessionID: id, Joined: true}, nil
				}
				// Fill the open session before opening a new one: a group arriving in waves
				// of 12, 11, 16 and 1 at 16 per session ends as 16/16/8, not 12/11/16/1.
				if fit = ss.free(now); fit > 0 && fit < len(req.Players) {
					live, liveOn = ss, s
				}
			}
		}
	}
	players := req.Players
	if live != nil {
		players = req.Players[fit:]
	}
	if req.SessionID == "" {
		return Placement{}, errors.New("pool: a new session needs an id (NewSessionID)")
	}
	if _, dup := p.sessions[req.SessionID]; dup {
		return Placement{}, fmt.Errorf("pool: session id %q is already in use", req.SessionID)
	}
	key := req.ChoiceKey
	if key == "" {
		key = req.SessionID
	}
	first := p.chooseLocked(key)
	if first == "" {
		return Placement{}, ErrNoRoom
	}
	var from string
	s := p.fullestLocked(first, "", now)
	if s == nil {
		if !req.Failover {
			return Placement{}, &ShortError{Backend: first}
		}
		if s = p.spillLocked(first, "", now); s == nil {
			return Placement{}, ErrNoRoom
		}
		from = first
	}
	ss := &session{id: req.SessionID, server: s.Name, group: gk, maxMembers: memberLimit(req.MaxMembers, s.maxMembers),
		expires: now.Add(p.cfg.ReservationTTL), members: make(map[string]time.Time, len(players))}
	ss.reserve(players, ss.expires)
	p.sessions[ss.id] = ss
	s.sessions[ss.id] = ss
	if gk != "" {
		// A new session of a group whose old one is full or gone becomes the group's session.
		p.groups[gk] = ss.id
	}
	p.rate.add(now, 1)
	pl := Placement{Server: s.Name, Backend: s.Backend, Address: s.Address, SessionID: ss.id, FailedOver: from}
	if live == nil {
		return pl, nil
	}
	live.reserve(req.Players[:fit], now.Add(p.cfg.ReservationTTL))
	pl.Players = slices.Clip(players)
	return Placement{Server: liveOn.Name, Backend: liveOn.Backend, Address: liveOn.Address, SessionID: live.id, Joined: true,
		Players: slices.Clip(req.Players[:fit]), Rest: &pl}, nil
}

// free is how many more members the session takes (0 for no limit: then everyone fits).
func (ss *session) free(now time.Time) int {
	if ss.maxMembers <= 0 {
		return 0
	}
	n := 0
	for _, exp := range ss.members {
		if exp.IsZero() || now.Before(exp) {
			n++
		}
	}
	return max(ss.maxMembers-n, 0)
}

func memberLimit(match, server int) int {
	switch {
	case match > 0 && server > 0:
		return min(match, server)
	case match > 0:
		return match
	}
	return server
}

func (ss *session) room(players []string, now time.Time) bool {
	if ss.maxMembers <= 0 {
		return true
	}
	n := 0
	for _, exp := range ss.members {
		if exp.IsZero() || now.Before(exp) {
			n++
		}
	}
	for _, pl := range players {
		if _, in := ss.members[pl]; !in {
			n++
		}
	}
	return n <= ss.maxMembers
}

func (ss *session) reserve(players []string, until time.Time) {
	for _, pl := range players {
		if exp, in := ss.members[pl]; in && exp.IsZero() {
			continue // already joined
		}
		ss.members[pl] = until
	}
}

// pickLocked chooses the server for a moved session keyed by key, never exclude: the backend the
// weights choose, else any other with weight. A move relocates a live session, so it is not held
// to the weights' cap on new sessions.
func (p *Pool) pickLocked(key, exclude string, now time.Time) *server {
	first := p.chooseLocked(key)
	if first == "" {
		return nil
	}
	if s := p.fullestLocked(first, exclude, now); s != nil {
		return s
	}
	return p.spillLocked(first, exclude, now)
}

// spillLocked is the fullest free server of the backends with weight other than first, heaviest
// backend first.
func (p *Pool) spillLocked(first, exclude string, now time.Time) *server {
	others := p.backendNames()
	sort.SliceStable(others, func(i, j int) bool { return p.weightLocked(others[i]) > p.weightLocked(others[j]) })
	for _, b := range others {
		if b == first || p.weightLocked(b) == 0 {
			continue
		}
		if s := p.fullestLocked(b, exclude, now); s != nil {
			return s
		}
	}
	return nil
}

// fullestLocked is the accepting server of backend with the fewest free slots above zero (packing).
func (p *Pool) fullestLocked(backend, exclude string, now time.Time) *server {
	var best *server
	for _, s := range p.servers {
		if s.Backend != backend || s.Name == exclude || !p.accepting(s, now) {
			continue
		}
		f := s.free()
		if f == 0 {
			continue
		}
		if best == nil || f < best.free() || (f == best.free() && s.Name < best.Name) {
			best = s
		}
	}
	return best
}
