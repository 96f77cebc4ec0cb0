package openmatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/internal/omext"
	"github.com/kumi-dev/kumi/matchfunction"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// smallTicket is the ticket every benchmark uses: one double, one string, one tag.
func smallTicket(i int) *pb.Ticket {
	return &pb.Ticket{SearchFields: &pb.SearchFields{
		DoubleArgs: map[string]float64{"skill": float64(i % 100)},
		StringArgs: map[string]string{"mode": "ranked"},
		Tags:       []string{"eu"},
	}}
}

// noopFrontend answers CreateTicket with the request's ticket: the gRPC ceiling.
type noopFrontend struct {
	pb.UnimplementedFrontendServiceServer
}

func (noopFrontend) CreateTicket(_ context.Context, r *pb.CreateTicketRequest) (*pb.Ticket, error) {
	return r.Ticket, nil
}

// serveNoop runs noopFrontend with exactly the core's server options.
func serveNoop(b testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	g := grpc.NewServer(serverOptions(slog.New(slog.DiscardHandler))...)
	pb.RegisterFrontendServiceServer(g, noopFrontend{})
	go g.Serve(l)
	b.Cleanup(g.Stop)
	return l.Addr().String()
}

// hammer makes n CreateTicket calls from `callers` goroutines over one connection and returns
// the wall-clock rate and the process CPU time per call (client and server both live in this
// process, so the CPU figure is what one call costs whatever else the machine runs).
func hammer(b testing.TB, c pb.FrontendServiceClient, n, callers int) (rate float64, cpuPerCall time.Duration) {
	var next atomic.Int64
	var wg sync.WaitGroup
	ctx := context.Background()
	cpu0 := cpuTime()
	start := time.Now()
	for range callers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				if _, err := c.CreateTicket(ctx, &pb.CreateTicketRequest{Ticket: smallTicket(int(i))}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds(), (cpuTime() - cpu0) / time.Duration(n)
}

// BenchmarkCreateTicket measures CreateTicket/s with 32 concurrent callers over loopback gRPC,
// against a no-op unary handler with the same server options in the same run. The two are
// measured in 8 alternating rounds so machine noise hits both alike; ratio is the median of the
// rounds' core/no-op rates (each round compared with the no-op round just before it), cpu_ratio
// the same for no-op/core CPU per call, which other processes' load does not disturb.
func BenchmarkCreateTicket(b *testing.B) {
	core := startCore(b, nil)
	noop := pb.NewFrontendServiceClient(dial(b, serveNoop(b)))
	const callers, rounds = 32, 8
	hammer(b, noop, 2000, callers) // warm both connections
	hammer(b, core.fe, 2000, callers)
	per := max(b.N/rounds, 1)
	b.ResetTimer()
	var noopRate, coreRate float64
	var noopCPU, coreCPU time.Duration
	var ratios, cpuRatios []float64
	for range rounds {
		nr, nc := hammer(b, noop, per, callers)
		cr, cc := hammer(b, core.fe, per, callers)
		noopRate, noopCPU = noopRate+nr/rounds, noopCPU+nc/rounds
		coreRate, coreCPU = coreRate+cr/rounds, coreCPU+cc/rounds
		ratios = append(ratios, cr/nr)
		cpuRatios = append(cpuRatios, float64(nc)/float64(cc))
	}
	b.StopTimer()
	median := func(x []float64) float64 {
		slices.Sort(x)
		return (x[len(x)/2-1] + x[len(x)/2]) / 2
	}
	b.ReportMetric(noopRate, "noop_calls/s")
	b.ReportMetric(coreRate, "core_calls/s")
	b.ReportMetric(median(ratios), "ratio")
	b.ReportMetric(float64(noopCPU.Nanoseconds())/1000, "noop_cpu_us/call")
	b.ReportMetric(float64(coreCPU.Nanoseconds())/1000, "core_cpu_us/call")
	b.ReportMetric(median(cpuRatios), "cpu_ratio")
}

// fillCore creates n small tickets through the frontend handler (in process, to keep set-up fast).
func fillCore(b *testing.B, c *testCore, n int) {
	f := &frontend{s: c.srv}
	for i := range n {
		if _, err := f.CreateTicket(context.Background(), &pb.CreateTicketRequest{Ticket: smallTicket(i)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkQueryTickets20k: one QueryTickets returning all of 20k tickets over gRPC. "decoded"
// is what a Go match function pays (client-side proto decoding dominates); "wire" receives the
// pages undecoded, i.e. the core's work plus transport.
func BenchmarkQueryTickets20k(b *testing.B) {
	c := startCore(b, func(cfg *Config) { cfg.QueryPageSize = 1000 })
	fillCore(b, c, 20000)
	pool := &pb.Pool{Name: "all", StringEqualsFilters: []*pb.StringEqualsFilter{{StringArg: "mode", Value: "ranked"}},
		DoubleRangeFilters: []*pb.DoubleRangeFilter{{DoubleArg: "skill", Min: 0, Max: 100}}}
	ctx := context.Background()
	b.Run("decoded", func(b *testing.B) {
		cpu0 := cpuTime()
		defer reportCPU(b, cpu0)
		for b.Loop() {
			ts, _, err := queryTickets(ctx, c.q, pool)
			if err != nil || len(ts) != 20000 {
				b.Fatalf("%d tickets, %v", len(ts), err)
			}
		}
		b.ReportMetric(20000*float64(b.N)/b.Elapsed().Seconds(), "tickets/s")
	})
	b.Run("wire", func(b *testing.B) {
		conn := dial(b, c.srv.QueryAddr())
		desc := &grpc.StreamDesc{ServerStreams: true}
		cpu0 := cpuTime()
		defer reportCPU(b, cpu0)
		for b.Loop() {
			s, err := conn.NewStream(ctx, desc, pb.QueryService_QueryTickets_FullMethodName, grpc.ForceCodecV2(newCodec()))
			if err == nil {
				err = s.SendMsg(&pb.QueryTicketsRequest{Pool: pool})
			}
			if err == nil {
				err = s.CloseSend()
			}
			pages := 0
			for err == nil {
				var m rawMsg
				if err = s.RecvMsg(&m); err == nil {
					pages++
				}
			}
			if !errors.Is(err, io.EOF) || pages != 20 {
				b.Fatalf("%d pages, %v", pages, err)
			}
		}
		b.ReportMetric(20000*float64(b.N)/b.Elapsed().Seconds(), "tickets/s")
	})
}

// BenchmarkQueryTicketsAmongAssigned: the core's scan for a query returning 1k waiting tickets while the
// core also holds assigned ones, which it keeps readable for assigned-delete-timeout (10 min by
// default: 600k tickets at a steady 1000 tickets/s). A query must cost what the waiting tickets
// cost, however many assigned ones are kept.
func BenchmarkQueryTicketsAmongAssigned(b *testing.B) {
	for _, assigned := range []int{0, 100000} {
		b.Run(fmt.Sprintf("assigned=%d", assigned), func(b *testing.B) {
			c := startCore(b, func(cfg *Config) { cfg.QueryPageSize = 1000 })
			f := &frontend{s: c.srv}
			asg := &pb.Assignment{Connection: "127.0.0.1:7777"}
			asgRaw, err := proto.Marshal(asg)
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now().UnixNano()
			for i := range assigned + 1000 {
				t, err := f.CreateTicket(context.Background(), &pb.CreateTicketRequest{Ticket: smallTicket(i)})
				if err != nil {
					b.Fatal(err)
				}
				if i < assigned && !c.srv.tickets.assign(t.Id, asg, asgRaw, now) {
					b.Fatal("assign failed")
				}
			}
			// The core's own part of a query (the scan), without transport and decoding.
			flt, err := compilePool(&pb.Pool{Name: "all", StringEqualsFilters: []*pb.StringEqualsFilter{{StringArg: "mode", Value: "ranked"}}})
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				n := 0
				c.srv.tickets.scan(flt, func(string, *ticketRec) { n++ })
				if n != 1000 {
					b.Fatalf("%d tickets", n)
				}
			}
		})
	}
}

// pairFetch runs one FetchMatches whose gRPC MMF queries the pool and pairs every ticket.
func pairFetch(b *testing.B, c *testCore, fc *pb.FunctionConfig, want int) {
	ms, err := fetch(context.Background(), c.be, fc, &pb.MatchProfile{Name: "pairs", Pools: []*pb.Pool{{Name: "all"}}})
	if err != nil || len(ms) != want {
		b.Fatalf("%d matches, want %d: %v", len(ms), want, err)
	}
}

// BenchmarkFetchMatchesPairing20k: MMF (gRPC) queries 20k tickets and proposes 10k pairs; the
// default evaluator accepts them all; 10k matches stream back. Tickets are released between runs.
func BenchmarkFetchMatchesPairing20k(b *testing.B) {
	c := startCore(b, func(cfg *Config) { cfg.ProposalCollectionInterval = time.Minute })
	fillCore(b, c, 20000)
	fc := serveMMF(b, pairMMF(c.q))
	cpu0 := cpuTime()
	for b.Loop() {
		pairFetch(b, c, fc, 10000)
		b.StopTimer()
		c.srv.tickets.releaseAll()
		b.StartTimer()
	}
	reportCPU(b, cpu0)
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// cpuTime is the process's user+system CPU time: reported per op it shows the work a call costs
// independent of how busy the shared machine is.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64((cpuTime()-start).Microseconds())/1000/float64(b.N), "cpu_ms/op")
}

func reportLatency(b *testing.B, lat []time.Duration) {
	b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99_ms")
}

// BenchmarkFetchMatchesLatency1k: latency of one FetchMatches at 1k active tickets: registration
// window, the MMF's query, 500 pair proposals, default evaluation, 500 matches streamed to the
// caller and decoded. Variants: the MMF over gRPC putting whole tickets in its matches, over gRPC
// putting only ticket ids (what a director needs for AssignTickets), and in process
// (Server.RegisterMatchFunction + Server.QueryClient, for programs that embed the core).
func BenchmarkFetchMatchesLatency1k(b *testing.B) {
	for _, v := range []struct {
		name      string
		inprocess bool
		lean      bool
	}{{"grpc-mmf/whole-tickets", false, false}, {"grpc-mmf/id-only-tickets", false, true}, {"inprocess-mmf/id-only-tickets", true, true}} {
		b.Run(v.name, func(b *testing.B) {
			c := startCore(b, func(cfg *Config) {
				cfg.RegistrationInterval = Default().RegistrationInterval
				cfg.ProposalCollectionInterval = time.Minute // a loaded machine must not fail the run
			})
			fillCore(b, c, 1000)
			var fc *pb.FunctionConfig
			if v.inprocess {
				c.srv.RegisterMatchFunction("inprocess:1", &mmfFunc{f: pairMMFWith(c.srv.QueryClient(), true)})
				fc = &pb.FunctionConfig{Host: "inprocess", Port: 1}
			} else {
				fc = serveMMF(b, pairMMFWith(c.q, v.lean))
			}
			var lat []time.Duration
			cpu0 := cpuTime()
			for b.Loop() {
				t0 := time.Now()
				pairFetch(b, c, fc, 500)
				lat = append(lat, time.Since(t0))
				b.StopTimer()
				c.srv.tickets.releaseAll()
				b.StartTimer()
			}
			reportCPU(b, cpu0)
			reportLatency(b, lat)
		})
	}
}

// kumiTicket is smallTicket as kumi's frontend stores it: with the player, trace and seal
// extensions (internal/omext) that the director reads and the match function does not.
func kumiTicket(i int) *pb.Ticket {
	t := smallTicket(i)
	t.Extensions = omext.PutString(nil, omext.Player, fmt.Sprintf("player-%06d", i))
	omext.PutString(t.Extensions, omext.TraceParent, fmt.Sprintf("00-%032x-%016x-01", i+1, i+1))
	omext.PutString(t.Extensions, omext.Seal, fmt.Sprintf("v1.%d.%043d", 1764800000000+i, i))
	return t
}

// BenchmarkFetchMatchesLatency1kKumi: FetchMatches at 1k tickets through kumi's own match
// function, served the way the kumi matchfunction process serves it (matchfunction.Start, gRPC
// both ways), over tickets carrying kumi's frontend extensions; the caller decodes whole matches,
// as the director does (director/match.go reads every ticket's search fields, extensions and
// create time).
func BenchmarkFetchMatchesLatency1kKumi(b *testing.B) {
	// page-1000 is the core's default query page (Config.QueryPageSize; 1k kumi tickets fit one
	// page under QueryPageBytes); page-10 the tests' and upstream's smallest, which the figures in
	// BENCHMARKS.md used until the 2026-12-04 "against the main" table.
	for _, page := range []int{Default().QueryPageSize, 10} {
		b.Run(fmt.Sprintf("page-%d", page), func(b *testing.B) { fetchLatency1kKumi(b, page) })
	}
}

func fetchLatency1kKumi(b *testing.B, pageSize int) {
	c := startCore(b, func(cfg *Config) {
		cfg.RegistrationInterval = Default().RegistrationInterval
		cfg.ProposalCollectionInterval = time.Minute // a loaded machine must not fail the run
		cfg.QueryPageSize = pageSize
	})
	f := &frontend{s: c.srv}
	for i := range 1000 {
		if _, err := f.CreateTicket(context.Background(), &pb.CreateTicketRequest{Ticket: kumiTicket(i)}); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	mmf, err := matchfunction.Start(ctx, slog.New(slog.DiscardHandler), matchfunction.Config{
		ListenAddr: "127.0.0.1:0", QueryAddr: c.srv.QueryAddr(), QueryTimeout: 10 * time.Second,
		Profiles: []matchfunction.Profile{{Name: "pairs", Kind: omext.KindMatch, Players: 2, Pools: []matchfunction.PoolSpec{{Name: "all"}}}},
	}, nil)
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cancel()
		if err := mmf.Wait(); err != nil {
			b.Error(err)
		}
	})
	_, port, _ := net.SplitHostPort(mmf.Addr())
	p, _ := strconv.Atoi(port)
	fc := &pb.FunctionConfig{Host: "127.0.0.1", Port: int32(p), Type: pb.FunctionConfig_GRPC}
	var lat, first []time.Duration
	cpu0 := cpuTime()
	for b.Loop() {
		t0 := time.Now()
		s, err := c.be.FetchMatches(context.Background(), &pb.FetchMatchesRequest{Config: fc,
			Profile: &pb.MatchProfile{Name: "pairs", Pools: []*pb.Pool{{Name: "all"}}}}, directorCallOptions()...)
		if err != nil {
			b.Fatal(err)
		}
		var ms []*pb.Match
		for {
			r, err := s.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if ms = append(ms, r.Match); len(ms) == 1 {
				first = append(first, time.Since(t0))
			}
		}
		if len(ms) != 500 {
			b.Fatalf("%d matches, want 500", len(ms))
		}
		lat = append(lat, time.Since(t0))
		b.StopTimer()
		if n := len(ms[0].GetTickets()[0].GetExtensions()); n != 3 {
			b.Fatalf("a matched ticket carries %d extensions, want 3", n)
		}
		c.srv.tickets.releaseAll()
		b.StartTimer()
	}
	reportCPU(b, cpu0)
	reportLatency(b, lat)
	// How soon a director can start placing: the core streams matches only once the cycle's
	// proposals are all in and evaluated.
	b.ReportMetric(float64(percentile(first, 0.50).Microseconds())/1000, "first_match_p50_ms")
}

// BenchmarkWatchAssignmentsDelivery: time from calling AssignTickets to the watcher's Recv
// returning the assignment, with the watch already registered.
func BenchmarkWatchAssignmentsDelivery(b *testing.B) {
	c := startCore(b, nil)
	ctx := context.Background()
	var lat []time.Duration
	for b.Loop() {
		b.StopTimer()
		tk, err := c.fe.CreateTicket(ctx, &pb.CreateTicketRequest{Ticket: smallTicket(0)})
		if err != nil {
			b.Fatal(err)
		}
		wctx, cancel := context.WithCancel(ctx)
		w, err := c.fe.WatchAssignments(wctx, &pb.WatchAssignmentsRequest{TicketId: tk.Id})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.Header(); err != nil { // the watch is registered
			b.Fatal(err)
		}
		b.StartTimer()
		t0 := time.Now()
		if _, err := c.be.AssignTickets(ctx, &pb.AssignTicketsRequest{Assignments: []*pb.AssignmentGroup{{TicketIds: []string{tk.Id}, Assignment: &pb.Assignment{Connection: "gs:1"}}}}); err != nil {
			b.Fatal(err)
		}
		if _, err := w.Recv(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
		cancel()
	}
	reportLatency(b, lat)
}

// BenchmarkMemoryPerTicket stores 1M small tickets and reports heap in use per ticket.
func BenchmarkMemoryPerTicket(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		b.StopTimer()
		c := startCore(b, nil)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()
		fillCore(b, c, n)
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		perTicket := float64(after.HeapInuse-before.HeapInuse) / n
		b.ReportMetric(perTicket, "heap_bytes/ticket")
		b.ReportMetric(perTicket*n/(1<<30), "GiB/1M_tickets")
		runtime.KeepAlive(c)
		b.StartTimer()
	}
}

// BenchmarkParseProposal: the core's read of one proposal from a gRPC match function (ids,
// score, backfill) as kumi's match function sends it: two kumi tickets, a score and three more
// extensions. FetchMatches at 1k tickets parses 500 of these per cycle.
func BenchmarkParseProposal(b *testing.B) {
	m := &pb.Match{MatchId: "pairs-d4mq5ahn0d8s73c0kqg0", MatchProfile: "pairs", MatchFunction: "kumi"}
	for i := range 2 {
		t := kumiTicket(i)
		t.Id = fmt.Sprintf("d4mq5ahn0d8s73c0kqg%d", i)
		t.CreateTime = timestamppb.Now()
		m.Tickets = append(m.Tickets, t)
	}
	m.Extensions = omext.PutScore(nil, 1.5)
	omext.PutString(m.Extensions, omext.SessionKind, omext.KindMatch)
	omext.PutInt(m.Extensions, omext.MaxMembers, 2)
	omext.PutString(m.Extensions, omext.Group, "")
	raw, err := proto.Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		p, err := parseProposal(raw)
		if err != nil || len(p.tickets) != 2 || p.score != 1.5 {
			b.Fatal(p, err)
		}
	}
}
