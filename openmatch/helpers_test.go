package openmatch

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

type testCore struct {
	srv *Server
	reg *prometheus.Registry
	fe  pb.FrontendServiceClient
	be  pb.BackendServiceClient
	q   pb.QueryServiceClient
}

func testConfig() Config {
	cfg := Default()
	cfg.FrontendAddr, cfg.BackendAddr, cfg.QueryAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.ProposalCollectionInterval = 500 * time.Millisecond
	cfg.PendingReleaseTimeout = time.Second
	cfg.AssignedDeleteTimeout = 300 * time.Millisecond
	cfg.SweepInterval = 20 * time.Millisecond
	cfg.QueryPageSize = 10
	cfg.ShutdownGrace = time.Second
	return cfg
}

// startCore runs a core on 127.0.0.1:0 for the test's duration.
func startCore(t testing.TB, mutate func(*Config)) *testCore {
	t.Helper()
	cfg := testConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	reg := prometheus.NewRegistry()
	srv, err := Start(ctx, slog.New(slog.DiscardHandler), cfg, reg)
	if err != nil {
		cancel()
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := srv.Wait(); err != nil {
			t.Errorf("Wait: %v", err)
		}
	})
	return &testCore{srv: srv, reg: reg,
		fe: pb.NewFrontendServiceClient(dial(t, srv.FrontendAddr())),
		be: pb.NewBackendServiceClient(dial(t, srv.BackendAddr())),
		q:  pb.NewQueryServiceClient(dial(t, srv.QueryAddr()))}
}

func dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// mmfFunc adapts a function to a match function server.
type mmfFunc struct {
	pb.UnimplementedMatchFunctionServer
	f func(*pb.RunRequest, grpc.ServerStreamingServer[pb.RunResponse]) error
}

func (m *mmfFunc) Run(r *pb.RunRequest, s grpc.ServerStreamingServer[pb.RunResponse]) error {
	return m.f(r, s)
}

// serveMMF runs f as a gRPC match function on 127.0.0.1 and returns its FunctionConfig.
func serveMMF(t testing.TB, f func(*pb.RunRequest, grpc.ServerStreamingServer[pb.RunResponse]) error) *pb.FunctionConfig {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	pb.RegisterMatchFunctionServer(g, &mmfFunc{f: f})
	go g.Serve(l)
	t.Cleanup(g.Stop)
	a := l.Addr().(*net.TCPAddr)
	return &pb.FunctionConfig{Host: "127.0.0.1", Port: int32(a.Port), Type: pb.FunctionConfig_GRPC}
}

func collectMatches(stream grpc.ServerStreamingClient[pb.FetchMatchesResponse]) ([]*pb.Match, error) {
	var out []*pb.Match
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, r.Match)
	}
}

func fetch(ctx context.Context, be pb.BackendServiceClient, fc *pb.FunctionConfig, p *pb.MatchProfile, opts ...grpc.CallOption) ([]*pb.Match, error) {
	s, err := be.FetchMatches(ctx, &pb.FetchMatchesRequest{Config: fc, Profile: p}, opts...)
	if err != nil {
		return nil, err
	}
	return collectMatches(s)
}

func queryIDs(ctx context.Context, q pb.QueryServiceClient, pool *pb.Pool) ([]string, error) {
	s, err := q.QueryTicketIds(ctx, &pb.QueryTicketIdsRequest{Pool: pool})
	if err != nil {
		return nil, err
	}
	var ids []string
	for {
		r, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return ids, nil
		}
		if err != nil {
			return nil, err
		}
		ids = append(ids, r.Ids...)
	}
}

func queryTickets(ctx context.Context, q pb.QueryServiceClient, pool *pb.Pool) ([]*pb.Ticket, int, error) {
	s, err := q.QueryTickets(ctx, &pb.QueryTicketsRequest{Pool: pool})
	if err != nil {
		return nil, 0, err
	}
	var out []*pb.Ticket
	pages := 0
	for {
		r, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return out, pages, nil
		}
		if err != nil {
			return nil, pages, err
		}
		pages++
		out = append(out, r.Tickets...)
	}
}
