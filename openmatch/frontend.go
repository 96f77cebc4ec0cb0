package openmatch

import (
	"context"
	"slices"
	"time"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"github.com/rs/xid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// frontend implements openmatch.FrontendService.
type frontend struct {
	pb.UnimplementedFrontendServiceServer
	s *Server
}

func ticketNotFound(id string) error {
	return status.Errorf(codes.NotFound, "Ticket id: %s not found", id)
}

func (f *frontend) CreateTicket(ctx context.Context, req *pb.CreateTicketRequest) (*pb.Ticket, error) {
	t, _, err := f.createTicket(req)
	return t, err
}

// createTicket stores the request's ticket and returns it with its wire bytes (what the gRPC
// handler sends, so the response is not marshalled a second time).
func (f *frontend) createTicket(req *pb.CreateTicketRequest) (*pb.Ticket, []byte, error) {
	t := req.GetTicket()
	switch {
	case t == nil:
		return nil, nil, status.Error(codes.InvalidArgument, ".ticket is required")
	case t.Assignment != nil:
		return nil, nil, status.Error(codes.InvalidArgument, "tickets cannot be created with an assignment")
	case t.CreateTime != nil:
		return nil, nil, status.Error(codes.InvalidArgument, "tickets cannot be created with create time set")
	}
	now := time.Now()
	// The request is ours after decoding, so the stored ticket is the request ticket itself.
	t.Id = xid.NewWithTime(now).String()
	t.CreateTime = timestamppb.New(now)
	raw, err := proto.Marshal(t)
	if err != nil {
		return nil, nil, status.Errorf(codes.InvalidArgument, "ticket cannot be encoded: %v", err)
	}
	if len(raw) > f.s.cfg.MaxTicketBytes {
		return nil, nil, status.Errorf(codes.InvalidArgument, "ticket is %d bytes, more than the limit of %d (max-ticket-bytes): shrink its search fields or extensions", len(raw), f.s.cfg.MaxTicketBytes)
	}
	stored := string(raw)
	sf := t.GetSearchFields()
	id, idx, err := indexRaw(stored, raw, len(sf.GetDoubleArgs()), len(sf.GetStringArgs()), len(sf.GetTags()))
	if err != nil || id != t.Id {
		return nil, nil, status.Errorf(codes.Internal, "ticket %s: index: %v", t.Id, err)
	}
	f.s.tickets.put(id, &ticketRec{raw: stored, created: now.UnixNano(), idx: idx})
	f.s.metrics.created.Inc()
	return t, raw, nil
}

func (f *frontend) DeleteTicket(ctx context.Context, req *pb.DeleteTicketRequest) (*emptypb.Empty, error) {
	if f.s.tickets.remove(req.GetTicketId()) {
		f.s.metrics.deleted.Inc()
		f.s.log.DebugContext(ctx, "ticket deleted", "ticket", req.GetTicketId())
	}
	return &emptypb.Empty{}, nil
}

func (f *frontend) GetTicket(ctx context.Context, req *pb.GetTicketRequest) (*pb.Ticket, error) {
	raw, err := f.getTicket(req)
	if err != nil {
		return nil, err
	}
	t := &pb.Ticket{}
	if err := proto.Unmarshal(raw, t); err != nil {
		return nil, status.Errorf(codes.Internal, "ticket %s: stored bytes do not decode: %v", req.GetTicketId(), err)
	}
	return t, nil
}

func (f *frontend) getTicket(req *pb.GetTicketRequest) ([]byte, error) {
	raw, ok := f.s.tickets.get(req.GetTicketId())
	if !ok {
		return nil, ticketNotFound(req.GetTicketId())
	}
	return []byte(raw), nil
}

// frontendDesc is openmatch.FrontendService with CreateTicket and GetTicket answering with the
// stored wire bytes (the codec passes preEncoded through): same wire contract, one marshal less.
func frontendDesc() *grpc.ServiceDesc {
	d := pb.FrontendService_ServiceDesc
	d.Methods = slices.Clone(d.Methods)
	for i, m := range d.Methods {
		switch m.MethodName {
		case "CreateTicket":
			d.Methods[i].Handler = rawUnary(pb.FrontendService_CreateTicket_FullMethodName, func(f *frontend, in *pb.CreateTicketRequest) ([]byte, error) {
				_, raw, err := f.createTicket(in)
				return raw, err
			})
		case "GetTicket":
			d.Methods[i].Handler = rawUnary(pb.FrontendService_GetTicket_FullMethodName, (*frontend).getTicket)
		}
	}
	return &d
}

// rawUnary builds a unary method handler like protoc-gen-go-grpc's, for a method whose result is
// already encoded.
func rawUnary[Req any, PReq interface {
	*Req
	proto.Message
}](method string, call func(*frontend, PReq) ([]byte, error)) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		in := PReq(new(Req))
		if err := dec(in); err != nil {
			return nil, err
		}
		h := func(_ context.Context, req any) (any, error) {
			raw, err := call(srv.(*frontend), req.(PReq))
			if err != nil {
				return nil, err
			}
			return &preEncoded{raw}, nil
		}
		if interceptor == nil {
			return h(ctx, in)
		}
		return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: method}, h)
	}
}

// WatchAssignments streams the ticket's assignment each time it changes. It is woken by the
// store on assignment, deletion or expiry (no polling), so delivery takes one context switch.
func (f *frontend) WatchAssignments(req *pb.WatchAssignmentsRequest, stream grpc.ServerStreamingServer[pb.WatchAssignmentsResponse]) error {
	id := req.GetTicketId()
	ctx := stream.Context()
	wake := make(chan struct{}, 1)
	asg, expireAt, ok := f.s.tickets.watch(id, wake)
	if !ok {
		return ticketNotFound(id)
	}
	defer f.s.tickets.unwatch(id, wake)
	// Headers go out once the watch is registered, so a client that waits for them knows no
	// assignment made from then on can be missed.
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	var last *pb.Assignment
	var expiry *time.Timer
	defer func() {
		if expiry != nil {
			expiry.Stop()
		}
	}()
	for {
		if asg != nil && (last == nil || (asg != last && !proto.Equal(asg, last))) {
			if err := stream.Send(&pb.WatchAssignmentsResponse{Assignment: asg}); err != nil {
				return err
			}
			last = asg
		}
		var expired <-chan time.Time
		if asg != nil {
			// Assigned tickets vanish at their deadline; the sweeper may run later, so wake then.
			d := time.Until(time.Unix(0, expireAt))
			if expiry == nil {
				expiry = time.NewTimer(d)
			} else {
				expiry.Reset(d)
			}
			expired = expiry.C
		}
		select {
		case <-wake:
		case <-expired:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-f.s.stopping:
			return status.Error(codes.Unavailable, "openmatch core is shutting down")
		}
		if asg, expireAt, ok = f.s.tickets.assignment(id); !ok {
			return ticketNotFound(id)
		}
	}
}

func (f *frontend) CreateBackfill(ctx context.Context, req *pb.CreateBackfillRequest) (*pb.Backfill, error) {
	bf := req.GetBackfill()
	switch {
	case bf == nil:
		return nil, status.Error(codes.InvalidArgument, ".backfill is required")
	case bf.CreateTime != nil:
		return nil, status.Error(codes.InvalidArgument, "backfills cannot be created with create time set")
	}
	if n := proto.Size(bf); n > f.s.cfg.MaxTicketBytes {
		return nil, status.Errorf(codes.InvalidArgument, "backfill is %d bytes, more than the limit of %d (max-ticket-bytes)", n, f.s.cfg.MaxTicketBytes)
	}
	return f.s.backfills.create(bf, time.Now(), nil), nil
}

func (f *frontend) GetBackfill(ctx context.Context, req *pb.GetBackfillRequest) (*pb.Backfill, error) {
	bf, ok := f.s.backfills.get(req.GetBackfillId())
	if !ok {
		return nil, backfillNotFound(req.GetBackfillId())
	}
	return bf, nil
}

func (f *frontend) DeleteBackfill(ctx context.Context, req *pb.DeleteBackfillRequest) (*emptypb.Empty, error) {
	if tickets, ok := f.s.backfills.remove(req.GetBackfillId()); ok {
		f.s.tickets.release(tickets)
	}
	return &emptypb.Empty{}, nil
}

func (f *frontend) UpdateBackfill(ctx context.Context, req *pb.UpdateBackfillRequest) (*pb.Backfill, error) {
	bf := req.GetBackfill()
	switch {
	case bf == nil:
		return nil, status.Error(codes.InvalidArgument, ".backfill is required")
	case bf.Id == "":
		return nil, status.Error(codes.InvalidArgument, ".backfill.id is required")
	}
	if n := proto.Size(bf); n > f.s.cfg.MaxTicketBytes {
		return nil, status.Errorf(codes.InvalidArgument, "backfill is %d bytes, more than the limit of %d (max-ticket-bytes)", n, f.s.cfg.MaxTicketBytes)
	}
	out, released, err := f.s.backfills.update(bf, time.Now().UnixNano())
	if err != nil {
		return nil, err
	}
	f.s.tickets.release(released)
	return out, nil
}

func (f *frontend) AcknowledgeBackfill(ctx context.Context, req *pb.AcknowledgeBackfillRequest) (*pb.AcknowledgeBackfillResponse, error) {
	switch {
	case req.GetBackfillId() == "":
		return nil, status.Error(codes.InvalidArgument, ".backfill_id is required")
	case req.GetAssignment() == nil:
		return nil, status.Error(codes.InvalidArgument, ".assignment is required")
	}
	now := time.Now().UnixNano()
	bf, ids, err := f.s.backfills.acknowledge(req.BackfillId, now)
	if err != nil {
		return nil, err
	}
	asgRaw, err := proto.Marshal(req.Assignment)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "assignment cannot be encoded: %v", err)
	}
	resp := &pb.AcknowledgeBackfillResponse{Backfill: bf}
	for _, id := range ids {
		if !f.s.tickets.assign(id, req.Assignment, asgRaw, now) {
			continue
		}
		f.s.metrics.assigned.Inc()
		if raw, ok := f.s.tickets.get(id); ok {
			t := &pb.Ticket{}
			if proto.Unmarshal([]byte(raw), t) == nil {
				resp.Tickets = append(resp.Tickets, t)
			}
		}
	}
	return resp, nil
}
