package frontend

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kumi-dev/kumi/internal/tlsconfig"
	"github.com/kumi-dev/kumi/internal/token"
)

// Config is every setting of the frontend.
type Config struct {
	GRPCAddr            string        `flag:"grpc-addr" help:"listen address of the gRPC kumi.client.v1.Frontend service"`
	HTTPAddr            string        `flag:"http-addr" help:"listen address of the HTTP/JSON API (empty disables it)"`
	MetricsAddr         string        `flag:"metrics-addr" help:"serve Prometheus /metrics here (empty: off); keep it off the public API port"`
	OpenMatchAddr       string        `flag:"om-frontend-addr" help:"host:port of the Open Match v1 FrontendService (kumi openmatch or a real core)"`
	OpenMatchQueryAddr  string        `flag:"om-query-addr" help:"host:port of the Open Match QueryService, used once at start to find live tickets again after a restart (empty skips)"`
	OpenMatchRPCTimeout time.Duration `flag:"om-timeout" help:"timeout of each unary call to Open Match"`

	JWT token.VerifierConfig `prefix:"jwt-"`

	// TLS serves both listeners over TLS; players' tokens and server tokens cross the internet here.
	TLS      tlsconfig.Config `prefix:"tls-"`
	Insecure bool             `flag:"insecure" help:"allow plaintext listeners on non-loopback addresses (only behind a TLS-terminating proxy on a trusted network)"`
	// OpenMatchTLS secures the connection to Open Match (CA to verify it, client certificate for mTLS).
	OpenMatchTLS tlsconfig.Config `prefix:"om-tls-"`

	TicketSealSecretFile string `flag:"ticket-seal-secret-file" help:"file with the secret sealing every ticket for the director (its -ticket-seal-secret-file; e.g. openssl rand -hex 32); empty: tickets are unsealed and a sealing director never assigns them"`
	// TicketSealSecret is used instead of TicketSealSecretFile when set (kumi local, tests).
	TicketSealSecret string

	TokenCacheSize int           `flag:"token-cache-size" help:"verified player tokens remembered so repeat calls skip the signature check (0 disables)"`
	TokenCacheTTL  time.Duration `flag:"token-cache-ttl" help:"longest a verified token is trusted from the cache (bounds how long a withdrawn JWKS key keeps working)"`

	Attributes     Attributes    `flag:"attributes" help:"allowed ticket attributes, comma-separated name:type[!][=constraint][@claim]; type string|number|bool; ! = required; string=a|b enumerates, number=min..max bounds; @claim: the value must be allowed by that claim of the player token (a string claim or a list of strings for string attributes, equal value otherwise), no @: the client chooses"`
	MaxStringBytes int           `flag:"max-string-bytes" help:"longest accepted string attribute value"`
	TicketLifetime time.Duration `flag:"ticket-lifetime" help:"an unassigned ticket is deleted from Open Match this long after creation"`

	PlayerRate   float64 `flag:"player-rate" help:"requests per second allowed per player (sustained)"`
	PlayerBurst  int     `flag:"player-burst" help:"requests a player may make at once above player-rate"`
	SourceRate   float64 `flag:"source-rate" help:"requests per second allowed per client address (IPv4 address or IPv6 /64), checked before the token (0 = unlimited)"`
	SourceBurst  int     `flag:"source-burst" help:"requests one address may make at once above source-rate"`
	MaxBodyBytes int64   `flag:"max-body-bytes" help:"largest accepted HTTP request body or gRPC message; larger gets 413 / ResourceExhausted"`

	MaxStreamsPerConn int           `flag:"max-streams-per-conn" help:"concurrent gRPC calls one connection may hold open (HTTP/2 MAX_CONCURRENT_STREAMS); a shared proxy connection needs more"`
	ConnIdleTimeout   time.Duration `flag:"conn-idle-timeout" help:"close gRPC and HTTP keep-alive connections idle (no call in flight) this long"`

	MaxWatchesPerPlayer int           `flag:"max-watches-per-player" help:"open watch streams, event streams and long-polls one player may hold at once"`
	MaxWait             time.Duration `flag:"max-wait" help:"longest long-poll (?wait=) a client may ask for"`
	SSEHeartbeat        time.Duration `flag:"sse-heartbeat" help:"interval of keep-alive comments on server-sent event streams"`
	ShutdownGrace       time.Duration `flag:"shutdown-grace" help:"how long a stopping server lets in-flight requests finish"`

	// Store is where each player's one live ticket is kept (store.go): memory, or a Redis shared
	// by every replica.
	Store StoreConfig `prefix:"store-"`

	expiryWorkers int // tests use 1 to make expiry order deterministic
}

// Default is a frontend on :50600 (gRPC) and :8080 (HTTP) in front of Open Match on
// 127.0.0.1:50504, accepting mode, region (client-chosen strings), chat_group (one of the token's
// "groups"), party (the token's "party"), skill (the token's "skill"), party_size (a number) and
// ranked (bool); tickets live 10 minutes; 5 requests/s per player (burst 10) and 50 per client
// address (burst 100).
func Default() Config {
	jwt := token.DefaultVerifierConfig()
	attrs, err := ParseAttributes(DefaultAttributes)
	if err != nil {
		panic(err) // the literal above is valid; a test parses it too
	}
	return Config{
		GRPCAddr:            ":50600",
		HTTPAddr:            ":8080",
		OpenMatchAddr:       "127.0.0.1:50504",
		OpenMatchRPCTimeout: 5 * time.Second,
		JWT:                 jwt,
		TokenCacheSize:      100000,
		TokenCacheTTL:       time.Minute,
		Attributes:          attrs,
		MaxStringBytes:      128,
		TicketLifetime:      10 * time.Minute,
		PlayerRate:          5,
		PlayerBurst:         10,
		SourceRate:          50,
		SourceBurst:         100,
		MaxBodyBytes:        16 << 10,
		MaxStreamsPerConn:   100,
		ConnIdleTimeout:     2 * time.Minute,
		MaxWait:             60 * time.Second,
		MaxWatchesPerPlayer: 4,
		SSEHeartbeat:        15 * time.Second,
		ShutdownGrace:       5 * time.Second,
		Store:               DefaultStoreConfig(),
	}
}

// DefaultAttributes is the default allow-list. Attributes that decide who meets whom (the chat
// group's voice room, the party, the skill a match is balanced on) come from verified claims of the
// player token, so knowing a group id is not enough to join its room; the rest the client chooses,
// game among them: the uploaded build (project) a player queues for on dedicated servers
// (matchfunction.GameAttribute), matched only with players of the same game.
const DefaultAttributes = "mode:string,region:string,game:string,chat_group:string@groups,party:string@party,party_size:number=1..64,skill:number@skill,ranked:bool"

func (c *Config) validate() error {
	if err := c.Store.validate(); err != nil {
		return err
	}
	switch {
	case c.GRPCAddr == "" && c.HTTPAddr == "":
		return fmt.Errorf("frontend: set grpc-addr or http-addr")
	case c.OpenMatchAddr == "":
		return fmt.Errorf("frontend: om-frontend-addr is required")
	case c.TicketLifetime <= 0:
		return fmt.Errorf("frontend: ticket-lifetime %s must be positive", c.TicketLifetime)
	case c.PlayerRate <= 0 || c.PlayerBurst < 1:
		return fmt.Errorf("frontend: player-rate (%g) must be positive and player-burst (%d) at least 1", c.PlayerRate, c.PlayerBurst)
	case c.SourceRate < 0 || (c.SourceRate > 0 && c.SourceBurst < 1):
		return fmt.Errorf("frontend: source-rate (%g) must be ≥ 0 and source-burst (%d) at least 1", c.SourceRate, c.SourceBurst)
	case c.MaxStreamsPerConn < 1 || c.ConnIdleTimeout <= 0:
		return fmt.Errorf("frontend: max-streams-per-conn (%d) must be ≥ 1 and conn-idle-timeout (%s) > 0", c.MaxStreamsPerConn, c.ConnIdleTimeout)
	case c.MaxBodyBytes < 64:
		return fmt.Errorf("frontend: max-body-bytes %d is too small (min 64)", c.MaxBodyBytes)
	case c.MaxStringBytes < 1:
		return fmt.Errorf("frontend: max-string-bytes %d must be positive", c.MaxStringBytes)
	case c.MaxWatchesPerPlayer < 1:
		return fmt.Errorf("frontend: max-watches-per-player %d must be at least 1", c.MaxWatchesPerPlayer)
	case c.MaxWait <= 0 || c.SSEHeartbeat <= 0:
		return fmt.Errorf("frontend: max-wait and sse-heartbeat must be positive")
	case c.OpenMatchRPCTimeout <= 0:
		return fmt.Errorf("frontend: om-timeout must be positive")
	case tlsconfig.CheckListen("frontend: grpc-addr", c.GRPCAddr, c.TLS.Enabled(), c.Insecure) != nil:
		return tlsconfig.CheckListen("frontend: grpc-addr", c.GRPCAddr, c.TLS.Enabled(), c.Insecure)
	case tlsconfig.CheckListen("frontend: http-addr", c.HTTPAddr, c.TLS.Enabled(), c.Insecure) != nil:
		return tlsconfig.CheckListen("frontend: http-addr", c.HTTPAddr, c.TLS.Enabled(), c.Insecure)
	case c.JWT.Audience == "" && !c.JWT.AnyAudience:
		// Without an audience, a token the identity provider issued for another service would open this one.
		return fmt.Errorf("frontend: jwt-audience is empty; set it to the audience your identity provider issues for the game, or pass jwt-any-audience to accept any")
	}
	return nil
}

// AttrType is the JSON type an attribute must have.
type AttrType string

// Attribute types and where they go in Open Match's SearchFields.
const (
	String AttrType = "string" // string_args[name]
	Number AttrType = "number" // double_args[name]
	Bool   AttrType = "bool"   // tags: name present when true
)

// Attribute is one allowed ticket attribute.
type Attribute struct {
	Name     string
	Type     AttrType
	Required bool
	Enum     []string // String: allowed values (empty = any)
	Min, Max float64  // Number: inclusive bounds (both zero = any finite number)
	// Claim, when set, is the player-token claim that must allow the value; empty: client-chosen.
	Claim string
}

func (a Attribute) String() string {
	s := a.Name + ":" + string(a.Type)
	if a.Required {
		s += "!"
	}
	switch {
	case len(a.Enum) > 0:
		s += "=" + strings.Join(a.Enum, "|")
	case a.Min != 0 || a.Max != 0:
		s += "=" + strconv.FormatFloat(a.Min, 'g', -1, 64) + ".." + strconv.FormatFloat(a.Max, 'g', -1, 64)
	}
	if a.Claim != "" {
		s += "@" + a.Claim
	}
	return s
}

// Attributes is the allow-list; it is a flag.Value in the name:type[!][=constraint] syntax.
type Attributes []Attribute

func (as Attributes) String() string {
	parts := make([]string, len(as))
	for i, a := range as {
		parts[i] = a.String()
	}
	return strings.Join(parts, ",")
}

// Set replaces the list from its flag syntax.
func (as *Attributes) Set(s string) error {
	v, err := ParseAttributes(s)
	if err != nil {
		return err
	}
	*as = v
	return nil
}

func (as Attributes) find(name string) (Attribute, bool) {
	for _, a := range as {
		if a.Name == name {
			return a, true
		}
	}
	return Attribute{}, false
}

// reservedPrefix keeps clients off names kumi's own components use.
const reservedPrefix = "kumi."

// claims lists the token claims the attributes come from.
func (as Attributes) claims() []string {
	var out []string
	for _, a := range as {
		if a.Claim != "" && !slices.Contains(out, a.Claim) {
			out = append(out, a.Claim)
		}
	}
	return out
}

// ParseAttributes parses "mode:string!=voice|duel,skill:number=0..5000@skill,ranked:bool".
func ParseAttributes(s string) (Attributes, error) {
	var out Attributes
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		body, claim, fromClaim := strings.Cut(item, "@")
		if fromClaim && (claim == "" || strings.ContainsAny(claim, " \t\"@")) {
			return nil, fmt.Errorf("attribute %q: @ must be followed by a claim name", item)
		}
		spec, constraint, hasConstraint := strings.Cut(body, "=")
		name, typ, ok := strings.Cut(spec, ":")
		if !ok {
			return nil, fmt.Errorf("attribute %q: want name:type (type string, number or bool)", item)
		}
		a := Attribute{Name: strings.TrimSpace(name), Claim: claim}
		typ = strings.TrimSpace(typ)
		if a.Required = strings.HasSuffix(typ, "!"); a.Required {
			typ = strings.TrimSuffix(typ, "!")
		}
		a.Type = AttrType(typ)
		if a.Name == "" || strings.HasPrefix(a.Name, reservedPrefix) || strings.ContainsAny(a.Name, " \t\"") {
			return nil, fmt.Errorf("attribute %q: name must be non-empty, without spaces or quotes, and not start with %q", item, reservedPrefix)
		}
		if _, dup := out.find(a.Name); dup {
			return nil, fmt.Errorf("attribute %q listed twice", a.Name)
		}
		switch a.Type {
		case String:
			if hasConstraint {
				a.Enum = strings.Split(constraint, "|")
				if slices.Contains(a.Enum, "") {
					return nil, fmt.Errorf("attribute %q: empty value in enumeration %q", a.Name, constraint)
				}
			}
		case Number:
			if hasConstraint {
				lo, hi, ok := strings.Cut(constraint, "..")
				min, err1 := strconv.ParseFloat(lo, 64)
				max, err2 := strconv.ParseFloat(hi, 64)
				// NaN compares false with everything, so "NaN..NaN" would pass min > max and then match nothing.
				if !ok || err1 != nil || err2 != nil || min > max || math.IsInf(min, 0) || math.IsInf(max, 0) || math.IsNaN(min) || math.IsNaN(max) {
					return nil, fmt.Errorf("attribute %q: range %q must be min..max with finite min ≤ max", a.Name, constraint)
				}
				if min == 0 && max == 0 {
					// Min = Max = 0 is how an unbounded number is stored; accepting it would silently drop the bound.
					return nil, fmt.Errorf("attribute %q: range 0..0 is not supported (it would mean any number); drop the range or widen it", a.Name)
				}
				a.Min, a.Max = min, max
			}
		case Bool:
			if hasConstraint {
				return nil, fmt.Errorf("attribute %q: bool takes no constraint", a.Name)
			}
		default:
			return nil, fmt.Errorf("attribute %q: type %q unknown; use string, number or bool", a.Name, typ)
		}
		out = append(out, a)
	}
	return out, nil
}
