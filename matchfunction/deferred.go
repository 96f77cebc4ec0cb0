package matchfunction

import (
	"context"
	"sync"

	"github.com/kumi-dev/kumi/api/openmatch"
	"google.golang.org/grpc"
)

// DeferredQuery is a QueryService client whose connection is supplied later with Set. It breaks the
// start-up cycle of running the match function in process with the core: the core needs the
// Handler (openmatch.Config.MatchFunctions) before it listens, and the Handler needs the core's
// query address. Calls made before Set wait for it or for their context.
type DeferredQuery struct {
	once  sync.Once
	ready chan struct{}
	c     openmatch.QueryServiceClient
}

var _ openmatch.QueryServiceClient = (*DeferredQuery)(nil)

// NewDeferredQuery returns a DeferredQuery waiting for Set.
func NewDeferredQuery() *DeferredQuery { return &DeferredQuery{ready: make(chan struct{})} }

// Set supplies the real client; only the first call has an effect.
func (d *DeferredQuery) Set(c openmatch.QueryServiceClient) {
	d.once.Do(func() {
		d.c = c
		close(d.ready)
	})
}

func (d *DeferredQuery) wait(ctx context.Context) (openmatch.QueryServiceClient, error) {
	select {
	case <-d.ready:
		return d.c, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// QueryTickets implements openmatch.QueryServiceClient.
func (d *DeferredQuery) QueryTickets(ctx context.Context, in *openmatch.QueryTicketsRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[openmatch.QueryTicketsResponse], error) {
	c, err := d.wait(ctx)
	if err != nil {
		return nil, err
	}
	return c.QueryTickets(ctx, in, opts...)
}

// QueryTicketIds implements openmatch.QueryServiceClient.
func (d *DeferredQuery) QueryTicketIds(ctx context.Context, in *openmatch.QueryTicketIdsRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[openmatch.QueryTicketIdsResponse], error) {
	c, err := d.wait(ctx)
	if err != nil {
		return nil, err
	}
	return c.QueryTicketIds(ctx, in, opts...)
}

// QueryBackfills implements openmatch.QueryServiceClient.
func (d *DeferredQuery) QueryBackfills(ctx context.Context, in *openmatch.QueryBackfillsRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[openmatch.QueryBackfillsResponse], error) {
	c, err := d.wait(ctx)
	if err != nil {
		return nil, err
	}
	return c.QueryBackfills(ctx, in, opts...)
}
