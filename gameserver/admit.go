package gameserver

import (
	"crypto/rand"
	"errors"
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
func refusePacket(req joinReq, code wire.RefuseCode, text string) []byte {
	room := req.size - (2 + wire.NonceLen + 2)
	if len(text) > room {
		text = text[:max(room, 0)]
	}
	return wire.AppendRefuse(nil, wire.Refuse{Nonce: req.nonce, Code: code, Text: text})
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

// admit verifies one JOIN and admits the member, or refuses it.
func (s *Server) admit(req joinReq) {
	refuse := func(code wire.RefuseCode, text string) {
		s.m.joins[code].Add(1)
		s.sendPlain(req.from, refusePacket(req, code, text))
	}
	if !s.limiter.Allow() {
		refuse(wire.RefuseBusy, "join rate limit; retry shortly")
		return
	}
	claims, err := s.deps.verifier.VerifyServerToken(req.token, s.name)
	if err != nil {
		code := refuseCode(err)
		s.log.Debug("join refused", "from", req.from.ap, "code", code, "err", err)
		refuse(code, err.Error())
		return
	}
	log := s.log.With("session", claims.SessionID, "player", claims.PlayerID)

	s.mu.Lock()
	if e := s.jtis[claims.ID]; e != nil {
		m := e.member
		if m != nil && e.nonce == req.nonce {
			// The same JOIN again (our ACCEPT was lost): answer it again, from its address.
			m.addr.Store(req.from)
			s.mu.Unlock()
			s.sendPlain(req.from, s.acceptPacket(m))
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
	now := time.Now()
	if sess == nil {
		sess = &session{id: claims.SessionID, started: now}
		s.sessions[sess.id] = sess
		s.m.sessionsStarted.Add(1)
		log.Info("session started")
	}
	m := &member{
		id:     s.newMemberIDLocked(),
		player: claims.PlayerID,
		sess:   sess,
		nonce:  req.nonce,
		jti:    claims.ID,
	}
	_, _ = rand.Read(m.rawKey[:])
	m.key = wire.NewKey(m.rawKey)
	m.addr.Store(req.from)
	m.seen.Store(now.UnixNano())
	sess.members = append(sess.members[:len(sess.members):len(sess.members)], m)
	s.members[m.id] = m
	s.jtis[claims.ID] = &jtiEntry{until: claims.ExpiresAt.Add(s.cfg.Token.Leeway + time.Second), member: m, nonce: req.nonce}
	if replaced != nil {
		// Added first so the session survives the old member's removal.
		s.removeLocked(replaced, leaveReplaced)
	}
	s.kick()
	s.mu.Unlock()

	s.m.joins[0].Add(1)
	s.sendPlain(req.from, s.acceptPacket(m))
	if replaced != nil {
		s.sendTo(replaced, wire.TypeReconnect, wire.AppendReconnect(nil, wire.Reconnect{Code: wire.ReconnectReplaced, Text: "joined again from elsewhere"}))
	}
	log.Debug("member joined", "member", m.id, "from", req.from.ap)
}

func (s *Server) acceptPacket(m *member) []byte {
	return wire.AppendAccept(nil, wire.Accept{
		Nonce:      m.nonce,
		MemberID:   m.id,
		Key:        m.rawKey,
		Keepalive:  s.cfg.Keepalive,
		Timeout:    s.cfg.MemberTimeout,
		MaxPayload: uint16(min(s.cfg.MaxPayload, 65535)),
	})
}
