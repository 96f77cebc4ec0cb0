package matchfunction

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/internal/omext"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var now = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)

// tk builds a ticket created age seconds before now; args are "key=value" (string) or "key:1.5" (double).
func tk(id string, age float64, args ...string) *openmatch.Ticket {
	sf := &openmatch.SearchFields{StringArgs: map[string]string{}, DoubleArgs: map[string]float64{}}
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok {
			sf.StringArgs[k] = v
			continue
		}
		k, v, _ := strings.Cut(a, ":")
		var f float64
		if _, err := fmt.Sscan(v, &f); err != nil {
			panic(err)
		}
		sf.DoubleArgs[k] = f
	}
	return &openmatch.Ticket{Id: id, SearchFields: sf, CreateTime: timestamppb.New(now.Add(-time.Duration(age * float64(time.Second))))}
}

// ids renders proposals as "group:id,id" (or "id,id") for compact comparison.
func ids(ps []Proposal) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		var s []string
		for _, t := range p.Tickets {
			s = append(s, t.GetId())
		}
		g := strings.Join(s, ",")
		if p.Group != "" {
			g = p.Group + ":" + g
		}
		out = append(out, g)
	}
	return out
}

func skipped(r Result) []string {
	var out []string
	for _, s := range r.Skipped {
		out = append(out, s.TicketID)
	}
	slices.Sort(out)
	return out
}

func TestRendezvous(t *testing.T) {
	voice := Profile{Name: "voice", Kind: omext.KindRendezvous, GroupArg: "chat_group", MaxMembers: 3}
	tests := []struct {
		name    string
		tickets []*openmatch.Ticket
		want    []string
		skipped []string
	}{
		{name: "no tickets"},
		{
			name:    "one ticket opens its room",
			tickets: []*openmatch.Ticket{tk("a", 1, "chat_group=g1")},
			want:    []string{"g1:a"},
		},
		{
			name: "groups apart, oldest group first, oldest member first",
			tickets: []*openmatch.Ticket{
				tk("b1", 1, "chat_group=b"), tk("a1", 5, "chat_group=a"), tk("b2", 9, "chat_group=b"), tk("a2", 2, "chat_group=a"),
			},
			want: []string{"b:b2,b1", "a:a1,a2"},
		},
		{
			name: "group over max_members split oldest first into chunks of 3",
			tickets: []*openmatch.Ticket{
				tk("t5", 5, "chat_group=g"), tk("t1", 1, "chat_group=g"), tk("t7", 7, "chat_group=g"), tk("t3", 3, "chat_group=g"),
				tk("t2", 2, "chat_group=g"), tk("t6", 6, "chat_group=g"), tk("t4", 4, "chat_group=g"),
			},
			want: []string{"g:t7,t6,t5", "g:t4,t3,t2", "g:t1"},
		},
		{
			name:    "same age ordered by id",
			tickets: []*openmatch.Ticket{tk("z", 1, "chat_group=g"), tk("y", 1, "chat_group=g"), tk("x", 1, "chat_group=g")},
			want:    []string{"g:x,y,z"},
		},
		{
			name:    "tickets without a group wait",
			tickets: []*openmatch.Ticket{tk("a", 1, "chat_group=g"), tk("nogroup", 1, "mode=voice"), tk("empty", 1, "chat_group=")},
			want:    []string{"g:a"},
			skipped: []string{"empty", "nogroup"},
		},
		{
			name:    "duplicate ticket from two pools used once",
			tickets: []*openmatch.Ticket{tk("a", 2, "chat_group=g"), tk("b", 1, "chat_group=g"), tk("a", 2, "chat_group=g")},
			want:    []string{"g:a,b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Propose(&voice, tt.tickets, now)
			if got := ids(r.Proposals); !slices.Equal(got, tt.want) {
				t.Errorf("proposals = %q, want %q", got, tt.want)
			}
			if got := skipped(r); !slices.Equal(got, tt.skipped) {
				t.Errorf("skipped = %q, want %q", got, tt.skipped)
			}
			// Deterministic: a shuffled input gives the same result.
			rev := slices.Clone(tt.tickets)
			slices.Reverse(rev)
			if got := ids(Propose(&voice, rev, now).Proposals); !slices.Equal(got, tt.want) {
				t.Errorf("reversed input: proposals = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRendezvousScoreIsOldestWait(t *testing.T) {
	voice := Profile{Name: "voice", Kind: omext.KindRendezvous, GroupArg: "g", MaxMembers: 2}
	r := Rendezvous(&voice, []*openmatch.Ticket{tk("a", 30, "g=x"), tk("b", 10, "g=x"), tk("c", 4, "g=x")}, now)
	var scores []float64
	for _, p := range r.Proposals {
		scores = append(scores, p.Score)
	}
	if !slices.Equal(scores, []float64{30, 4}) {
		t.Fatalf("scores = %v, want [30 4] (oldest ticket's wait per chunk)", scores)
	}
}

func TestMatches(t *testing.T) {
	duel := Profile{
		Name: "duel", Kind: omext.KindMatch, Players: 2, GroupBy: []string{"mode", "region"},
		SkillArg: "skill", SkillWindow: 100, SkillWindowGrowth: 10, SkillWindowMax: 400,
	}
	squad := Profile{Name: "squad", Kind: omext.KindMatch, Players: 4, GroupBy: []string{"region"}, PartyArg: "party", PartySizeArg: "party_size"}
	noSkill := Profile{Name: "any", Kind: omext.KindMatch, Players: 3}
	tests := []struct {
		name    string
		profile Profile
		tickets []*openmatch.Ticket
		want    []string
		skipped []string
	}{
		{
			name:    "pairs by closest skill, oldest anchors first",
			profile: duel,
			tickets: []*openmatch.Ticket{
				tk("a", 4, "mode=duel", "region=eu", "skill:1000"),
				tk("b", 3, "mode=duel", "region=eu", "skill:1090"),
				tk("c", 2, "mode=duel", "region=eu", "skill:1010"),
				tk("d", 1, "mode=duel", "region=eu", "skill:1080"),
			},
			want: []string{"a,c", "b,d"},
		},
		{
			name:    "different region or mode never mixed",
			profile: duel,
			tickets: []*openmatch.Ticket{
				tk("eu1", 2, "mode=duel", "region=eu", "skill:1000"),
				tk("us1", 2, "mode=duel", "region=us", "skill:1000"),
				tk("eu2", 1, "mode=ffa", "region=eu", "skill:1000"),
			},
			skipped: []string{"eu1", "eu2", "us1"},
		},
		{
			name:    "outside the window at zero wait",
			profile: duel,
			tickets: []*openmatch.Ticket{
				tk("a", 0, "mode=duel", "region=eu", "skill:1000"),
				tk("b", 0, "mode=duel", "region=eu", "skill:1150"),
			},
			skipped: []string{"a", "b"},
		},
		{
			name:    "window widened by the oldest ticket's wait (100 + 10/s × 6 s = 160)",
			profile: duel,
			tickets: []*openmatch.Ticket{
				tk("a", 6, "mode=duel", "region=eu", "skill:1000"),
				tk("b", 0, "mode=duel", "region=eu", "skill:1150"),
			},
			want: []string{"a,b"},
		},
		{
			name:    "window capped at skill_window_max",
			profile: duel,
			tickets: []*openmatch.Ticket{
				tk("a", 3600, "mode=duel", "region=eu", "skill:1000"),
				tk("b", 0, "mode=duel", "region=eu", "skill:1401"),
			},
			skipped: []string{"a", "b"},
		},
		{
			name:    "a stuck old anchor is picked up by a younger one",
			profile: duel,
			tickets: []*openmatch.Ticket{
				tk("old", 1, "mode=duel", "region=eu", "skill:500"),   // window 110: nobody near
				tk("mid", 0.5, "mode=duel", "region=eu", "skill:900"), // window 105: takes new
				tk("new", 0, "mode=duel", "region=eu", "skill:1000"),
			},
			want:    []string{"mid,new"},
			skipped: []string{"old"},
		},
		{
			name:    "missing args or skill wait",
			profile: duel,
			tickets: []*openmatch.Ticket{
				tk("noregion", 1, "mode=duel", "skill:1000"),
				tk("noskill", 1, "mode=duel", "region=eu"),
				tk("ok", 1, "mode=duel", "region=eu", "skill:1000"),
			},
			skipped: []string{"noregion", "noskill", "ok"},
		},
		{
			name:    "parties stay together",
			profile: squad,
			tickets: []*openmatch.Ticket{
				tk("p1a", 5, "region=eu", "party=p1", "party_size:2"),
				tk("s1", 4, "region=eu"),
				tk("p2a", 3, "region=eu", "party=p2", "party_size:3"),
				tk("p1b", 2, "region=eu", "party=p1", "party_size:2"),
				tk("s2", 1, "region=eu"),
				tk("p2b", 1, "region=eu", "party=p2", "party_size:3"),
				tk("p2c", 0, "region=eu", "party=p2", "party_size:3"),
			},
			// p1 (2) + s1 + s2 fill 4; p2 (3) waits for a single.
			want:    []string{"p1a,s1,p1b,s2"},
			skipped: []string{"p2a", "p2b", "p2c"},
		},
		{
			name:    "incomplete party waits for its members",
			profile: squad,
			tickets: []*openmatch.Ticket{
				tk("p1a", 5, "region=eu", "party=p1", "party_size:3"),
				tk("p1b", 4, "region=eu", "party=p1", "party_size:3"),
				tk("s1", 3, "region=eu"), tk("s2", 2, "region=eu"), tk("s3", 1, "region=eu"), tk("s4", 0, "region=eu"),
			},
			want:    []string{"s1,s2,s3,s4"},
			skipped: []string{"p1a", "p1b"},
		},
		{
			name:    "party larger than a match never matches",
			profile: squad,
			tickets: []*openmatch.Ticket{
				tk("a", 5, "region=eu", "party=big"), tk("b", 4, "region=eu", "party=big"), tk("c", 3, "region=eu", "party=big"),
				tk("d", 2, "region=eu", "party=big"), tk("e", 1, "region=eu", "party=big"),
			},
			skipped: []string{"a", "b", "c", "d", "e"},
		},
		{
			name:    "same party id in another region is another party",
			profile: squad,
			tickets: []*openmatch.Ticket{
				tk("a", 5, "region=eu", "party=p"), tk("b", 4, "region=us", "party=p"),
				tk("c", 3, "region=eu"), tk("d", 2, "region=eu"), tk("e", 1, "region=eu"),
			},
			want:    []string{"a,c,d,e"},
			skipped: []string{"b"},
		},
		{
			name:    "no skill, no group_by: groups of three by age, remainder waits",
			profile: noSkill,
			tickets: []*openmatch.Ticket{tk("a", 7), tk("b", 6), tk("c", 5), tk("d", 4), tk("e", 3), tk("f", 2), tk("g", 1)},
			want:    []string{"a,b,c", "d,e,f"},
			skipped: []string{"g"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Propose(&tt.profile, tt.tickets, now)
			if got := ids(r.Proposals); !slices.Equal(got, tt.want) {
				t.Errorf("proposals = %q, want %q", got, tt.want)
			}
			if got := skipped(r); !slices.Equal(got, tt.skipped) {
				t.Errorf("skipped = %q, want %q", got, tt.skipped)
			}
			rev := slices.Clone(tt.tickets)
			slices.Reverse(rev)
			if got := ids(Propose(&tt.profile, rev, now).Proposals); !slices.Equal(got, tt.want) {
				t.Errorf("reversed input: proposals = %q, want %q", got, tt.want)
			}
			for _, p := range r.Proposals {
				if len(p.Tickets) != tt.profile.Players {
					t.Errorf("proposal %v has %d tickets, want %d", ids([]Proposal{p}), len(p.Tickets), tt.profile.Players)
				}
			}
		})
	}
}

func TestMatchScoreFavoursOlderTickets(t *testing.T) {
	p := Profile{Name: "any", Kind: omext.KindMatch, Players: 2}
	r := Matches(&p, []*openmatch.Ticket{tk("a", 40), tk("b", 1), tk("c", 20), tk("d", 0)}, now)
	if got := ids(r.Proposals); !slices.Equal(got, []string{"a,c", "b,d"}) {
		t.Fatalf("proposals = %q", got)
	}
	if r.Proposals[0].Score != 40 || r.Proposals[1].Score != 1 {
		t.Fatalf("scores = %v, %v; want 40, 1", r.Proposals[0].Score, r.Proposals[1].Score)
	}
	// A ticket from the future or without create_time scores 0, never negative.
	r = Matches(&p, []*openmatch.Ticket{tk("f", -10), {Id: "n"}}, now)
	if len(r.Proposals) != 1 || r.Proposals[0].Score != 0 {
		t.Fatalf("got %+v, want one proposal with score 0", r.Proposals)
	}
}

func TestToMatchExtensions(t *testing.T) {
	tests := []struct {
		profile Profile
		prop    Proposal
		group   string
		members int64
	}{
		{Profile{Name: "voice", Kind: omext.KindRendezvous, MaxMembers: 64}, Proposal{Group: "g1", Score: 12.5}, "g1", 64},
		{Profile{Name: "duel", Kind: omext.KindMatch, Players: 2}, Proposal{Score: 3}, "", 2},
		{Profile{Name: "squad", Kind: omext.KindMatch, Players: 4, MaxMembers: 8}, Proposal{Score: 0}, "", 8},
	}
	for _, tt := range tests {
		t.Run(tt.profile.Name, func(t *testing.T) {
			m := tt.prop.ToMatch(&tt.profile, "id-1", FunctionName)
			if m.GetMatchId() != "id-1" || m.GetMatchProfile() != tt.profile.Name || m.GetMatchFunction() != FunctionName {
				t.Errorf("match header = %q %q %q", m.GetMatchId(), m.GetMatchProfile(), m.GetMatchFunction())
			}
			kind, ok, err := omext.String(m.GetExtensions(), omext.SessionKind)
			if err != nil || !ok || kind != tt.profile.Kind {
				t.Errorf("kind = %q %v %v", kind, ok, err)
			}
			n, ok, err := omext.Int(m.GetExtensions(), omext.MaxMembers)
			if err != nil || !ok || n != tt.members {
				t.Errorf("max members = %d %v %v, want %d", n, ok, err, tt.members)
			}
			score, ok, err := omext.Score(m.GetExtensions())
			if err != nil || !ok || score != tt.prop.Score {
				t.Errorf("score = %v %v %v, want %v", score, ok, err, tt.prop.Score)
			}
			g, ok, err := omext.String(m.GetExtensions(), omext.Group)
			if err != nil || ok != (tt.group != "") || g != tt.group {
				t.Errorf("group = %q present=%v err=%v, want %q", g, ok, err, tt.group)
			}
		})
	}
}

func BenchmarkMatches(b *testing.B) {
	p := DefaultProfiles()[1]
	var ts []*openmatch.Ticket
	for i := range 2000 {
		ts = append(ts, tk(fmt.Sprint("t", i), float64(i%60), "mode=duel", fmt.Sprint("region=r", i%4), fmt.Sprint("skill:", (i*7919)%3000)))
	}
	b.ReportAllocs()
	for b.Loop() {
		Propose(&p, ts, now)
	}
}

// BenchmarkMatchesOneBucket is BenchmarkMatches with every ticket in one mode and region (a launch
// day's queue): a cycle must grow with the tickets, not with their square.
func BenchmarkMatchesOneBucket(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint("tickets=", n), func(b *testing.B) {
			p := DefaultProfiles()[1]
			var ts []*openmatch.Ticket
			for i := range n {
				ts = append(ts, tk(fmt.Sprint("t", i), float64(i%60), "mode=duel", "region=r0", fmt.Sprint("skill:", (i*7919)%3000)))
			}
			b.ReportAllocs()
			for b.Loop() {
				Propose(&p, ts, now)
			}
		})
	}
}

func BenchmarkRendezvous(b *testing.B) {
	p := DefaultProfiles()[0]
	var ts []*openmatch.Ticket
	for i := range 2000 {
		ts = append(ts, tk(fmt.Sprint("t", i), float64(i%60), "mode=voice", fmt.Sprint("chat_group=g", i%100)))
	}
	b.ReportAllocs()
	for b.Loop() {
		Propose(&p, ts, now)
	}
}

// BenchmarkSortBaseline only sorts the same 2000 tickets oldest first: the least any grouping has to
// do, so Matches and Rendezvous are reported as a ratio to it.
func BenchmarkSortBaseline(b *testing.B) {
	var ts []*openmatch.Ticket
	for i := range 2000 {
		ts = append(ts, tk(fmt.Sprint("t", i), float64(i%60), "mode=duel"))
	}
	b.ReportAllocs()
	for b.Loop() {
		s := slices.Clone(ts)
		slices.SortFunc(s, byAge)
	}
}

// TestByAgeOrdersLikeCreateTime: byAge compares create times without building time.Time values;
// it must order every kind of create_time exactly as comparing createTime would.
func TestByAgeOrdersLikeCreateTime(t *testing.T) {
	base := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	cts := []*timestamppb.Timestamp{
		nil,
		{Seconds: -62135596801},            // before year 1: invalid, counts as the zero time
		{Seconds: 1, Nanos: 2_000_000_000}, // nanos out of range: invalid
		timestamppb.New(time.Time{}),
		timestamppb.New(base),
		timestamppb.New(base.Add(time.Nanosecond)),
		timestamppb.New(base.Add(-time.Second)),
		timestamppb.New(base.Add(-time.Second + time.Nanosecond)),
	}
	for i, a := range cts {
		for j, b := range cts {
			ta := &openmatch.Ticket{Id: fmt.Sprint("a", i), CreateTime: a}
			tb := &openmatch.Ticket{Id: fmt.Sprint("b", j), CreateTime: b}
			want := createTime(ta).Compare(createTime(tb))
			if want == 0 {
				want = strings.Compare(ta.Id, tb.Id)
			}
			if got := byAge(ta, tb); got != want {
				t.Errorf("byAge(%v, %v) = %d, want %d", a, b, got, want)
			}
		}
	}
}
