package builds

import (
	"fmt"
	"slices"
)

// PickVersion chooses the build version a new match runs on from traffic weights (percent or any
// non-negative shares), with u uniform in [0, 1). Versions are walked in sorted order so the same u
// always picks the same version: raising a canary from 1 to 100 moves matches in one direction
// only, and rolling back (the old version's weight back to 100, the new one's to 0) takes effect on
// the next match. It returns "" when no version has weight.
func PickVersion(weights map[string]int, u float64) string {
	names := make([]string, 0, len(weights))
	total := 0
	for v, w := range weights {
		if w > 0 {
			names = append(names, v)
			total += w
		}
	}
	if total == 0 {
		return ""
	}
	slices.Sort(names)
	x := int(u * float64(total))
	for _, v := range names {
		if x < weights[v] {
			return v
		}
		x -= weights[v]
	}
	return names[len(names)-1]
}

// CheckWeights refuses negative weights and a split where no version gets traffic.
func CheckWeights(weights map[string]int) error {
	total := 0
	for v, w := range weights {
		if w < 0 {
			return fmt.Errorf("builds: version %q weight %d: want >= 0", v, w)
		}
		total += w
	}
	if total == 0 {
		return fmt.Errorf("builds: weights %v: at least one version needs a positive weight", weights)
	}
	return nil
}
