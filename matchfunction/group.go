package matchfunction

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/internal/omext"
)

// Proposal is one group of tickets the match function proposes as a match, before it gets an id.
type Proposal struct {
	// Tickets in a deterministic order (oldest first, then by id).
	Tickets []*openmatch.Ticket
	// Group is the rendezvous group id; empty for match profiles.
	Group string
	// Score is how long (seconds) the proposal's oldest ticket has waited: the default evaluator keeps
	// the highest score on a collision, so older tickets win.
	Score float64
}

// Skip says why a ticket was not put in any proposal this round.
type Skip struct {
	TicketID string
	Reason   string
}

// Result is what one profile's grouping produced.
type Result struct {
	Proposals []Proposal
	Skipped   []Skip
}

// Propose groups tickets by p's kind. It is pure: the same profile, tickets and now give the same
// result. Tickets appearing more than once (a ticket can match several pools) are used once.
func Propose(p *Profile, tickets []*openmatch.Ticket, now time.Time) Result {
	tickets = dedupe(tickets)
	if p.Kind == omext.KindRendezvous {
		return Rendezvous(p, tickets, now)
	}
	return Matches(p, tickets, now)
}

// Rendezvous groups tickets by the chat-group id in string_args[p.GroupArg]. Every ticket of a group
// lands in a proposal carrying that group id; a group larger than p.MaxMembers is split, oldest
// tickets first, into consecutive proposals of at most MaxMembers. A group of one is a proposal too:
// a voice room starts with its first member and late arrivals join it through the director's
// group→session mapping.
func Rendezvous(p *Profile, tickets []*openmatch.Ticket, now time.Time) Result {
	var res Result
	groups := make(map[string][]*openmatch.Ticket)
	for _, t := range tickets {
		g := t.GetSearchFields().GetStringArgs()[p.GroupArg]
		if g == "" {
			res.Skipped = append(res.Skipped, Skip{t.GetId(), fmt.Sprintf("no string arg %q (chat group)", p.GroupArg)})
			continue
		}
		groups[g] = append(groups[g], t)
	}
	type group struct {
		id      string
		tickets []*openmatch.Ticket
	}
	ordered := make([]group, 0, len(groups))
	for id, ts := range groups {
		slices.SortFunc(ts, byAge)
		ordered = append(ordered, group{id, ts})
	}
	// Oldest group first, so the output order is deterministic and mirrors who waited longest.
	slices.SortFunc(ordered, func(a, b group) int {
		return cmp.Or(byAge(a.tickets[0], b.tickets[0]), strings.Compare(a.id, b.id))
	})
	limit := max(p.MaxMembers, 1)
	for _, g := range ordered {
		for chunk := range slices.Chunk(g.tickets, limit) {
			res.Proposals = append(res.Proposals, Proposal{
				Tickets: slices.Clip(chunk),
				Group:   g.id,
				Score:   waitSeconds(chunk[0], now),
			})
		}
	}
	return res
}

// unit is what a match is built from: one ticket, or the tickets of one party.
type unit struct {
	tickets []*openmatch.Ticket // oldest first
	party   string              // party id; "" for a solo ticket
	skill   float64             // mean skill of the members
	// The oldest member's createKey and id, set once its members are sorted: sorting a bucket's
	// units compares these instead of chasing three pointers per side per comparison.
	ageSecs  int64
	ageNanos int32
	ageID    string
}

// byUnitAge orders units like byAge orders their oldest members.
func byUnitAge(a, b *unit) int {
	return cmp.Or(cmp.Compare(a.ageSecs, b.ageSecs), cmp.Compare(a.ageNanos, b.ageNanos), strings.Compare(a.ageID, b.ageID))
}

func (u *unit) oldest() *openmatch.Ticket { return u.tickets[0] }

// Matches builds matches of exactly p.Players players. Tickets are bucketed by the values of
// p.GroupBy (mode, region, …); parties (string_args[p.PartyArg]) stay together and count with their
// members' mean skill; a party larger than a match, or (with PartySizeArg) still missing members,
// waits. Within a bucket the
// oldest waiting unit anchors a match and takes the units closest to its skill, as long as they are
// within the window: SkillWindow + SkillWindowGrowth × (seconds the anchor waited), capped at
// SkillWindowMax. An anchor that cannot fill a match stays available to younger anchors, which may
// pick it up. Filling is greedy (closest first); a combination of parties that only fits in another
// order is not searched for.
func Matches(p *Profile, tickets []*openmatch.Ticket, now time.Time) Result {
	var res Result
	type bucket struct {
		key   string
		units []*unit
	}
	buckets := make(map[string]*bucket)
	parties := make(map[string]*unit) // bucket key + party id → unit
	var bucketOrder []*bucket
	for _, t := range tickets {
		sf := t.GetSearchFields()
		key, missing := bucketKey(p.GroupBy, sf.GetStringArgs())
		if missing != "" {
			res.Skipped = append(res.Skipped, Skip{t.GetId(), fmt.Sprintf("no string arg %q", missing)})
			continue
		}
		if p.SkillArg != "" {
			if s, ok := sf.GetDoubleArgs()[p.SkillArg]; !ok || math.IsNaN(s) || math.IsInf(s, 0) {
				res.Skipped = append(res.Skipped, Skip{t.GetId(), fmt.Sprintf("no finite double arg %q (skill)", p.SkillArg)})
				continue
			}
		}
		b := buckets[key]
		if b == nil {
			b = &bucket{key: key}
			buckets[key] = b
			bucketOrder = append(bucketOrder, b)
		}
		party := ""
		if p.PartyArg != "" {
			party = sf.GetStringArgs()[p.PartyArg]
		}
		if party == "" {
			b.units = append(b.units, &unit{tickets: []*openmatch.Ticket{t}})
			continue
		}
		pk := key + "\x00" + party
		if u := parties[pk]; u != nil {
			u.tickets = append(u.tickets, t)
			continue
		}
		u := &unit{tickets: []*openmatch.Ticket{t}, party: party}
		parties[pk] = u
		b.units = append(b.units, u)
	}
	slices.SortFunc(bucketOrder, func(a, b *bucket) int { return strings.Compare(a.key, b.key) })

	for _, b := range bucketOrder {
		units := b.units[:0]
		for _, u := range b.units {
			slices.SortFunc(u.tickets, byAge)
			u.ageSecs, u.ageNanos = createKey(u.oldest())
			u.ageID = u.oldest().GetId()
			if reason := p.partyProblem(u); reason != "" {
				for _, t := range u.tickets {
					res.Skipped = append(res.Skipped, Skip{t.GetId(), reason})
				}
				continue
			}
			if p.SkillArg != "" {
				var sum float64
				for _, t := range u.tickets {
					sum += t.GetSearchFields().GetDoubleArgs()[p.SkillArg]
				}
				u.skill = sum / float64(len(u.tickets))
			}
			units = append(units, u)
		}
		slices.SortFunc(units, byUnitAge)
		props, waiting := p.fill(units, now)
		res.Proposals = append(res.Proposals, props...)
		for _, u := range waiting {
			for _, t := range u.tickets {
				res.Skipped = append(res.Skipped, Skip{t.GetId(), "no compatible players yet"})
			}
		}
	}
	return res
}

// partyProblem says why a party cannot be matched now, or "".
func (p *Profile) partyProblem(u *unit) string {
	if len(u.tickets) > p.Players {
		return fmt.Sprintf("party of %d is larger than a match (%d players)", len(u.tickets), p.Players)
	}
	if p.PartySizeArg == "" || u.party == "" {
		return ""
	}
	want := 0.0
	for _, t := range u.tickets {
		want = max(want, t.GetSearchFields().GetDoubleArgs()[p.PartySizeArg])
	}
	if int(want) > len(u.tickets) {
		return fmt.Sprintf("party waiting for members (%d of %d present)", len(u.tickets), int(want))
	}
	return ""
}

// fill forms matches from one bucket's units, sorted oldest first, and returns the units left waiting.
// Candidates for an anchor come closest skill first (on equal distance the older unit, i.e. the
// lower index, first), so fill walks outwards from the anchor in skill order over the units still
// unmatched (a linked list it unlinks matched units from): an anchor costs the candidates it looks
// at, not the bucket. Scanning the whole bucket for every anchor made a cycle quadratic: 10k
// waiting players in one mode and region took most of a second (BENCHMARKS.md).
func (p *Profile) fill(units []*unit, now time.Time) (out []Proposal, waiting []*unit) {
	n := len(units)
	used := make([]bool, n)
	// order lists the units by skill (stable: by index within a skill; without a skill argument
	// every distance is 0 and this is index order); pos is each unit's place in it.
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	if p.SkillArg != "" {
		slices.SortStableFunc(order, func(x, y int) int { return cmp.Compare(units[x].skill, units[y].skill) })
	}
	pos := make([]int, n)
	for k, i := range order {
		pos[i] = k
	}
	// prev and next link the unmatched units' places in order (-1 and n end the list).
	prev, next := make([]int, n), make([]int, n)
	for k := range n {
		prev[k], next[k] = k-1, k+1
	}
	first := 0
	unlink := func(k int) {
		if prev[k] >= 0 {
			next[prev[k]] = next[k]
		} else {
			first = next[k]
		}
		if next[k] < n {
			prev[next[k]] = prev[k]
		}
	}
	var picked, lbuf, rbuf []int
	for a, anchor := range units {
		if used[a] {
			continue
		}
		window := p.window(waitSeconds(anchor.oldest(), now))
		slots := p.Players - len(anchor.tickets)
		picked = append(picked[:0], a)
		take := func(i int) {
			if n := len(units[i].tickets); n <= slots {
				picked = append(picked, i)
				slots -= n
			}
		}
		if p.SkillArg == "" {
			// The oldest unmatched units first, which is index order (earlier units that could not
			// anchor a match themselves are still candidates).
			for k := first; k < n && slots > 0; k = next[k] {
				if order[k] != a {
					take(order[k])
				}
			}
		} else {
			// Two fronts walk away from the anchor, each handing out the units at its next
			// distance as a run (a run holds equal distances, ordered by index); the nearer front
			// goes first, the older unit on a tie, until the match is full or both fronts have
			// passed the window.
			dist := func(k int) float64 { return math.Abs(units[order[k]].skill - anchor.skill) }
			run := func(buf []int, k int, step []int) ([]int, int, float64) {
				buf = buf[:0]
				d := dist(k)
				for ; k >= 0 && k < n && dist(k) == d; k = step[k] {
					buf = append(buf, order[k])
				}
				slices.Sort(buf)
				return buf, k, d
			}
			lk, rk := prev[pos[a]], next[pos[a]]
			var li, ri int
			var ld, rd float64
			lbuf, rbuf = lbuf[:0], rbuf[:0]
			for slots > 0 {
				if li == len(lbuf) && lk >= 0 {
					lbuf, lk, ld = run(lbuf, lk, prev)
					li = 0
				}
				if ri == len(rbuf) && rk < n {
					rbuf, rk, rd = run(rbuf, rk, next)
					ri = 0
				}
				lok, rok := li < len(lbuf) && ld <= window, ri < len(rbuf) && rd <= window
				switch {
				case lok && (!rok || ld < rd || ld == rd && lbuf[li] < rbuf[ri]):
					take(lbuf[li])
					li++
				case rok:
					take(rbuf[ri])
					ri++
				default:
					slots = -1 // no candidate left within the window
				}
			}
		}
		if slots != 0 {
			continue
		}
		var ts []*openmatch.Ticket
		for _, i := range picked {
			used[i] = true
			unlink(pos[i])
			ts = append(ts, units[i].tickets...)
		}
		slices.SortFunc(ts, byAge)
		out = append(out, Proposal{Tickets: ts, Score: waitSeconds(ts[0], now)})
	}
	for i, u := range units {
		if !used[i] {
			waiting = append(waiting, u)
		}
	}
	return out, waiting
}

// window is the allowed skill distance from the anchor after it waited wait seconds.
func (p *Profile) window(wait float64) float64 {
	w := p.SkillWindow + p.SkillWindowGrowth*wait
	if p.SkillWindowMax > 0 {
		w = min(w, p.SkillWindowMax)
	}
	return w
}

// bucketKey joins the values of keys; missing names the first absent key.
func bucketKey(keys []string, args map[string]string) (key, missing string) {
	var sb strings.Builder
	for _, k := range keys {
		v, ok := args[k]
		if !ok || v == "" {
			return "", k
		}
		sb.WriteString(v)
		sb.WriteByte(0)
	}
	return sb.String(), ""
}

// byAge orders tickets oldest first, then by id, so every grouping is deterministic.
func byAge(a, b *openmatch.Ticket) int {
	as, an := createKey(a)
	bs, bn := createKey(b)
	return cmp.Or(cmp.Compare(as, bs), cmp.Compare(an, bn), strings.Compare(a.GetId(), b.GetId()))
}

// zeroUnix is time.Time{} in Unix seconds, the earliest time a valid Timestamp can hold.
const zeroUnix = -62135596800

// createKey is createTime as (seconds, nanos), ordered the same way but without building a
// time.Time per comparison (sorting 1k tickets compares ~10k times per cycle).
func createKey(t *openmatch.Ticket) (int64, int32) {
	if ct := t.GetCreateTime(); ct != nil && ct.IsValid() {
		return ct.GetSeconds(), ct.GetNanos()
	}
	return zeroUnix, 0
}

// createTime is the ticket's create_time; a ticket without one counts as created at the zero time,
// i.e. it sorts first but scores like a fresh ticket (waitSeconds clamps to 0).
func createTime(t *openmatch.Ticket) time.Time {
	if ct := t.GetCreateTime(); ct != nil && ct.IsValid() {
		return ct.AsTime()
	}
	return time.Time{}
}

// waitSeconds is how long t has waited at now, ≥ 0.
func waitSeconds(t *openmatch.Ticket, now time.Time) float64 {
	ct := createTime(t)
	if ct.IsZero() || ct.After(now) {
		return 0
	}
	return now.Sub(ct).Seconds()
}

func dedupe(tickets []*openmatch.Ticket) []*openmatch.Ticket {
	seen := make(map[string]bool, len(tickets))
	out := make([]*openmatch.Ticket, 0, len(tickets))
	for _, t := range tickets {
		if t == nil || t.GetId() == "" || seen[t.GetId()] {
			continue
		}
		seen[t.GetId()] = true
		out = append(out, t)
	}
	return out
}

// ToMatch turns a proposal into the Open Match Match the function streams back, with the kumi
// extensions the director reads (omext.SessionKind, omext.MaxMembers, omext.Group) and the default
// evaluator's score.
func (pr *Proposal) ToMatch(p *Profile, matchID, function string) *openmatch.Match {
	ext := omext.PutString(nil, omext.SessionKind, p.Kind)
	omext.PutInt(ext, omext.MaxMembers, int64(p.members()))
	omext.PutScore(ext, pr.Score)
	if pr.Group != "" {
		omext.PutString(ext, omext.Group, pr.Group)
	}
	return &openmatch.Match{
		MatchId:       matchID,
		MatchProfile:  p.Name,
		MatchFunction: function,
		Tickets:       pr.Tickets,
		Extensions:    ext,
	}
}
