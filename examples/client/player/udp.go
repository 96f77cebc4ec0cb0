package player

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"time"

	"github.com/kumi-dev/kumi/api/client"
	"github.com/kumi-dev/kumi/gameserver/wire"
)

// frameHeader is the start of every voice frame this client sends: send time (unix ns) and the
// frame's number, so receivers can measure one-way latency.
const frameHeader = 16

// maxLatencySamples bounds Report.FrameLatency (reservoir sampling keeps it representative).
const maxLatencySamples = 10000

// legEnd says how a stay ended without error.
type legEnd struct {
	move      *wire.Move // MOVE: rejoin here
	reconnect bool       // RECONNECT or REFUSE: get a new assignment
}

// event is what the reader goroutine hands to the sender loop.
type event struct {
	typ     wire.Type
	latency time.Duration // DATA with a frame header; -1 otherwise
	move    wire.Move
	recon   wire.Reconnect
}

// stay joins the game server of as and exchanges frames until the talk deadline, a MOVE, a
// RECONNECT or ctx's end.
func (p *run) stay(ctx context.Context, leg *Leg, as *client.Assignment) (legEnd, error) {
	received := time.Now()
	raddr, err := net.ResolveUDPAddr("udp", as.GetAddress())
	if err != nil {
		leg.Ended = err.Error()
		return legEnd{}, fmt.Errorf("player: game server address %q: %w", as.GetAddress(), err)
	}
	// A connected socket only receives from the server's address.
	conn, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		leg.Ended = err.Error()
		return legEnd{}, fmt.Errorf("player: %w", err)
	}
	defer conn.Close()

	acc, ref, err := p.join(ctx, conn, as.GetServerToken())
	if err != nil {
		leg.Ended = err.Error()
		return legEnd{}, err
	}
	if ref != nil {
		// The token is single use and the server said no: only a new assignment can help.
		leg.Ended = fmt.Sprintf("refused: %s %s", ref.Code, ref.Text)
		p.log.WarnContext(ctx, "join refused", "session", leg.SessionID, "server", leg.Address, "code", ref.Code.String(), "text", ref.Text)
		return legEnd{reconnect: true}, nil
	}
	accepted := time.Now()
	leg.MemberID = acc.MemberID
	leg.AssignmentToAccept = accepted.Sub(received)
	if p.deadline.IsZero() && p.cfg.Talk > 0 {
		p.deadline = accepted.Add(p.cfg.Talk)
	}
	p.log.DebugContext(ctx, "joined", "session", leg.SessionID, "server", leg.Address, "member", acc.MemberID, "after", leg.AssignmentToAccept)

	s := &udpSession{conn: conn, key: wire.NewKey(acc.Key), member: acc.MemberID}
	events := make(chan event, 64)
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		s.read(events, stop)
	}()
	defer func() {
		close(stop)
		conn.Close()
		<-readerDone
	}()

	size := min(p.cfg.FrameBytes, int(acc.MaxPayload))
	if acc.MaxPayload == 0 {
		size = p.cfg.FrameBytes
	}
	size = max(size, frameHeader)
	frame := make([]byte, size)
	ticker := time.NewTicker(p.cfg.FrameInterval)
	defer ticker.Stop()
	var talkEnd <-chan time.Time
	if !p.deadline.IsZero() {
		t := time.NewTimer(time.Until(p.deadline))
		defer t.Stop()
		talkEnd = t.C
	}
	leave := func() { _ = s.send(wire.TypeLeave, nil) }
	for {
		select {
		case <-ctx.Done():
			leave()
			leg.Ended = "interrupted"
			return legEnd{}, ctx.Err()
		case <-talkEnd:
			leave()
			leg.Ended = "done"
			return legEnd{}, nil
		case <-ticker.C:
			leg.FramesSent++
			binary.BigEndian.PutUint64(frame[0:], uint64(time.Now().UnixNano()))
			binary.BigEndian.PutUint64(frame[8:], leg.FramesSent)
			if err := s.send(wire.TypeData, frame); err != nil {
				leg.Ended = err.Error()
				return legEnd{}, fmt.Errorf("player: send to %s: %w", leg.Address, err)
			}
		case ev, ok := <-events:
			if !ok {
				leg.Ended = "socket closed"
				return legEnd{}, fmt.Errorf("player: socket to %s closed", leg.Address)
			}
			switch ev.typ {
			case wire.TypeData:
				leg.FramesReceived++
				if leg.FramesReceived == 1 {
					leg.AcceptToFirstFrame = time.Since(accepted)
				}
				if ev.latency >= 0 {
					p.sample(ev.latency)
				}
			case wire.TypeMove:
				leave() // acknowledges the MOVE
				leg.Ended = "move"
				p.log.InfoContext(ctx, "moved", "session", leg.SessionID, "from", leg.Address, "to", ev.move.Addr)
				m := ev.move
				return legEnd{move: &m}, nil
			case wire.TypeReconnect:
				leave() // acknowledges the RECONNECT
				leg.Ended = fmt.Sprintf("reconnect: %s %s", ev.recon.Code, ev.recon.Text)
				p.log.InfoContext(ctx, "told to reconnect", "session", leg.SessionID, "server", leg.Address, "code", ev.recon.Code.String())
				return legEnd{reconnect: true}, nil
			}
		}
	}
}

// sample keeps a uniform sample of at most maxLatencySamples latencies.
func (p *run) sample(d time.Duration) {
	r := p.rep
	p.seen++
	if len(r.FrameLatency) < maxLatencySamples {
		r.FrameLatency = append(r.FrameLatency, d)
		return
	}
	if i := mrand.Uint64N(p.seen); i < maxLatencySamples {
		r.FrameLatency[i] = d
	}
}

// join sends JOIN until the server answers this nonce with ACCEPT or REFUSE. The server answers a
// retransmitted JOIN (same nonce) with the same ACCEPT, so retransmitting a single-use token is safe.
func (p *run) join(ctx context.Context, conn *net.UDPConn, tok string) (*wire.Accept, *wire.Refuse, error) {
	var j wire.Join
	_, _ = rand.Read(j.Nonce[:])
	j.Token = []byte(tok)
	pkt, err := wire.AppendJoin(nil, j)
	if err != nil {
		return nil, nil, fmt.Errorf("player: JOIN: %w", err)
	}
	deadline := time.Now().Add(p.cfg.JoinTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	buf := make([]byte, 2048)
	defer conn.SetReadDeadline(time.Time{})
	for attempt := 1; ; attempt++ {
		if _, err := conn.Write(pkt); err != nil {
			return nil, nil, fmt.Errorf("player: send JOIN: %w", err)
		}
		retry := time.Now().Add(p.cfg.JoinRetry)
		if retry.After(deadline) {
			retry = deadline
		}
		for {
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
			conn.SetReadDeadline(retry)
			n, err := conn.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if !time.Now().Before(deadline) {
					return nil, nil, fmt.Errorf("player: no answer to JOIN from %s after %d attempts in %s", conn.RemoteAddr(), attempt, p.cfg.JoinTimeout)
				}
				break // retransmit
			}
			if err != nil {
				// ICMP port unreachable shows up as a read error on a connected socket: the server
				// is not (yet) there; keep retrying until the deadline.
				if !time.Now().Before(deadline) {
					return nil, nil, fmt.Errorf("player: JOIN %s: %w", conn.RemoteAddr(), err)
				}
				wait := time.NewTimer(time.Until(retry))
				select {
				case <-ctx.Done():
					wait.Stop()
					return nil, nil, ctx.Err()
				case <-wait.C:
				}
				break
			}
			t, err := wire.PeekType(buf[:n])
			if err != nil {
				continue
			}
			switch t {
			case wire.TypeAccept:
				if a, err := wire.ParseAccept(buf[:n]); err == nil && a.Nonce == j.Nonce {
					return &a, nil, nil
				}
			case wire.TypeRefuse:
				if r, err := wire.ParseRefuse(buf[:n]); err == nil && r.Nonce == j.Nonce {
					return nil, &r, nil
				}
			}
		}
	}
}

// udpSession is an admitted member's authenticated channel.
type udpSession struct {
	conn   *net.UDPConn
	key    *wire.Key
	member uint32
	seq    uint64 // owned by the sender loop
	out    []byte
}

func (s *udpSession) send(t wire.Type, body []byte) error {
	s.seq++
	s.out = s.key.Seal(s.out[:0], wire.ToServer, wire.Header{Type: t, Member: s.member, Seq: s.seq}, body)
	_, err := s.conn.Write(s.out)
	return err
}

// read authenticates every datagram from the server and passes DATA, MOVE and RECONNECT on; it ends
// (closing events) when the socket is closed or stop is closed.
func (s *udpSession) read(events chan<- event, stop <-chan struct{}) {
	defer close(events)
	var (
		win     wire.Window
		scratch wire.Scratch
		buf     = make([]byte, 64<<10)
	)
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ICMP errors on a connected socket
		}
		h, body, err := s.key.Open(&scratch, wire.ToClient, buf[:n])
		if err != nil || !win.Accept(h.Seq) {
			continue // forged, corrupted or replayed
		}
		ev := event{typ: h.Type, latency: -1}
		switch h.Type {
		case wire.TypeData:
			if len(body) >= frameHeader {
				sent := int64(binary.BigEndian.Uint64(body))
				ev.latency = time.Duration(time.Now().UnixNano() - sent)
			}
		case wire.TypeMove:
			m, err := wire.ParseMove(body)
			if err != nil {
				continue
			}
			ev.move = m
		case wire.TypeReconnect:
			r, err := wire.ParseReconnect(body)
			if err != nil {
				continue
			}
			ev.recon = r
		default:
			continue // KEEPALIVE answers need no action
		}
		select {
		case events <- ev:
		case <-stop:
			return
		}
	}
}
