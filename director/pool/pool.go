package pool

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/xid"
)

// Config holds the pool's settings; the director embeds it in its own Config.
type Config struct {
	MinFreeSlots   int           `flag:"min-free-slots" help:"free session slots kept on accepting servers regardless of load"`
	RateShare      float64       `flag:"rate-share" help:"extra free slots as a share of (recent sessions per second × allocation lead time)"`
	LeadTime       time.Duration `flag:"lead-time" help:"least allocation lead time assumed for the pool target (the measured allocation latency is used when larger)"`
	RateWindow     time.Duration `flag:"rate-window" help:"window over which the recent placement rate is measured"`
	ReservationTTL time.Duration `flag:"reservation-ttl" help:"how long a placed session or member holds its slot before its server reports it joined"`
	HighWatermark  int           `flag:"high-watermark" help:"free slots above the target that, held for scale-in-after, start draining the least-loaded servers"`
	ScaleInAfter   time.Duration `flag:"scale-in-after" help:"how long free slots must stay above target+high-watermark before servers are drained"`
	ReportTimeout  time.Duration `flag:"report-timeout" help:"a server that reported before and is silent this long takes no new sessions until it reports again"`
	DefaultCap     int           `flag:"default-capacity" help:"sessions per server assumed when neither the backend's sessions counter nor a report gives one"`
}

// DefaultConfig returns the pool defaults.
func DefaultConfig() Config {
	return Config{
		MinFreeSlots:   20,
		RateShare:      2,
		LeadTime:       time.Second,
		RateWindow:     10 * time.Second,
		ReservationTTL: 90 * time.Second,
		HighWatermark:  200,
		ScaleInAfter:   2 * time.Minute,
		ReportTimeout:  15 * time.Second,
		DefaultCap:     100,
	}
}

// Validate names the first bad setting.
func (c Config) Validate() error {
	switch {
	case c.MinFreeSlots < 0:
		return fmt.Errorf("pool: min-free-slots %d must be ≥ 0", c.MinFreeSlots)
	case c.RateShare < 0 || math.IsNaN(c.RateShare) || math.IsInf(c.RateShare, 0):
		return fmt.Errorf("pool: rate-share %v must be a finite number ≥ 0", c.RateShare)
	case c.LeadTime < 0:
		return fmt.Errorf("pool: lead-time %s must be ≥ 0", c.LeadTime)
	case c.RateWindow < 3*time.Second:
		return fmt.Errorf("pool: rate-window %s must be ≥ 3s", c.RateWindow)
	case c.ReservationTTL <= 0:
		return fmt.Errorf("pool: reservation-ttl %s must be > 0", c.ReservationTTL)
	case c.HighWatermark < 0:
		return fmt.Errorf("pool: high-watermark %d must be ≥ 0", c.HighWatermark)
	case c.ScaleInAfter <= 0:
		return fmt.Errorf("pool: scale-in-after %s must be > 0", c.ScaleInAfter)
	case c.ReportTimeout <= 0:
		return fmt.Errorf("pool: report-timeout %s must be > 0", c.ReportTimeout)
	case c.DefaultCap <= 0:
		return fmt.Errorf("pool: default-capacity %d must be > 0", c.DefaultCap)
	}
	return nil
}

// State is where a server is in its life, as the pool sees it.
type State int

// Server states.
const (
	Accepting State = iota
	Draining
	Stopping
)

func (s State) String() string {
	switch s {
	case Accepting:
		return "accepting"
	case Draining:
		return "draining"
	case Stopping:
		return "stopping"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// ErrNoRoom means no accepting server of any backend with weight > 0 has a free slot.
var ErrNoRoom = errors.New("pool: no accepting server has a free session slot")

// ShortError means the backend the traffic weights chose for a new session has no free slot. It
// matches ErrNoRoom. The caller may wait for the backend's refill (Changed) or place the session
// elsewhere only by asking for it (Request.Failover): otherwise a short backend would hand its
// share to the others, and a 0.01 % canary could take a third of a burst.
type ShortError struct{ Backend string }

func (e *ShortError) Error() string {
	return fmt.Sprintf("pool: backend %s, which the traffic weights chose, has no free session slot", e.Backend)
}

// Is makes errors.Is(err, ErrNoRoom) true.
func (e *ShortError) Is(target error) bool { return target == ErrNoRoom }

// ErrUnknownSession means a move named a session the pool does not hold on that server.
var ErrUnknownSession = errors.New("pool: unknown session")

// ServerInfo is what an allocation (or a listed GameServer) tells the pool about a server.
type ServerInfo struct {
	Name    string
	Backend string
	// Address is the ip:port clients use.
	Address string
	// Capacity is the sessions counter's capacity; 0 means unknown (DefaultCap is used).
	Capacity int
	// Used is the sessions counter's count, trusted until the server's first report.
	Used int
	// Draining is true when the server is already draining (e.g. the kumi.dev/drain label).
	Draining bool
}

// SessionLoad is one live session in a report.
type SessionLoad struct {
	ID      string
	Players []string
}

// Report is a game server's snapshot (api/control LoadReport without the wire types).
type Report struct {
	Server     string
	Address    string
	State      State
	Capacity   int
	MaxMembers int
	Sessions   []SessionLoad
	Ended      []string
}

// Request asks for a place for one match.
type Request struct {
	// SessionID is the id a new session gets (NewSessionID); unused for a late arrival.
	SessionID string
	// Group is the rendezvous key; empty for a match that always gets a fresh session.
	Group string
	// Players are the player ids of the match's tickets.
	Players []string
	// MaxMembers is the session's member limit from the match function; 0 uses the server's.
	MaxMembers int
	// Failover lets a new session go to another backend with weight when the one the weights
	// chose is short (ShortError otherwise); Placement.FailedOver then names the chosen one.
	Failover bool
}

// Placement is where a match (or a moved session) goes.
type Placement struct {
	Server    string
	Backend   string
	Address   string
	SessionID string
	// Joined is true when the match joined an existing session of its group.
	Joined bool
	// FailedOver is the backend the weights chose when the session went elsewhere (Failover).
	FailedOver string
	// Players is set when a rendezvous match was split: the leading part of Request.Players placed
	// here. Rest then places the remaining players (in a new session of the group).
	Players []string
	Rest    *Placement
}

type server struct {
	ServerInfo
	state      State
	maxMembers int
	// baseline is the backend's count of live sessions, used until the first report.
	baseline   int
	reported   bool
	lastReport time.Time
	// drain is set when the director asked this server to drain (told on its next report).
	drain bool
	// adopted is set for a server no backend lists that joined by reporting (AdoptServer): no
	// backend watch will say it is gone, so Sweep drops it once it has been silent long enough.
	adopted  bool
	sessions map[string]*session
}

type session struct {
	id, server, group string
	maxMembers        int
	confirmed         bool
	expires           time.Time
	// members maps player id to the expiry of its reservation; zero once a report showed it joined.
	members map[string]time.Time
}

// Pool is the director's second-tier pool.
type Pool struct {
	cfg Config

	mu       sync.Mutex
	servers  map[string]*server
	sessions map[string]*session
	groups   map[string]string // group digest → session id
	weights  map[string]int    // backend → weight in 0.01 % units
	backends map[string]bool
	rate     rateWindow
	lead     map[string]time.Duration // backend → smoothed allocation latency
	above    map[string]time.Time     // backend → since when free slots exceed the high watermark
	changed  chan struct{}            // closed (and replaced) when free slots may have grown
}

// New returns an empty pool. cfg must be valid (Config.Validate).
func New(cfg Config) *Pool {
	return &Pool{
		cfg:      cfg,
		servers:  make(map[string]*server),
		sessions: make(map[string]*session),
		groups:   make(map[string]string),
		weights:  make(map[string]int),
		backends: make(map[string]bool),
		rate:     newRateWindow(cfg.RateWindow),
		lead:     make(map[string]time.Duration),
		above:    make(map[string]time.Time),
		changed:  make(chan struct{}),
	}
}

// Changed returns a channel closed the next time free slots may have grown (a server added or
// adopted, a report, expired reservations, new weights): a placement waiting for a refill
// waits on it instead of polling.
func (p *Pool) Changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

func (p *Pool) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// GroupKey is the digest of a rendezvous group carried in its sessions' ids.
func GroupKey(group string) string {
	sum := sha256.Sum256([]byte(group))
	return hex.EncodeToString(sum[:8])
}

// NewSessionID returns a fresh session id; a rendezvous session's id carries its group's digest.
func NewSessionID(group string) string {
	id := xid.New().String()
	if group == "" {
		return id
	}
	return id + "-g" + GroupKey(group)
}

// groupOfSession returns the group digest a session id carries, or "".
func groupOfSession(id string) string {
	i := strings.LastIndex(id, "-g")
	if i < 0 || len(id)-i-2 != 16 {
		return ""
	}
	if _, err := hex.DecodeString(id[i+2:]); err != nil {
		return ""
	}
	return id[i+2:]
}

// AddBackend declares a backend so it gets a weight (default 0 until SetWeights, or an even split
// when no weight was ever set).
func (p *Pool) AddBackend(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.backends[name] = true
}

// SetWeights replaces the traffic weights: backend → share in 0.01 % units (10000 = 100 %).
// Weights are relative (they need not sum to 10000). Every named backend must be known and at
// least one weight positive; on error nothing changes.
func (p *Pool) SetWeights(w map[string]int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	sum := 0
	for b, v := range w {
		if !p.backends[b] {
			return fmt.Errorf("pool: weight for unknown backend %q (known: %s)", b, strings.Join(p.backendNames(), ", "))
		}
		if v < 0 || v > 10000 {
			return fmt.Errorf("pool: weight of %q is %d; want 0..10000 (units of 0.01 %%)", b, v)
		}
		sum += v
	}
	if sum == 0 {
		return errors.New("pool: at least one backend needs a weight above 0")
	}
	next := make(map[string]int, len(p.backends))
	for b := range p.backends {
		next[b] = w[b] // backends left out get 0
	}
	p.weights = next
	p.notifyLocked()
	return nil
}

// Weights returns the effective weights (0.01 % units).
func (p *Pool) Weights() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.backends))
	for _, b := range p.backendNames() {
		out[b] = p.weightLocked(b)
	}
	return out
}

func (p *Pool) backendNames() []string {
	names := make([]string, 0, len(p.backends))
	for b := range p.backends {
		names = append(names, b)
	}
	sort.Strings(names)
	return names
}

// weightLocked is a backend's weight; with no weights set every backend weighs the same.
func (p *Pool) weightLocked(b string) int {
	if len(p.weights) == 0 {
		if p.backends[b] {
			return 10000 / len(p.backends)
		}
		return 0
	}
	return p.weights[b]
}

// Choose is the deterministic weighted choice: the backend whose share of the cumulative weight
// range (backends in name order) holds hash(key) mod total. Uniform keys give each backend its
// weight's share. "" when every weight is 0.
func (p *Pool) Choose(key string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.chooseLocked(key)
}

func (p *Pool) chooseLocked(key string) string {
	names := p.backendNames()
	total := 0
	for _, b := range names {
		total += p.weightLocked(b)
	}
	if total == 0 {
		return ""
	}
	h := fnv64a(key) % uint64(total)
	for _, b := range names {
		w := uint64(p.weightLocked(b))
		if h < w {
			return b
		}
		h -= w
	}
	return ""
}

func fnv64a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	// Finalise (splitmix64) so that keys differing only in their last bytes spread over the range.
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

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
	first := p.chooseLocked(req.SessionID)
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

// ObserveAllocation feeds one allocation's latency into the backend's lead time estimate.
func (p *Pool) ObserveAllocation(backend string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.lead[backend]; ok {
		p.lead[backend] = (old*7 + d) / 8
	} else {
		p.lead[backend] = d
	}
}

// Rate is the recent rate of new sessions per second.
func (p *Pool) Rate(now time.Time) float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rate.perSecond(now)
}

// Target is the free slots the pool keeps on backend: its weight's share of
// MinFreeSlots + RateShare × rate × lead time (at least 1 while its weight is above 0).
func (p *Pool) Target(backend string, now time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.targetLocked(backend, now)
}

func (p *Pool) targetLocked(backend string, now time.Time) int {
	w := p.weightLocked(backend)
	if w == 0 {
		return 0
	}
	total := 0
	for b := range p.backends {
		total += p.weightLocked(b)
	}
	lead := max(p.cfg.LeadTime, p.lead[backend])
	t := float64(p.cfg.MinFreeSlots) + p.cfg.RateShare*p.rate.perSecond(now)*lead.Seconds()
	return max(int(math.Ceil(t*float64(w)/float64(total))), 1)
}

// Free is the free session slots on backend's accepting servers.
func (p *Pool) Free(backend string, now time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.freeLocked(backend, now)
}

func (p *Pool) freeLocked(backend string, now time.Time) int {
	n := 0
	for _, s := range p.servers {
		if s.Backend == backend && p.accepting(s, now) {
			n += s.free()
		}
	}
	return n
}

// Deficit is how many free slots backend lacks to reach its target (0 when it has enough).
func (p *Pool) Deficit(backend string, now time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(p.targetLocked(backend, now)-p.freeLocked(backend, now), 0)
}

// ScaleIn marks servers to drain: once a backend's free slots have stayed above target +
// HighWatermark for ScaleInAfter, it drains its least-loaded accepting servers, in order, while
// free slots stay above the target without them and above target + HighWatermark with them.
// The drained servers leave the pool for placement at once and are told to drain on their next
// report. Returns their names.
func (p *Pool) ScaleIn(now time.Time) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var drained []string
	for _, b := range p.backendNames() {
		target := p.targetLocked(b, now)
		free := p.freeLocked(b, now)
		if free <= target+p.cfg.HighWatermark {
			delete(p.above, b)
			continue
		}
		since, ok := p.above[b]
		if !ok {
			p.above[b] = now
			continue
		}
		if now.Sub(since) < p.cfg.ScaleInAfter {
			continue
		}
		cands := make([]*server, 0)
		for _, s := range p.servers {
			if s.Backend == b && p.accepting(s, now) {
				cands = append(cands, s)
			}
		}
		sort.Slice(cands, func(i, j int) bool {
			if cands[i].used() != cands[j].used() {
				return cands[i].used() < cands[j].used()
			}
			return cands[i].Name < cands[j].Name
		})
		for _, s := range cands {
			if free <= target+p.cfg.HighWatermark {
				break
			}
			if free-s.free() < target {
				break // draining a busier server instead would move more sessions
			}
			free -= s.free()
			s.drain = true
			s.state = Draining
			drained = append(drained, s.Name)
		}
		p.above[b] = now // one step per period: let load settle before draining more
	}
	return drained
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

// ServerStats is one server's state for metrics and the admin API.
type ServerStats struct {
	Name, Backend, Address string
	State                  string
	Capacity, Used, Free   int
	Sessions               int
	Reported               bool
	// Adopted is true for a server no backend lists that joined the pool by reporting.
	Adopted bool
}

// Stats is a snapshot of the pool.
type Stats struct {
	Servers  []ServerStats
	Sessions int
	Groups   int
}

// Snapshot returns the pool's state, servers by name.
func (p *Pool) Snapshot(now time.Time) Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Stats{Sessions: len(p.sessions), Groups: len(p.groups)}
	for _, s := range p.servers {
		state := s.state.String()
		free := 0
		if p.accepting(s, now) {
			free = s.free()
		} else if s.state == Accepting {
			state = "silent"
		}
		st.Servers = append(st.Servers, ServerStats{Name: s.Name, Backend: s.Backend, Address: s.Address, State: state,
			Capacity: s.Capacity, Used: s.used(), Free: free, Sessions: len(s.sessions), Reported: s.reported, Adopted: s.adopted})
	}
	sort.Slice(st.Servers, func(i, j int) bool { return st.Servers[i].Name < st.Servers[j].Name })
	return st
}

// SessionServer returns the server a session lives on (for tests and the admin API).
func (p *Pool) SessionServer(id string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ss, ok := p.sessions[id]
	if !ok {
		return "", false
	}
	return ss.server, true
}

// GroupSession returns the live session of a rendezvous group.
func (p *Pool) GroupSession(group string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	id, ok := p.groups[GroupKey(group)]
	return id, ok
}

// rateWindow counts events in one-second buckets over a window.
type rateWindow struct {
	buckets []int
	last    int64 // unix second of the newest bucket
}

func newRateWindow(w time.Duration) rateWindow {
	return rateWindow{buckets: make([]int, int(w/time.Second))}
}

func (r *rateWindow) advance(now time.Time) {
	sec := now.Unix()
	n := int64(len(r.buckets))
	if r.last == 0 || sec-r.last >= n {
		clear(r.buckets)
	} else {
		for t := r.last + 1; t <= sec; t++ {
			r.buckets[t%n] = 0
		}
	}
	if sec > r.last {
		r.last = sec
	}
}

func (r *rateWindow) add(now time.Time, k int) {
	r.advance(now)
	r.buckets[now.Unix()%int64(len(r.buckets))] += k
}

// perSecond is the rate over the window, or over the current and the previous second when that is
// higher, so a burst raises the pool's target within a fraction of a second while a lull lowers it
// slowly.
func (r *rateWindow) perSecond(now time.Time) float64 {
	r.advance(now)
	n := int64(len(r.buckets))
	sum := 0
	for _, v := range r.buckets {
		sum += v
	}
	avg := float64(sum) / float64(n)
	sec := now.Unix()
	frac := float64(now.Sub(time.Unix(sec, 0))) / float64(time.Second)
	recent := float64(r.buckets[sec%n]+r.buckets[(sec-1+n)%n]) / (1 + frac)
	return max(avg, recent)
}
