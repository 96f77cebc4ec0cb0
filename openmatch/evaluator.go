package openmatch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// evaluator starts one evaluation session per synchronizer cycle.
type evaluator interface {
	start(ctx context.Context) (evalSession, error)
	close()
}

// evalSession streams a cycle's proposals in and accepted match ids out, like the
// openmatch.Evaluator/Evaluate bidi stream: results may arrive before the input ends.
type evalSession interface {
	// send passes one proposal; it must not be called after closeSend.
	send(p *proposal) error
	// closeSend ends the input. keep reports whether a proposal still counts (its caller may have
	// failed or left); evaluators that decide at the end use it to skip withdrawn proposals.
	closeSend(keep func(id string) bool)
	// recv returns the next accepted ids (one or more), io.EOF when the evaluation is complete.
	recv() ([]string, error)
}

func newEvaluator(addr string) (evaluator, error) {
	if addr == "" {
		return defaultEvaluator{}, nil
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("openmatch: evaluator-addr %q: %w", addr, err)
	}
	return &grpcEvaluator{conn: c, client: pb.NewEvaluatorClient(c)}, nil
}

// defaultEvaluator is upstream's default-evaluator: best score first (score from
// extensions["evaluation_input"], −∞ when absent, proposal dropped when it does not decode),
// greedily accepting a match when none of its tickets nor its backfill was taken already.
type defaultEvaluator struct{}

func (defaultEvaluator) close() {}

func (defaultEvaluator) start(ctx context.Context) (evalSession, error) {
	return &defaultSession{ctx: ctx, out: make(chan []string, 1)}, nil
}

type defaultSession struct {
	ctx context.Context
	mu  sync.Mutex
	in  []*proposal
	out chan []string
	got bool
}

func (d *defaultSession) send(p *proposal) error {
	d.mu.Lock()
	d.in = append(d.in, p)
	d.mu.Unlock()
	return nil
}

// take removes and returns the proposals sent so far that ok accepts.
func (d *defaultSession) take(ok func(*proposal) bool) []*proposal {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*proposal
	d.in = slices.DeleteFunc(d.in, func(p *proposal) bool {
		if ok(p) {
			out = append(out, p)
			return true
		}
		return false
	})
	return out
}

func (d *defaultSession) closeSend(keep func(string) bool) {
	d.mu.Lock()
	in := slices.DeleteFunc(d.in, func(p *proposal) bool { return !keep(p.id) })
	d.in = nil
	d.mu.Unlock()
	d.out <- evaluateDefault(in)
}

func (d *defaultSession) recv() ([]string, error) {
	if d.got {
		return nil, io.EOF
	}
	select {
	case ids := <-d.out:
		d.got = true
		if len(ids) == 0 {
			return nil, io.EOF
		}
		return ids, nil
	case <-d.ctx.Done():
		return nil, d.ctx.Err()
	}
}

func evaluateDefault(proposals []*proposal) []string {
	in := slices.DeleteFunc(proposals, func(p *proposal) bool { return p.badScore })
	slices.SortStableFunc(in, func(a, b *proposal) int { return cmp.Compare(b.score, a.score) })
	n := 0
	for _, p := range in {
		n += len(p.tickets)
	}
	// Presized: growing the set from empty was the evaluator's largest cost at 500 proposals.
	usedTickets := make(map[string]struct{}, n)
	usedBackfills := make(map[string]struct{})
	out := make([]string, 0, len(in))
next:
	for _, p := range in {
		for _, t := range p.tickets {
			if _, ok := usedTickets[t]; ok {
				continue next
			}
		}
		if bf := p.backfill.GetId(); bf != "" {
			if _, ok := usedBackfills[bf]; ok {
				continue
			}
			usedBackfills[bf] = struct{}{}
		}
		for _, t := range p.tickets {
			usedTickets[t] = struct{}{}
		}
		out = append(out, p.id)
	}
	return out
}

// grpcEvaluator calls an openmatch.Evaluator service, one Evaluate stream per cycle.
type grpcEvaluator struct {
	conn   *grpc.ClientConn
	client pb.EvaluatorClient
}

func (g *grpcEvaluator) close() { g.conn.Close() }

func (g *grpcEvaluator) start(ctx context.Context) (evalSession, error) {
	s := &grpcSession{ctx: ctx, queue: make(chan *proposal, 256), sendErr: make(chan error, 1), ready: make(chan struct{})}
	// The stream is opened and fed from its own goroutine: a slow or unreachable evaluator never
	// blocks the synchronizer loop or intake, and send order is kept.
	go func() {
		stream, err := g.client.Evaluate(ctx, grpc.ForceCodecV2(newCodec()))
		s.stream, s.openErr = stream, err
		close(s.ready)
		if err != nil {
			for range s.queue {
			}
			s.sendErr <- nil
			return
		}
		for p := range s.queue {
			var err error
			if p.raw != nil {
				err = stream.SendMsg(p.wrap())
			} else {
				err = stream.Send(&pb.EvaluateRequest{Match: p.msg})
			}
			if err != nil {
				s.sendErr <- err
				for range s.queue {
				}
				return
			}
		}
		s.sendErr <- stream.CloseSend()
	}()
	return s, nil
}

type grpcSession struct {
	ctx     context.Context
	queue   chan *proposal
	sendErr chan error
	ready   chan struct{} // closed once stream/openErr are set
	stream  grpc.BidiStreamingClient[pb.EvaluateRequest, pb.EvaluateResponse]
	openErr error
}

func (s *grpcSession) send(p *proposal) error {
	select {
	case s.queue <- p:
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

func (s *grpcSession) closeSend(func(string) bool) { close(s.queue) }

func (s *grpcSession) recv() ([]string, error) {
	select {
	case <-s.ready:
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	}
	if s.openErr != nil {
		return nil, fmt.Errorf("evaluator: %w", s.openErr)
	}
	r, err := s.stream.Recv()
	if errors.Is(err, io.EOF) {
		if err := <-s.sendErr; err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("evaluator: send proposals: %w", err)
		}
		return nil, io.EOF
	}
	if err != nil {
		return nil, fmt.Errorf("evaluator: %w", err)
	}
	return []string{r.GetMatchId()}, nil
}
