package omext

import (
	"math"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/api/openmatch"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestRoundTrip(t *testing.T) {
	now := time.Unix(1700000000, 123).UTC()
	m := PutString(nil, Group, "g1")
	m = PutInt(m, MaxMembers, 8)
	m = PutTime(m, TokenExpiry, now)
	m = PutScore(m, 2.5)
	if s, ok, err := String(m, Group); !ok || err != nil || s != "g1" {
		t.Fatalf("String = %q %v %v", s, ok, err)
	}
	if v, ok, err := Int(m, MaxMembers); !ok || err != nil || v != 8 {
		t.Fatalf("Int = %d %v %v", v, ok, err)
	}
	if v, ok, err := Time(m, TokenExpiry); !ok || err != nil || !v.Equal(now) {
		t.Fatalf("Time = %v %v %v", v, ok, err)
	}
	if v, ok, err := Score(m); !ok || err != nil || v != 2.5 {
		t.Fatalf("Score = %v %v %v", v, ok, err)
	}
}

func TestWrongTypeAndAbsent(t *testing.T) {
	m := PutInt(nil, Group, 3)
	tests := []struct {
		name    string
		get     func() (bool, error)
		wantOK  bool
		wantErr bool
	}{
		{"absent", func() (bool, error) { _, ok, err := String(m, Session); return ok, err }, false, false},
		{"int read as string", func() (bool, error) { _, ok, err := String(m, Group); return ok, err }, true, true},
		{"int read as time", func() (bool, error) { _, ok, err := Time(m, Group); return ok, err }, true, true},
		{"int read as score", func() (bool, error) { _, ok, err := Score(PutInt(nil, EvaluationInput, 1)); return ok, err }, true, true},
	}
	for _, tc := range tests {
		ok, err := tc.get()
		if ok != tc.wantOK || (err != nil) != tc.wantErr {
			t.Errorf("%s: ok=%v err=%v", tc.name, ok, err)
		}
	}
}

// FuzzScalarValues: the hand-packed values equal anypb.New's, and reading any Any — right or
// wrong type URL, any value bytes — gives what protobuf-go's UnmarshalTo path gives.
func FuzzScalarValues(f *testing.F) {
	f.Add("g1", int64(8), 2.5, stringURL, []byte{0x0a, 0x02, 'h', 'i'})
	f.Add("", int64(-1), math.Copysign(0, -1), int64URL, []byte{0x08, 0x96, 0x01, 0x08, 0x01})
	f.Add("\xff", int64(0), math.NaN(), criteriaURL, []byte{0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f})
	f.Add("x", int64(1<<62), 0.0, "example.com/google.protobuf.StringValue", []byte{0x10, 0x01})
	f.Fuzz(func(t *testing.T, s string, i int64, score float64, url string, value []byte) {
		for name, pair := range map[string][2]map[string]*anypb.Any{
			"int":   {PutInt(nil, Group, i), {Group: mustNew(t, wrapperspb.Int64(i))}},
			"score": {PutScore(nil, score), {EvaluationInput: mustNew(t, &openmatch.DefaultEvaluationCriteria{Score: score})}},
		} {
			if !proto.Equal(pair[0][keyOf(pair[0])], pair[1][keyOf(pair[1])]) {
				t.Fatalf("%s: packed %v, anypb.New %v", name, pair[0], pair[1])
			}
		}
		if want, err := anypb.New(wrapperspb.String(s)); err == nil {
			if got := PutString(nil, Group, s)[Group]; !proto.Equal(got, want) {
				t.Fatalf("string: packed %v, anypb.New %v", got, want)
			}
		}

		m := map[string]*anypb.Any{Group: {TypeUrl: url, Value: value}, EvaluationInput: {TypeUrl: url, Value: value}}
		gs, _, gerr := String(m, Group)
		var sv wrapperspb.StringValue
		if werr := m[Group].UnmarshalTo(&sv); (werr == nil) != (gerr == nil) || (werr == nil && gs != sv.GetValue()) {
			t.Fatalf("String = %q, %v; UnmarshalTo %q, %v", gs, gerr, sv.GetValue(), werr)
		}
		gi, _, gerr := Int(m, Group)
		var iv wrapperspb.Int64Value
		if werr := m[Group].UnmarshalTo(&iv); (werr == nil) != (gerr == nil) || (werr == nil && gi != iv.GetValue()) {
			t.Fatalf("Int = %d, %v; UnmarshalTo %d, %v", gi, gerr, iv.GetValue(), werr)
		}
		gf, _, gerr := Score(m)
		var cv openmatch.DefaultEvaluationCriteria
		if werr := m[EvaluationInput].UnmarshalTo(&cv); (werr == nil) != (gerr == nil) ||
			(werr == nil && math.Float64bits(gf) != math.Float64bits(cv.GetScore())) {
			t.Fatalf("Score = %v, %v; UnmarshalTo %v, %v", gf, gerr, cv.GetScore(), werr)
		}
	})
}

func mustNew(t *testing.T, m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func keyOf(m map[string]*anypb.Any) string {
	for k := range m {
		return k
	}
	return ""
}
