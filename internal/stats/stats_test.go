package stats

import (
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = ms(i + 1)
	}
	tests := []struct {
		name string
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", []time.Duration{ms(7)}, 0.99, ms(7)},
		{"median of three", []time.Duration{ms(1), ms(2), ms(3)}, 0.5, ms(2)},
		{"p99 of 1..100", hundred, 0.99, ms(99)},
		{"max", hundred, 1, ms(100)},
		{"min", hundred, 0, ms(1)},
		{"q clamped", hundred, 2, ms(100)},
	}
	for _, tc := range tests {
		if got := Quantile(tc.in, tc.q); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSortedCopies(t *testing.T) {
	in := []time.Duration{3, 1, 2}
	s := Sorted(in)
	if s[0] != 1 || s[2] != 3 || in[0] != 3 {
		t.Fatalf("sorted %v, input %v", s, in)
	}
}
