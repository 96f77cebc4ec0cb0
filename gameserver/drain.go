package gameserver

import (
	"context"
	"errors"
	"github.com/kumi-dev/kumi/internal/tracing"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kumi-dev/kumi/allocation"
	"github.com/kumi-dev/kumi/api/control"
	"github.com/kumi-dev/kumi/gameserver/wire"
)

// moveParallelism bounds concurrent MoveSession calls during a drain.
const moveParallelism = 16

// Drain asks the server to drain (why is logged). It is idempotent and returns at once: the
// server refuses new JOINs, lowers its Agones counter capacity to its current sessions, waits
// DrainGrace for sessions to end, then moves the rest (MOVE, or RECONNECT when no other server
// can take them); once empty it calls SDK Shutdown.
func (s *Server) Drain(why string) {
	s.drainOnce.Do(func() { s.drainCh <- why })
}

func (s *Server) sessionCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.sessions)
}

func (s *Server) drainLoop() error {
	var why string
	select {
	case <-s.ctx.Done():
		return nil
	case why = <-s.drainCh:
	}
	s.state.Store(int32(StateDraining))
	s.m.drains.Add(1)
	start := time.Now()
	n := s.sessionCount()
	// The drain is its own trace; its moves are its children and link to the sessions' JOINs. Its
	// log lines are logged with the span's context so they carry its trace_id.
	ctx, span := tracing.Tracer("gameserver").Start(s.ctx, "gameserver.Drain",
		trace.WithAttributes(tracing.Server.String(s.name), attribute.String("kumi.drain_reason", why), attribute.Int("kumi.sessions", n)))
	defer span.End()
	s.log.InfoContext(ctx, "drain started", "why", why, "sessions", n, "grace", s.cfg.DrainGrace)
	if s.deps.sdk != nil {
		// Nothing may be allocated here any more: capacity = count leaves no room.
		if err := s.deps.sdk.SetCounterCapacity(s.ctx, allocation.CounterSessions, int64(n)); err != nil {
			s.log.WarnContext(ctx, "could not lower counter capacity", "counter", allocation.CounterSessions, "err", err)
		}
	}
	s.kick()

	grace := time.NewTimer(s.cfg.DrainGrace)
	defer grace.Stop()
	moved := false
	for s.sessionCount() > 0 {
		select {
		case <-s.ctx.Done():
			return nil
		case <-s.emptyKick:
		case <-grace.C:
			if !moved {
				moved = true
				s.moveAll(ctx)
			}
		}
	}
	s.state.Store(int32(StateStopping))
	s.log.InfoContext(ctx, "drain finished: server empty", "took", time.Since(start).Round(time.Millisecond))
	close(s.drained)
	if s.deps.director != nil {
		if _, err := s.report(); err != nil {
			s.log.WarnContext(ctx, "final load report failed", "err", err)
		}
	}
	if s.deps.sdk != nil {
		if err := s.shutdownSDK(); err != nil {
			s.log.WarnContext(ctx, "SDK Shutdown failed", "err", err)
		}
	}
	if s.cfg.ExitWhenDrained {
		s.cancel()
	}
	return nil
}

// moveAll moves every remaining session, MoveSession calls running in parallel.
func (s *Server) moveAll(ctx context.Context) {
	type snap struct {
		id      string
		members []*member
	}
	// Set before the snapshot: a JOIN admitted under s.mu before this point is in the snapshot,
	// and one after it is refused, so no member is left behind.
	s.moving.Store(true)
	s.mu.RLock()
	all := make([]snap, 0, len(s.sessions))
	for id, sess := range s.sessions {
		all = append(all, snap{id, append([]*member(nil), sess.members...)})
	}
	s.mu.RUnlock()
	s.log.InfoContext(ctx, "moving remaining sessions", "sessions", len(all))
	sem := make(chan struct{}, moveParallelism)
	var wg sync.WaitGroup
	for _, sn := range all {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			s.moveSession(ctx, sn.id, sn.members)
		}()
	}
	wg.Wait()
}

var errNoDirector = errors.New("no director configured")

// moveSession asks the director for a new home for one session and tells each member MOVE, or
// RECONNECT when that fails. The message is retransmitted (sweep) until the member LEAVEs or
// MoveTimeout passes; then the member is dropped and counted, never silently.
func (s *Server) moveSession(ctx context.Context, id string, members []*member) {
	log := s.log.With("session", id)
	var links []trace.Link
	for _, m := range members {
		if m.joinSpan.IsValid() {
			links = append(links, trace.Link{SpanContext: m.joinSpan, Attributes: []attribute.KeyValue{tracing.PlayerID.String(m.player)}})
		}
	}
	ctx, span := tracing.Tracer("gameserver").Start(ctx, "gameserver.MoveSession", trace.WithLinks(links...),
		trace.WithAttributes(tracing.SessionID.String(id), tracing.Server.String(s.name)))
	defer span.End()
	players := make([]string, 0, len(members))
	seen := make(map[string]bool, len(members))
	for _, m := range members {
		if !seen[m.player] {
			seen[m.player] = true
			players = append(players, m.player)
		}
	}
	var reply *control.MoveSessionReply
	err := errNoDirector
	if s.deps.director != nil {
		ctx, cancel := context.WithTimeout(ctx, s.cfg.MoveCallTimeout)
		reply, err = s.deps.director.MoveSession(ctx, &control.MoveSessionRequest{Server: s.name, SessionId: id, Players: players})
		cancel()
	}
	tokens := map[string]string{}
	if err == nil {
		for _, t := range reply.GetTokens() {
			tokens[t.GetPlayerId()] = t.GetToken()
		}
	}
	reconnect := wire.AppendReconnect(nil, wire.Reconnect{Code: wire.ReconnectDrain, Text: "server draining and no other server can take the session"})
	type out struct {
		m    *member
		t    wire.Type
		body []byte
	}
	var outs []out
	movedAll := err == nil
	deadline := time.Now().Add(s.cfg.MoveTimeout)
	s.mu.Lock()
	for _, m := range members {
		if s.members[m.id] != m {
			continue // left meanwhile
		}
		t, body := wire.TypeReconnect, reconnect
		if tok, ok := tokens[m.player]; ok {
			if b, merr := wire.AppendMove(nil, wire.Move{Addr: reply.GetAddress(), Token: tok}); merr == nil {
				t, body = wire.TypeMove, b
			} else {
				log.WarnContext(ctx, "director's move target unusable", "err", merr)
			}
		}
		if t != wire.TypeMove {
			movedAll = false
		}
		m.pendingType, m.pendingBody, m.pendingBy = t, body, deadline
		outs = append(outs, out{m, t, body})
	}
	s.mu.Unlock()
	switch {
	case err == nil && movedAll:
		s.m.movedSessions.Add(1)
		log.InfoContext(ctx, "session moved", "to", reply.GetServer(), "addr", reply.GetAddress(), "members", len(outs))
	case err == nil:
		s.m.movedSessions.Add(1)
		log.WarnContext(ctx, "session moved, but some members got no token and are told to reconnect", "to", reply.GetServer())
	default:
		s.m.reconnected.Add(1)
		lvl := "no room elsewhere"
		if status.Code(err) != codes.ResourceExhausted {
			lvl = err.Error()
		}
		log.WarnContext(ctx, "session could not be moved; members told to reconnect", "why", lvl, "members", len(outs))
	}
	for _, o := range outs {
		s.sendTo(o.m, o.t, o.body)
	}
}
