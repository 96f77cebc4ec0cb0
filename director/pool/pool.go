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

// ErrNotHosted means a move named a session the moving server does not host.
var ErrNotHosted = errors.New("pool: session not hosted by that server")

// ErrNotMember means a move named a player who is not a member of the session.
var ErrNotMember = errors.New("pool: player not a member of the session")

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
	// ChoiceKey keys the weighted backend choice of a new session; empty: SessionID. It must stay
	// the same when the same match comes back (ChoiceKeyOf): a match released because its chosen
	// backend was short would otherwise be rolled again, and every retry would hand the smaller
	// backends more than their weight (a 1 % canary taking a third of a burst).
	ChoiceKey string
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
	// movedFrom is the server the session was last moved away from: only it may repeat the move.
	movedFrom string
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

// ChoiceKeyOf is the stable choice key of a match of these players: the same players, in any
// order, always choose the same backend.
func ChoiceKeyOf(players []string) string {
	sorted := slices.Sorted(slices.Values(players))
	return strings.Join(sorted, "\x00")
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

// ServerStats is one server's state for metrics and the admin API.
// Its JSON names are snake_case like the rest of GET /pool.
type ServerStats struct {
	Name     string `json:"name"`
	Backend  string `json:"backend"`
	Address  string `json:"address"`
	State    string `json:"state"`
	Capacity int    `json:"capacity"`
	Used     int    `json:"used"`
	Free     int    `json:"free"`
	Sessions int    `json:"sessions"`
	Reported bool   `json:"reported"`
	// Adopted is true for a server no backend lists that joined the pool by reporting.
	Adopted bool `json:"adopted"`
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
