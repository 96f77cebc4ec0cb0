package openmatch

import (
	"context"
	"errors"
	"fmt"
	"io"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// QueryClient returns an in-process openmatch.QueryServiceClient backed by this core's store:
// the same handlers and results as the gRPC QueryService, without sockets or marshalling. An
// in-process match function (Config.MatchFunctions) can use it to skip both network hops.
// CallOptions are ignored.
func (s *Server) QueryClient() pb.QueryServiceClient { return localQuery{q: &query{s: s}} }

// RegisterMatchFunction adds (or, with f nil, removes) an in-process match function under
// "host:port", like Config.MatchFunctions but after Start, so the function can be built with
// this server's QueryClient.
func (s *Server) RegisterMatchFunction(hostPort string, f pb.MatchFunctionServer) {
	s.mmfs.register(hostPort, f)
}

type localQuery struct{ q *query }

func (l localQuery) QueryTickets(ctx context.Context, in *pb.QueryTicketsRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[pb.QueryTicketsResponse], error) {
	st := &localStream[pb.QueryTicketsResponse]{ctx: ctx}
	st.err = l.q.QueryTickets(in, st)
	return st, nil
}

func (l localQuery) QueryTicketIds(ctx context.Context, in *pb.QueryTicketIdsRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[pb.QueryTicketIdsResponse], error) {
	st := &localStream[pb.QueryTicketIdsResponse]{ctx: ctx}
	st.err = l.q.QueryTicketIds(in, st)
	return st, nil
}

func (l localQuery) QueryBackfills(ctx context.Context, in *pb.QueryBackfillsRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[pb.QueryBackfillsResponse], error) {
	st := &localStream[pb.QueryBackfillsResponse]{ctx: ctx}
	st.err = l.q.QueryBackfills(in, st)
	return st, nil
}

// localStream is both ends of an in-process server stream: the handler runs to completion
// sending into msgs, then the caller reads them with Recv.
type localStream[T any] struct {
	ctx  context.Context
	msgs []*T
	err  error
}

func (s *localStream[T]) Send(m *T) error { return s.SendMsg(m) }

func (s *localStream[T]) SendMsg(m any) error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	switch v := m.(type) {
	case *T:
		s.msgs = append(s.msgs, v)
	case *preEncoded:
		var t T
		pm, ok := any(&t).(proto.Message)
		if !ok {
			return fmt.Errorf("local stream: %T is not a proto message", &t)
		}
		if err := proto.Unmarshal(v.b, pm); err != nil {
			return err
		}
		s.msgs = append(s.msgs, &t)
	default:
		return fmt.Errorf("local stream: unexpected message %T", m)
	}
	return nil
}

func (s *localStream[T]) Recv() (*T, error) {
	if len(s.msgs) > 0 {
		m := s.msgs[0]
		s.msgs = s.msgs[1:]
		return m, nil
	}
	if s.err != nil {
		return nil, s.err
	}
	return nil, io.EOF
}

func (s *localStream[T]) RecvMsg(m any) error {
	return errors.New("local stream: RecvMsg is not supported; use Recv")
}
func (s *localStream[T]) Context() context.Context     { return s.ctx }
func (s *localStream[T]) SetHeader(metadata.MD) error  { return nil }
func (s *localStream[T]) SendHeader(metadata.MD) error { return nil }
func (s *localStream[T]) SetTrailer(metadata.MD)       {}
func (s *localStream[T]) Header() (metadata.MD, error) { return nil, nil }
func (s *localStream[T]) Trailer() metadata.MD         { return nil }
func (s *localStream[T]) CloseSend() error             { return nil }
