package omwire

import (
	"unicode/utf8"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

// marshalRunResponse encodes a match function's RunResponse without protobuf-go's reflective map
// encoding, which was a tenth of a FetchMatches cycle at 1k tickets (BENCHMARKS.md), into a
// buffer from gRPC's pool as protobuf-go's codec does. It takes the shape Recorder.Forward
// produces — tickets as unknown bytes, no backfill — and reports false for anything else, which
// the caller hands to proto.Marshal. Fields come in another order than protobuf-go writes them,
// which every protobuf decoder accepts (TestMarshalRunResponse, FuzzMarshalRunResponse: the
// decoded message equals protobuf-go's round trip).
func marshalRunResponse(r *pb.RunResponse) (mem.BufferSlice, bool) {
	inner, ok := proposalSize(r)
	if !ok {
		return nil, false
	}
	n := protowire.SizeTag(1) + protowire.SizeBytes(inner)
	if mem.IsBelowBufferPoolingThreshold(n) {
		return mem.BufferSlice{mem.SliceBuffer(appendRunResponse(make([]byte, 0, n), r, inner))}, true
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(n)
	*buf = appendRunResponse((*buf)[:0], r, inner)
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, true
}

// proposalSize is the encoded size of r's proposal, or false when r is off the fast path: no
// proposal, unknown fields of its own, tickets as Go values, a backfill, invalid UTF-8 (which
// protobuf-go refuses to marshal), or an extension value with unknown fields.
func proposalSize(r *pb.RunResponse) (int, bool) {
	m := r.GetProposal()
	if m == nil || len(r.ProtoReflect().GetUnknown()) > 0 || len(m.Tickets) > 0 || m.Backfill != nil {
		return 0, false
	}
	n := len(m.ProtoReflect().GetUnknown())
	for num, s := range [...]string{m.MatchId, m.MatchProfile, m.MatchFunction} {
		if !utf8.ValidString(s) {
			return 0, false
		}
		n += stringSize(protowire.Number(num+1), s)
	}
	for k, a := range m.Extensions {
		if !utf8.ValidString(k) || !utf8.ValidString(a.GetTypeUrl()) || (a != nil && len(a.ProtoReflect().GetUnknown()) > 0) {
			return 0, false
		}
		n += protowire.SizeTag(7) + protowire.SizeBytes(entrySize(k, a))
	}
	if m.AllocateGameserver {
		n += protowire.SizeTag(9) + 1
	}
	return n, true
}

// appendRunResponse appends r, whose proposal proposalSize took and measured as inner bytes.
func appendRunResponse(b []byte, r *pb.RunResponse, inner int) []byte {
	m := r.Proposal
	b = protowire.AppendVarint(protowire.AppendTag(b, 1, protowire.BytesType), uint64(inner))
	for num, s := range [...]string{m.MatchId, m.MatchProfile, m.MatchFunction} {
		b = appendString(b, protowire.Number(num+1), s)
	}
	for k, a := range m.Extensions {
		b = protowire.AppendVarint(protowire.AppendTag(b, 7, protowire.BytesType), uint64(entrySize(k, a)))
		b = protowire.AppendString(protowire.AppendTag(b, 1, protowire.BytesType), k)
		b = protowire.AppendVarint(protowire.AppendTag(b, 2, protowire.BytesType), uint64(anySize(a)))
		b = appendString(b, 1, a.GetTypeUrl())
		if v := a.GetValue(); len(v) > 0 {
			b = protowire.AppendBytes(protowire.AppendTag(b, 2, protowire.BytesType), v)
		}
	}
	if m.AllocateGameserver {
		b = protowire.AppendVarint(protowire.AppendTag(b, 9, protowire.VarintType), 1)
	}
	return append(b, m.ProtoReflect().GetUnknown()...)
}

// stringSize is the size of a proto3 string field, which is omitted when empty.
func stringSize(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return protowire.AppendString(protowire.AppendTag(b, num, protowire.BytesType), s)
}

// anySize is the size of an Any's fields; a nil Any is an empty message, as protobuf-go writes it.
func anySize(a *anypb.Any) int {
	n := stringSize(1, a.GetTypeUrl())
	if v := a.GetValue(); len(v) > 0 {
		n += protowire.SizeTag(2) + protowire.SizeBytes(len(v))
	}
	return n
}

// entrySize is the size of a map<string, Any> entry's fields (key and value always written).
func entrySize(k string, a *anypb.Any) int {
	return protowire.SizeTag(1) + protowire.SizeBytes(len(k)) + protowire.SizeTag(2) + protowire.SizeBytes(anySize(a))
}
