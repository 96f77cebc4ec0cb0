package omext

import (
	"testing"
	"time"
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
