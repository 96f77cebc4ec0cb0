package director

import (
	"errors"
	"fmt"
	"github.com/kumi-dev/kumi/internal/serverid"
	"math"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kumi-dev/kumi/director/pool"
	"github.com/kumi-dev/kumi/internal/tlsconfig"
	"github.com/kumi-dev/kumi/internal/token"
)

// Config is every setting of the director.
type Config struct {
	ControlAddr string `flag:"control-addr" help:"gRPC address serving kumi.control.v1.Director to game servers (host:port; port 0 picks one)"`
	AdminAddr   string `flag:"admin-addr" help:"HTTP address of the admin API (GET/PUT /weights, GET /pool, POST /drain; director/admin.go); empty disables it"`
	// AdminTokenFile guards the admin API, which can drain servers and move all traffic.
	AdminTokenFile string `flag:"admin-token-file" help:"file with the bearer token every admin API request must carry (e.g. openssl rand -hex 32); required when admin-addr is set"`
	// TLS secures the control and admin listeners (with a CA file: mTLS on both).
	TLS      tlsconfig.Config `prefix:"tls-"`
	Insecure bool             `flag:"insecure" help:"allow plaintext control/admin listeners on non-loopback addresses (the control secret and admin token then cross the network in clear)"`
	// OpenMatchTLS secures the connection to Open Match's BackendService.
	OpenMatchTLS tlsconfig.Config `prefix:"om-tls-"`
	BackendAddr  string           `flag:"backend-addr" help:"Open Match BackendService gRPC address (host:port)"`
	MMFHost      string           `flag:"mmf-host" help:"match function host Open Match calls (FetchMatchesRequest.config.host)"`
	MMFPort      int              `flag:"mmf-port" help:"match function gRPC port Open Match calls"`
	Profiles     []string         `flag:"profiles" help:"MatchProfile names to fetch matches for; each runs its own back-to-back loop (the default covers the match function's built-in profiles)"`

	PoolName     string   `flag:"pool" help:"value of the kumi.dev/pool label this director puts on (and lists) its servers"`
	ServerLabels []string `flag:"server-labels" help:"key=value labels every kumi game server carries; allocations select on them"`
	PortName     string   `flag:"port-name" help:"GameServer port clients use (the first port when empty or absent)"`
	Weights      string   `flag:"weights" help:"traffic weights as backend=percent with 0.01 resolution, e.g. local=99.99,agones=0.01; empty splits evenly. A weight caps the backend's share of new sessions"`
	// PlaceWait and Failover: a backend short of free slots never hands its share to another.
	PlaceWait time.Duration `flag:"place-wait" help:"when the backend the weights chose for a new session has no free slot, how long placement waits for its refill before releasing the match (or failing over)"`
	Failover  string        `flag:"failover" help:"after place-wait: none (release the match to Open Match; it comes back) or spill (place on another backend with weight, counted in kumi_director_failovers_total)"`

	TokenKeyFile string `flag:"token-key" help:"PEM private key signing server tokens (kumi token keygen)"`
	// ControlSecretFile guards MoveSession, which mints server tokens: only game servers may call it.
	ControlSecretFile string `flag:"control-secret-file" help:"file with the secret game servers must present on the control API (their -director-secret-file); empty accepts any caller, so only on a network players cannot reach"`
	// TicketSealSecretFile keys the check that a ticket came through a kumi frontend (internal/ticketseal).
	TicketSealSecretFile  string        `flag:"ticket-seal-secret-file" help:"file with the secret kumi frontends seal tickets with (their -ticket-seal-secret-file); tickets without a valid seal are never assigned"`
	AcceptUnsealedTickets bool          `flag:"accept-unsealed-tickets" help:"assign tickets without a frontend seal (explicit opt-out, e.g. another frontend in front of Open Match): anyone who can reach the core can then get server tokens for any player"`
	TicketSealMaxAge      time.Duration `flag:"ticket-seal-max-age" help:"refuse tickets sealed longer ago than this (at least the frontend's ticket-lifetime; 0: no limit)"`
	TokenKID              string        `flag:"token-kid" help:"key id put in server tokens; empty uses the key's thumbprint"`
	TokenIssuer           string        `flag:"token-issuer" help:"iss of server tokens"`
	TokenTTL              time.Duration `flag:"token-ttl" help:"server token lifetime (short: it only has to last until the player joins)"`
	// ServerCredentialTTL bounds how long a stolen server credential is any use (internal/serverid).
	ServerCredentialTTL time.Duration `flag:"server-credential-ttl" help:"life of the per-server credential game servers get from Identity.Register (they renew at two thirds of it)"`

	ReportInterval  time.Duration `flag:"report-interval" help:"how often game servers report their load (told to them in every reply)"`
	RebuildTimeout  time.Duration `flag:"rebuild-timeout" help:"at start, longest wait for the listed pool servers' first reports before placing"`
	MaxAllocations  int           `flag:"max-allocations" help:"most allocations in flight per backend"`
	AllocBackoffMax time.Duration `flag:"alloc-backoff-max" help:"longest pause between allocation attempts after failures or UnAllocated"`
	FetchBackoffMax time.Duration `flag:"fetch-backoff-max" help:"longest pause between FetchMatches attempts after errors"`
	MinFetchGap     time.Duration `flag:"min-fetch-gap" help:"least time between two FetchMatches calls that returned nothing (guards a core that answers instantly)"`
	// IdleFetchGap trades a little latency after a quiet spell for not polling the core hundreds
	// of times a second while nobody plays (director/match.go, fetchGap).
	IdleFetchGap  time.Duration `flag:"idle-fetch-gap" help:"least time between FetchMatches calls once a profile has matched nothing for 5s; the first match after a quiet spell waits up to this long (set to min-fetch-gap to always poll at that pace)"`
	RPCTimeout    time.Duration `flag:"rpc-timeout" help:"bound on one AssignTickets or ReleaseTickets call"`
	ShutdownGrace time.Duration `flag:"shutdown-grace" help:"on stop, how long the current FetchMatches stream may finish so its matches are placed or released"`
	LockFile      string        `flag:"lock-file" help:"file locked (flock) so only one director serves this control address on this machine; kumi director with the local backend defaults it to $XDG_RUNTIME_DIR/kumi (else the user cache dir) keyed by -control-addr; empty disables"`
	// AdoptBackend lets a lone game server join: see Director.adopt for who may and why.
	AdoptBackend string `flag:"adopt-backend" help:"backend whose traffic share adopts game servers that report with the control secret but that no backend lists (hand-started kumi gameserver); empty: the first backend; none: never adopt"`

	Pool pool.Config `prefix:"pool-"`

	// Signer signs server tokens; when nil one is loaded from TokenKeyFile. Set by callers that
	// share a key in process (kumi local, tests).
	Signer *token.Signer
	// Bootstrap verifies game servers' registration proofs (internal/serverid) besides the
	// backends that are verifiers themselves (a local fleet mints per-process secrets); kumi
	// director sets a TokenReview verifier for the agones backend. With none, no game server can
	// register, so none can report.
	Bootstrap []serverid.Verifier
	// ControlListener, when set, is the control API's already bound listener and ControlAddr only
	// names it. Callers that must tell game servers the address before the director starts (kumi
	// local, kumi director with a local fleet) bind it first: picking a free port, closing it and
	// binding it again later let another process take it meanwhile. Start owns it: it is closed
	// when the director stops or fails to start.
	ControlListener net.Listener
	// ControlSecret is used instead of ControlSecretFile when set (kumi local, tests).
	ControlSecret string
	// AdminToken is used instead of AdminTokenFile when set (kumi local, tests).
	AdminToken string
	// TicketSealSecret is used instead of TicketSealSecretFile when set (kumi local, tests).
	TicketSealSecret string
}

// Default returns the defaults: upstream Open Match's backend port 50505 and MMF port 50502.
func Default() Config {
	return Config{
		ControlAddr:         ":50610",
		AdminAddr:           "127.0.0.1:50611",
		BackendAddr:         "127.0.0.1:50505",
		MMFHost:             "127.0.0.1",
		MMFPort:             50502,
		Profiles:            DefaultProfiles(),
		PoolName:            "default",
		PortName:            "default",
		TokenIssuer:         token.DefaultIssuer,
		TokenTTL:            token.DefaultServerTokenTTL,
		ServerCredentialTTL: serverid.DefaultTTL,
		ReportInterval:      time.Second,
		RebuildTimeout:      3 * time.Second,
		MaxAllocations:      4,
		AllocBackoffMax:     5 * time.Second,
		FetchBackoffMax:     2 * time.Second,
		MinFetchGap:         10 * time.Millisecond,
		IdleFetchGap:        50 * time.Millisecond,
		RPCTimeout:          5 * time.Second,
		ShutdownGrace:       5 * time.Second,
		Pool:                pool.DefaultConfig(),
		PlaceWait:           2 * time.Second,
		Failover:            FailoverNone,
		TicketSealMaxAge:    15 * time.Minute,
	}
}

// DefaultProfiles are the names of the match function's built-in profiles
// (matchfunction.DefaultProfiles), so a director and a match function started with defaults serve
// every kind of ticket; a test keeps the two lists equal.
func DefaultProfiles() []string { return []string{"voice", "duel"} }

// AdoptNone is the AdoptBackend value that turns adoption off.
const AdoptNone = "none"

// Validate names the first bad setting.
func (c Config) Validate() error {
	switch {
	case c.ControlAddr == "":
		return errors.New("director: control-addr is empty")
	case c.BackendAddr == "":
		return errors.New("director: backend-addr is empty")
	case c.MMFHost == "" || c.MMFPort <= 0 || c.MMFPort > 65535:
		return fmt.Errorf("director: mmf-host %q / mmf-port %d: want a host and a port 1..65535", c.MMFHost, c.MMFPort)
	case len(c.Profiles) == 0:
		return errors.New("director: profiles is empty: name at least one MatchProfile")
	case c.PoolName == "":
		return errors.New("director: pool is empty")
	case c.ServerCredentialTTL <= 0:
		return fmt.Errorf("director: server-credential-ttl %s must be > 0", c.ServerCredentialTTL)
	case c.TokenTTL <= 0:
		return fmt.Errorf("director: token-ttl %s must be > 0", c.TokenTTL)
	case c.Signer == nil && c.TokenKeyFile == "":
		return errors.New("director: token-key is empty: give the PEM key that signs server tokens (kumi token keygen)")
	case tlsconfig.CheckListen("director: control-addr", c.ControlAddr, c.TLS.Enabled(), c.Insecure) != nil:
		return tlsconfig.CheckListen("director: control-addr", c.ControlAddr, c.TLS.Enabled(), c.Insecure)
	case tlsconfig.CheckListen("director: admin-addr", c.AdminAddr, c.TLS.Enabled(), c.Insecure) != nil:
		return tlsconfig.CheckListen("director: admin-addr", c.AdminAddr, c.TLS.Enabled(), c.Insecure)
	case c.AdminAddr != "" && c.AdminToken == "" && c.AdminTokenFile == "":
		return errors.New("director: admin-addr is set but admin-token-file is empty: give the admin API a token (e.g. openssl rand -hex 32 > admin.token), or set admin-addr empty")
	case c.TicketSealSecret == "" && c.TicketSealSecretFile == "" && !c.AcceptUnsealedTickets:
		return errors.New("director: ticket-seal-secret-file is empty: give the secret the frontends seal tickets with (e.g. openssl rand -hex 32 > ticket.secret, to both), or pass accept-unsealed-tickets")
	case (c.TicketSealSecret != "" || c.TicketSealSecretFile != "") && c.AcceptUnsealedTickets:
		return errors.New("director: ticket-seal-secret-file and accept-unsealed-tickets both set; choose one")
	case c.TicketSealMaxAge < 0:
		return fmt.Errorf("director: ticket-seal-max-age %s must be ≥ 0", c.TicketSealMaxAge)
	case c.ReportInterval <= 0 || c.RebuildTimeout < 0 || c.RPCTimeout <= 0 || c.ShutdownGrace < 0:
		return errors.New("director: report-interval and rpc-timeout must be > 0, rebuild-timeout and shutdown-grace ≥ 0")
	case c.Pool.ReservationTTL < c.TokenTTL:
		return fmt.Errorf("director: pool-reservation-ttl %s must be ≥ token-ttl %s: a player may join until its token expires", c.Pool.ReservationTTL, c.TokenTTL)
	case c.MaxAllocations <= 0:
		return fmt.Errorf("director: max-allocations %d must be > 0", c.MaxAllocations)
	case c.AllocBackoffMax <= 0 || c.FetchBackoffMax <= 0 || c.MinFetchGap < 0:
		return errors.New("director: alloc-backoff-max and fetch-backoff-max must be > 0, min-fetch-gap ≥ 0")
	case c.IdleFetchGap < c.MinFetchGap || c.IdleFetchGap > 10*time.Second:
		return fmt.Errorf("director: idle-fetch-gap %s must be within min-fetch-gap (%s)..10s", c.IdleFetchGap, c.MinFetchGap)
	case c.PlaceWait < 0 || c.PlaceWait > 30*time.Second:
		// The match's tickets stay pending meanwhile; Open Match hands them out again after its
		// pending-release timeout (1 m by default).
		return fmt.Errorf("director: place-wait %s must be within 0..30s", c.PlaceWait)
	case c.Failover != FailoverNone && c.Failover != FailoverSpill:
		return fmt.Errorf("director: failover %q: want %s or %s", c.Failover, FailoverNone, FailoverSpill)
	}
	seen := map[string]bool{}
	for _, p := range c.Profiles {
		if p == "" || seen[p] {
			return fmt.Errorf("director: profiles %v: names must be non-empty and distinct", c.Profiles)
		}
		seen[p] = true
	}
	if _, err := ParseLabels(c.ServerLabels); err != nil {
		return err
	}
	if _, err := ParseWeights(c.Weights); err != nil {
		return err
	}
	return c.Pool.Validate()
}

// ParseLabels turns ["k=v", …] into a map.
func ParseLabels(kvs []string) (map[string]string, error) {
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("director: server-labels entry %q: want key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

// ParseWeights parses "backend=percent,…" (percent 0..100 with at most two decimals, i.e. 0.01 %
// resolution) into weights in 0.01 % units. Empty gives nil (even split).
func ParseWeights(s string) (map[string]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := map[string]int{}
	for _, part := range strings.Split(s, ",") {
		b, p, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || b == "" {
			return nil, fmt.Errorf("director: weights entry %q: want backend=percent", part)
		}
		f, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(p), "%"), 64)
		if err != nil {
			return nil, fmt.Errorf("director: weights entry %q: percent is not a number", part)
		}
		u, err := PercentToUnits(f)
		if err != nil {
			return nil, fmt.Errorf("director: weights entry %q: %w", part, err)
		}
		out[b] = u
	}
	return out, nil
}

// PercentToUnits converts a percentage to 0.01 % units, refusing finer resolution or a value
// outside 0..100.
func PercentToUnits(p float64) (int, error) {
	if math.IsNaN(p) || p < 0 || p > 100 {
		return 0, fmt.Errorf("percent %v is outside 0..100", p)
	}
	u := math.Round(p * 100)
	if math.Abs(p*100-u) > 1e-6 {
		return 0, fmt.Errorf("percent %v is finer than the 0.01 %% resolution", p)
	}
	return int(u), nil
}

// FormatWeights is ParseWeights' inverse, backends in name order.
func FormatWeights(w map[string]int) string {
	names := make([]string, 0, len(w))
	for b := range w {
		names = append(names, b)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, b := range names {
		parts[i] = fmt.Sprintf("%s=%s", b, strconv.FormatFloat(float64(w[b])/100, 'f', -1, 64))
	}
	return strings.Join(parts, ",")
}
