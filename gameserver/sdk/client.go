package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"k8s.io/apimachinery/pkg/util/wait"

	sdkpb "github.com/kumi-dev/kumi/api/agones/sdk"
	betapb "github.com/kumi-dev/kumi/api/agones/sdk/beta"
)

// Environment variables the Agones controller injects into game-server containers.
const (
	EnvGRPCHost = "AGONES_SDK_GRPC_HOST"
	EnvGRPCPort = "AGONES_SDK_GRPC_PORT"
	// DefaultGRPCPort is the sidecar's gRPC port when EnvGRPCPort is unset.
	DefaultGRPCPort = "9357"
	// DefaultGRPCHost is the sidecar's host when EnvGRPCHost is unset.
	DefaultGRPCHost = "localhost"
)

// Client talks to one SDK sidecar. It is safe for concurrent use.
type Client struct {
	conn *grpc.ClientConn
	sdk  sdkpb.SDKClient
	beta betapb.SDKClient

	// bg outlives single calls: the health stream is kept open across Health calls.
	bg     context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	health sdkpb.SDK_HealthClient
}

// AddrFromEnv returns host:port of the sidecar from AGONES_SDK_GRPC_HOST and AGONES_SDK_GRPC_PORT,
// falling back to localhost:9357. getenv is os.Getenv in production (a parameter for tests).
func AddrFromEnv(getenv func(string) string) string {
	host, port := getenv(EnvGRPCHost), getenv(EnvGRPCPort)
	if host == "" {
		host = DefaultGRPCHost
	}
	if port == "" {
		port = DefaultGRPCPort
	}
	return net.JoinHostPort(host, port)
}

// FromEnv dials the sidecar named by the environment (see AddrFromEnv).
func FromEnv(ctx context.Context) (*Client, error) {
	return Dial(ctx, AddrFromEnv(os.Getenv))
}

// Dial connects lazily to the sidecar at addr (host:port; plaintext, as the sidecar listens on
// localhost only). ctx bounds nothing after return; call Close to release the connection.
func Dial(ctx context.Context, addr string) (*Client, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("sdk: sidecar address %q must be host:port: %w", addr, err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("sdk: dial %s: %w", addr, err)
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	return &Client{
		conn:   conn,
		sdk:    sdkpb.NewSDKClient(conn),
		beta:   betapb.NewSDKClient(conn),
		bg:     bg,
		cancel: cancel,
	}, nil
}

// Close ends the health stream and the connection.
func (c *Client) Close() error {
	c.cancel()
	c.mu.Lock()
	c.health = nil
	c.mu.Unlock()
	return c.conn.Close()
}

// Ready tells Agones the server can take players (state RequestReady, then Ready).
func (c *Client) Ready(ctx context.Context) error {
	_, err := c.sdk.Ready(ctx, &sdkpb.Empty{})
	return wrap("Ready", err)
}

// Allocate marks the server Allocated itself (self-allocation).
func (c *Client) Allocate(ctx context.Context) error {
	_, err := c.sdk.Allocate(ctx, &sdkpb.Empty{})
	return wrap("Allocate", err)
}

// Shutdown asks Agones to shut the server down and delete it.
func (c *Client) Shutdown(ctx context.Context) error {
	_, err := c.sdk.Shutdown(ctx, &sdkpb.Empty{})
	return wrap("Shutdown", err)
}

// Reserve marks the server Reserved for d (0 = until Ready, Allocate or Shutdown). The wire carries
// whole seconds; a positive d is rounded up so a short reservation never becomes an endless one.
func (c *Client) Reserve(ctx context.Context, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("sdk: Reserve: duration %s must not be negative", d)
	}
	secs := int64(math.Ceil(d.Seconds()))
	_, err := c.sdk.Reserve(ctx, &sdkpb.Duration{Seconds: secs})
	return wrap("Reserve", err)
}

// Health sends one health ping over a client stream kept open between calls, as Agones' own SDKs
// do. A broken stream is reopened once before the error is returned.
func (c *Client) Health(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sdk: Health: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var lastErr error
	for range 2 {
		if c.health == nil {
			if err := c.bg.Err(); err != nil {
				return fmt.Errorf("sdk: Health: client closed: %w", err)
			}
			s, err := c.sdk.Health(c.bg)
			if err != nil {
				lastErr = err
				continue
			}
			c.health = s
		}
		err := c.health.Send(&sdkpb.Empty{})
		if err == nil {
			return nil
		}
		if errors.Is(err, io.EOF) {
			// The server ended the stream; its status is the real error.
			_, err = c.health.CloseAndRecv()
			if err == nil {
				err = io.EOF
			}
		}
		c.health = nil
		lastErr = err
	}
	return wrap("Health", lastErr)
}

// KeepHealthy pings Health every period until ctx ends, then returns nil. onErr, if not nil, is
// told of each failed ping (the loop keeps going: the sidecar may come back).
func (c *Client) KeepHealthy(ctx context.Context, period time.Duration, onErr func(error)) error {
	if period <= 0 {
		return fmt.Errorf("sdk: KeepHealthy: period %s must be positive", period)
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		if err := c.Health(ctx); err != nil && ctx.Err() == nil && onErr != nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// GetGameServer returns the current GameServer.
func (c *Client) GetGameServer(ctx context.Context) (*sdkpb.GameServer, error) {
	gs, err := c.sdk.GetGameServer(ctx, &sdkpb.Empty{})
	if err != nil {
		return nil, wrap("GetGameServer", err)
	}
	return gs, nil
}

// watchRetry bounds the pause between reconnects of WatchGameServer.
const (
	watchRetryMin = 50 * time.Millisecond
	watchRetryMax = 2 * time.Second
)

// WatchGameServer calls fn with the GameServer on every change (the first call carries the
// current state) until ctx ends, then returns nil. A broken stream is reopened with backoff, so fn
// sees the current GameServer again after a reconnect. fn runs on this goroutine; a slow fn delays
// later updates, never drops them. It returns an error only when the sidecar does not implement
// the method.
func (c *Client) WatchGameServer(ctx context.Context, fn func(*sdkpb.GameServer)) error {
	backoff := newWatchBackoff()
	for {
		stream, err := c.sdk.WatchGameServer(ctx, &sdkpb.Empty{})
		if err == nil {
			for {
				gs, rerr := stream.Recv()
				if rerr != nil {
					err = rerr
					break
				}
				backoff = newWatchBackoff()
				fn(gs)
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if status.Code(err) == codes.Unimplemented {
			return wrap("WatchGameServer", err)
		}
		t := time.NewTimer(backoff.Step())
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// newWatchBackoff is the reconnect policy of WatchGameServer: exponential from watchRetryMin to
// watchRetryMax, jittered so the game servers of a node that lost their sidecars together do not
// reconnect in step.
func newWatchBackoff() *wait.Backoff {
	return &wait.Backoff{Duration: watchRetryMin, Factor: 2, Jitter: 0.5, Steps: math.MaxInt32, Cap: watchRetryMax}
}

// SetLabel sets label agones.dev/sdk-<key> to value.
func (c *Client) SetLabel(ctx context.Context, key, value string) error {
	_, err := c.sdk.SetLabel(ctx, &sdkpb.KeyValue{Key: key, Value: value})
	return wrap("SetLabel", err)
}

// SetAnnotation sets annotation agones.dev/sdk-<key> to value.
func (c *Client) SetAnnotation(ctx context.Context, key, value string) error {
	_, err := c.sdk.SetAnnotation(ctx, &sdkpb.KeyValue{Key: key, Value: value})
	return wrap("SetAnnotation", err)
}

// GetCounter returns the named Counter.
func (c *Client) GetCounter(ctx context.Context, name string) (*betapb.Counter, error) {
	ct, err := c.beta.GetCounter(ctx, &betapb.GetCounterRequest{Name: name})
	if err != nil {
		return nil, wrap("GetCounter", err)
	}
	return ct, nil
}

// UpdateCounter adds diff (may be negative) to the Counter's count and returns the Counter after
// it; a result outside [0, capacity] is refused by the sidecar.
func (c *Client) UpdateCounter(ctx context.Context, name string, diff int64) (*betapb.Counter, error) {
	if diff == 0 {
		// countDiff 0 is "no change" on the wire; answer with the current value.
		return c.GetCounter(ctx, name)
	}
	return c.updateCounter(ctx, "UpdateCounter", &betapb.CounterUpdateRequest{Name: name, CountDiff: diff})
}

// SetCounterCount sets the Counter's count.
func (c *Client) SetCounterCount(ctx context.Context, name string, count int64) error {
	_, err := c.updateCounter(ctx, "SetCounterCount", &betapb.CounterUpdateRequest{Name: name, Count: wrapperspb.Int64(count)})
	return err
}

// SetCounterCapacity sets the Counter's capacity.
func (c *Client) SetCounterCapacity(ctx context.Context, name string, capacity int64) error {
	_, err := c.updateCounter(ctx, "SetCounterCapacity", &betapb.CounterUpdateRequest{Name: name, Capacity: wrapperspb.Int64(capacity)})
	return err
}

func (c *Client) updateCounter(ctx context.Context, op string, req *betapb.CounterUpdateRequest) (*betapb.Counter, error) {
	ct, err := c.beta.UpdateCounter(ctx, &betapb.UpdateCounterRequest{CounterUpdateRequest: req})
	if err != nil {
		return nil, wrap(op, err)
	}
	return ct, nil
}

// GetList returns the named List.
func (c *Client) GetList(ctx context.Context, name string) (*betapb.List, error) {
	l, err := c.beta.GetList(ctx, &betapb.GetListRequest{Name: name})
	if err != nil {
		return nil, wrap("GetList", err)
	}
	return l, nil
}

// UpdateList overwrites the fields of the List named list.Name that paths name ("capacity",
// "values"); values beyond a lowered capacity are truncated by the sidecar.
func (c *Client) UpdateList(ctx context.Context, list *betapb.List, paths ...string) (*betapb.List, error) {
	if list == nil {
		return nil, errors.New("sdk: UpdateList: list must not be nil")
	}
	if len(paths) == 0 {
		return nil, errors.New("sdk: UpdateList: name at least one field to update (capacity, values)")
	}
	l, err := c.beta.UpdateList(ctx, &betapb.UpdateListRequest{List: list, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}})
	if err != nil {
		return nil, wrap("UpdateList", err)
	}
	return l, nil
}

// SetListCapacity sets the List's capacity (0..1000).
func (c *Client) SetListCapacity(ctx context.Context, name string, capacity int64) (*betapb.List, error) {
	return c.UpdateList(ctx, &betapb.List{Name: name, Capacity: capacity}, "capacity")
}

// AddListValue appends value to the List; it fails if the value is present or the List is full.
func (c *Client) AddListValue(ctx context.Context, name, value string) (*betapb.List, error) {
	l, err := c.beta.AddListValue(ctx, &betapb.AddListValueRequest{Name: name, Value: value})
	if err != nil {
		return nil, wrap("AddListValue", err)
	}
	return l, nil
}

// RemoveListValue removes value from the List; it fails if the value is absent.
func (c *Client) RemoveListValue(ctx context.Context, name, value string) (*betapb.List, error) {
	l, err := c.beta.RemoveListValue(ctx, &betapb.RemoveListValueRequest{Name: name, Value: value})
	if err != nil {
		return nil, wrap("RemoveListValue", err)
	}
	return l, nil
}

// wrap names the call and keeps the gRPC status reachable through errors.As / status.FromError.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("sdk: %s: %w", op, err)
}
