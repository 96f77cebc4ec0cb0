// Package omwire decodes the Open Match messages kumi receives in bulk — QueryTickets pages in the
// match function, FetchMatches responses in the director — and lets the match function forward
// the tickets it received as their wire bytes instead of re-encoding them.
//
// protobuf-go decodes map fields (search_fields.double_args/string_args, the extensions maps)
// through reflection, which was most of the CPU of a FetchMatches cycle at 1k tickets
// (BENCHMARKS.md). The decoder here reads the same wire format with protowire and builds the
// same generated messages. It takes only the fast path for input it fully understands (the known
// fields with their declared wire types, no unknown fields, valid UTF-8) and hands anything else
// to proto.Unmarshal, so its result — including the error for malformed input — is always what
// proto.Unmarshal gives (FuzzUnmarshalTicket, FuzzUnmarshalMatch).
package omwire

import (
	"errors"
	"math"
	"sync"
	"unicode/utf8"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/internal/omext"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the "proto" codec Codec delegates to
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// errSlow means the input leaves the fast path; proto.Unmarshal decides what it is.
var errSlow = errors.New("omwire: not on the fast path")

var merge = proto.UnmarshalOptions{Merge: true}

// UnmarshalTicket decodes a Ticket's wire bytes into t, like proto.Unmarshal, except that the
// extensions' and persistent fields' Any values alias b (the codec's buffer is never reused).
func UnmarshalTicket(b []byte, t *pb.Ticket) error {
	t.Reset()
	if ticket(b, t, nil, nil, true) == nil {
		return nil
	}
	return proto.Unmarshal(b, t)
}

// UnmarshalMatch decodes a Match's wire bytes into m, like proto.Unmarshal (Any values alias b).
func UnmarshalMatch(b []byte, m *pb.Match) error {
	m.Reset()
	if match(b, m) == nil {
		return nil
	}
	return proto.Unmarshal(b, m)
}

// next reads one field: its number, wire type and, for length-delimited fields, the payload.
func next(b []byte) (num protowire.Number, typ protowire.Type, v []byte, rest []byte, err error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return 0, 0, nil, nil, errSlow
	}
	b = b[n:]
	switch typ {
	case protowire.BytesType:
		v, n = protowire.ConsumeBytes(b)
	case protowire.VarintType, protowire.Fixed64Type:
		v, n = b, protowire.ConsumeFieldValue(num, typ, b)
		if n >= 0 {
			v = b[:n]
		}
	default:
		return 0, 0, nil, nil, errSlow
	}
	if n < 0 {
		return 0, 0, nil, nil, errSlow
	}
	return num, typ, v, b[n:], nil
}

func str(v []byte) (string, error) {
	if !utf8.Valid(v) {
		return "", errSlow
	}
	return string(v), nil
}

// wellKnown are the map keys and Any type URLs every kumi ticket and match carries, by length:
// decoding them to these constants saves an allocation each (a few per ticket), and finding one
// by its length and a comparison or two is cheaper than hashing it (tens of thousands of lookups
// per FetchMatches cycle at 1k tickets).
var wellKnown = func() (byLen [64][]string) {
	for _, s := range []string{omext.Player, omext.Attributes, omext.EvaluationInput, omext.Group, omext.SessionKind,
		omext.MaxMembers, omext.Seal, omext.TraceParent, omext.Session, omext.ServerToken, omext.TokenExpiry,
		"type.googleapis.com/google.protobuf.StringValue", "type.googleapis.com/google.protobuf.Int64Value",
		"type.googleapis.com/google.protobuf.Timestamp", "type.googleapis.com/google.protobuf.DoubleValue",
		"type.googleapis.com/openmatch.DefaultEvaluationCriteria"} {
		byLen[len(s)] = append(byLen[len(s)], s)
	}
	return byLen
}()

// known is str, returning a well-known string without allocating.
func known(v []byte) (string, error) {
	if len(v) < len(wellKnown) {
		for _, s := range wellKnown[len(v)] {
			if string(v) == s {
				return s, nil
			}
		}
	}
	return str(v)
}

// ticketParts are a ticket and the fixed-size messages it points to, allocated together: the
// decoders allocate one slice of them per message instead of three objects per ticket.
type ticketParts struct {
	t  pb.Ticket
	sf pb.SearchFields
	ct timestamppb.Timestamp
}

// minTicket is the fewest wire bytes per ticket the decoders allocate ahead for (a kumi ticket
// is hundreds): a message of many tiny tickets, which no kumi component sends, takes protobuf-go's
// path instead of making the fast path allocate hundreds of times its size up front.
const minTicket = 32

// searchFields and createTime point a ticket at its parts, or allocate when there are none.
func (p *ticketParts) searchFields() *pb.SearchFields {
	if p == nil {
		return &pb.SearchFields{}
	}
	return &p.sf
}

func (p *ticketParts) createTime() *timestamppb.Timestamp {
	if p == nil {
		return &timestamppb.Timestamp{}
	}
	return &p.ct
}

// newTickets returns n tickets allocated together, for a message of size bytes with n tickets,
// or false when the tickets are too small for the fast path.
func newTickets(n, size int) ([]ticketParts, bool) {
	if n > size/minTicket {
		return nil, false
	}
	return make([]ticketParts, n), true
}

// count returns how many fields num b holds (0 when b is malformed: the decoder will say so).
func count(b []byte, num protowire.Number) int {
	n := 0
	for len(b) > 0 {
		k, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return 0
		}
		if k == num {
			n++
		}
		m := protowire.ConsumeFieldValue(k, typ, b[l:])
		if m < 0 {
			return 0
		}
		b = b[l+m:]
	}
	return n
}

// anys hands out a message's Any values from one slice (a kumi ticket carries three, a match
// four) instead of allocating each; past the slice's guess, and when nil, it allocates them one
// by one.
type anys []anypb.Any

func (a *anys) next() *anypb.Any {
	if a == nil || len(*a) == 0 {
		return &anypb.Any{}
	}
	x := &(*a)[0]
	*a = (*a)[1:]
	return x
}

// ticket decodes a Ticket into t, pointing it at parts' search fields and create time (parts
// may be nil) and taking its Any values from av; without ext it skips extensions and
// persistent_field.
func ticket(b []byte, t *pb.Ticket, parts *ticketParts, av *anys, ext bool) error {
	for len(b) > 0 {
		num, typ, v, rest, err := next(b)
		if err != nil || typ != protowire.BytesType {
			return errSlow
		}
		b = rest
		switch num {
		case 1:
			if t.Id, err = str(v); err != nil {
				return err
			}
		case 3:
			if t.Assignment == nil {
				t.Assignment = &pb.Assignment{}
			}
			if merge.Unmarshal(v, t.Assignment) != nil {
				return errSlow
			}
		case 4:
			if t.SearchFields == nil {
				t.SearchFields = parts.searchFields()
			}
			if err := searchFields(v, t.SearchFields); err != nil {
				return err
			}
		case 5:
			if !ext {
				continue
			}
			if t.Extensions == nil {
				t.Extensions = make(map[string]*anypb.Any, 4)
			}
			if err := anyEntry(v, t.Extensions, av); err != nil {
				return err
			}
		case 6:
			if !ext {
				continue
			}
			if t.PersistentField == nil {
				t.PersistentField = make(map[string]*anypb.Any)
			}
			if err := anyEntry(v, t.PersistentField, av); err != nil {
				return err
			}
		case 7:
			if t.CreateTime == nil {
				t.CreateTime = parts.createTime()
			}
			if err := timestamp(v, t.CreateTime); err != nil {
				return err
			}
		default:
			return errSlow
		}
	}
	return nil
}

func searchFields(b []byte, sf *pb.SearchFields) error {
	for len(b) > 0 {
		num, typ, v, rest, err := next(b)
		if err != nil || typ != protowire.BytesType {
			return errSlow
		}
		b = rest
		switch num {
		case 1:
			k, val, err := entry(v, protowire.Fixed64Type)
			if err != nil {
				return err
			}
			var f float64
			if val != nil {
				x, _ := protowire.ConsumeFixed64(val)
				f = math.Float64frombits(x)
			}
			if sf.DoubleArgs == nil {
				sf.DoubleArgs = make(map[string]float64, 2)
			}
			sf.DoubleArgs[k] = f
		case 2:
			k, val, err := entry(v, protowire.BytesType)
			if err != nil {
				return err
			}
			s, err := str(val)
			if err != nil {
				return err
			}
			if sf.StringArgs == nil {
				sf.StringArgs = make(map[string]string, 2)
			}
			sf.StringArgs[k] = s
		case 3:
			s, err := str(v)
			if err != nil {
				return err
			}
			sf.Tags = append(sf.Tags, s)
		default:
			return errSlow
		}
	}
	return nil
}

// entry reads a map entry: a string key (field 1) and a value (field 2) of wire type valType,
// each at most once. val is nil when the entry has no value.
func entry(b []byte, valType protowire.Type) (key string, val []byte, err error) {
	var haveKey bool
	for len(b) > 0 {
		num, typ, v, rest, err := next(b)
		if err != nil {
			return "", nil, err
		}
		b = rest
		switch {
		case num == 1 && typ == protowire.BytesType && !haveKey:
			if key, err = known(v); err != nil {
				return "", nil, err
			}
			haveKey = true
		case num == 2 && typ == valType && val == nil:
			val = v
		default:
			return "", nil, errSlow
		}
	}
	return key, val, nil
}

// anyEntry reads one entry of a map<string, google.protobuf.Any> into m.
func anyEntry(b []byte, m map[string]*anypb.Any, av *anys) error {
	k, val, err := entry(b, protowire.BytesType)
	if err != nil {
		return err
	}
	a := av.next()
	for len(val) > 0 {
		num, typ, v, rest, err := next(val)
		if err != nil || typ != protowire.BytesType {
			return errSlow
		}
		val = rest
		switch num {
		case 1:
			if a.TypeUrl, err = known(v); err != nil {
				return err
			}
		case 2:
			a.Value = v
		default:
			return errSlow
		}
	}
	m[k] = a
	return nil
}

func timestamp(b []byte, ts *timestamppb.Timestamp) error {
	for len(b) > 0 {
		num, typ, v, rest, err := next(b)
		if err != nil || typ != protowire.VarintType {
			return errSlow
		}
		b = rest
		x, _ := protowire.ConsumeVarint(v)
		switch num {
		case 1:
			ts.Seconds = int64(x)
		case 2:
			ts.Nanos = int32(x)
		default:
			return errSlow
		}
	}
	return nil
}

func match(b []byte, m *pb.Match) error {
	var parts []ticketParts
	n := count(b, 4)
	if n > 0 {
		var ok bool
		if parts, ok = newTickets(n, len(b)); !ok {
			return errSlow
		}
		m.Tickets = make([]*pb.Ticket, 0, n)
	}
	av := make(anys, 3*n+4)
	for len(b) > 0 {
		num, typ, v, rest, err := next(b)
		if err != nil {
			return err
		}
		b = rest
		if num == 9 {
			if typ != protowire.VarintType {
				return errSlow
			}
			x, _ := protowire.ConsumeVarint(v)
			m.AllocateGameserver = x != 0
			continue
		}
		if typ != protowire.BytesType {
			return errSlow
		}
		switch num {
		case 1:
			m.MatchId, err = str(v)
		case 2:
			m.MatchProfile, err = str(v)
		case 3:
			m.MatchFunction, err = str(v)
		case 4:
			if len(m.Tickets) == len(parts) { // count saw a malformed message
				return errSlow
			}
			p := &parts[len(m.Tickets)]
			err = ticket(v, &p.t, p, &av, true)
			m.Tickets = append(m.Tickets, &p.t)
		case 7:
			if m.Extensions == nil {
				m.Extensions = make(map[string]*anypb.Any, 4)
			}
			err = anyEntry(v, m.Extensions, &av)
		case 8:
			if m.Backfill == nil {
				m.Backfill = &pb.Backfill{}
			}
			if merge.Unmarshal(v, m.Backfill) != nil {
				err = errSlow
			}
		default:
			err = errSlow
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Recorder keeps the wire bytes of the tickets a Codec decoded, so a match function can send
// them on unchanged (Forward). Safe for concurrent use (one query per pool runs at once).
type Recorder struct {
	mu  sync.Mutex
	raw map[*pb.Ticket][]byte
	ext bool
}

// NewRecorder returns an empty Recorder. Without ext, the tickets its Codec decodes lack
// extensions and persistent_field (a match function that does not read them saves decoding
// them; Forward sends them on all the same).
func NewRecorder(ext bool) *Recorder { return &Recorder{raw: make(map[*pb.Ticket][]byte), ext: ext} }

// Forward returns a Match equal to m on the wire whose tickets are the bytes they arrived as,
// carried as the message's unknown fields (field 4, Match.tickets, which every receiver decodes
// as tickets): sending it costs a copy instead of re-encoding each ticket. When any ticket of m
// was not recorded, m itself is returned. The result is for sending only: in Go it has no
// Tickets.
func (r *Recorder) Forward(m *pb.Match) *pb.Match {
	r.mu.Lock()
	defer r.mu.Unlock()
	size := 0
	for _, t := range m.GetTickets() {
		raw, ok := r.raw[t]
		if !ok {
			return m
		}
		size += protowire.SizeTag(4) + protowire.SizeBytes(len(raw))
	}
	out := &pb.Match{MatchId: m.MatchId, MatchProfile: m.MatchProfile, MatchFunction: m.MatchFunction,
		Extensions: m.Extensions, Backfill: m.Backfill, AllocateGameserver: m.AllocateGameserver}
	unknown := make([]byte, 0, size+len(m.ProtoReflect().GetUnknown()))
	unknown = append(unknown, m.ProtoReflect().GetUnknown()...)
	for _, t := range m.GetTickets() {
		unknown = protowire.AppendTag(unknown, 4, protowire.BytesType)
		unknown = protowire.AppendBytes(unknown, r.raw[t])
	}
	out.ProtoReflect().SetUnknown(protoreflect.RawFields(unknown))
	return out
}

// Codec is gRPC's proto codec with the fast decoder for QueryTicketsResponse and
// FetchMatchesResponse and the fast encoder for RunResponse. Use it per call
// (grpc.ForceCodecV2) or per server (grpc.ForceServerCodecV2), never registered globally.
type Codec struct {
	proto encoding.CodecV2
	rec   *Recorder
}

// NewCodec returns a Codec; rec, when not nil, records every ticket of decoded query pages.
func NewCodec(rec *Recorder) *Codec {
	return &Codec{proto: encoding.GetCodecV2("proto"), rec: rec}
}

// Name is "proto": the content subtype on the wire is unchanged.
func (c *Codec) Name() string { return "proto" }

// Marshal encodes a match function's RunResponse on the fast path (marshalRunResponse), the
// rest with proto.
func (c *Codec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*pb.RunResponse); ok {
		if b, ok := marshalRunResponse(r); ok {
			return b, nil
		}
	}
	return c.proto.Marshal(v)
}

// Unmarshal decodes query pages and FetchMatches responses on the fast path, the rest with proto.
func (c *Codec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *pb.QueryTicketsResponse:
		// Materialize copies: the recorded ticket bytes may alias this buffer for as long as needed.
		b := data.Materialize()
		if err := c.page(b, m); err == nil {
			return nil
		}
		return proto.Unmarshal(b, m)
	case *pb.FetchMatchesResponse:
		b := data.Materialize()
		if err := fetchResponse(b, m); err == nil {
			return nil
		}
		return proto.Unmarshal(b, m)
	}
	return c.proto.Unmarshal(data, v)
}

func (c *Codec) page(b []byte, m *pb.QueryTicketsResponse) error {
	m.Reset()
	n := count(b, 1)
	parts, ok := newTickets(n, len(b))
	if !ok {
		return errSlow
	}
	m.Tickets = make([]*pb.Ticket, 0, n)
	raws := make([][]byte, 0, n)
	ext := c.rec == nil || c.rec.ext
	var av anys
	if ext {
		av = make(anys, 3*n)
	}
	for len(b) > 0 {
		num, typ, v, rest, err := next(b)
		if err != nil || num != 1 || typ != protowire.BytesType || len(m.Tickets) == n {
			return errSlow
		}
		b = rest
		p := &parts[len(m.Tickets)]
		if err := ticket(v, &p.t, p, &av, ext); err != nil {
			return err
		}
		m.Tickets = append(m.Tickets, &p.t)
		raws = append(raws, v)
	}
	if c.rec != nil {
		c.rec.mu.Lock()
		for i, t := range m.Tickets {
			c.rec.raw[t] = raws[i]
		}
		c.rec.mu.Unlock()
	}
	return nil
}

func fetchResponse(b []byte, r *pb.FetchMatchesResponse) error {
	r.Reset()
	for len(b) > 0 {
		num, typ, v, rest, err := next(b)
		if err != nil || num != 1 || typ != protowire.BytesType || r.Match != nil {
			return errSlow
		}
		b = rest
		r.Match = &pb.Match{}
		if err := match(v, r.Match); err != nil {
			return err
		}
	}
	return nil
}
