package client

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	clientpb "github.com/kumi-dev/kumi/api/client"
	"github.com/kumi-dev/kumi/internal/token"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
)

// Leg is one stay on one game server: from an assignment (or a MOVE) to leaving it.
type Leg struct {
	// Cause is "assignment" (first ticket), "move" (MOVE from the server) or "reconnect" (new
	// ticket after RECONNECT).
	Cause     string
	TicketID  string // empty for a move
	Address   string
	SessionID string
	MemberID  uint32
	// TicketToAssignment is CreateTicket sent → assignment received (0 for a move).
	TicketToAssignment time.Duration
	// AssignmentToAccept is assignment (or MOVE) received → ACCEPT received.
	AssignmentToAccept time.Duration
	// AcceptToFirstFrame is ACCEPT → first DATA relayed from another member (0 if none came).
	AcceptToFirstFrame time.Duration
	FramesSent         uint64
	FramesReceived     uint64
	// Ended says why the leg ended: "done", "move", "reconnect: <code>", or an error.
	Ended string
}

// Report is what one player run measured.
type Report struct {
	Player string
	Legs   []Leg
	// FrameLatency holds one-way latencies of relayed frames (sender's send time → receipt); only
	// meaningful when sender and receiver share a clock (the same machine).
	FrameLatency []time.Duration
}

// First returns the first leg (the zero Leg if the player never got an assignment).
func (r *Report) First() Leg {
	if len(r.Legs) == 0 {
		return Leg{}
	}
	return r.Legs[0]
}

// Moves and Reconnects count the legs with that cause.
func (r *Report) Moves() int      { return r.count("move") }
func (r *Report) Reconnects() int { return r.count("reconnect") }

func (r *Report) count(cause string) int {
	n := 0
	for _, l := range r.Legs {
		if l.Cause == cause {
			n++
		}
	}
	return n
}

// Run plays one player until cfg.Talk has passed since the first ACCEPT (or ctx ends), and returns
// what it measured. The report is valid (possibly partial) even when an error is returned.
func Run(ctx context.Context, log *slog.Logger, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return &Report{}, err
	}
	playerID, raw, err := playerToken(cfg)
	if err != nil {
		return &Report{}, err
	}
	rep := &Report{Player: playerID}
	log = log.With("player", playerID)

	var fe frontendAPI
	switch {
	case cfg.FrontendHTTP != "":
		fe = &httpFrontend{base: strings.TrimRight(cfg.FrontendHTTP, "/"), auth: "Bearer " + raw, wait: cfg.PollWait, hc: &http.Client{}}
	case cfg.FrontendConn != nil:
		fe = &grpcFrontend{fe: clientpb.NewFrontendClient(cfg.FrontendConn), auth: "Bearer " + raw}
	default:
		cc, err := grpc.NewClient(cfg.Frontend, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return rep, fmt.Errorf("player: frontend %q: %w", cfg.Frontend, err)
		}
		defer cc.Close()
		fe = &grpcFrontend{fe: clientpb.NewFrontendClient(cc), auth: "Bearer " + raw}
	}
	p := &run{cfg: cfg, log: log, fe: fe, rep: rep}
	return rep, p.play(ctx)
}

type run struct {
	cfg      Config
	log      *slog.Logger
	fe       frontendAPI
	rep      *Report
	deadline time.Time // set at the first ACCEPT when cfg.Talk > 0
	seen     uint64    // relayed frames with a latency, for reservoir sampling
}

func (p *run) play(ctx context.Context) error {
	cause := "assignment"
	for reconnects := 0; ; reconnects++ {
		if reconnects > p.cfg.MaxReconnects {
			return fmt.Errorf("player: needed a new assignment %d times, more than -max-reconnects %d", reconnects, p.cfg.MaxReconnects)
		}
		leg, as, err := p.assign(ctx, cause)
		if err != nil {
			return err
		}
		if p.cfg.AssignOnly {
			p.rep.Legs = append(p.rep.Legs, leg)
			return nil
		}
		again, err := p.connect(ctx, leg, as)
		if err != nil || !again {
			return err
		}
		cause = "reconnect"
	}
}

// assign files a ticket and waits for its assignment.
func (p *run) assign(ctx context.Context, cause string) (Leg, *clientpb.Assignment, error) {
	attrs, err := structpb.NewStruct(p.cfg.Attributes)
	if err != nil {
		return Leg{}, nil, fmt.Errorf("player: attributes: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.AssignTimeout)
	defer cancel()
	start := time.Now()
	t, err := p.fe.create(ctx, attrs.GetFields())
	if err != nil {
		return Leg{}, nil, fmt.Errorf("player: create ticket: %w", err)
	}
	p.log.DebugContext(ctx, "ticket created", "ticket", t.GetId())
	if t.GetState() != clientpb.Ticket_ASSIGNED {
		id := t.GetId()
		if t, err = p.fe.waitAssigned(ctx, id); err != nil {
			// Leave no live ticket behind; the frontend would expire it, but a retry should start clean.
			cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = p.fe.cancel(cctx, id)
			ccancel()
			return Leg{}, nil, fmt.Errorf("player: wait for assignment of ticket %s: %w", id, err)
		}
	}
	as := t.GetAssignment()
	leg := Leg{Cause: cause, TicketID: t.GetId(), Address: as.GetAddress(), SessionID: as.GetSessionId(),
		TicketToAssignment: time.Since(start)}
	p.log.DebugContext(ctx, "assigned", "ticket", t.GetId(), "session", leg.SessionID, "server", leg.Address, "after", leg.TicketToAssignment)
	if p.cfg.OnAssigned != nil {
		p.cfg.OnAssigned(p.rep.Player, leg)
	}
	return leg, as, nil
}

// DevClaims are the claims a dev player token carries so that the frontend's default allow-list
// (frontend.DefaultAttributes) accepts attrs: "groups" holding the chat_group, "party" and "skill"
// equal to theirs. Minting a dev token makes this program its own identity provider; a real one
// grants these claims from its own records (frontend/doc.go).
func DevClaims(attrs Attributes) map[string]any {
	c := map[string]any{}
	if g, ok := attrs["chat_group"].(string); ok {
		c["groups"] = []string{g}
	}
	for _, name := range []string{"party", "skill"} {
		if v, ok := attrs[name]; ok {
			c[name] = v
		}
	}
	return c
}

// playerToken returns the player id and JWT: the configured token, or a dev token.
func playerToken(cfg Config) (string, string, error) {
	if cfg.Token != "" {
		// The frontend takes the player id from the token; the id here is only for logs and reports.
		id := cfg.Player
		if id == "" {
			id = "token-holder"
		}
		return id, cfg.Token, nil
	}
	id := cfg.Player
	if id == "" {
		id = "player-" + rand.Text()[:8]
	}
	s := cfg.Signer
	if s == nil {
		var err error
		if s, err = token.LoadSigner(cfg.Key, cfg.KID, cfg.Issuer); err != nil {
			return "", "", fmt.Errorf("player: dev token key: %w (run `kumi token keygen` or pass -token)", err)
		}
	}
	raw, err := s.PlayerToken(id, cfg.TTL, DevClaims(cfg.Attributes))
	if err != nil {
		return "", "", fmt.Errorf("player: dev token: %w", err)
	}
	return id, raw, nil
}

// LatencyQuantile returns the q-quantile (0..1) of the sampled frame latencies, or 0 without samples.
func (r *Report) LatencyQuantile(q float64) time.Duration {
	if len(r.FrameLatency) == 0 {
		return 0
	}
	s := slices.Clone(r.FrameLatency)
	slices.Sort(s)
	return s[int(max(0, min(q, 1))*float64(len(s)-1))]
}

// Totals adds up frames over all legs.
func (r *Report) Totals() (sent, received uint64) {
	for _, l := range r.Legs {
		sent += l.FramesSent
		received += l.FramesReceived
	}
	return sent, received
}
