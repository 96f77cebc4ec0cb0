package client

import (
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	reps := []*Report{
		{Player: "a", Legs: []Leg{
			{Cause: "assignment", TicketToAssignment: ms(10), AssignmentToAccept: ms(2), AcceptToFirstFrame: ms(20), FramesSent: 10, FramesReceived: 9},
			{Cause: "move", AssignmentToAccept: ms(4), FramesSent: 5},
			{Cause: "reconnect", TicketToAssignment: ms(30), AssignmentToAccept: ms(3), AcceptToFirstFrame: ms(5), FramesSent: 1, FramesReceived: 1},
		}, FrameLatency: []time.Duration{ms(1), ms(3)}},
		nil,
		{Player: "b", Legs: []Leg{{Cause: "assignment", TicketToAssignment: ms(20), AssignmentToAccept: ms(1)}}, FrameLatency: []time.Duration{ms(2)}},
	}
	s := Summarize(reps)
	if s.Players != 2 || s.Moves != 1 || s.Reconnects != 1 || s.FramesSent != 16 || s.FramesReceived != 10 {
		t.Fatalf("counts: %+v", s)
	}
	want := map[string]Quantiles{
		"ticket→assignment":  {N: 3, P50: ms(20), P99: ms(20), Max: ms(30)},
		"assignment→ACCEPT":  {N: 4, P50: ms(2), P99: ms(3), Max: ms(4)},
		"ACCEPT→first frame": {N: 2, P50: ms(5), P99: ms(5), Max: ms(20)},
		"frame latency":      {N: 3, P50: ms(2), P99: ms(2), Max: ms(3)},
	}
	got := map[string]Quantiles{
		"ticket→assignment": s.TicketToAssignment, "assignment→ACCEPT": s.AssignmentToAccept,
		"ACCEPT→first frame": s.AcceptToFirstFrame, "frame latency": s.FrameLatency,
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %+v, want %+v", k, got[k], w)
		}
	}
	if (&Report{}).LatencyQuantile(0.5) != 0 || reps[0].LatencyQuantile(1) != ms(3) || reps[0].LatencyQuantile(0) != ms(1) {
		t.Error("LatencyQuantile")
	}
}
