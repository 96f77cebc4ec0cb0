package openmatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// backend implements openmatch.BackendService.
type backend struct {
	pb.UnimplementedBackendServiceServer
	s *Server
}

func (b *backend) FetchMatches(req *pb.FetchMatchesRequest, stream grpc.ServerStreamingServer[pb.FetchMatchesResponse]) error {
	switch {
	case req.GetConfig() == nil:
		return status.Error(codes.InvalidArgument, ".config is required")
	case req.GetProfile() == nil:
		return status.Error(codes.InvalidArgument, ".profile is required")
	}
	ctx := stream.Context()
	mmfCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	fc := &fetchCall{ctx: ctx, mmfCancel: cancel, joined: make(chan *cycle, 1), seen: make(map[string]struct{}), wake: make(chan struct{}, 1)}
	cy, err := b.s.sync.register(fc)
	if err != nil {
		b.s.metrics.fetchCalls.WithLabelValues("canceled").Inc()
		return toStatus(err)
	}
	mmfDone := make(chan struct{})
	go func() {
		defer close(mmfDone)
		cy.mmfDone(fc, b.s.mmfs.run(mmfCtx, req.Config, req.Profile, func(p *proposal) error { return cy.propose(fc, p) }))
	}()
	defer func() {
		cancel()
		<-mmfDone
	}()
	send := func() error {
		for _, p := range cy.take(fc) {
			var err error
			if p.raw != nil {
				err = stream.SendMsg(p.wrap())
			} else {
				err = stream.Send(&pb.FetchMatchesResponse{Match: p.msg})
			}
			if err != nil {
				cy.leave(fc)
				return err
			}
		}
		return nil
	}
	for done := false; !done; {
		select {
		case <-fc.wake:
		case <-cy.done:
			done = true
		case <-ctx.Done():
			cy.leave(fc)
			b.s.metrics.fetchCalls.WithLabelValues("canceled").Inc()
			return status.FromContextError(ctx.Err()).Err()
		case <-b.s.stopping:
			cy.leave(fc)
			return toStatus(errStopping)
		}
		if err := send(); err != nil {
			return err
		}
	}
	// The MMF was cancelled if it outlived the proposal window; its error is part of the answer.
	<-mmfDone
	cy.mu.Lock()
	syncErr, callErr := cy.err, fc.err
	if fc.syncErr != nil {
		// Open Match v1.8.1 cancels an MMF that outlives the proposal window with this error as
		// the cause and reports it as the MMF's error: syncErr=[<nil>], mmfErr=[match function ran
		// longer than proposal window, canceling].
		callErr = fc.syncErr
	}
	cy.mu.Unlock()
	if syncErr != nil || callErr != nil {
		b.s.metrics.fetchCalls.WithLabelValues("error").Inc()
		b.s.log.Warn("FetchMatches failed", "profile", req.Profile.GetName(), "sync_error", syncErr, "mmf_error", callErr)
		return status.Error(codes.Unknown, fmt.Sprintf("error(s) in FetchMatches call. syncErr=[%v], mmfErr=[%v]", syncErr, callErr))
	}
	b.s.metrics.fetchCalls.WithLabelValues("ok").Inc()
	return nil
}

func toStatus(err error) error {
	switch {
	case errors.Is(err, errStopping):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Unknown, err.Error())
}

func (b *backend) AssignTickets(ctx context.Context, req *pb.AssignTicketsRequest) (*pb.AssignTicketsResponse, error) {
	if len(req.GetAssignments()) == 0 {
		// Open Match v1.8.1 returns early with an empty answer: nothing to assign is not an error.
		return &pb.AssignTicketsResponse{}, nil
	}
	n := 0
	seen := make(map[string]struct{})
	for _, g := range req.GetAssignments() {
		if g.GetAssignment() == nil {
			return nil, status.Error(codes.InvalidArgument, "AssignmentGroup.Assignment is required")
		}
		if len(g.GetTicketIds()) == 0 {
			return nil, status.Error(codes.InvalidArgument, "AssignmentGroupTicketIds is empty")
		}
		for _, id := range g.TicketIds {
			if _, dup := seen[id]; dup {
				return nil, status.Errorf(codes.InvalidArgument, "Ticket id %s is assigned multiple times in one assign tickets call", id)
			}
			seen[id] = struct{}{}
			n++
		}
	}
	if n == 0 {
		return nil, status.Error(codes.InvalidArgument, "AssignmentGroupTicketIds is empty")
	}
	resp := &pb.AssignTicketsResponse{}
	now := time.Now().UnixNano()
	for _, g := range req.Assignments {
		raw, err := proto.Marshal(g.Assignment)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "assignment cannot be encoded: %v", err)
		}
		for _, id := range g.TicketIds {
			if b.s.tickets.assign(id, g.Assignment, raw, now) {
				b.s.metrics.assigned.Inc()
				b.s.log.DebugContext(ctx, "ticket assigned", "ticket", id, "connection", g.Assignment.GetConnection())
			} else {
				resp.Failures = append(resp.Failures, &pb.AssignmentFailure{TicketId: id, Cause: pb.AssignmentFailure_TICKET_NOT_FOUND})
			}
		}
	}
	return resp, nil
}

func (b *backend) ReleaseTickets(ctx context.Context, req *pb.ReleaseTicketsRequest) (*pb.ReleaseTicketsResponse, error) {
	b.s.tickets.release(req.GetTicketIds())
	return &pb.ReleaseTicketsResponse{}, nil
}

func (b *backend) ReleaseAllTickets(ctx context.Context, req *pb.ReleaseAllTicketsRequest) (*pb.ReleaseAllTicketsResponse, error) {
	b.s.tickets.releaseAll()
	return &pb.ReleaseAllTicketsResponse{}, nil
}
