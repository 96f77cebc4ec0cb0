package frontend

import (
	"context"
	"errors"
	"time"

	"github.com/kumi-dev/kumi/api/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// grpcAPI serves kumi.client.v1.Frontend.
type grpcAPI struct {
	client.UnimplementedFrontendServer
	s *service
	g *gate
}

func (a *grpcAPI) admit(ctx context.Context) (caller, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	var auth string
	if v := md.Get("authorization"); len(v) > 0 {
		auth = v[0]
	}
	var source string
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		source = p.Addr.String()
	}
	c, err := a.g.admit(auth, source)
	if err != nil {
		if err.retryAfter > 0 {
			_ = grpc.SetHeader(ctx, metadata.Pairs("retry-after", retryAfterSeconds(err.retryAfter)))
		}
		return caller{}, err
	}
	return c, nil
}

// done records the call and turns err into a gRPC status.
func (a *grpcAPI) done(method string, start time.Time, err error) error {
	code := codes.OK
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		code, err = ae.code, ae.grpcStatus()
	case err != nil:
		st := status.Convert(err) // Open Match's status passes through with its details
		code, err = st.Code(), st.Err()
	}
	a.s.m.requests.WithLabelValues("grpc", method, code.String()).Inc()
	if method != "WatchAssignment" {
		a.s.m.latency.WithLabelValues("grpc", method).Observe(time.Since(start).Seconds())
	}
	return err
}

func (a *grpcAPI) CreateTicket(ctx context.Context, req *client.CreateTicketRequest) (*client.Ticket, error) {
	start := time.Now()
	c, err := a.admit(ctx)
	if err != nil {
		return nil, a.done("CreateTicket", start, err)
	}
	t, _, err := a.s.create(ctx, c, req)
	return t, a.done("CreateTicket", start, err)
}

func (a *grpcAPI) GetTicket(ctx context.Context, req *client.GetTicketRequest) (*client.Ticket, error) {
	start := time.Now()
	c, err := a.admit(ctx)
	if err != nil {
		return nil, a.done("GetTicket", start, err)
	}
	t, err := a.s.get(ctx, c.player, req.GetTicketId())
	return t, a.done("GetTicket", start, err)
}

func (a *grpcAPI) WatchAssignment(req *client.WatchAssignmentRequest, stream grpc.ServerStreamingServer[client.Ticket]) error {
	start := time.Now()
	c, err := a.admit(stream.Context())
	if err != nil {
		return a.done("WatchAssignment", start, err)
	}
	err = a.s.watch(stream.Context(), c.player, req.GetTicketId(), stream.Send)
	if status.Code(err) == codes.Canceled && stream.Context().Err() != nil {
		err = nil // the client went away
	}
	return a.done("WatchAssignment", start, err)
}

func (a *grpcAPI) CancelTicket(ctx context.Context, req *client.CancelTicketRequest) (*client.CancelTicketResponse, error) {
	start := time.Now()
	c, err := a.admit(ctx)
	if err != nil {
		return nil, a.done("CancelTicket", start, err)
	}
	err = a.s.cancel(ctx, c.player, req.GetTicketId())
	if err != nil {
		return nil, a.done("CancelTicket", start, err)
	}
	return &client.CancelTicketResponse{}, a.done("CancelTicket", start, nil)
}
