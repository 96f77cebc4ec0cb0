package openmatch

import (
	"time"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// query implements openmatch.QueryService.
type query struct {
	pb.UnimplementedQueryServiceServer
	s *Server
}

// pager builds response messages of the form `repeated bytes/message field 1` from
// already-encoded elements, cutting a page at the configured count or byte size. It collects the
// elements first and builds each page at its exact size when sending: appending a 1k-ticket page
// as it grew allocated about twice its size (BENCHMARKS.md), and the store's scan, which holds
// its locks, now only appends strings.
type pager struct {
	maxN, maxBytes int
	elems          []string
}

func (p *pager) add(elem string) { p.elems = append(p.elems, elem) }

func (p *pager) send(ss grpc.ServerStream) error {
	for rest := p.elems; len(rest) > 0; {
		n, size := 0, 0
		for _, e := range rest {
			if n >= p.maxN || (n > 0 && size+len(e)+6 > p.maxBytes) {
				break
			}
			n++
			size += protowire.SizeTag(1) + protowire.SizeBytes(len(e))
		}
		pg := make([]byte, 0, size)
		for _, e := range rest[:n] {
			pg = protowire.AppendString(protowire.AppendTag(pg, 1, protowire.BytesType), e)
		}
		if err := ss.SendMsg(&preEncoded{pg}); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}

func (q *query) newPager() *pager {
	return &pager{maxN: q.s.cfg.QueryPageSize, maxBytes: q.s.cfg.QueryPageBytes}
}

func (q *query) QueryTickets(req *pb.QueryTicketsRequest, stream grpc.ServerStreamingServer[pb.QueryTicketsResponse]) error {
	f, err := compilePool(req.GetPool())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	p := q.newPager()
	q.s.tickets.scan(f, func(_ string, r *ticketRec) { p.add(r.raw) })
	return p.send(stream)
}

func (q *query) QueryTicketIds(req *pb.QueryTicketIdsRequest, stream grpc.ServerStreamingServer[pb.QueryTicketIdsResponse]) error {
	f, err := compilePool(req.GetPool())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	p := q.newPager()
	q.s.tickets.scan(f, func(id string, _ *ticketRec) { p.add(id) })
	return p.send(stream)
}

func (q *query) QueryBackfills(req *pb.QueryBackfillsRequest, stream grpc.ServerStreamingServer[pb.QueryBackfillsResponse]) error {
	f, err := compilePool(req.GetPool())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	all := q.s.backfills.query(f, time.Now().UnixNano())
	for len(all) > 0 {
		n := min(len(all), q.s.cfg.QueryPageSize)
		if err := stream.Send(&pb.QueryBackfillsResponse{Backfills: all[:n]}); err != nil {
			return err
		}
		all = all[n:]
	}
	return nil
}
