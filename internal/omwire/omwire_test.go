package omwire

import (
	"testing"
	"time"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/internal/omext"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func sampleTicket(id string) *pb.Ticket {
	ext := omext.PutString(nil, omext.Player, "player-"+id)
	omext.PutString(ext, omext.Seal, "v1.1764800000000.abc")
	return &pb.Ticket{
		Id: id,
		SearchFields: &pb.SearchFields{
			DoubleArgs: map[string]float64{"skill": 42.5, "party_size": 1},
			StringArgs: map[string]string{"mode": "ranked", "": "empty key"},
			Tags:       []string{"eu", "voice"},
		},
		Extensions:      ext,
		PersistentField: map[string]*anypb.Any{"p": {TypeUrl: "x/y"}, "empty": {}},
		Assignment:      &pb.Assignment{Connection: "gs:1"},
		CreateTime:      timestamppb.New(time.Unix(1764800000, 123456789)),
	}
}

func sampleMatch() *pb.Match {
	ext := omext.PutString(nil, omext.Group, "g1")
	omext.PutScore(ext, 3.5)
	return &pb.Match{MatchId: "m1", MatchProfile: "duel", MatchFunction: "kumi",
		Tickets:    []*pb.Ticket{sampleTicket("a"), {Id: "b"}, {}},
		Extensions: ext, Backfill: &pb.Backfill{Id: "bf"}, AllocateGameserver: true}
}

func marshal(t testing.TB, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seeds are valid messages plus the shapes that must leave the fast path: an unknown field, a
// field with another wire type, invalid UTF-8, a repeated map value, a truncated message.
func seeds(t testing.TB, valid []byte) [][]byte {
	tag := func(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }
	out := [][]byte{valid, nil, valid[:len(valid)/2]}
	out = append(out, append(append([]byte{}, valid...), protowire.AppendVarint(tag(99, protowire.VarintType), 7)...))
	out = append(out, append(append([]byte{}, valid...), protowire.AppendVarint(tag(1, protowire.VarintType), 7)...))
	out = append(out, append(append([]byte{}, valid...), protowire.AppendBytes(tag(1, protowire.BytesType), []byte{0xff, 0xfe})...))
	entry := protowire.AppendBytes(tag(1, protowire.BytesType), []byte("k"))
	entry = protowire.AppendBytes(append(entry, tag(2, protowire.BytesType)...), marshal(t, &anypb.Any{TypeUrl: "a"}))
	entry = protowire.AppendBytes(append(entry, tag(2, protowire.BytesType)...), marshal(t, &anypb.Any{Value: []byte("v")}))
	out = append(out, append(append([]byte{}, valid...), protowire.AppendBytes(tag(5, protowire.BytesType), entry)...))
	out = append(out, append(append([]byte{}, valid...), protowire.AppendBytes(tag(7, protowire.BytesType), entry)...))
	return out
}

// FuzzUnmarshalTicket: UnmarshalTicket gives what proto.Unmarshal gives, for any input.
func FuzzUnmarshalTicket(f *testing.F) {
	for _, s := range seeds(f, marshal(f, sampleTicket("a"))) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, got := &pb.Ticket{}, &pb.Ticket{Id: "stale"}
		werr, gerr := proto.Unmarshal(b, want), UnmarshalTicket(b, got)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("error %v, proto.Unmarshal's %v", gerr, werr)
		}
		if werr == nil && !proto.Equal(want, got) {
			t.Fatalf("decoded %v, proto.Unmarshal decoded %v", got, want)
		}
	})
}

// FuzzUnmarshalMatch: UnmarshalMatch gives what proto.Unmarshal gives, for any input.
func FuzzUnmarshalMatch(f *testing.F) {
	for _, s := range seeds(f, marshal(f, sampleMatch())) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, got := &pb.Match{}, &pb.Match{MatchId: "stale"}
		werr, gerr := proto.Unmarshal(b, want), UnmarshalMatch(b, got)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("error %v, proto.Unmarshal's %v", gerr, werr)
		}
		if werr == nil && !proto.Equal(want, got) {
			t.Fatalf("decoded %v, proto.Unmarshal decoded %v", got, want)
		}
	})
}

// TestFastPathTaken: well-formed kumi messages are decoded by the fast path, not the fallback
// (otherwise the package would be correct but pointless).
func TestFastPathTaken(t *testing.T) {
	if err := ticket(marshal(t, sampleTicket("a")), &pb.Ticket{}, nil, nil, true); err != nil {
		t.Errorf("ticket: %v", err)
	}
	if err := match(marshal(t, sampleMatch()), &pb.Match{}); err != nil {
		t.Errorf("match: %v", err)
	}
}

// TestCodec: query pages and FetchMatches responses decode through the codec like proto; the
// recorder forwards every recorded ticket byte for byte; other messages go to the proto codec.
func TestCodec(t *testing.T) {
	page := &pb.QueryTicketsResponse{Tickets: []*pb.Ticket{sampleTicket("a"), sampleTicket("b"), {Id: "c"}}}
	rec := NewRecorder(true)
	c := NewCodec(rec)
	var gotPage pb.QueryTicketsResponse
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(marshal(t, page))}, &gotPage); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(page, &gotPage) {
		t.Fatalf("page decoded as %v", &gotPage)
	}

	m := sampleMatch()
	m.Tickets = []*pb.Ticket{gotPage.Tickets[2], gotPage.Tickets[0]}
	fwd := rec.Forward(m)
	if len(fwd.GetTickets()) != 0 {
		t.Fatalf("forwarded match still has %d decoded tickets", len(fwd.GetTickets()))
	}
	var back pb.FetchMatchesResponse
	wire := marshal(t, &pb.FetchMatchesResponse{Match: fwd})
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, &back); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(back.GetMatch(), m) {
		t.Fatalf("forwarded match arrives as %v, want %v", back.GetMatch(), m)
	}
	var viaProto pb.FetchMatchesResponse
	if err := proto.Unmarshal(wire, &viaProto); err != nil || !proto.Equal(viaProto.GetMatch(), m) {
		t.Fatalf("proto.Unmarshal of the forwarded match: %v, %v", viaProto.GetMatch(), err)
	}

	// A ticket the recorder has not seen (built by the function itself) keeps the plain path.
	m.Tickets = append(m.Tickets, &pb.Ticket{Id: "new"})
	if rec.Forward(m) != m {
		t.Error("Forward rewrote a match with an unrecorded ticket")
	}

	var req pb.FetchMatchesRequest
	in := &pb.FetchMatchesRequest{Profile: &pb.MatchProfile{Name: "p"}}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(marshal(t, in))}, &req); err != nil || !proto.Equal(in, &req) {
		t.Fatalf("other message: %v, %v", &req, err)
	}
}

// TestRecorderWithoutExtensions: a match function that reads no extensions gets tickets without
// them, and still forwards them whole.
func TestRecorderWithoutExtensions(t *testing.T) {
	want := sampleTicket("a")
	rec := NewRecorder(false)
	var page pb.QueryTicketsResponse
	in := marshal(t, &pb.QueryTicketsResponse{Tickets: []*pb.Ticket{want}})
	if err := NewCodec(rec).Unmarshal(mem.BufferSlice{mem.SliceBuffer(in)}, &page); err != nil {
		t.Fatal(err)
	}
	got := page.Tickets[0]
	if got.Extensions != nil || got.PersistentField != nil || got.GetId() != "a" || !proto.Equal(got.GetSearchFields(), want.GetSearchFields()) {
		t.Fatalf("decoded %v", got)
	}
	var back pb.Match
	if err := proto.Unmarshal(marshal(t, rec.Forward(&pb.Match{MatchId: "m", Tickets: []*pb.Ticket{got}})), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Tickets) != 1 || !proto.Equal(back.Tickets[0], want) {
		t.Fatalf("forwarded %v, want %v", back.Tickets, want)
	}
}

// FuzzUnmarshalPage: the codec decodes a query page to what proto.Unmarshal gives, for any input.
func FuzzUnmarshalPage(f *testing.F) {
	page := &pb.QueryTicketsResponse{Tickets: []*pb.Ticket{sampleTicket("a"), {Id: "b"}, sampleTicket("c")}}
	for _, s := range seeds(f, marshal(f, page)) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, got := &pb.QueryTicketsResponse{}, &pb.QueryTicketsResponse{Tickets: []*pb.Ticket{{Id: "stale"}}}
		werr := proto.Unmarshal(b, want)
		gerr := NewCodec(NewRecorder(true)).Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, got)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("error %v, proto.Unmarshal's %v", gerr, werr)
		}
		if werr == nil && !proto.Equal(want, got) {
			t.Fatalf("decoded %v, proto.Unmarshal decoded %v", got, want)
		}
	})
}

// TestKnown: well-known keys and type URLs decode without allocating; other strings, of any
// length, decode as themselves.
func TestKnown(t *testing.T) {
	for _, s := range []string{omext.Player, omext.EvaluationInput, "type.googleapis.com/google.protobuf.StringValue",
		"type.googleapis.com/openmatch.DefaultEvaluationCriteria"} {
		b := []byte(s)
		if n := testing.AllocsPerRun(100, func() { _, _ = known(b) }); n != 0 {
			t.Errorf("known(%q) allocates %v times", s, n)
		}
	}
	for _, s := range []string{"", "kumi.playe", "kumi.playerX", string(make([]byte, 64)), string(make([]byte, 200))} {
		if got, err := known([]byte(s)); err != nil || got != s {
			t.Errorf("known(%q) = %q, %v", s, got, err)
		}
	}
}
