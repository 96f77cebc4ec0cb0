package frontend

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/kumi-dev/kumi/api/openmatch"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// watchHub shares one Open Match WatchAssignments stream per ticket among all of its waiting
// clients (gRPC streams, long-polls, SSE), and closes it when the last one leaves.
type watchHub struct {
	ctx context.Context // the server's: ends every watch on shutdown
	om  openmatch.FrontendServiceClient
	log *slog.Logger
	wg  sync.WaitGroup
	// refile files a ticket the core lost again and returns its new id (refile.go); nil: never.
	refile func(ctx context.Context, t *openmatch.Ticket, id string) (string, error)

	mu sync.Mutex
	m  map[string]*watch
}

type watch struct {
	done   chan struct{} // closed when asg or err is set
	asg    *openmatch.Assignment
	err    error
	refs   int
	cancel context.CancelFunc
}

func newWatchHub(ctx context.Context, om openmatch.FrontendServiceClient, log *slog.Logger) *watchHub {
	return &watchHub{ctx: ctx, om: om, log: log, m: make(map[string]*watch)}
}

// wait blocks until ticket t (known to the caller as id) has an assignment (returned), the ticket
// is gone (NotFound), or ctx or the server ends.
func (h *watchHub) wait(ctx context.Context, id string, t *openmatch.Ticket) (*openmatch.Assignment, error) {
	h.mu.Lock()
	w := h.m[id]
	if w == nil {
		wctx, cancel := context.WithCancel(h.ctx)
		w = &watch{done: make(chan struct{}), cancel: cancel}
		h.m[id] = w
		h.wg.Add(1)
		go h.run(wctx, id, t, w)
	}
	w.refs++
	h.mu.Unlock()
	defer h.release(id, w)
	select {
	case <-w.done:
		return w.asg, w.err
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

func (h *watchHub) release(id string, w *watch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if w.refs--; w.refs == 0 {
		w.cancel()
		if h.m[id] == w {
			delete(h.m, id)
		}
	}
}

// run follows the upstream stream until an assignment with a connection arrives. A broken stream
// (Open Match restarting) is re-opened with backoff while someone is still waiting.
func (h *watchHub) run(ctx context.Context, id string, t *openmatch.Ticket, w *watch) {
	defer h.wg.Done()
	asg, err := h.follow(ctx, id, t)
	h.mu.Lock()
	if h.m[id] == w {
		delete(h.m, id)
	}
	w.asg, w.err = asg, err
	close(w.done)
	h.mu.Unlock()
}

func (h *watchHub) follow(ctx context.Context, id string, t *openmatch.Ticket) (*openmatch.Assignment, error) {
	backoff := 50 * time.Millisecond
	broken := false // the stream broke since the ticket was last seen: a NotFound may be a core restart
	for {
		stream, err := h.om.WatchAssignments(ctx, &openmatch.WatchAssignmentsRequest{TicketId: id})
		for err == nil {
			var resp *openmatch.WatchAssignmentsResponse
			if resp, err = stream.Recv(); err == nil {
				if a := resp.GetAssignment(); a.GetConnection() != "" {
					return a, nil
				}
				backoff = 50 * time.Millisecond // the stream works
			}
		}
		if ctx.Err() != nil {
			if h.ctx.Err() != nil {
				return nil, status.Error(codes.Unavailable, "frontend is shutting down; watch again")
			}
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		switch status.Code(err) {
		case codes.NotFound:
			if !broken || h.refile == nil || t == nil {
				return nil, status.Errorf(codes.NotFound, "ticket %q no longer exists (cancelled, or expired unassigned)", id)
			}
			nid, rerr := h.refile(ctx, t, id)
			switch {
			case rerr == nil:
				id, broken, backoff = nid, false, 50*time.Millisecond
				continue
			case errors.Is(rerr, errNotLive):
				return nil, status.Errorf(codes.NotFound, "ticket %q no longer exists (cancelled, or expired unassigned)", id)
			}
			// Open Match (or the store) still unreachable: try again while clients still wait.
			h.log.Warn("filing a lost ticket again failed; retrying", "ticket", id, "err", rerr, "backoff", backoff)
		case codes.Unavailable, codes.Aborted:
			// Open Match restarting or the connection dropped: re-open while clients still wait.
			broken = true
			h.log.Warn("assignment watch broken; re-opening", "ticket", id, "err", err, "backoff", backoff)
		default:
			return nil, err
		}
		select {
		case <-ctx.Done():
			continue // handled at the top of the next turn
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// watching is the number of tickets with an open upstream watch.
func (h *watchHub) watching() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.m)
}

// refs is how many callers wait on ticket id's watch (tests order events with it).
func (h *watchHub) refs(id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if w := h.m[id]; w != nil {
		return w.refs
	}
	return 0
}
