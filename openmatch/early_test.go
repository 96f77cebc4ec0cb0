package openmatch

import (
	"context"
	"errors"
	"io"
	"math"
	"testing"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/anypb"
)

// A match function that promises disjoint proposals (pb.DisjointProposalsHeader) has each one
// streamed to the caller as it arrives, before the function ends: here the function waits for
// the caller to hold its first match before it sends the rest. It then breaks its promise (the
// last proposal shares a ticket with an accepted one, at a higher score): that match is dropped,
// no ticket is matched twice, and the tickets only it proposed stay active.
func TestDisjointProposalsStreamEarly(t *testing.T) {
	c := startCore(t, nil)
	ctx := testCtx(t)
	ids := make([]string, 6)
	for i := range ids {
		tk, err := c.fe.CreateTicket(ctx, &pb.CreateTicketRequest{Ticket: smallTicket(i)})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = tk.Id
	}
	callerHasFirst := make(chan struct{})
	proposal := func(id string, score float64, tickets ...string) *pb.RunResponse {
		m := &pb.Match{MatchId: id}
		for _, tk := range tickets {
			m.Tickets = append(m.Tickets, &pb.Ticket{Id: tk})
		}
		a, _ := anypb.New(&pb.DefaultEvaluationCriteria{Score: score})
		m.Extensions = map[string]*anypb.Any{"evaluation_input": a}
		return &pb.RunResponse{Proposal: m}
	}
	fc := serveMMF(t, func(r *pb.RunRequest, s grpc.ServerStreamingServer[pb.RunResponse]) error {
		if err := s.SetHeader(metadata.Pairs(pb.DisjointProposalsHeader, "1")); err != nil {
			return err
		}
		if err := s.Send(proposal("m1", 1, ids[0], ids[1])); err != nil {
			return err
		}
		select {
		case <-callerHasFirst:
		case <-s.Context().Done():
			return s.Context().Err()
		}
		for _, p := range []*pb.RunResponse{proposal("m2", 1, ids[2], ids[3]), proposal("liar", 9, ids[3], ids[4])} {
			if err := s.Send(p); err != nil {
				return err
			}
		}
		return nil
	})
	stream, err := c.be.FetchMatches(ctx, &pb.FetchMatchesRequest{Config: fc, Profile: &pb.MatchProfile{Name: "p"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		if got = append(got, r.GetMatch().GetMatchId()); len(got) == 1 {
			close(callerHasFirst)
		}
	}
	if len(got) != 2 || got[0] != "m1" || got[1] != "m2" {
		t.Fatalf("matches %v, want [m1 m2] (the overlapping one dropped)", got)
	}
	if d := testutil.ToFloat64(c.srv.metrics.dropped); d != 1 {
		t.Fatalf("dropped = %v, want 1", d)
	}
	active, err := queryIDs(ctx, c.q, &pb.Pool{})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]bool{ids[4]: true, ids[5]: true}; len(active) != 2 || !want[active[0]] || !want[active[1]] {
		t.Fatalf("active tickets %v, want %s and %s", active, ids[4], ids[5])
	}
}

// When the default evaluator's answer may still change, a proposal waits for the end of the cycle.
func TestEarlyAcceptance(t *testing.T) {
	one := []*fetchCall{{}}
	ok := &proposal{disjoint: true, score: 1}
	tests := []struct {
		name   string
		p      *proposal
		ev     evaluator
		closed bool
		calls  []*fetchCall
		want   bool
	}{
		{"alone, window closed, promised", ok, defaultEvaluator{}, true, one, true},
		{"no score is fine", &proposal{disjoint: true, score: math.Inf(-1)}, defaultEvaluator{}, true, one, true},
		{"no promise", &proposal{score: 1}, defaultEvaluator{}, true, one, false},
		{"window open: another call may join", ok, defaultEvaluator{}, false, one, false},
		{"two calls may overlap", ok, defaultEvaluator{}, true, []*fetchCall{{}, {}}, false},
		{"an evaluator service decides", ok, &grpcEvaluator{}, true, one, false},
		{"backfills may collide", &proposal{disjoint: true, backfill: &pb.Backfill{Id: "b"}}, defaultEvaluator{}, true, one, false},
		{"unreadable score is dropped by the evaluator", &proposal{disjoint: true, badScore: true}, defaultEvaluator{}, true, one, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &cycle{sy: &synchronizer{ev: tc.ev}, windowClosed: tc.closed, calls: tc.calls}
			if got := c.early(tc.p); got != tc.want {
				t.Fatalf("early = %v, want %v", got, tc.want)
			}
		})
	}
}

// Proposals that arrived before the registration window closed on a cycle of one call are
// accepted as it closes, not at the end of the cycle; the others stay with the evaluator.
func TestAcceptEarlyAtWindowClose(t *testing.T) {
	c := startCore(t, nil)
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	fc := &fetchCall{ctx: ctx, mmfCancel: cancel, joined: make(chan *cycle, 1), seen: map[string]struct{}{}, wake: make(chan struct{}, 1)}
	cy := c.srv.sync.newCycle(ctx)
	defer cy.cancel()
	cy.join(fc)
	<-fc.joined
	for _, p := range []*proposal{
		{id: "promised", tickets: []string{"t1"}, disjoint: true},
		{id: "unpromised", tickets: []string{"t2"}},
	} {
		if err := cy.propose(fc, p); err != nil {
			t.Fatal(err)
		}
	}
	if r := cy.take(fc); len(r) != 0 {
		t.Fatalf("accepted before the window closed: %v", r)
	}
	cy.closeWindow()
	select {
	case <-fc.wake:
	case <-ctx.Done():
		t.Fatal("the caller was not woken as the window closed")
	}
	r := cy.take(fc)
	if len(r) != 1 || r[0].id != "promised" {
		t.Fatalf("accepted at window close: %v, want [promised]", r)
	}
	left := cy.sess.(*defaultSession).take(func(*proposal) bool { return true })
	if len(left) != 1 || left[0].id != "unpromised" {
		t.Fatalf("left with the evaluator: %v, want [unpromised]", left)
	}
}
