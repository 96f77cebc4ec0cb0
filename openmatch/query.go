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

// pager builds response messages of the form `repeated bytes/message field 1` by appending
// already-encoded elements, cutting a page at the configured count or byte size.
type pager struct {
	maxN, maxBytes int
	pages          [][]byte
	cur            []byte
	n              int
}

func (p *pager) add(elem string) {
	if p.n >= p.maxN || (p.n > 0 && len(p.cur)+len(elem)+6 > p.maxBytes) {
		p.flush()
	}
	p.cur = protowire.AppendTag(p.cur, 1, protowire.BytesType)
	p.cur = protowire.AppendString(p.cur, elem)
	p.n++
}

func (p *pager) flush() {
	if p.n > 0 {
		p.pages = append(p.pages, p.cur)
		p.cur, p.n = nil, 0
	}
}

func (p *pager) send(ss grpc.ServerStream) error {
	p.flush()
	for _, pg := range p.pages {
		if err := ss.SendMsg(&preEncoded{pg}); err != nil {
			return err
		}
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
