package client

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"time"

	clientpb "github.com/kumi-dev/kumi/api/client"
	gsclient "github.com/kumi-dev/kumi/gameserver/client"
)

// frameHeader is the start of every voice frame this client sends: send time (unix ns) and the
// frame's number, so receivers can measure one-way latency.
const frameHeader = 16

// maxLatencySamples bounds Report.FrameLatency (reservoir sampling keeps it representative).
const maxLatencySamples = 10000

// connect joins the game server of as with the game server's Go client (gameserver/client), which
// follows MOVE by itself, and exchanges frames until the talk deadline or a RECONNECT. Each server
// stayed on becomes a Leg in the report; reconnect is true when a new ticket is needed.
func (p *run) connect(ctx context.Context, leg Leg, as *clientpb.Assignment) (reconnect bool, err error) {
	received := time.Now()
	cfg := gsclient.Default()
	cfg.JoinTimeout, cfg.JoinRetry, cfg.FollowMoves = p.cfg.JoinTimeout, p.cfg.JoinRetry, true
	conn, err := gsclient.Dial(ctx, as.GetAddress(), as.GetServerToken(), cfg)
	if err != nil {
		var refused *gsclient.RefusedError
		if errors.As(err, &refused) {
			// The token is single use and the server said no: only a new assignment can help.
			leg.Ended = "refused: " + refused.Code.String() + " " + refused.Text
			p.rep.Legs = append(p.rep.Legs, leg)
			p.log.WarnContext(ctx, "join refused", "session", leg.SessionID, "server", leg.Address, "code", refused.Code.String(), "text", refused.Text)
			return true, nil
		}
		leg.Ended = err.Error()
		p.rep.Legs = append(p.rep.Legs, leg)
		return false, fmt.Errorf("player: join %s: %w", as.GetAddress(), err)
	}
	defer conn.Close()

	accepted := time.Now()
	leg.MemberID = conn.MemberID()
	leg.AssignmentToAccept = accepted.Sub(received)
	if p.deadline.IsZero() && p.cfg.Talk > 0 {
		p.deadline = accepted.Add(p.cfg.Talk)
	}
	p.log.DebugContext(ctx, "joined", "session", leg.SessionID, "server", leg.Address, "member", leg.MemberID, "after", leg.AssignmentToAccept)
	p.joined(leg)
	// end closes the current leg into the report.
	end := func(why string) {
		leg.Ended = why
		p.rep.Legs = append(p.rep.Legs, leg)
	}

	recvCtx, stopRecv := context.WithCancel(ctx)
	events := make(chan gsclient.Event)
	recvDone := make(chan error, 1)
	go func() {
		for {
			ev, err := conn.Recv(recvCtx)
			if err != nil {
				recvDone <- err
				return
			}
			select {
			case events <- ev:
			case <-recvCtx.Done():
				recvDone <- recvCtx.Err()
				return
			}
		}
	}()
	defer func() {
		stopRecv()
		<-recvDone
	}()

	frame := make([]byte, p.cfg.FrameBytes)
	ticker := time.NewTicker(p.cfg.FrameInterval)
	defer ticker.Stop()
	var talkEnd <-chan time.Time
	if !p.deadline.IsZero() {
		t := time.NewTimer(time.Until(p.deadline))
		defer t.Stop()
		talkEnd = t.C
	}
	var moveStart time.Time
	for {
		select {
		case <-ctx.Done():
			_ = conn.Leave()
			end("interrupted")
			return false, ctx.Err()
		case <-talkEnd:
			_ = conn.Leave()
			end("done")
			return false, nil
		case <-p.cfg.Stop:
			_ = conn.Leave()
			end("done")
			return false, nil
		case <-ticker.C:
			if !moveStart.IsZero() {
				continue // between servers: nothing to send to
			}
			binary.BigEndian.PutUint64(frame[0:], uint64(time.Now().UnixNano()))
			binary.BigEndian.PutUint64(frame[8:], leg.FramesSent+1)
			err := conn.Send(frame)
			if errors.Is(err, gsclient.ErrClosed) {
				// The client already acted on a MOVE or RECONNECT whose event is on its way.
				continue
			}
			if err != nil {
				end(err.Error())
				return false, fmt.Errorf("player: send to %s: %w", leg.Address, err)
			}
			leg.FramesSent++
		case err := <-recvDone:
			recvDone <- err // for the deferred wait
			end(err.Error())
			return false, fmt.Errorf("player: connection to %s: %w", leg.Address, err)
		case ev := <-events:
			switch ev.Kind {
			case gsclient.EventData:
				leg.FramesReceived++
				if leg.FramesReceived == 1 {
					leg.AcceptToFirstFrame = time.Since(accepted)
					if p.cfg.OnFirstFrame != nil {
						p.cfg.OnFirstFrame(p.rep.Player, leg)
					}
				}
				if len(ev.Payload) >= frameHeader {
					p.sample(time.Duration(time.Now().UnixNano() - int64(binary.BigEndian.Uint64(ev.Payload))))
				}
			case gsclient.EventMove:
				// The client has acknowledged with LEAVE and is joining ev.Addr with the new token.
				p.log.InfoContext(ctx, "moved", "session", leg.SessionID, "from", leg.Address, "to", ev.Addr)
				end("move")
				moveStart = time.Now()
				leg = Leg{Cause: "move", Address: ev.Addr, SessionID: leg.SessionID}
			case gsclient.EventMoved:
				if ev.Err != nil {
					// The new server would not take us: fall back to a new ticket.
					end("move failed: " + ev.Err.Error())
					return true, nil
				}
				accepted = time.Now()
				leg.MemberID = conn.MemberID()
				leg.AssignmentToAccept = accepted.Sub(moveStart)
				moveStart = time.Time{}
				p.joined(leg)
			case gsclient.EventReconnect:
				// The client has acknowledged with LEAVE; the session ended here.
				p.log.InfoContext(ctx, "told to reconnect", "session", leg.SessionID, "server", leg.Address, "code", ev.Code.String())
				end("reconnect: " + ev.Code.String() + " " + ev.Text)
				return true, nil
			case gsclient.EventLost:
				end("lost: server silent")
				return true, nil
			}
		}
	}
}

func (p *run) joined(leg Leg) {
	if p.cfg.OnJoined != nil {
		p.cfg.OnJoined(p.rep.Player, leg)
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
