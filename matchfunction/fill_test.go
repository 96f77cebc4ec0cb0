package matchfunction

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kumi-dev/kumi/internal/omext"
)

// referenceFill is the plain statement of fill's rule (sort every candidate by distance, then age),
// kept to check the heap-based fill against it.
func referenceFill(p *Profile, units []*unit, window func(*unit) float64) [][]int {
	used := make([]bool, len(units))
	var out [][]int
	for a, anchor := range units {
		if used[a] {
			continue
		}
		type c struct {
			i int
			d float64
		}
		var cs []c
		for i, u := range units {
			if i == a || used[i] {
				continue
			}
			d := math.Abs(u.skill - anchor.skill)
			if p.SkillArg != "" && d > window(anchor) {
				continue
			}
			if p.SkillArg == "" {
				d = 0
			}
			cs = append(cs, c{i, d})
		}
		slices.SortStableFunc(cs, func(x, y c) int { return cmp.Compare(x.d, y.d) })
		slots := p.Players - len(anchor.tickets)
		picked := []int{a}
		for _, x := range cs {
			if n := len(units[x.i].tickets); slots > 0 && n <= slots {
				picked = append(picked, x.i)
				slots -= n
			}
		}
		if slots == 0 {
			for _, i := range picked {
				used[i] = true
			}
			out = append(out, picked)
		}
	}
	return out
}

func TestFillMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 3000 {
		p := Profile{Name: "m", Kind: omext.KindMatch, Players: 2 + rng.IntN(4), SkillWindow: float64(rng.IntN(300)), SkillWindowGrowth: 5}
		if round%3 != 0 {
			p.SkillArg = "skill"
		}
		var units []*unit
		n := 1 + rng.IntN(60)
		for i := range n {
			size := 1
			if rng.IntN(4) == 0 {
				size = 1 + rng.IntN(3)
			}
			u := &unit{skill: float64(rng.IntN(20) * 50)}
			switch round % 4 {
			case 1: // arbitrary floats, where distances to different skills can round equal
				u.skill = (rng.Float64() - 0.3) * 1e3
			case 2: // few distinct skills: long runs of equal distance
				u.skill = float64(rng.IntN(3)) * 0.1
			}
			for j := range size {
				u.tickets = append(u.tickets, tk(fmt.Sprint("t", i, "-", j), float64(n-i)))
			}
			units = append(units, u)
		}
		props, _ := p.fill(units, now)
		want := referenceFill(&p, units, func(u *unit) float64 { return p.window(waitSeconds(u.oldest(), now)) })
		if len(props) != len(want) {
			t.Fatalf("round %d: %d proposals, reference %d", round, len(props), len(want))
		}
		for k, idx := range want {
			var ids []string
			for _, i := range idx {
				for _, tt := range units[i].tickets {
					ids = append(ids, tt.GetId())
				}
			}
			got := make([]string, 0, len(props[k].Tickets))
			for _, tt := range props[k].Tickets {
				got = append(got, tt.GetId())
			}
			slices.Sort(ids)
			slices.Sort(got)
			if !slices.Equal(got, ids) {
				t.Fatalf("round %d proposal %d: %v, reference %v", round, k, got, ids)
			}
		}
	}
}
