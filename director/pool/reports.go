package pool

import (
	"sort"
	"time"
)

// ReportResult is the pool's answer to a report.
type ReportResult struct {
	// Known is false for a server not in the pool (e.g. a Ready server not yet allocated).
	Known bool
	// Drain asks the server to drain.
	Drain bool
	// Ended lists the sessions the report ended (explicitly or by leaving them out).
	Ended []string
	// Adopted lists live sessions the pool learned of from this report (e.g. after a restart).
	Adopted []string
}

// Report applies a server's snapshot. The snapshot is authoritative for the sessions it lists and
// for sessions it had listed before; reservations it does not list yet stay until they expire.
func (p *Pool) Report(r Report, now time.Time) ReportResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.servers[r.Server]
	if !ok {
		return ReportResult{}
	}
	res := ReportResult{Known: true}
	defer p.notifyLocked()
	s.reported = true
	s.lastReport = now
	s.baseline = 0
	if r.Address != "" {
		s.Address = r.Address
	}
	if r.Capacity > 0 {
		s.Capacity = r.Capacity
	}
	if r.MaxMembers > 0 {
		s.maxMembers = r.MaxMembers
	}
	switch {
	case r.State == Stopping:
		s.state = Stopping
	case r.State == Draining && s.state == Accepting:
		s.state = Draining
	case r.State == Accepting && s.state == Draining && !s.drain:
		// The server drained on its own (e.g. a drain label) and took it back.
		s.state = Accepting
	}
	for _, id := range r.Ended {
		if ss, ok := p.sessions[id]; ok && ss.server == s.Name {
			p.dropSessionLocked(id)
			res.Ended = append(res.Ended, id)
		}
	}
	live := make(map[string]bool, len(r.Sessions))
	for _, sl := range r.Sessions {
		live[sl.ID] = true
		ss, ok := p.sessions[sl.ID]
		if ok && ss.server != s.Name {
			continue // moved away: the new home owns it
		}
		if !ok {
			ss = &session{id: sl.ID, server: s.Name, group: groupOfSession(sl.ID), members: make(map[string]time.Time)}
			p.sessions[sl.ID] = ss
			s.sessions[sl.ID] = ss
			if ss.group != "" {
				if _, taken := p.groups[ss.group]; !taken {
					p.groups[ss.group] = sl.ID
				}
			}
			res.Adopted = append(res.Adopted, sl.ID)
		}
		ss.confirmed = true
		joined := make(map[string]bool, len(sl.Players))
		for _, pl := range sl.Players {
			joined[pl] = true
			ss.members[pl] = time.Time{}
		}
		for pl, exp := range ss.members {
			if !joined[pl] && (exp.IsZero() || !now.Before(exp)) {
				delete(ss.members, pl) // left, or never came
			}
		}
	}
	for id, ss := range s.sessions {
		if !live[id] && ss.confirmed {
			p.dropSessionLocked(id)
			res.Ended = append(res.Ended, id)
		}
	}
	sort.Strings(res.Ended)
	res.Drain = s.drain
	return res
}

// Sweep expires reservations (sessions placed but never reported, members who never joined) and
// drops adopted servers silent for AdoptedSilence; it returns the ids of sessions dropped.
func (p *Pool) Sweep(now time.Time) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var gone []string
	for name, s := range p.servers {
		if s.adopted && now.Sub(s.lastReport) >= p.cfg.AdoptedSilence() {
			for id := range s.sessions {
				p.dropSessionLocked(id)
				gone = append(gone, id)
			}
			delete(p.servers, name)
		}
	}
	for id, ss := range p.sessions {
		for pl, exp := range ss.members {
			if !exp.IsZero() && !now.Before(exp) {
				delete(ss.members, pl)
			}
		}
		if !ss.confirmed && !now.Before(ss.expires) {
			p.dropSessionLocked(id)
			gone = append(gone, id)
		}
	}
	sort.Strings(gone)
	if len(gone) > 0 {
		p.notifyLocked()
	}
	return gone
}
