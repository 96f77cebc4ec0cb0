package openmatch

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// pairMMF pairs the tickets of the profile's first pool in query order.
func pairMMF(q pb.QueryServiceClient) func(*pb.RunRequest, grpc.ServerStreamingServer[pb.RunResponse]) error {
	return pairMMFWith(q, false)
}

// pairMMFWith is pairMMF; lean matches carry only the tickets' ids.
func pairMMFWith(q pb.QueryServiceClient, lean bool) func(*pb.RunRequest, grpc.ServerStreamingServer[pb.RunResponse]) error {
	return func(r *pb.RunRequest, s grpc.ServerStreamingServer[pb.RunResponse]) error {
		ts, _, err := queryTickets(s.Context(), q, r.Profile.Pools[0])
		if err != nil {
			return err
		}
		for i := 0; i+1 < len(ts); i += 2 {
			pair := ts[i : i+2]
			if lean {
				pair = []*pb.Ticket{{Id: ts[i].Id}, {Id: ts[i+1].Id}}
			}
			m := &pb.Match{MatchId: r.Profile.Name + "-" + ts[i].Id, MatchProfile: r.Profile.Name, Tickets: pair}
			if err := s.Send(&pb.RunResponse{Proposal: m}); err != nil {
				return err
			}
		}
		return nil
	}
}

func TestStartServesAllServices(t *testing.T) {
	c := startCore(t, nil)
	ctx := testCtx(t)
	for _, a := range []string{c.srv.FrontendAddr(), c.srv.BackendAddr(), c.srv.QueryAddr()} {
		r, err := healthpb.NewHealthClient(dial(t, a)).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %s: %v %v", a, r, err)
		}
	}
	var ids []string
	for range 4 {
		tk, err := c.fe.CreateTicket(ctx, &pb.CreateTicketRequest{Ticket: &pb.Ticket{SearchFields: &pb.SearchFields{Tags: []string{"t"}}}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tk.Id)
	}
	fc := serveMMF(t, pairMMF(c.q))
	pool := &pb.Pool{Name: "all", TagPresentFilters: []*pb.TagPresentFilter{{Tag: "t"}}}
	ms, err := fetch(ctx, c.be, fc, &pb.MatchProfile{Name: "p", Pools: []*pb.Pool{pool}})
	if err != nil || len(ms) != 2 {
		t.Fatalf("fetch: %d matches, %v", len(ms), err)
	}
	left, err := queryIDs(ctx, c.q, pool)
	if err != nil || len(left) != 0 {
		t.Fatalf("after fetch the tickets must be pending: %v %v", left, err)
	}
	w, err := c.fe.WatchAssignments(ctx, &pb.WatchAssignmentsRequest{TicketId: ids[0]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.be.AssignTickets(ctx, &pb.AssignTicketsRequest{Assignments: []*pb.AssignmentGroup{{TicketIds: ids[:2], Assignment: &pb.Assignment{Connection: "1.2.3.4:5"}}}}); err != nil {
		t.Fatal(err)
	}
	r, err := w.Recv()
	if err != nil || r.Assignment.Connection != "1.2.3.4:5" {
		t.Fatalf("watch: %v %v", r, err)
	}
	got, err := c.fe.GetTicket(ctx, &pb.GetTicketRequest{TicketId: ids[1]})
	if err != nil || got.Assignment.GetConnection() != "1.2.3.4:5" {
		t.Fatalf("get: %v %v", got, err)
	}
}

// TestMetricsEndpoint: -metrics-addr serves the registry and /healthz, and the port is released
// by the time Wait returns; a registerer that cannot be gathered is refused at Start.
func TestMetricsEndpoint(t *testing.T) {
	cfg := testConfig()
	cfg.MetricsAddr = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := prometheus.NewRegistry()
	srv, err := Start(ctx, slog.New(slog.DiscardHandler), cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	fe := pb.NewFrontendServiceClient(dial(t, srv.FrontendAddr()))
	if _, err := fe.CreateTicket(testCtx(t), &pb.CreateTicketRequest{Ticket: &pb.Ticket{}}); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	get := func(path string) string {
		t.Helper()
		resp, err := hc.Get("http://" + srv.MetricsAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		return string(b)
	}
	if body := get("/metrics"); !strings.Contains(body, "tickets_created_total 1") {
		t.Fatalf("/metrics does not count the created ticket:\n%s", body)
	}
	get("/healthz")
	addr := srv.MetricsAddr()
	cancel()
	if err := srv.Wait(); err != nil {
		t.Fatal(err)
	}
	if l, err := net.Listen("tcp", addr); err != nil {
		t.Fatalf("metrics port still held after Wait: %v", err)
	} else {
		l.Close()
	}

	cfg.MetricsAddr = "127.0.0.1:0"
	if _, err := Start(t.Context(), slog.New(slog.DiscardHandler), cfg, prometheus.WrapRegistererWithPrefix("x_", reg)); err == nil || !strings.Contains(err.Error(), "cannot be gathered") {
		t.Fatalf("ungatherable registerer: %v", err)
	}
}
