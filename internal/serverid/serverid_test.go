package serverid

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kumi-dev/kumi/api/control"
)

func TestIssuerVerify(t *testing.T) {
	is, err := NewIssuer(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewIssuer(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	id := Identity{Server: "gs-a", Instance: "ins-1"}
	good, _, err := is.Issue(id, now)
	if err != nil {
		t.Fatal(err)
	}
	forged, _, err := other.Issue(id, now)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + strings.Replace(parts[1], parts[1][:4], "eyJz", 1) + "." + parts[2]
	for _, tc := range []struct {
		name string
		cred string
		at   time.Time
		ok   bool
	}{
		{"fresh", good, now, true},
		{"just before expiry", good, now.Add(59 * time.Second), true},
		{"expired", good, now.Add(61 * time.Second), false},
		{"signed by another director", forged, now, false},
		{"payload changed", tampered, now, false},
		{"alg none", parts[0][:0] + "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + ".", now, false},
		{"empty", "", now, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := is.Verify(tc.cred, tc.at)
			if tc.ok != (err == nil) {
				t.Fatalf("Verify = %+v, %v; want ok=%v", got, err, tc.ok)
			}
			if tc.ok && got != id {
				t.Fatalf("identity %+v, want %+v", got, id)
			}
		})
	}
	if _, _, err := is.Issue(Identity{Server: "gs-a"}, now); err == nil {
		t.Fatal("issued a credential without an instance")
	}
}

func TestSecrets(t *testing.T) {
	var s Secrets
	ctx := context.Background()
	a, b := s.Mint("a"), s.Mint("b")
	if a == b {
		t.Fatal("two servers got the same secret")
	}
	for _, tc := range []struct {
		server, proof string
		ok            bool
	}{
		{"a", a, true},
		{"b", b, true},
		{"b", a, false}, // a's secret never proves b
		{"a", "", false},
		{"c", a, false},
	} {
		if err := s.VerifyBootstrap(ctx, tc.server, tc.proof); (err == nil) != tc.ok {
			t.Errorf("VerifyBootstrap(%s, %.6s…) = %v, want ok=%v", tc.server, tc.proof, err, tc.ok)
		} else if err != nil && !errors.Is(err, ErrNotProven) {
			t.Errorf("refusal %v does not wrap ErrNotProven", err)
		}
	}
	s.Forget("a")
	if err := s.VerifyBootstrap(ctx, "a", a); err == nil {
		t.Fatal("a forgotten process's secret still registers")
	}
	a2 := s.Mint("b")
	if err := s.VerifyBootstrap(ctx, "b", b); err == nil || s.VerifyBootstrap(ctx, "b", a2) != nil {
		t.Fatal("a re-minted secret must replace the old one")
	}
	if err := (Verifiers{}).VerifyBootstrap(ctx, "a", a); !errors.Is(err, ErrNotProven) {
		t.Fatalf("no verifiers: %v", err)
	}
}

// recorder is a Director server that records the identity each call arrived with.
type recorder struct {
	control.UnimplementedDirectorServer
	seen chan Identity
}

func (r *recorder) Report(ctx context.Context, _ *control.LoadReport) (*control.ReportReply, error) {
	id, _ := FromContext(ctx)
	r.seen <- id
	return &control.ReportReply{}, nil
}

func (r *recorder) MoveSession(ctx context.Context, _ *control.MoveSessionRequest) (*control.MoveSessionReply, error) {
	id, _ := FromContext(ctx)
	r.seen <- id
	return &control.MoveSessionReply{}, nil
}

type currentRegistrar struct {
	control.UnimplementedIdentityServer
	p *atomic.Pointer[Registrar]
}

func (c currentRegistrar) Register(ctx context.Context, r *control.RegisterRequest) (*control.RegisterReply, error) {
	return c.p.Load().Register(ctx, r)
}

// TestGRPC runs the registrar and its interceptor on a real gRPC server: Client registers and
// renews by itself, and calls without a valid credential never reach the handler.
func TestGRPC(t *testing.T) {
	is, err := NewIssuer(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var secrets Secrets
	reg := &Registrar{Issuer: is, Verifier: Verifiers{&secrets}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	rec := &recorder{seen: make(chan Identity, 8)}
	// cur lets the test restart the "director" (a new key) under a live connection.
	var cur atomic.Pointer[Registrar]
	cur.Store(reg)
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return cur.Load().UnaryServerInterceptor()(ctx, req, info, h)
	}))
	control.RegisterDirectorServer(srv, rec)
	control.RegisterIdentityServer(srv, currentRegistrar{p: &cur})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx := context.Background()

	c := NewClient(conn, StaticProof(secrets.Mint("gs-a")))
	if _, err := c.MoveSession(ctx, &control.MoveSessionRequest{Server: "gs-a", SessionId: "s"}); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("move before the first report: %v", err)
	}
	for _, ins := range []string{"ins-1", "ins-1", "ins-2"} {
		if _, err := c.Report(ctx, &control.LoadReport{Server: "gs-a", Instance: ins}); err != nil {
			t.Fatal(err)
		}
		if got := <-rec.seen; got != (Identity{Server: "gs-a", Instance: ins}) {
			t.Fatalf("handler saw %+v, want gs-a/%s", got, ins)
		}
	}
	if _, err := c.MoveSession(ctx, &control.MoveSessionRequest{Server: "gs-a", SessionId: "s"}); err != nil {
		t.Fatal(err)
	}
	if got := <-rec.seen; got.Server != "gs-a" {
		t.Fatalf("move as %+v", got)
	}
	// A process holding gs-a's secret cannot register as gs-b.
	if _, err := c.Report(ctx, &control.LoadReport{Server: "gs-b", Instance: "ins-1"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("report as gs-b with gs-a's proof: %v", err)
	}

	expired, _, err := is.Issue(Identity{Server: "gs-a", Instance: "ins-1"}, time.Now().Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	raw := control.NewDirectorClient(conn)
	for _, tc := range []struct {
		name string
		md   []string
	}{
		{"no credential", nil},
		{"expired credential", []string{MetadataKey, expired}},
		{"garbage", []string{MetadataKey, "x.y.z"}},
		{"two credentials", []string{MetadataKey, expired, MetadataKey, expired}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := metadata.AppendToOutgoingContext(ctx, tc.md...)
			if _, err := raw.Report(ctx, &control.LoadReport{Server: "gs-a", Instance: "ins-1"}); status.Code(err) != codes.Unauthenticated {
				t.Fatalf("Report: %v, want Unauthenticated", err)
			}
		})
	}
	select {
	case id := <-rec.seen:
		t.Fatalf("a refused call reached the handler as %+v", id)
	default:
	}
	// A restarted director (new key) refuses the old credential; the client registers again.
	if _, err := c.Report(ctx, &control.LoadReport{Server: "gs-a", Instance: "ins-2"}); err != nil {
		t.Fatal(err)
	}
	<-rec.seen
	restarted, err := NewIssuer(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cur.Store(&Registrar{Issuer: restarted, Verifier: reg.Verifier, Log: reg.Log})
	if _, err := c.Report(ctx, &control.LoadReport{Server: "gs-a", Instance: "ins-2"}); err != nil {
		t.Fatalf("report after the director's key changed: %v", err)
	}
	<-rec.seen
}
