package gameserver

import (
	"context"
	"errors"
	"github.com/kumi-dev/kumi/internal/tracing"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"time"

	"github.com/kumi-dev/kumi/gameserver/wire"
	"github.com/kumi-dev/kumi/internal/token"
)

func (s *Server) admitLoop() error {
	for {
		select {
		case <-s.ctx.Done():
			return nil
		case req := <-s.admitCh:
			s.admit(req)
		}
	}
}

// refusePacket builds a REFUSE no longer than the JOIN it answers, so a JOIN with a forged source
// address cannot make the server send a victim more bytes than the attacker sent.
func refusePacket(nonce [wire.NonceLen]byte, size int, code wire.RefuseCode, text string) []byte {
	room := size - wire.RefuseLen("")
	if len(text) > room {
		text = text[:max(room, 0)]
	}
	return wire.AppendRefuse(nil, wire.Refuse{Nonce: nonce, Code: code, Text: text})
}

// refuseCode maps a token verification failure to what the client is told.
func refuseCode(err error) wire.RefuseCode {
	switch {
	case errors.Is(err, token.ErrExpired), errors.Is(err, token.ErrNotYetValid):
		return wire.RefuseExpired
	case errors.Is(err, token.ErrAudience):
		return wire.RefuseWrongServer
	}
	return wire.RefuseBadToken
}

const wrongInstanceText = "token minted for an earlier life of this server (it restarted): ask for a new assignment"

// admit opens one JOIN, verifies its token and admits the member, or refuses it.
func (s *Server) admit(req joinReq) {
	j := req.join
	start := time.Now()
	// A no-op span until the token names the player's trace; refusals after that are recorded on it.
	span := trace.SpanFromContext(context.Background())
	defer func() { span.End() }()
	refuse := func(code wire.RefuseCode, text string) {
		span.SetStatus(otelcodes.Error, text)
		s.m.joins[code].Add(1)
		s.sendPlain(req.from, refusePacket(j.Nonce, req.size, code, text))
	}
	if !s.limiter.Allow() {
		refuse(wire.RefuseBusy, "join rate limit; retry shortly")
		return
	}
	hs, raw, err := s.inst.Open(j)
	switch {
	case errors.Is(err, wire.ErrInstance):
		refuse(wire.RefuseWrongInstance, wrongInstanceText)
		return
	case err != nil:
		s.log.Debug("join does not open", "from", req.from.ap, "err", err)
		refuse(wire.RefuseBadToken, "JOIN does not decrypt with this server's instance key")
		return
	}
	claims, err := s.deps.verifier.VerifyServerToken(string(raw), s.name)
	if err != nil {
		code := refuseCode(err)
		s.log.Debug("join refused", "from", req.from.ap, "code", code, "err", err)
		refuse(code, err.Error())
		return
	}
	if claims.TraceParent != "" {
		// The JOIN joins the player's trace under the director's span for this ticket; the
		// parent's sampling decision (the traceparent's flag) rules (parentbased samplers).
		_, span = tracing.Tracer("gameserver").Start(tracing.ContextWith(context.Background(), claims.TraceParent), "gameserver.Join",
			trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start),
			trace.WithAttributes(tracing.SessionID.String(claims.SessionID), tracing.Server.String(s.name), tracing.PlayerID.String(claims.PlayerID)))
	}
	if claims.Instance != s.inst.ID() {
		// A token stolen from (or minted for) this server's previous life, sealed to the new key.
		s.log.Warn("token for another instance refused", "from", req.from.ap, "jti", claims.ID)
		refuse(wire.RefuseWrongInstance, wrongInstanceText)
		return
	}
	log := s.log.With("session", claims.SessionID, "player", claims.PlayerID)
	// The handshake's public-key work now, outside the lock the relay reads under.
	if err := hs.Prepare(); err != nil {
		log.Warn("join handshake failed", "err", err)
		refuse(wire.RefuseBadToken, "handshake failed")
		return
	}

	s.mu.Lock()
	if e := s.jtis[claims.ID]; e != nil {
		m := e.member
		if m != nil && e.nonce == j.Nonce && e.eph == j.Ephemeral {
			// The same JOIN again (our ACCEPT was lost): answer it again to where it came from,
			// but never move the member there: only its sealed packets do that, so a JOIN replayed
			// from another address cannot take the member's traffic.
			s.mu.Unlock()
			s.sendPlain(req.from, m.accept)
			return
		}
		s.mu.Unlock()
		log.Warn("replayed token refused", "from", req.from.ap, "jti", claims.ID)
		refuse(wire.RefuseReplayed, "token already used: each server token admits once; ask for a new assignment")
		return
	}
	sess := s.sessions[claims.SessionID]
	// While a drain's grace lasts, a late member may still join a live session (a voice group's
	// latecomer): it then moves with its session as one unit. New sessions are refused, and so is
	// every JOIN once the sessions are being moved.
	if st := s.State(); st != StateAccepting && (st != StateDraining || sess == nil || s.moving.Load()) {
		s.mu.Unlock()
		refuse(wire.RefuseDraining, "server draining: ask for a new assignment")
		return
	}
	if sess == nil && len(s.sessions) >= s.cfg.Capacity {
		s.mu.Unlock()
		log.Warn("join refused: server full", "capacity", s.cfg.Capacity)
		refuse(wire.RefuseFull, "server at session capacity")
		return
	}
	var replaced *member
	if sess != nil {
		for _, o := range sess.members {
			if o.player == claims.PlayerID {
				replaced = o
			}
		}
		if replaced == nil && len(sess.members) >= s.cfg.MaxMembers {
			s.mu.Unlock()
			refuse(wire.RefuseSessionFull, "session at its member limit")
			return
		}
	}
	id := s.newMemberIDLocked()
	accept, keys, err := hs.Accept(wire.Accept{
		MemberID:   id,
		Keepalive:  s.cfg.Keepalive,
		Timeout:    s.cfg.MemberTimeout,
		MaxPayload: uint16(min(s.cfg.MaxPayload, 65535)),
	})
	if err != nil {
		s.mu.Unlock()
		log.Warn("join handshake failed", "err", err)
		refuse(wire.RefuseBadToken, "handshake failed")
		return
	}
	now := time.Now()
	if sess == nil {
		sess = &session{id: claims.SessionID, started: now}
		s.sessions[sess.id] = sess
		s.m.sessionsStarted.Add(1)
		log.InfoContext(trace.ContextWithSpan(context.Background(), span), "session started")
	}
	m := &member{id: id, player: claims.PlayerID, sess: sess, accept: accept, jti: claims.ID, joinSpan: span.SpanContext()}
	if s.deps.v1Keys {
		m.key = *wire.NewV1Key(keys)
	} else {
		m.key = *wire.NewKey(keys)
	}
	clear(keys[:])
	m.addr.Store(req.from)
	m.seen.Store(now.UnixNano())
	sess.members = append(sess.members[:len(sess.members):len(sess.members)], m)
	s.members[m.id] = m
	s.jtis[claims.ID] = &jtiEntry{until: claims.ExpiresAt.Add(s.cfg.Token.Leeway + time.Second), member: m, nonce: j.Nonce, eph: j.Ephemeral}
	if replaced != nil {
		// Added first so the session survives the old member's removal.
		s.removeLocked(replaced, leaveReplaced)
	}
	s.kick()
	s.mu.Unlock()

	s.m.joins[0].Add(1)
	s.sendPlain(req.from, accept)
	if replaced != nil {
		s.sendTo(replaced, wire.TypeReconnect, wire.AppendReconnect(nil, wire.Reconnect{Code: wire.ReconnectReplaced, Text: "joined again from elsewhere"}))
	}
	log.DebugContext(trace.ContextWithSpan(context.Background(), span), "member joined", "member", m.id, "from", req.from.ap)
}
