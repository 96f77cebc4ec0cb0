package director

import (
	"context"
	"errors"
	"time"

	"github.com/kumi-dev/kumi/api/control"
	"github.com/kumi-dev/kumi/director/pool"
	"github.com/kumi-dev/kumi/internal/serverid"
	"github.com/kumi-dev/kumi/internal/token"
	"github.com/kumi-dev/kumi/internal/tracing"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// controlServer serves kumi.control.v1.Director to game servers.
type controlServer struct {
	control.UnimplementedDirectorServer
	d *Director
}

func stateOf(s control.ServerState) (pool.State, bool) {
	switch s {
	case control.ServerState_SERVER_STATE_ACCEPTING:
		return pool.Accepting, true
	case control.ServerState_SERVER_STATE_DRAINING:
		return pool.Draining, true
	case control.ServerState_SERVER_STATE_STOPPING:
		return pool.Stopping, true
	}
	return 0, false
}

// callerIs refuses a call about another server than the caller's verified identity (from its
// credential, internal/serverid), or (when instance is not "") another instance of it.
func callerIs(ctx context.Context, server, instance string) error {
	id, ok := serverid.FromContext(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "control API: no verified server identity")
	}
	if id.Server != server {
		return status.Errorf(codes.PermissionDenied, "caller is server %q, not %q", id.Server, server)
	}
	if instance != "" && id.Instance != instance {
		return status.Errorf(codes.PermissionDenied, "caller is instance %q of %q, not %q (register again after a restart)", id.Instance, server, instance)
	}
	return nil
}

// Report applies a server's load snapshot to the pool and tells the server whether to drain.
func (c *controlServer) Report(ctx context.Context, r *control.LoadReport) (*control.ReportReply, error) {
	d := c.d
	if r.GetServer() == "" {
		return nil, status.Error(codes.InvalidArgument, "LoadReport.server is required (the GameServer name)")
	}
	if err := callerIs(ctx, r.GetServer(), r.GetInstance()); err != nil {
		return nil, err
	}
	st, ok := stateOf(r.GetState())
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "LoadReport.state %s: want ACCEPTING, DRAINING or STOPPING", r.GetState())
	}
	if r.GetCapacity() < 0 || r.GetMaxMembers() < 0 {
		return nil, status.Error(codes.InvalidArgument, "LoadReport.capacity and max_members must be ≥ 0")
	}
	rep := pool.Report{Server: r.GetServer(), Address: r.GetAddress(), State: st, Capacity: int(r.GetCapacity()),
		MaxMembers: int(r.GetMaxMembers()), Ended: r.GetEndedSessions()}
	for _, s := range r.GetSessions() {
		if s.GetSessionId() == "" {
			return nil, status.Error(codes.InvalidArgument, "LoadReport.sessions[].session_id is required")
		}
		rep.Sessions = append(rep.Sessions, pool.SessionLoad{ID: s.GetSessionId(), Players: s.GetPlayers()})
	}
	now := time.Now()
	d.instances.set(r.GetServer(), r.GetInstance(), now)
	res := d.pool.Report(rep, now)
	if !res.Known && d.adopt(ctx, rep, now) {
		res = d.pool.Report(rep, now)
	}
	if !res.Known {
		d.m.reports.WithLabelValues("false").Inc()
	} else {
		d.m.reports.WithLabelValues("true").Inc()
		select {
		case d.reported <- struct{}{}:
		default:
		}
		if len(res.Adopted) > 0 {
			d.log.Info("adopted live sessions from a report", "server", r.GetServer(), "sessions", len(res.Adopted))
		}
		if len(res.Ended) > 0 {
			d.log.Debug("sessions ended", "server", r.GetServer(), "sessions", res.Ended)
		}
	}
	return &control.ReportReply{Drain: res.Drain, ReportInterval: durationpb.New(d.cfg.ReportInterval)}, nil
}

// MoveSession reserves a slot for a draining server's session elsewhere and mints a token for each
// member on the new server.
func (c *controlServer) MoveSession(ctx context.Context, r *control.MoveSessionRequest) (*control.MoveSessionReply, error) {
	if r.GetServer() == "" || r.GetSessionId() == "" {
		return nil, status.Error(codes.InvalidArgument, "MoveSessionRequest.server and session_id are required")
	}
	if err := callerIs(ctx, r.GetServer(), ""); err != nil {
		return nil, err
	}
	for _, p := range r.GetPlayers() {
		if p == "" {
			return nil, status.Error(codes.InvalidArgument, "MoveSessionRequest.players has an empty player id")
		}
	}
	// The move's own span: a child of the draining server's gameserver.MoveSession span (which links
	// to the members' JOINs, in their tickets' traces), and the parent of their rejoins on the new
	// server (the tokens below carry it).
	ctx, span := tracer().Start(ctx, "director.MoveSession", trace.WithAttributes(
		tracing.SessionID.String(r.GetSessionId()), tracing.FromServer.String(r.GetServer()), attribute.Int("kumi.players", len(r.GetPlayers()))))
	defer span.End()
	reply, err := c.moveSession(ctx, r)
	if err != nil {
		span.SetStatus(otelcodes.Error, err.Error())
		return nil, err
	}
	span.SetAttributes(tracing.Server.String(reply.GetServer()))
	return reply, nil
}

// moveSession is MoveSession once the request is checked.
func (c *controlServer) moveSession(ctx context.Context, r *control.MoveSessionRequest) (*control.MoveSessionReply, error) {
	d := c.d
	now := time.Now()
	pl, err := d.pool.Move(r.GetServer(), r.GetSessionId(), r.GetPlayers(), now)
	switch {
	case errors.Is(err, pool.ErrNoRoom):
		d.m.moves.WithLabelValues("no_room").Inc()
		d.pokeAll()
		d.log.WarnContext(ctx, "no room to move a session", "server", r.GetServer(), "session", r.GetSessionId())
		d.noteMoveFailed(r.GetServer(), r.GetSessionId())
		return nil, status.Error(codes.ResourceExhausted, "no other pooled server has a free session slot")
	case errors.Is(err, pool.ErrNotHosted), errors.Is(err, pool.ErrNotMember):
		d.m.moves.WithLabelValues("error").Inc()
		d.log.WarnContext(ctx, "move refused: not the caller's session or members", "server", r.GetServer(), "session", r.GetSessionId(), "err", err)
		return nil, status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, pool.ErrUnknownSession):
		d.m.moves.WithLabelValues("error").Inc()
		return nil, status.Error(codes.NotFound, err.Error())
	case err != nil:
		d.m.moves.WithLabelValues("error").Inc()
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	reply := &control.MoveSessionReply{Server: pl.Server, Address: pl.Address, SessionId: pl.SessionID}
	inst := d.instances.get(pl.Server)
	for _, p := range r.GetPlayers() {
		tok, claims, err := d.signer.IssueServerToken(token.ServerClaims{PlayerID: p, SessionID: pl.SessionID, Server: pl.Server,
			Instance: inst, ExpiresAt: now.Add(d.cfg.TokenTTL), TraceParent: tracing.TraceParent(ctx)}) // rejoin: child of this move's span
		if err != nil {
			d.m.moves.WithLabelValues("error").Inc()
			return nil, status.Errorf(codes.Internal, "mint token for %s: %v", p, err)
		}
		reply.Tokens = append(reply.Tokens, &control.PlayerToken{PlayerId: p, Token: tok, Expiry: timestamppb.New(claims.ExpiresAt)})
	}
	d.m.moves.WithLabelValues("moved").Inc()
	d.log.InfoContext(ctx, "session moved", "session", pl.SessionID, "from", r.GetServer(), "to", pl.Server, "players", len(r.GetPlayers()))
	d.noteMove(r.GetServer(), pl.Server, pl.SessionID, len(r.GetPlayers()))
	if bl := d.backends[pl.Backend]; bl != nil {
		bl.poke()
	}
	return reply, nil
}
