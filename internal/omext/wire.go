package omext

import (
	"math"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

// Type URLs of the values kumi packs most: the match function writes three or four per match and
// the director reads three per ticket, hundreds of times per cycle. anypb.New and UnmarshalTo go
// through protobuf-go's registry and reflection (and build the URL) every time; these wrappers
// have one scalar field, so packing and unpacking them by hand is a few appends. Anything else —
// another URL spelling, unknown fields, invalid UTF-8 — goes the generic way, so results and
// errors stay protobuf-go's (FuzzScalarValues).
const (
	stringURL   = "type.googleapis.com/google.protobuf.StringValue"
	int64URL    = "type.googleapis.com/google.protobuf.Int64Value"
	criteriaURL = "type.googleapis.com/openmatch.DefaultEvaluationCriteria"
)

// packString is anypb.New(wrapperspb.String(s)) for valid UTF-8 (false otherwise).
func packString(s string) (*anypb.Any, bool) {
	if !utf8.ValidString(s) {
		return nil, false
	}
	a := &anypb.Any{TypeUrl: stringURL}
	if s != "" {
		a.Value = protowire.AppendString(protowire.AppendTag(make([]byte, 0, 1+protowire.SizeBytes(len(s))), 1, protowire.BytesType), s)
	}
	return a, true
}

// packInt is anypb.New(wrapperspb.Int64(v)).
func packInt(v int64) *anypb.Any {
	a := &anypb.Any{TypeUrl: int64URL}
	if v != 0 {
		a.Value = protowire.AppendVarint(protowire.AppendTag(make([]byte, 0, 11), 1, protowire.VarintType), uint64(v))
	}
	return a
}

// packScore is anypb.New(&DefaultEvaluationCriteria{Score: score}); proto3 omits only +0.
func packScore(score float64) *anypb.Any {
	a := &anypb.Any{TypeUrl: criteriaURL}
	if bits := math.Float64bits(score); bits != 0 {
		a.Value = protowire.AppendFixed64(protowire.AppendTag(make([]byte, 0, 9), 1, protowire.Fixed64Type), bits)
	}
	return a
}

// scalar returns the last field 1 of wire type typ in a's value when a has the URL url and
// nothing else in its value or unknown fields; ok is false otherwise (the generic path decides).
// A message with no field 1 has the zero value: v is nil and ok true.
func scalar(a *anypb.Any, url string, typ protowire.Type) (v []byte, ok bool) {
	if a.GetTypeUrl() != url || len(a.ProtoReflect().GetUnknown()) > 0 {
		return nil, false
	}
	for b := a.GetValue(); len(b) > 0; {
		num, t, n := protowire.ConsumeTag(b)
		if n < 0 || num != 1 || t != typ {
			return nil, false
		}
		m := protowire.ConsumeFieldValue(num, t, b[n:])
		if m < 0 {
			return nil, false
		}
		v, b = b[n:n+m], b[n+m:]
	}
	return v, true
}

func unpackString(a *anypb.Any) (string, bool) {
	v, ok := scalar(a, stringURL, protowire.BytesType)
	if !ok || v == nil {
		return "", ok
	}
	s, n := protowire.ConsumeBytes(v)
	if n < 0 || !utf8.Valid(s) {
		return "", false
	}
	return string(s), true
}

func unpackInt(a *anypb.Any) (int64, bool) {
	v, ok := scalar(a, int64URL, protowire.VarintType)
	if !ok || v == nil {
		return 0, ok
	}
	x, _ := protowire.ConsumeVarint(v)
	return int64(x), true
}

func unpackScore(a *anypb.Any) (float64, bool) {
	v, ok := scalar(a, criteriaURL, protowire.Fixed64Type)
	if !ok || v == nil {
		return 0, ok
	}
	x, _ := protowire.ConsumeFixed64(v)
	return math.Float64frombits(x), true
}
