package openmatch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// evaluator picks the proposals of one cycle that go ahead.
type evaluator interface {
	evaluate(ctx context.Context, proposals []*pb.Match) ([]string, error)
	close()
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

// defaultEvaluator is upstream's default-evaluator: best score first, greedily accepting a match
// when none of its tickets (nor its backfill) was taken by an accepted match.
type defaultEvaluator struct{}

func (defaultEvaluator) close() {}

func (defaultEvaluator) evaluate(_ context.Context, proposals []*pb.Match) ([]string, error) {
	type scored struct {
		m     *pb.Match
		score float64
	}
	in := make([]scored, 0, len(proposals))
	for _, m := range proposals {
		score := math.Inf(-1)
		if a, ok := m.GetExtensions()["evaluation_input"]; ok {
			var c pb.DefaultEvaluationCriteria
			if err := a.UnmarshalTo(&c); err != nil {
				continue // upstream drops proposals whose score does not decode
			}
			score = c.Score
		}
		in = append(in, scored{m, score})
	}
	slices.SortStableFunc(in, func(a, b scored) int { return cmp.Compare(b.score, a.score) })
	used := make(map[string]struct{})
	var out []string
next:
	for _, p := range in {
		for _, t := range p.m.GetTickets() {
			if _, ok := used[t.GetId()]; ok {
				continue next
			}
		}
		bf := p.m.GetBackfill().GetId()
		if bf != "" {
			if _, ok := used["bf:"+bf]; ok {
				continue
			}
			used["bf:"+bf] = struct{}{}
		}
		for _, t := range p.m.GetTickets() {
			used[t.GetId()] = struct{}{}
		}
		out = append(out, p.m.GetMatchId())
	}
	return out, nil
}

// grpcEvaluator calls an openmatch.Evaluator service: every proposal of the cycle on one stream,
// then the accepted ids back.
type grpcEvaluator struct {
	conn   *grpc.ClientConn
	client pb.EvaluatorClient
}

func (g *grpcEvaluator) close() { g.conn.Close() }

func (g *grpcEvaluator) evaluate(ctx context.Context, proposals []*pb.Match) ([]string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := g.client.Evaluate(ctx)
	if err != nil {
		return nil, fmt.Errorf("evaluator: %w", err)
	}
	sendErr := make(chan error, 1)
	go func() {
		// Sent from its own goroutine so an evaluator that answers while still reading can't
		// deadlock against flow control.
		for _, m := range proposals {
			if err := stream.Send(&pb.EvaluateRequest{Match: m}); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- stream.CloseSend()
	}()
	var ids []string
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("evaluator: %w", err)
		}
		ids = append(ids, r.GetMatchId())
	}
	if err := <-sendErr; err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("evaluator: send proposals: %w", err)
	}
	return ids, nil
}
