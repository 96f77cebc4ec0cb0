package localsdk

import (
	"context"
	"sync"

	"google.golang.org/protobuf/proto"

	sdkpb "github.com/kumi-dev/kumi/api/agones/sdk"
)

// subQueueMax bounds what a stalled subscriber can hold; past it the oldest updates are dropped,
// and the newest (the current GameServer) is always kept.
const subQueueMax = 256

// Subscription receives the GameServer after every change, starting with the current one.
type Subscription struct {
	s      *Server
	mu     sync.Mutex
	queue  []*sdkpb.GameServer
	notify chan struct{}
	closed bool
}

// Subscribe starts a subscription; Close it when done.
func (s *Server) Subscribe() *Subscription {
	sub := &Subscription{s: s, notify: make(chan struct{}, 1)}
	s.mu.Lock()
	defer s.mu.Unlock()
	sub.push(proto.Clone(s.gs).(*sdkpb.GameServer))
	if s.closed {
		sub.close()
		return sub
	}
	s.subs[sub] = struct{}{}
	return sub
}

// publish sends a copy of the current GameServer to every subscriber. s.mu is held.
func (s *Server) publish() {
	for sub := range s.subs {
		sub.push(proto.Clone(s.gs).(*sdkpb.GameServer))
	}
}

func (sub *Subscription) push(gs *sdkpb.GameServer) {
	sub.mu.Lock()
	if len(sub.queue) >= subQueueMax {
		sub.queue = append(sub.queue[:0], sub.queue[len(sub.queue)-subQueueMax+1:]...)
	}
	sub.queue = append(sub.queue, gs)
	sub.mu.Unlock()
	select {
	case sub.notify <- struct{}{}:
	default:
	}
}

func (sub *Subscription) close() {
	sub.mu.Lock()
	sub.closed = true
	sub.mu.Unlock()
	select {
	case sub.notify <- struct{}{}:
	default:
	}
}

// Next returns the next GameServer update (queued updates first), ErrClosed once the server has
// stopped and the queue is drained, or ctx's error.
func (sub *Subscription) Next(ctx context.Context) (*sdkpb.GameServer, error) {
	for {
		sub.mu.Lock()
		if len(sub.queue) > 0 {
			gs := sub.queue[0]
			sub.queue[0] = nil
			sub.queue = sub.queue[1:]
			sub.mu.Unlock()
			return gs, nil
		}
		closed := sub.closed
		sub.mu.Unlock()
		if closed {
			return nil, ErrClosed
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-sub.notify:
		}
	}
}

// Close ends the subscription.
func (sub *Subscription) Close() {
	sub.s.mu.Lock()
	delete(sub.s.subs, sub)
	sub.s.mu.Unlock()
	sub.close()
}
