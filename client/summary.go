package client

import (
	"github.com/kumi-dev/kumi/internal/stats"
	"time"
)

// Quantiles summarises a set of durations.
type Quantiles struct {
	N             int
	P50, P99, Max time.Duration
}

func quantiles(ds []time.Duration) Quantiles {
	if len(ds) == 0 {
		return Quantiles{}
	}
	s := stats.Sorted(ds)
	return Quantiles{N: len(s), P50: stats.Quantile(s, 0.5), P99: stats.Quantile(s, 0.99), Max: s[len(s)-1]}
}

// Summary aggregates many players' reports (a crowd, a load run).
type Summary struct {
	Players int
	// TicketToAssignment covers every leg that started with a ticket (first assignment and
	// reconnects); AssignmentToAccept every joined leg (moves included); AcceptToFirstFrame every
	// leg that received a frame.
	TicketToAssignment Quantiles
	AssignmentToAccept Quantiles
	AcceptToFirstFrame Quantiles
	FrameLatency       Quantiles
	Moves, Reconnects  int
	FramesSent         uint64
	FramesReceived     uint64
}

// Summarize aggregates reports; nil reports are skipped.
func Summarize(reps []*Report) Summary {
	var s Summary
	var t2a, a2a, a2f, lat []time.Duration
	for _, r := range reps {
		if r == nil {
			continue
		}
		s.Players++
		s.Moves += r.Moves()
		s.Reconnects += r.Reconnects()
		sent, recv := r.Totals()
		s.FramesSent += sent
		s.FramesReceived += recv
		lat = append(lat, r.FrameLatency...)
		for _, l := range r.Legs {
			if l.Cause != "move" && l.TicketToAssignment > 0 {
				t2a = append(t2a, l.TicketToAssignment)
			}
			if l.AssignmentToAccept > 0 {
				a2a = append(a2a, l.AssignmentToAccept)
			}
			if l.FramesReceived > 0 {
				a2f = append(a2f, l.AcceptToFirstFrame)
			}
		}
	}
	s.TicketToAssignment, s.AssignmentToAccept, s.AcceptToFirstFrame = quantiles(t2a), quantiles(a2a), quantiles(a2f)
	s.FrameLatency = quantiles(lat)
	return s
}
