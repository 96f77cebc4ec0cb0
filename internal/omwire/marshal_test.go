package omwire

import (
	"testing"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// checkRunResponse: when marshalRunResponse takes r, its bytes decode (with proto.Unmarshal) to
// what protobuf-go's own encoding of r decodes to (the forwarded tickets become Go tickets both
// ways); when protobuf-go cannot marshal r, neither does the fast path.
func checkRunResponse(t *testing.T, r *pb.RunResponse) (fast bool) {
	t.Helper()
	data, ok := marshalRunResponse(r)
	b := data.Materialize()
	if n, _ := proposalSize(r); ok && protowire.SizeTag(1)+protowire.SizeBytes(n) != len(b) {
		t.Fatalf("encoded %d bytes, size said %d", len(b), n)
	}
	pb0, perr := proto.Marshal(r)
	if !ok {
		return false
	}
	if perr != nil {
		t.Fatalf("fast path encoded a message protobuf-go refuses: %v", perr)
	}
	var got, want pb.RunResponse
	if err := proto.Unmarshal(b, &got); err != nil {
		t.Fatalf("fast encoding does not decode: %v", err)
	}
	if err := proto.Unmarshal(pb0, &want); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&got, &want) {
		t.Fatalf("fast encoding decodes to %v, want %v", &got, &want)
	}
	return true
}

// FuzzMarshalRunResponse: for any RunResponse protobuf-go decodes, the fast encoding (when it is
// taken) decodes back to the same message.
func FuzzMarshalRunResponse(f *testing.F) {
	m := sampleMatch()
	m.Tickets, m.Backfill = nil, nil
	f.Add(marshal(f, &pb.RunResponse{Proposal: m}))
	f.Add(marshal(f, &pb.RunResponse{Proposal: NewRecorderFor(f, sampleTicket("a"), sampleTicket("b"))}))
	f.Add(marshal(f, &pb.RunResponse{}))
	f.Fuzz(func(t *testing.T, in []byte) {
		var r pb.RunResponse
		if proto.Unmarshal(in, &r) != nil {
			return // not a RunResponse: nothing to encode
		}
		// Decoded tickets leave the fast path; the same match with them as unknown bytes (as
		// Forward sends them) must take it.
		if p := r.GetProposal(); p != nil && len(p.Tickets) > 0 && p.Backfill == nil && len(r.ProtoReflect().GetUnknown()) == 0 {
			var raw []byte
			for _, tk := range p.Tickets {
				raw = protowire.AppendBytes(protowire.AppendTag(raw, 4, protowire.BytesType), marshal(t, tk))
			}
			p.Tickets = nil
			p.ProtoReflect().SetUnknown(append(p.ProtoReflect().GetUnknown(), raw...))
		}
		checkRunResponse(t, &r)
	})
}

// NewRecorderFor returns the match Recorder.Forward makes of a match of tickets decoded by the
// codec: what the match function sends.
func NewRecorderFor(t testing.TB, tickets ...*pb.Ticket) *pb.Match {
	rec := NewRecorder(true)
	var page pb.QueryTicketsResponse
	if err := NewCodec(rec).Unmarshal(mem.BufferSlice{mem.SliceBuffer(marshal(t, &pb.QueryTicketsResponse{Tickets: tickets}))}, &page); err != nil {
		t.Fatal(err)
	}
	m := sampleMatch()
	m.Backfill = nil
	m.Tickets = page.Tickets
	return rec.Forward(m)
}

// TestMarshalRunResponse: what the match function sends takes the fast path; everything else
// goes to protobuf-go, and the codec's result always decodes to the message it was given.
func TestMarshalRunResponse(t *testing.T) {
	forwarded := NewRecorderFor(t, sampleTicket("a"), sampleTicket("b"), &pb.Ticket{Id: "c"})
	withBackfill := sampleMatch()
	withBackfill.Tickets = nil
	for _, tc := range []struct {
		name string
		r    *pb.RunResponse
		fast bool
	}{
		{"forwarded match", &pb.RunResponse{Proposal: forwarded}, true},
		{"empty match", &pb.RunResponse{Proposal: &pb.Match{}}, true},
		{"nil and empty extension values", &pb.RunResponse{Proposal: &pb.Match{MatchId: "m",
			Extensions: map[string]*anypb.Any{"nil": nil, "": {}, "v": {Value: []byte{0}}}}}, true},
		{"no proposal", &pb.RunResponse{}, false},
		{"tickets as Go values", &pb.RunResponse{Proposal: &pb.Match{MatchId: "m", Tickets: []*pb.Ticket{sampleTicket("a")}}}, false},
		{"backfill", &pb.RunResponse{Proposal: withBackfill}, false},
		{"invalid UTF-8 id", &pb.RunResponse{Proposal: &pb.Match{MatchId: "\xff"}}, false},
		{"invalid UTF-8 extension key", &pb.RunResponse{Proposal: &pb.Match{Extensions: map[string]*anypb.Any{"\xff": {}}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkRunResponse(t, tc.r); got != tc.fast {
				t.Fatalf("fast path taken = %v, want %v", got, tc.fast)
			}
			// Through the codec: the same bytes as the fast path, or protobuf-go's result and error.
			data, err := NewCodec(nil).Marshal(tc.r)
			_, perr := proto.Marshal(tc.r)
			if (err == nil) != (perr == nil) {
				t.Fatalf("codec error %v, protobuf-go's %v", err, perr)
			}
			if err != nil {
				return
			}
			var got, want pb.RunResponse
			if err := proto.Unmarshal(marshal(t, tc.r), &want); err != nil {
				t.Fatal(err)
			}
			if err := proto.Unmarshal(data.Materialize(), &got); err != nil || !proto.Equal(&got, &want) {
				t.Fatalf("codec output decodes to %v (%v), want %v", &got, err, &want)
			}
		})
	}
}
