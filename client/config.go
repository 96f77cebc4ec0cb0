package client

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kumi-dev/kumi/internal/token"
	"google.golang.org/grpc"
)

// Config is every setting of one player.
type Config struct {
	Frontend     string        `flag:"frontend" help:"kumi frontend gRPC address (host:port)"`
	FrontendHTTP string        `flag:"frontend-http" help:"base URL of the frontend's HTTP/JSON API (e.g. http://127.0.0.1:8080); when set it is used instead of gRPC, with the calls examples/unreal makes"`
	PollWait     time.Duration `flag:"poll-wait" help:"long-poll duration (?wait=) of each HTTP assignment poll"`

	Token  string        `flag:"token" help:"player JWT; empty mints a dev token with -key" secret:"true"`
	Key    string        `flag:"key" help:"PEM private key (kumi token keygen) used to mint a dev player token when -token is empty"`
	KID    string        `flag:"kid" help:"key id of -key; empty uses the key's RFC 7638 thumbprint"`
	Issuer string        `flag:"issuer" help:"issuer (iss) of the dev player token"`
	Player string        `flag:"player" help:"player id (sub) of the dev token; empty picks a random one"`
	TTL    time.Duration `flag:"token-ttl" help:"lifetime of the dev player token"`

	Attributes Attributes `flag:"attrs" help:"ticket attributes name=value; numbers and true/false are sent typed"`

	Talk          time.Duration `flag:"talk" help:"how long to exchange frames after the first ACCEPT (0 = until interrupted)"`
	FrameInterval time.Duration `flag:"frame-interval" help:"time between voice frames"`
	FrameBytes    int           `flag:"frame-bytes" help:"payload bytes per voice frame (at least 16: send time and sequence)"`

	AssignTimeout time.Duration `flag:"assign-timeout" help:"give up when a ticket is not assigned within this"`
	JoinRetry     time.Duration `flag:"join-retry" help:"first JOIN retransmit interval (then doubling, up to 8x) until ACCEPT or REFUSE"`
	JoinTimeout   time.Duration `flag:"join-timeout" help:"give up joining a game server after this"`
	MaxReconnects int           `flag:"max-reconnects" help:"new tickets filed after RECONNECT before giving up"`

	// FrontendConn, when set, is used instead of dialling Frontend (a crowd shares one connection).
	FrontendConn grpc.ClientConnInterface
	// Signer, when set and Token is empty, mints the dev player token in process.
	Signer *token.Signer
	// OnJoined, when set, is called after every ACCEPT (first join, move, reconnect) with the leg
	// so far, from the player's goroutine; a crowd or a test uses it to follow players live.
	OnJoined func(player string, leg Leg)
	// OnAssigned, when set, is called when a ticket's assignment arrives, before the UDP join.
	OnAssigned func(player string, leg Leg)
	// OnFirstFrame, when set, is called when a leg receives its first frame from another member.
	OnFirstFrame func(player string, leg Leg)
	// AssignOnly ends the run once the first assignment arrives, without joining the game server:
	// a tickets-only load (kumi bench e2e -tickets-only) measures matchmaking without UDP.
	AssignOnly bool
	// Stop, when set and closed, ends the talk as Talk passing does (LEAVE; the leg ends "done"):
	// for a caller that talks until something happened rather than for a fixed time.
	Stop <-chan struct{}
}

// Default returns a voice player: chat group "lobby", 50 frames/s of 80 bytes for 10 s.
func Default() Config {
	return Config{
		Frontend:      "127.0.0.1:50600",
		PollWait:      25 * time.Second,
		Key:           token.PrivateKeyFile,
		Issuer:        token.DefaultIssuer,
		TTL:           time.Hour,
		Attributes:    Attributes{"mode": "voice", "chat_group": "lobby"},
		Talk:          10 * time.Second,
		FrameInterval: 20 * time.Millisecond,
		FrameBytes:    80,
		AssignTimeout: time.Minute,
		JoinRetry:     250 * time.Millisecond,
		JoinTimeout:   15 * time.Second,
		MaxReconnects: 3,
	}
}

func (c *Config) validate() error {
	switch {
	case c.Frontend == "" && c.FrontendConn == nil && c.FrontendHTTP == "":
		return fmt.Errorf("player: -frontend is required (the kumi frontend's gRPC host:port), or -frontend-http")
	case c.FrontendHTTP != "" && c.PollWait <= 0:
		return fmt.Errorf("player: -poll-wait %s must be positive", c.PollWait)
	case c.FrameInterval <= 0:
		return fmt.Errorf("player: -frame-interval %s must be positive", c.FrameInterval)
	case c.FrameBytes < frameHeader:
		return fmt.Errorf("player: -frame-bytes %d must be at least %d", c.FrameBytes, frameHeader)
	case c.JoinRetry <= 0 || c.JoinTimeout <= 0 || c.AssignTimeout <= 0:
		return fmt.Errorf("player: -join-retry, -join-timeout and -assign-timeout must be positive")
	case c.Talk < 0 || c.MaxReconnects < 0:
		return fmt.Errorf("player: -talk and -max-reconnects must not be negative")
	case c.Token == "" && c.Signer == nil && c.Key == "":
		return fmt.Errorf("player: give -token, or -key to mint a dev token")
	}
	return nil
}

// Attributes are the ticket's search attributes: string, float64 or bool values.
type Attributes map[string]any

// String renders the attributes as name=value pairs sorted by name.
func (a *Attributes) String() string {
	if a == nil {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(*a)) {
		parts = append(parts, fmt.Sprintf("%s=%v", k, (*a)[k]))
	}
	return strings.Join(parts, ",")
}

// Set parses "name=value,name=value", replacing the current attributes. Values that parse as numbers
// become numbers and true/false become booleans; quote nothing.
func (a *Attributes) Set(s string) error {
	out := Attributes{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok || k == "" {
			return fmt.Errorf("attribute %q: want name=value", part)
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			out[k] = f
		} else if b, err := strconv.ParseBool(v); err == nil && (v == "true" || v == "false") {
			out[k] = b
		} else {
			out[k] = v
		}
	}
	*a = out
	return nil
}
