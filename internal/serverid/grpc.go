package serverid

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kumi-dev/kumi/api/control"
)

type ctxKey struct{}

// FromContext returns the caller's verified identity (set by Registrar.UnaryServerInterceptor).
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}

// Registrar serves Identity.Register and verifies credentials on every other control call.
type Registrar struct {
	control.UnimplementedIdentityServer
	Issuer   *Issuer
	Verifier Verifier
	Log      *slog.Logger
}

// Register implements control.IdentityServer.
func (r *Registrar) Register(ctx context.Context, req *control.RegisterRequest) (*control.RegisterReply, error) {
	if req.GetServer() == "" || req.GetInstance() == "" || req.GetBootstrap() == "" {
		return nil, status.Error(codes.InvalidArgument, "RegisterRequest.server, instance and bootstrap are required")
	}
	if err := r.Verifier.VerifyBootstrap(ctx, req.GetServer(), req.GetBootstrap()); err != nil {
		r.Log.Warn("registration refused", "server", req.GetServer(), "err", err)
		return nil, status.Errorf(codes.Unauthenticated, "register %q: %v", req.GetServer(), err)
	}
	cred, exp, err := r.Issuer.Issue(Identity{Server: req.GetServer(), Instance: req.GetInstance()}, time.Now())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	r.Log.Debug("game server registered", "server", req.GetServer(), "instance", req.GetInstance(), "expiry", exp)
	return &control.RegisterReply{Credential: cred, Expiry: timestamppb.New(exp)}, nil
}

// UnaryServerInterceptor refuses every call but Register without a valid credential
// (Unauthenticated) and hands the handlers the caller's identity (FromContext).
func (r *Registrar) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if info.FullMethod == control.Identity_Register_FullMethodName {
			return handler(ctx, req)
		}
		md, _ := metadata.FromIncomingContext(ctx)
		got := md.Get(MetadataKey)
		if len(got) != 1 {
			return nil, status.Error(codes.Unauthenticated, "control API: no server credential; call Identity.Register first (game servers do so with -director-bootstrap-file or the local fleet's secret)")
		}
		id, err := r.Issuer.Verify(got[0], time.Now())
		if err != nil {
			return nil, status.Errorf(codes.Unauthenticated, "control API: %v; register again", err)
		}
		return handler(context.WithValue(ctx, ctxKey{}, id), req)
	}
}

// ProofFunc returns the current bootstrap proof; it is called at every registration, so a
// projected token the kubelet rotated is read afresh.
type ProofFunc func() (string, error)

// FileProof reads the proof from a file (a projected ServiceAccount token).
func FileProof(path string) ProofFunc {
	return func() (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("bootstrap proof: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
}

// StaticProof returns proof (the local fleet's per-process secret).
func StaticProof(proof string) ProofFunc { return func() (string, error) { return proof, nil } }

// Client is a control.DirectorClient that registers the server (again before expiry, after a
// refusal, or when its instance changes) and sends the credential with every call.
type Client struct {
	control.DirectorClient
	ids   control.IdentityClient
	proof ProofFunc

	mu    sync.Mutex
	id    Identity
	cred  string
	renew time.Time
}

// NewClient wraps the director's clients on one connection.
func NewClient(conn grpc.ClientConnInterface, proof ProofFunc) *Client {
	return &Client{DirectorClient: control.NewDirectorClient(conn), ids: control.NewIdentityClient(conn), proof: proof}
}

// credential returns a credential for id, registering when it has none valid.
func (c *Client) credential(ctx context.Context, id Identity, fresh bool) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if !fresh && c.cred != "" && c.id == id && now.Before(c.renew) {
		return c.cred, nil
	}
	proof, err := c.proof()
	if err != nil {
		return "", err
	}
	rep, err := c.ids.Register(ctx, &control.RegisterRequest{Server: id.Server, Instance: id.Instance, Bootstrap: proof})
	if err != nil {
		return "", fmt.Errorf("register with the director: %w", err)
	}
	exp := rep.GetExpiry().AsTime()
	c.id, c.cred = id, rep.GetCredential()
	c.renew = now.Add(exp.Sub(now) * 2 / 3)
	return c.cred, nil
}

// call runs fn with the credential for id, registering once more if the director refuses it
// (e.g. a restarted director signs with a new key).
func call[T any](ctx context.Context, c *Client, id Identity, fn func(context.Context) (T, error)) (T, error) {
	var zero T
	for attempt := 0; ; attempt++ {
		cred, err := c.credential(ctx, id, attempt > 0)
		if err != nil {
			return zero, err
		}
		out, err := fn(metadata.AppendToOutgoingContext(ctx, MetadataKey, cred))
		if attempt == 0 && status.Code(err) == codes.Unauthenticated {
			continue
		}
		return out, err
	}
}

// Report implements control.DirectorClient with the credential for r's server and instance.
func (c *Client) Report(ctx context.Context, r *control.LoadReport, opts ...grpc.CallOption) (*control.ReportReply, error) {
	return call(ctx, c, Identity{Server: r.GetServer(), Instance: r.GetInstance()}, func(ctx context.Context) (*control.ReportReply, error) {
		return c.DirectorClient.Report(ctx, r, opts...)
	})
}

// ErrNotRegistered is returned by MoveSession before the first Report registered the server.
var ErrNotRegistered = errors.New("serverid: move before the server registered (it reports first)")

// MoveSession implements control.DirectorClient with the credential of the last Report.
func (c *Client) MoveSession(ctx context.Context, r *control.MoveSessionRequest, opts ...grpc.CallOption) (*control.MoveSessionReply, error) {
	c.mu.Lock()
	id := c.id
	c.mu.Unlock()
	if id.Server == "" {
		return nil, ErrNotRegistered
	}
	return call(ctx, c, id, func(ctx context.Context) (*control.MoveSessionReply, error) {
		return c.DirectorClient.MoveSession(ctx, r, opts...)
	})
}
