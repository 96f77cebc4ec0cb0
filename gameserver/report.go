package gameserver

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kumi-dev/kumi/api/control"
)

// reportLoop sends load reports to the director: at once, every report interval (the director's
// reply may change it), and shortly after any session starts or ends.
func (s *Server) reportLoop() error {
	interval := s.cfg.ReportInterval
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return nil
		case <-timer.C:
		case <-s.reportKick:
			// Debounce: changes in the next moment share this report.
			d := time.NewTimer(s.cfg.ReportDebounce)
			select {
			case <-s.ctx.Done():
				d.Stop()
				return nil
			case <-d.C:
			}
		}
		reply, err := s.report()
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Warn("load report failed", "err", err)
			}
		} else {
			if d := reply.GetReportInterval().AsDuration(); reply.GetReportInterval() != nil && d > 0 {
				interval = d
			}
			if reply.GetDrain() {
				s.Drain("director asked")
			}
		}
		timer.Reset(interval)
	}
}

// report sends one snapshot. Ended sessions are handed back for the next report if it fails.
func (s *Server) report() (*control.ReportReply, error) {
	now := time.Now()
	s.mu.Lock()
	ended := s.ended
	s.ended = nil
	r := &control.LoadReport{
		Server:         s.name,
		Instance:       s.inst.ID(),
		Address:        s.public,
		Capacity:       int32(s.cfg.Capacity),
		MaxMembers:     int32(s.cfg.MaxMembers),
		Time:           timestamppb.New(now),
		EndedSessions:  ended,
		Sessions:       make([]*control.SessionLoad, 0, len(s.sessions)),
		PacketsDropped: int64(s.droppedTotal()),
	}
	for id, sess := range s.sessions {
		sl := &control.SessionLoad{SessionId: id, Started: timestamppb.New(sess.started), Players: make([]string, 0, len(sess.members))}
		for _, m := range sess.members {
			sl.Players = append(sl.Players, m.player)
		}
		r.Sessions = append(r.Sessions, sl)
	}
	relayed := s.relayed.Load()
	if !s.lastReport.IsZero() {
		if dt := now.Sub(s.lastReport).Seconds(); dt > 0 {
			r.PacketsPerSecond = float64(relayed-s.lastRelayed) / dt
		}
	}
	s.mu.Unlock()
	switch s.State() {
	case StateAccepting:
		r.State = control.ServerState_SERVER_STATE_ACCEPTING
	case StateDraining:
		r.State = control.ServerState_SERVER_STATE_DRAINING
	default:
		r.State = control.ServerState_SERVER_STATE_STOPPING
	}
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	reply, err := s.deps.director.Report(ctx, r)
	s.mu.Lock()
	if err != nil {
		s.ended = append(ended, s.ended...)
	} else {
		s.lastReport, s.lastRelayed = now, relayed
	}
	s.mu.Unlock()
	return reply, err
}

func (s *Server) droppedTotal() uint64 {
	var n uint64
	for i := range s.m.dropped {
		n += s.m.dropped[i].Load()
	}
	return n
}
