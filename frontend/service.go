package frontend

import (
	"context"
	"fmt"
	"github.com/kumi-dev/kumi/internal/tracing"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"log/slog"
	"sync"
	"time"

	"github.com/kumi-dev/kumi/api/client"
	"github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/internal/omext"
	"github.com/kumi-dev/kumi/internal/ticketseal"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Ticket.extensions keys the frontend writes. Open Match forwards them untouched.
const (
	// PlayerExtension (StringValue) is the id of the player who owns the ticket: the subject of
	// their JWT. The director reads it to mint each player's server token.
	PlayerExtension = omext.Player
	// AttributesExtension (google.protobuf.Struct) is the attributes exactly as the client sent them,
	// for GetTicket and for the one-live-ticket comparison after a restart.
	AttributesExtension = omext.Attributes
)

// maxTicketIDBytes bounds ticket ids taken from clients.
const maxTicketIDBytes = 64

// currentTicket is the ticket id alias for "the caller's live ticket".
const currentTicket = "current"

// service is the transport-independent API: the gRPC and HTTP layers authenticate, rate limit and
// call it with the verified player id.
type service struct {
	cfg     Config
	log     *slog.Logger
	om      openmatch.FrontendServiceClient
	players *players
	expiry  *expiryQueue
	watches *watchHub
	// watchers caps each player's concurrent watches and long-polls.
	watchers *watcherCount
	m        *metrics
	now      func() time.Time
	seal     *ticketseal.Sealer // nil: tickets go unsealed
	aliases  *aliases           // lost tickets' ids → the ids they were filed again under (refile.go)
	tracer   trace.Tracer
}

func (s *service) omCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.OpenMatchRPCTimeout)
}

func (s *service) omGet(ctx context.Context, id string) (*openmatch.Ticket, error) {
	ctx, cancel := s.omCtx(ctx)
	defer cancel()
	return s.om.GetTicket(ctx, &openmatch.GetTicketRequest{TicketId: id})
}

// create files a ticket for the caller; created is false when the player's live ticket is returned.
func (s *service) create(ctx context.Context, c caller, req *client.CreateTicketRequest) (t *client.Ticket, created bool, err error) {
	player := c.player
	sf, key, err := checkAttributes(s.cfg.Attributes, s.cfg.MaxStringBytes, req.GetAttributes(), c.claims)
	if err != nil {
		return nil, false, err
	}
	e, err := s.players.lock(ctx, player)
	if err != nil {
		return nil, false, err
	}
	defer s.players.unlock(ctx, player, e)
	if e.ticketID != "" {
		old, err := s.omGet(ctx, e.ticketID)
		switch {
		case err == nil && !assigned(old):
			if e.key != key {
				return nil, false, errorf(codes.AlreadyExists, "player %q already has live ticket %q with other attributes; cancel it first (CancelTicket, or DELETE /v1/tickets/%s)", player, e.ticketID, e.ticketID)
			}
			s.m.reused.Inc()
			return s.toClient(old), false, nil
		case err == nil || status.Code(err) == codes.NotFound:
			// The old ticket was assigned or is gone: the player may search again.
			e.ticketID, e.key = "", ""
		default:
			// Open Match unreachable: refuse rather than risk a second live ticket.
			return nil, false, fmt.Errorf("check live ticket %s: %w", e.ticketID, err)
		}
	}
	ext := omext.PutString(nil, PlayerExtension, player)
	attrs, err := anypb.New(&structpb.Struct{Fields: req.GetAttributes()})
	if err != nil {
		return nil, false, err
	}
	ext[AttributesExtension] = attrs
	if s.seal != nil {
		s.seal.Seal(ext, player, sf, s.now())
	}
	// The ticket carries this span's context through Open Match to the director (and on, in the
	// server token, to the game server), so the player's journey is one trace.
	ctx, span := s.tracer.Start(ctx, "frontend.CreateTicket", trace.WithAttributes(tracing.PlayerID.String(player)))
	defer span.End()
	if tp := tracing.TraceParent(ctx); tp != "" {
		omext.PutString(ext, omext.TraceParent, tp)
	}
	octx, cancel := s.omCtx(ctx)
	defer cancel()
	nt, err := s.om.CreateTicket(octx, &openmatch.CreateTicketRequest{Ticket: &openmatch.Ticket{SearchFields: sf, Extensions: ext}})
	if err != nil {
		span.SetStatus(otelcodes.Error, err.Error())
		return nil, false, err
	}
	span.SetAttributes(tracing.TicketID.String(nt.GetId()))
	e.ticketID, e.key = nt.GetId(), key
	s.expiry.push(expiryItem{ticketID: nt.GetId(), player: player, deadline: s.now().Add(s.cfg.TicketLifetime)})
	s.m.created.Inc()
	s.log.LogAttrs(ctx, slog.LevelDebug, "ticket created", slog.String("ticket", nt.GetId()), slog.String("player", player))
	return s.toClient(nt), true, nil
}

// resolve maps "" and "current" to the player's live ticket, and the id of a ticket Open Match
// lost to the id it was filed again under.
func (s *service) resolve(player, id string) (string, error) {
	if id != "" && id != currentTicket {
		if len(id) > maxTicketIDBytes {
			// Open Match ids are 20-character xids; longer ones cannot exist, so skip the lookup.
			return "", errorf(codes.NotFound, "ticket %q not found", id[:maxTicketIDBytes]+"…")
		}
		return s.aliases.resolve(id, s.now()), nil
	}
	if cur := s.players.current(player); cur != "" {
		return cur, nil
	}
	return "", errorf(codes.NotFound, "player %q has no live ticket", player)
}

// owned reads ticket id and checks player owns it. Another player's ticket is reported exactly
// like a missing one, so ids cannot be probed.
func (s *service) owned(ctx context.Context, player, id string) (*openmatch.Ticket, error) {
	t, err := s.omGet(ctx, id)
	if status.Code(err) == codes.NotFound || (err == nil && owner(t) != player) {
		if err == nil {
			s.m.foreign.Inc()
		}
		s.players.forget(player, id)
		return nil, errorf(codes.NotFound, "ticket %q not found", id)
	}
	if err != nil {
		return nil, err
	}
	if assigned(t) {
		s.players.forget(player, id)
	}
	return t, nil
}

func (s *service) get(ctx context.Context, player, id string) (*client.Ticket, error) {
	id, err := s.resolve(player, id)
	if err != nil {
		return nil, err
	}
	t, err := s.owned(ctx, player, id)
	if err != nil {
		return nil, err
	}
	return s.toClient(t), nil
}

// watch sends the ticket, then (if it was not yet assigned) the assigned ticket.
func (s *service) watch(ctx context.Context, player, id string, send func(*client.Ticket) error) error {
	release, err := s.watchers.acquire(player)
	if err != nil {
		return err
	}
	defer release()
	id, err = s.resolve(player, id)
	if err != nil {
		return err
	}
	t, err := s.owned(ctx, player, id)
	if err != nil {
		return err
	}
	ct := s.toClient(t)
	if assigned(t) {
		return s.deliver(ctx, id, t.GetAssignment(), ct, send)
	}
	if err := send(ct); err != nil {
		return err
	}
	a, err := s.watches.wait(ctx, id, t)
	// The watch may have filed the ticket again under a new id: forget that one.
	id = s.aliases.resolve(id, s.now())
	if err != nil {
		if status.Code(err) == codes.NotFound {
			s.players.forget(player, id)
		}
		return err
	}
	s.players.forget(player, id)
	s.fillAssignment(ct, a)
	return s.deliver(ctx, id, a, ct, send)
}

// deliver sends the assigned ticket in a span that joins the player's trace under the director's
// placement span for this ticket.
func (s *service) deliver(ctx context.Context, id string, a *openmatch.Assignment, ct *client.Ticket, send func(*client.Ticket) error) error {
	tp, _, _ := omext.String(a.GetExtensions(), omext.TraceParent)
	_, span := s.tracer.Start(tracing.ContextWith(ctx, tp), "frontend.DeliverAssignment", trace.WithAttributes(
		tracing.TicketID.String(id), tracing.SessionID.String(ct.GetAssignment().GetSessionId())))
	err := send(ct)
	if err != nil {
		span.SetStatus(otelcodes.Error, err.Error())
	}
	span.End()
	return err
}

// longPoll returns the ticket once assigned, or as it is when wait ends.
func (s *service) longPoll(ctx context.Context, player, id string, wait time.Duration) (*client.Ticket, error) {
	if wait > 0 {
		release, err := s.watchers.acquire(player)
		if err != nil {
			return nil, err
		}
		defer release()
	}
	id, err := s.resolve(player, id)
	if err != nil {
		return nil, err
	}
	t, err := s.owned(ctx, player, id)
	if err != nil || assigned(t) || wait <= 0 {
		if err != nil {
			return nil, err
		}
		return s.toClient(t), nil
	}
	ct := s.toClient(t)
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	a, err := s.watches.wait(wctx, id, t)
	id = s.aliases.resolve(id, s.now()) // filed again under a new id while waiting
	switch {
	case err == nil:
		s.players.forget(player, id)
		s.fillAssignment(ct, a)
		return ct, nil
	case ctx.Err() == nil && wctx.Err() != nil:
		return ct, nil // wait elapsed: still searching
	case status.Code(err) == codes.NotFound:
		s.players.forget(player, id)
	}
	return nil, err
}

// cancel deletes the player's ticket. A missing (or someone else's) ticket is already "not
// yours", so that succeeds too, and nothing is deleted.
func (s *service) cancel(ctx context.Context, player, id string) error {
	if id == "" || id == currentTicket {
		if id = s.players.current(player); id == "" {
			return nil
		}
	}
	id = s.aliases.resolve(id, s.now())
	t, err := s.omGet(ctx, id)
	if status.Code(err) == codes.NotFound || (err == nil && owner(t) != player) {
		s.players.forget(player, id)
		return nil
	}
	if err != nil {
		return err
	}
	octx, cancel := s.omCtx(ctx)
	defer cancel()
	if _, err := s.om.DeleteTicket(octx, &openmatch.DeleteTicketRequest{TicketId: id}); err != nil {
		return err
	}
	s.players.forget(player, id)
	s.m.cancelled.Inc()
	s.log.LogAttrs(ctx, slog.LevelDebug, "ticket cancelled", slog.String("ticket", id), slog.String("player", player))
	return nil
}

// expire deletes a ticket that reached its lifetime without an assignment.
func (s *service) expire(ctx context.Context, it expiryItem) {
	e, err := s.players.lockExisting(ctx, it.player)
	if err != nil {
		s.log.Warn("ticket expiry: live-ticket store unavailable; retrying later", "ticket", it.ticketID, "player", it.player, "err", err)
		if ctx.Err() == nil {
			it.deadline = s.now().Add(min(s.cfg.TicketLifetime, 5*time.Second))
			s.expiry.push(it)
		}
		return
	}
	if e == nil {
		return // cancelled, assigned or replaced already
	}
	defer s.players.unlock(ctx, it.player, e)
	if e.ticketID != it.ticketID {
		return
	}
	t, err := s.omGet(ctx, it.ticketID)
	switch {
	case status.Code(err) == codes.NotFound:
		e.ticketID, e.key = "", ""
		return
	case err != nil:
		s.log.Warn("ticket expiry: reading the ticket failed; retrying later", "ticket", it.ticketID, "player", it.player, "err", err)
		if ctx.Err() == nil {
			it.deadline = s.now().Add(min(s.cfg.TicketLifetime, 5*time.Second))
			s.expiry.push(it)
		}
		return
	case assigned(t):
		e.ticketID, e.key = "", ""
		return
	}
	octx, cancel := s.omCtx(ctx)
	defer cancel()
	if _, err := s.om.DeleteTicket(octx, &openmatch.DeleteTicketRequest{TicketId: it.ticketID}); err != nil {
		s.log.Warn("ticket expiry: delete failed; retrying later", "ticket", it.ticketID, "player", it.player, "err", err)
		if ctx.Err() == nil {
			it.deadline = s.now().Add(min(s.cfg.TicketLifetime, 5*time.Second))
			s.expiry.push(it)
		}
		return
	}
	e.ticketID, e.key = "", ""
	s.m.expired.Inc()
	s.log.Info("ticket expired unassigned", "ticket", it.ticketID, "player", it.player, "lifetime", s.cfg.TicketLifetime)
}

func assigned(t *openmatch.Ticket) bool { return t.GetAssignment().GetConnection() != "" }

func owner(t *openmatch.Ticket) string {
	p, _, _ := omext.String(t.GetExtensions(), PlayerExtension)
	return p
}

// toClient converts an Open Match ticket to the client's view (never its extensions wholesale).
func (s *service) toClient(t *openmatch.Ticket) *client.Ticket {
	ct := &client.Ticket{Id: t.GetId(), State: client.Ticket_SEARCHING, CreateTime: t.GetCreateTime()}
	if t.GetCreateTime() != nil {
		ct.ExpireTime = timestamppb.New(t.GetCreateTime().AsTime().Add(s.cfg.TicketLifetime))
	}
	if a := t.GetExtensions()[AttributesExtension]; a != nil {
		var st structpb.Struct
		if err := a.UnmarshalTo(&st); err == nil {
			ct.Attributes = st.GetFields()
		}
	}
	if assigned(t) {
		s.fillAssignment(ct, t.GetAssignment())
	}
	return ct
}

// fillAssignment copies connection and the director's omext keys into the client's assignment.
func (s *service) fillAssignment(ct *client.Ticket, a *openmatch.Assignment) {
	ca := &client.Assignment{Address: a.GetConnection()}
	var errs []error
	sess, _, err := omext.String(a.GetExtensions(), omext.Session)
	errs = append(errs, err)
	tok, _, err := omext.String(a.GetExtensions(), omext.ServerToken)
	errs = append(errs, err)
	exp, ok, err := omext.Time(a.GetExtensions(), omext.TokenExpiry)
	errs = append(errs, err)
	ca.SessionId, ca.ServerToken = sess, tok
	if ok && err == nil {
		ca.ServerTokenExpireTime = timestamppb.New(exp)
	}
	for _, err := range errs {
		if err != nil {
			s.log.Warn("assignment extension has the wrong type", "ticket", ct.GetId(), "err", err)
		}
	}
	ct.State, ct.Assignment = client.Ticket_ASSIGNED, ca
}

// watcherCount caps the watches (streams, SSE, long-polls) one player holds open at once, so a
// player cannot pin an unbounded number of goroutines and connections.
type watcherCount struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

func (w *watcherCount) acquire(player string) (func(), error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n[player] >= w.max {
		return nil, errorf(codes.ResourceExhausted, "player %q already has %d open watches or long-polls (max-watches-per-player); close one first", player, w.max)
	}
	w.n[player]++
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.n[player]--; w.n[player] <= 0 {
			delete(w.n, player)
		}
	}, nil
}
