// Package stats holds the one quantile rule kumi's reports share, so a p99 printed by kumi local,
// kumi bench and the example client means the same thing.
package stats

import (
	"slices"
	"time"
)

// Sorted returns a sorted copy of ds.
func Sorted(ds []time.Duration) []time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of sorted: the element at rank ⌊q·(n−1)⌋, so 0 is the
// minimum and 1 the maximum. It is 0 for an empty slice.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	return sorted[int(q*float64(len(sorted)-1))]
}
