package openmatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// mmfClients runs match functions: in-process ones from Config.MatchFunctions, otherwise over
// gRPC with one cached connection per address (like upstream's client cache).
type mmfClients struct {
	inproc map[string]pb.MatchFunctionServer
	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
}

func newMMFClients(inproc map[string]pb.MatchFunctionServer) *mmfClients {
	return &mmfClients{inproc: inproc, conns: make(map[string]*grpc.ClientConn)}
}

func (m *mmfClients) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, c := range m.conns {
		c.Close()
		delete(m.conns, k)
	}
}

func (m *mmfClients) conn(addr string) (*grpc.ClientConn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("match function %s: %w", addr, err)
	}
	m.conns[addr] = c
	return c, nil
}

// run calls the match function fc names with profile and passes every proposal to emit; it
// returns the first error of the function or of emit.
func (m *mmfClients) run(ctx context.Context, fc *pb.FunctionConfig, profile *pb.MatchProfile, emit func(*pb.Match) error) error {
	if fc.GetType() != pb.FunctionConfig_GRPC {
		return fmt.Errorf("match function type %s: provided match function type is not supported by kumi's embedded core (use GRPC)", fc.GetType())
	}
	addr := net.JoinHostPort(fc.GetHost(), strconv.Itoa(int(fc.GetPort())))
	req := &pb.RunRequest{Profile: profile}
	if srv, ok := m.inproc[addr]; ok {
		return srv.Run(req, &inprocStream{ctx: ctx, emit: emit})
	}
	c, err := m.conn(addr)
	if err != nil {
		return err
	}
	stream, err := pb.NewMatchFunctionClient(c).Run(ctx, req)
	if err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := emitProposal(resp, emit); err != nil {
			return err
		}
	}
}

func emitProposal(resp *pb.RunResponse, emit func(*pb.Match) error) error {
	if resp.GetProposal() == nil {
		return errors.New("match function sent a RunResponse without a proposal")
	}
	return emit(resp.Proposal)
}

// inprocStream is the server stream an in-process match function writes to.
type inprocStream struct {
	ctx  context.Context
	emit func(*pb.Match) error
}

func (s *inprocStream) Send(r *pb.RunResponse) error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	return emitProposal(r, s.emit)
}
func (s *inprocStream) SetHeader(metadata.MD) error  { return nil }
func (s *inprocStream) SendHeader(metadata.MD) error { return nil }
func (s *inprocStream) SetTrailer(metadata.MD)       {}
func (s *inprocStream) Context() context.Context     { return s.ctx }
func (s *inprocStream) SendMsg(m any) error {
	r, ok := m.(*pb.RunResponse)
	if !ok {
		return fmt.Errorf("in-process match function sent %T, want *openmatch.RunResponse", m)
	}
	return s.Send(r)
}
func (s *inprocStream) RecvMsg(any) error { return io.EOF }
