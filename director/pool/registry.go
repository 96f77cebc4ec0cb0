package pool

import (
	"sort"
	"time"
)

// AddServer puts a server the backend allocated (or listed with the pool label) into the pool.
// Known servers only get fresher backend facts until they report.
func (p *Pool) AddServer(info ServerInfo, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.backends[info.Backend] = true
	defer p.notifyLocked()
	s, ok := p.servers[info.Name]
	if !ok {
		s = &server{ServerInfo: info, sessions: make(map[string]*session), lastReport: now}
		p.servers[info.Name] = s
	}
	if s.reported {
		return
	}
	if info.Address != "" {
		s.Address = info.Address
	}
	if info.Capacity > 0 {
		s.Capacity = info.Capacity
	}
	if s.Capacity <= 0 {
		s.Capacity = p.cfg.DefaultCap
	}
	s.baseline = max(info.Used, 0)
	if info.Draining {
		s.state = Draining
	}
}

// AdoptServer puts a server no backend lists (e.g. a hand-started kumi gameserver that reported
// with the control secret) into the pool under backend, whose weight share it then serves. Unlike
// a backend's servers it leaves the pool by itself: Sweep drops it after AdoptedSilence without a
// report. A server already in the pool is left as it is; false then.
func (p *Pool) AdoptServer(info ServerInfo, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.servers[info.Name]; ok {
		return false
	}
	p.backends[info.Backend] = true
	s := &server{ServerInfo: info, sessions: make(map[string]*session), lastReport: now, adopted: true}
	if s.Capacity <= 0 {
		s.Capacity = p.cfg.DefaultCap
	}
	p.servers[info.Name] = s
	p.notifyLocked()
	return true
}

// AdoptedSilence is how long an adopted server may stay silent before Sweep drops it and its
// sessions: a few report timeouts, so a slow report does not lose its players.
func (c Config) AdoptedSilence() time.Duration { return 4 * c.ReportTimeout }

// HasServer reports whether the pool holds the server.
func (p *Pool) HasServer(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.servers[name]
	return ok
}

// RemoveServer drops a server that is gone (deleted, unhealthy, shut down) and every session whose
// home it was; it returns those sessions' ids.
func (p *Pool) RemoveServer(name string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.servers[name]
	if !ok {
		return nil
	}
	var gone []string
	for id := range s.sessions {
		p.dropSessionLocked(id)
		gone = append(gone, id)
	}
	delete(p.servers, name)
	sort.Strings(gone)
	return gone
}

func (p *Pool) dropSessionLocked(id string) {
	ss, ok := p.sessions[id]
	if !ok {
		return
	}
	delete(p.sessions, id)
	if s := p.servers[ss.server]; s != nil {
		delete(s.sessions, id)
	}
	if ss.group != "" && p.groups[ss.group] == id {
		delete(p.groups, ss.group)
	}
}

// Drain marks a server to drain (e.g. from the admin API); false if unknown.
func (p *Pool) Drain(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.servers[name]
	if !ok {
		return false
	}
	s.drain = true
	s.state = Draining
	return true
}
