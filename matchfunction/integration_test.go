package matchfunction_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/internal/omext"
	"github.com/kumi-dev/kumi/matchfunction"
	"github.com/kumi-dev/kumi/openmatch"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// env is the real embedded Open Match core plus the match function served over gRPC on 127.0.0.1.
type env struct {
	core     *openmatch.Server
	mmf      *matchfunction.Server
	fe       pb.FrontendServiceClient
	be       pb.BackendServiceClient
	mmfReg   *prometheus.Registry
	profiles map[string]matchfunction.Profile
}

func testProfiles() []matchfunction.Profile {
	return []matchfunction.Profile{
		{Name: "voice", Kind: omext.KindRendezvous, GroupArg: "chat_group", MaxMembers: 3,
			Pools: []matchfunction.PoolSpec{{Name: "voice", StringEquals: map[string]string{"mode": "voice"}}}},
		{Name: "duel", Kind: omext.KindMatch, Players: 2, GroupBy: []string{"mode", "region"},
			SkillArg: "skill", SkillWindow: 100,
			Pools: []matchfunction.PoolSpec{{Name: "duel", StringEquals: map[string]string{"mode": "duel"}}}},
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startEnv(t *testing.T, inproc map[string]pb.MatchFunctionServer) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	log := quietLog()

	ocfg := openmatch.Default()
	ocfg.FrontendAddr, ocfg.BackendAddr, ocfg.QueryAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	ocfg.MatchFunctions = inproc
	core, err := openmatch.Start(ctx, log, ocfg, prometheus.NewRegistry())
	if err != nil {
		cancel()
		t.Fatal(err)
	}

	mcfg := matchfunction.Default()
	mcfg.ListenAddr = "127.0.0.1:0"
	mcfg.QueryAddr = core.QueryAddr()
	mcfg.Profiles = testProfiles()
	reg := prometheus.NewRegistry()
	mmf, err := matchfunction.Start(ctx, log, mcfg, reg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	e := &env{core: core, mmf: mmf, mmfReg: reg, profiles: map[string]matchfunction.Profile{}}
	for _, p := range testProfiles() {
		e.profiles[p.Name] = p
	}
	e.fe = pb.NewFrontendServiceClient(dial(t, core.FrontendAddr()))
	e.be = pb.NewBackendServiceClient(dial(t, core.BackendAddr()))
	t.Cleanup(func() {
		cancel()
		if err := mmf.Wait(); err != nil {
			t.Errorf("mmf: %v", err)
		}
		if err := core.Wait(); err != nil {
			t.Errorf("core: %v", err)
		}
	})
	return e
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (e *env) ticket(t *testing.T, strs map[string]string, dbls map[string]float64) string {
	t.Helper()
	tk, err := e.fe.CreateTicket(t.Context(), &pb.CreateTicketRequest{Ticket: &pb.Ticket{
		SearchFields: &pb.SearchFields{StringArgs: strs, DoubleArgs: dbls},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return tk.GetId()
}

// fetch runs FetchMatches for the named test profile against fc and returns the matches.
func (e *env) fetch(t *testing.T, fc *pb.FunctionConfig, profile *pb.MatchProfile) ([]*pb.Match, error) {
	t.Helper()
	stream, err := e.be.FetchMatches(t.Context(), &pb.FetchMatchesRequest{Config: fc, Profile: profile})
	if err != nil {
		return nil, err
	}
	var out []*pb.Match
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, r.GetMatch())
	}
}

func (e *env) mmfConfig(t *testing.T) *pb.FunctionConfig {
	host, port, err := net.SplitHostPort(e.mmf.Addr())
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return &pb.FunctionConfig{Host: host, Port: int32(p), Type: pb.FunctionConfig_GRPC}
}

func (e *env) profile(name string) *pb.MatchProfile {
	p := e.profiles[name]
	return p.MatchProfile()
}

// groups maps the group id of each match to its sorted ticket-id lists.
func groups(t *testing.T, ms []*pb.Match) map[string][][]string {
	t.Helper()
	out := map[string][][]string{}
	for _, m := range ms {
		g, _, err := omext.String(m.GetExtensions(), omext.Group)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, tk := range m.GetTickets() {
			ids = append(ids, tk.GetId())
		}
		slices.Sort(ids)
		out[g] = append(out[g], ids)
	}
	return out
}

func TestRendezvousThroughRealCore(t *testing.T) {
	e := startEnv(t, nil)
	fc := e.mmfConfig(t)

	a1 := e.ticket(t, map[string]string{"mode": "voice", "chat_group": "guild-a"}, nil)
	a2 := e.ticket(t, map[string]string{"mode": "voice", "chat_group": "guild-a"}, nil)
	b1 := e.ticket(t, map[string]string{"mode": "voice", "chat_group": "guild-b"}, nil)
	e.ticket(t, map[string]string{"mode": "duel", "chat_group": "guild-a"}, nil) // other pool: never in voice matches

	ms, err := e.fetch(t, fc, e.profile("voice"))
	if err != nil {
		t.Fatal(err)
	}
	got := groups(t, ms)
	want := map[string][][]string{"guild-a": {sorted(a1, a2)}, "guild-b": {{b1}}}
	if !equalGroups(got, want) {
		t.Fatalf("groups = %v, want %v", got, want)
	}
	ids := map[string]bool{}
	for _, m := range ms {
		if ids[m.GetMatchId()] {
			t.Fatalf("match id %q repeated", m.GetMatchId())
		}
		ids[m.GetMatchId()] = true
		kind, _, _ := omext.String(m.GetExtensions(), omext.SessionKind)
		maxm, _, _ := omext.Int(m.GetExtensions(), omext.MaxMembers)
		if _, ok, _ := omext.Score(m.GetExtensions()); !ok || kind != omext.KindRendezvous || maxm != 3 || m.GetMatchProfile() != "voice" {
			t.Fatalf("match %s: kind %q max %d profile %q score present %v", m.GetMatchId(), kind, maxm, m.GetMatchProfile(), ok)
		}
	}

	// Late arrivals of guild-a (the first two are pending now) come as another match with the same
	// group, which the director places into guild-a's live session. Four of them exceed the member
	// limit of 3 and are split.
	var late []string
	for range 4 {
		late = append(late, e.ticket(t, map[string]string{"mode": "voice", "chat_group": "guild-a"}, nil))
	}
	ms, err = e.fetch(t, fc, e.profile("voice"))
	if err != nil {
		t.Fatal(err)
	}
	got = groups(t, ms)
	if len(got) != 1 || len(got["guild-a"]) != 2 || len(got["guild-a"][0])+len(got["guild-a"][1]) != 4 {
		t.Fatalf("late arrivals: groups = %v, want guild-a split 3+1 over %v", got, late)
	}
	seen := slices.Concat(got["guild-a"]...)
	slices.Sort(seen)
	if !slices.Equal(seen, sorted(late...)) {
		t.Fatalf("late matches hold %v, want %v", seen, sorted(late...))
	}
	if v := counterSum(t, e.mmfReg, "kumi_matchfunction_proposals_total"); v != 4 {
		t.Fatalf("proposals metric = %v, want 4", v)
	}
}

func TestMatchProfileThroughRealCore(t *testing.T) {
	e := startEnv(t, nil)
	fc := e.mmfConfig(t)
	eu1 := e.ticket(t, map[string]string{"mode": "duel", "region": "eu"}, map[string]float64{"skill": 1000})
	us1 := e.ticket(t, map[string]string{"mode": "duel", "region": "us"}, map[string]float64{"skill": 1000})
	eu2 := e.ticket(t, map[string]string{"mode": "duel", "region": "eu"}, map[string]float64{"skill": 1050})
	far := e.ticket(t, map[string]string{"mode": "duel", "region": "us"}, map[string]float64{"skill": 3000})

	ms, err := e.fetch(t, fc, e.profile("duel"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 {
		t.Fatalf("got %d matches, want 1 (eu pair; us pair too far apart in skill)", len(ms))
	}
	if got := groups(t, ms)[""]; !equalGroups(map[string][][]string{"": got}, map[string][][]string{"": {sorted(eu1, eu2)}}) {
		t.Fatalf("match = %v, want [%s %s]", got, eu1, eu2)
	}
	if _, ok, _ := omext.String(ms[0].GetExtensions(), omext.Group); ok {
		t.Fatal("match profile proposal carries a group")
	}
	_ = us1 // waits: its only same-region peer is 2000 skill away

	// The profile's parameters are found by name; an unknown name is refused with a clear error.
	_, err = e.fetch(t, fc, &pb.MatchProfile{Name: "nope", Pools: []*pb.Pool{{Name: "all"}}})
	if err == nil || !strings.Contains(err.Error(), `match profile "nope" is not configured`) {
		t.Fatalf("unknown profile: %v", err)
	}
	// A request without pools uses the configured ones.
	u2 := e.ticket(t, map[string]string{"mode": "duel", "region": "us"}, map[string]float64{"skill": 2950})
	ms, err = e.fetch(t, fc, &pb.MatchProfile{Name: "duel"})
	if err != nil {
		t.Fatal(err)
	}
	if got := groups(t, ms)[""]; len(ms) != 1 || !slices.Equal(got[0], sorted(far, u2)) {
		t.Fatalf("pool-less request: %v, want [%s %s]", got, far, u2)
	}
}

// TestInProcessHandler runs the same logic registered in the core's MatchFunctions map, the way a
// program embedding both would, with a DeferredQuery set once the core listens.
func TestInProcessHandler(t *testing.T) {
	q := matchfunction.NewDeferredQuery()
	h, err := matchfunction.NewHandler(quietLog(), testProfiles(), q, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := startEnv(t, map[string]pb.MatchFunctionServer{"inprocess:50502": h})
	q.Set(pb.NewQueryServiceClient(dial(t, e.core.QueryAddr())))

	x := e.ticket(t, map[string]string{"mode": "voice", "chat_group": "x"}, nil)
	ms, err := e.fetch(t, &pb.FunctionConfig{Host: "inprocess", Port: 50502}, e.profile("voice"))
	if err != nil {
		t.Fatal(err)
	}
	if got := groups(t, ms); !equalGroups(got, map[string][][]string{"x": {{x}}}) {
		t.Fatalf("groups = %v", got)
	}
}

func TestStartRefusesBadConfig(t *testing.T) {
	cfg := matchfunction.Default()
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.Profiles = []matchfunction.Profile{{Name: "x", Kind: "lobby", Pools: []matchfunction.PoolSpec{{Name: "p"}}}}
	_, err := matchfunction.Start(t.Context(), quietLog(), cfg, nil)
	if err == nil || !strings.Contains(err.Error(), `profiles[0] ("x"): kind`) {
		t.Fatalf("bad profile: %v", err)
	}
	cfg = matchfunction.Default()
	cfg.QueryAddr = ""
	if _, err := matchfunction.Start(t.Context(), quietLog(), cfg, nil); err == nil || !strings.Contains(err.Error(), "query-addr") {
		t.Fatalf("no query addr: %v", err)
	}
	// Metrics asked for but impossible to serve is an error, not silently no endpoint.
	cfg = matchfunction.Default()
	cfg.ListenAddr, cfg.MetricsAddr = "127.0.0.1:0", "127.0.0.1:0"
	if _, err := matchfunction.Start(t.Context(), quietLog(), cfg, nil); err == nil || !strings.Contains(err.Error(), "cannot be gathered") {
		t.Fatalf("metrics-addr with a nil registerer: %v", err)
	}
	// Every waiting ticket's search fields go to whoever calls Run: no plaintext listener other
	// hosts can reach unless --insecure says the network is trusted.
	for _, addr := range []string{":50502", "0.0.0.0:0", "10.0.0.1:50502"} {
		cfg = matchfunction.Default()
		cfg.ListenAddr = addr
		if _, err := matchfunction.Start(t.Context(), quietLog(), cfg, nil); err == nil || !strings.Contains(err.Error(), "without TLS") {
			t.Errorf("plaintext listen-addr %s: %v", addr, err)
		}
	}
	cfg = matchfunction.Default()
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.QueryTLS.CAFile = filepath.Join(t.TempDir(), "missing-ca.pem")
	if _, err := matchfunction.Start(t.Context(), quietLog(), cfg, nil); err == nil || !strings.Contains(err.Error(), "query-tls") {
		t.Fatalf("unreadable query-tls CA: %v", err)
	}
}

// TestMetricsEndpoint: -metrics-addr serves the registry it was given, and the port is released by
// the time Wait returns.
func TestMetricsEndpoint(t *testing.T) {
	reg := prometheus.NewRegistry()
	probe := prometheus.NewCounter(prometheus.CounterOpts{Name: "probe_total", Help: "test"})
	reg.MustRegister(probe)
	probe.Add(3)
	cfg := matchfunction.Default()
	cfg.ListenAddr, cfg.MetricsAddr, cfg.QueryAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:1" // the query connection is lazy
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s, err := matchfunction.Start(ctx, quietLog(), cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	addr := s.MetricsAddr()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "probe_total 3") {
		t.Fatalf("/metrics: %d %v\n%s", resp.StatusCode, err, b)
	}
	cancel()
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("metrics port still held after Wait: %v", err)
	}
	l.Close()
}

// counterSum adds up every series of the counter family name.
func counterSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func sorted(ids ...string) []string {
	s := slices.Clone(ids)
	slices.Sort(s)
	return s
}

func equalGroups(a, b map[string][][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, av := range a {
		bv := b[k]
		if len(av) != len(bv) {
			return false
		}
		as, bs := slices.Clone(av), slices.Clone(bv)
		cmp := func(x, y []string) int { return strings.Compare(strings.Join(x, ","), strings.Join(y, ",")) }
		slices.SortFunc(as, cmp)
		slices.SortFunc(bs, cmp)
		for i := range as {
			if !slices.Equal(as[i], bs[i]) {
				return false
			}
		}
	}
	return true
}

// BenchmarkProposeThroughCore measures one whole match function run against the real core over
// gRPC (query 2000 voice tickets in 100 groups, group them, build matches) next to the query alone,
// so the grouping's share of a run shows as a ratio. Proposals are not submitted, so every
// iteration sees the same tickets.
func BenchmarkProposeThroughCore(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ocfg := openmatch.Default()
	ocfg.FrontendAddr, ocfg.BackendAddr, ocfg.QueryAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	core, err := openmatch.Start(ctx, quietLog(), ocfg, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	defer func() { cancel(); core.Wait() }()
	fcc, err := grpc.NewClient(core.FrontendAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer fcc.Close()
	fe := pb.NewFrontendServiceClient(fcc)
	for i := range 2000 {
		if _, err := fe.CreateTicket(ctx, &pb.CreateTicketRequest{Ticket: &pb.Ticket{SearchFields: &pb.SearchFields{
			StringArgs: map[string]string{"mode": "voice", "chat_group": "g" + strconv.Itoa(i%100)}}}}); err != nil {
			b.Fatal(err)
		}
	}
	qcc, err := grpc.NewClient(core.QueryAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer qcc.Close()
	q := pb.NewQueryServiceClient(qcc)
	h, err := matchfunction.NewHandler(quietLog(), matchfunction.DefaultProfiles(), q, 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	profile := matchfunction.DefaultProfiles()[0].MatchProfile()
	b.Run("query-only", func(b *testing.B) {
		for b.Loop() {
			byPool, err := matchfunction.QueryPools(ctx, q, profile.GetPools())
			if err != nil || len(byPool["voice"]) != 2000 {
				b.Fatalf("query: %d tickets, %v", len(byPool["voice"]), err)
			}
		}
	})
	b.Run("propose", func(b *testing.B) {
		for b.Loop() {
			ms, err := h.Propose(ctx, profile)
			if err != nil || len(ms) != 200 { // 100 groups of 20, split 16 + 4
				b.Fatalf("propose: %d matches, %v", len(ms), err)
			}
		}
	})
}

// TestQueryFailureNamesPool: when the query service is unreachable the run fails with its gRPC code
// and the pool's name, and counts a query error.
func TestQueryFailureNamesPool(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens here now
	reg := prometheus.NewRegistry()
	h, err := matchfunction.NewHandler(quietLog(), testProfiles(), pb.NewQueryServiceClient(dial(t, addr)), 2*time.Second, reg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Propose(t.Context(), &pb.MatchProfile{Name: "voice"})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), `query pool "voice"`) {
		t.Fatalf("err = %v, want Unavailable naming pool \"voice\"", err)
	}
	if n := counterSum(t, reg, "kumi_matchfunction_runs_total"); n != 1 {
		t.Fatalf("runs counted %v, want 1", n)
	}
	// A missing profile is InvalidArgument.
	if _, err := h.Propose(t.Context(), nil); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("nil profile: %v", err)
	}
	// Pools sharing a name are refused before any query (their results would overwrite each other).
	twice := &pb.MatchProfile{Name: "voice", Pools: []*pb.Pool{{Name: "p"}, {Name: "q"}, {Name: "p"}}}
	if _, err := h.Propose(t.Context(), twice); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `pools[0] and pools[2] are both named "p"`) {
		t.Fatalf("repeated pool name: %v", err)
	}
}

// TestTicketsArriveWhole: whether the function forwards the tickets as the bytes it queried (over
// gRPC) or as Go values (in process), the caller of FetchMatches gets every field of every ticket
// as the core stores it: the director reads extensions, search fields and create time.
func TestTicketsArriveWhole(t *testing.T) {
	for _, inproc := range []bool{false, true} {
		t.Run(fmt.Sprintf("inprocess=%v", inproc), func(t *testing.T) {
			q := matchfunction.NewDeferredQuery()
			h, err := matchfunction.NewHandler(quietLog(), testProfiles(), q, 5*time.Second, nil)
			if err != nil {
				t.Fatal(err)
			}
			e := startEnv(t, map[string]pb.MatchFunctionServer{"inprocess:50502": h})
			q.Set(pb.NewQueryServiceClient(dial(t, e.core.QueryAddr())))
			fc := e.mmfConfig(t)
			if inproc {
				fc = &pb.FunctionConfig{Host: "inprocess", Port: 50502}
			}
			want := map[string]*pb.Ticket{}
			for i := range 3 {
				ext := omext.PutString(nil, omext.Player, fmt.Sprintf("p%d", i))
				omext.PutString(ext, omext.Seal, "v1.1.mac")
				tk, err := e.fe.CreateTicket(t.Context(), &pb.CreateTicketRequest{Ticket: &pb.Ticket{
					SearchFields: &pb.SearchFields{StringArgs: map[string]string{"mode": "voice", "chat_group": "g"},
						DoubleArgs: map[string]float64{"skill": float64(i)}, Tags: []string{"eu"}},
					Extensions: ext, PersistentField: omext.PutString(nil, "note", "kept"),
				}})
				if err != nil {
					t.Fatal(err)
				}
				want[tk.GetId()] = tk
			}
			ms, err := e.fetch(t, fc, e.profile("voice"))
			if err != nil {
				t.Fatal(err)
			}
			got := 0
			for _, m := range ms {
				for _, tk := range m.GetTickets() {
					if !proto.Equal(tk, want[tk.GetId()]) {
						t.Errorf("ticket arrived as %v, stored as %v", tk, want[tk.GetId()])
					}
					got++
				}
			}
			if got != len(want) {
				t.Fatalf("%d tickets in %d matches, want %d", got, len(ms), len(want))
			}
		})
	}
}

// Served over gRPC, Run promises disjoint proposals (pb.DisjointProposalsHeader), which lets
// kumi's core stream them as they arrive: it must hold even when the profile's pools overlap and
// so return the same tickets twice.
func TestRunPromisesDisjointProposals(t *testing.T) {
	e := startEnv(t, nil)
	want := map[string]bool{}
	for i := range 5 {
		g := "x"
		if i == 4 {
			g = "y"
		}
		want[e.ticket(t, map[string]string{"mode": "voice", "chat_group": g}, nil)] = true
	}
	mmf := pb.NewMatchFunctionClient(dial(t, e.mmf.Addr()))
	same := &pb.StringEqualsFilter{StringArg: "mode", Value: "voice"}
	stream, err := mmf.Run(t.Context(), &pb.RunRequest{Profile: &pb.MatchProfile{Name: "voice", Pools: []*pb.Pool{
		{Name: "a", StringEqualsFilters: []*pb.StringEqualsFilter{same}},
		{Name: "b", StringEqualsFilters: []*pb.StringEqualsFilter{same}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range r.GetProposal().GetTickets() {
			if seen[tk.GetId()] {
				t.Fatalf("ticket %s in two proposals", tk.GetId())
			}
			seen[tk.GetId()] = true
		}
	}
	if !maps.Equal(seen, want) {
		t.Fatalf("proposed %v, want %v", seen, want)
	}
	md, err := stream.Header()
	if err != nil {
		t.Fatal(err)
	}
	if v := md.Get(pb.DisjointProposalsHeader); len(v) != 1 || v[0] != "1" {
		t.Fatalf("header %s = %q, want [1]", pb.DisjointProposalsHeader, v)
	}
}
