// Package e2e is kumi's end-to-end load generator: simulated players (the client package) file
// tickets at a fixed rate in chat groups, wait for their assignment, join their game server over
// UDP, exchange voice-like frames for a random session lifetime and leave. It runs against a stack
// it starts in process (`kumi local` with no crowd; the allocation latency can be simulated) or
// against a running frontend (then optionally reporting that stack's CPU apart from its own), and reports ticket→assignment and ticket→first relayed frame
// quantiles and throughput as a markdown row for BENCHMARKS.md.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kumi-dev/kumi/internal/stats"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	player "github.com/kumi-dev/kumi/client"
	"github.com/kumi-dev/kumi/internal/token"
	"github.com/kumi-dev/kumi/local"
)

// Config is every setting of the load run.
type Config struct {
	Frontend   string        `flag:"frontend" help:"frontend gRPC address of a running stack; empty starts one in process"`
	Key        string        `flag:"key" help:"PEM private key the running stack's frontend trusts for player tokens (with -frontend)"`
	Rate       float64       `flag:"rate" help:"new tickets per second"`
	Duration   time.Duration `flag:"duration" help:"how long new tickets are filed"`
	GroupSize  int           `flag:"group-size" help:"players per chat group (they file their tickets together)"`
	Lifetime   time.Duration `flag:"lifetime" help:"mean session lifetime per player (exponential)"`
	FrameEvery time.Duration `flag:"frame-interval" help:"time between a player's frames"`
	Seed       uint64        `flag:"seed" help:"random seed of lifetimes"`
	// TicketsOnly leaves UDP out, so matchmaking's own cost and tail can be told apart from the
	// simulated players' sockets sharing the machine.
	TicketsOnly bool `flag:"tickets-only" help:"players stop at their assignment: no UDP join, no frames (sessions stay reserved until the director's reservation TTL, so give the product the capacity)"`
	// ProductPID lets a two-process run report the product's CPU apart from the generator's.
	ProductPID int `flag:"product-pid" help:"process id of the running stack (kumi local) whose CPU, game-server child processes included, is reported per ticket (with -frontend)"`

	// Local is the in-process stack (used when Frontend is empty): -local-capacity,
	// -local-allocation-latency, -local-servers… Its addresses default to free ports and its crowd
	// is off; GroupSize overrides its group size.
	Local local.Config `prefix:"local-"`

	// Progress, when set, is called about once a second while the run lasts.
	Progress func(Progress)
}

// Progress is how far a run is.
type Progress struct {
	Elapsed                       time.Duration
	Filed, Assigned, Done, Failed int64
}

// Default returns the settings BENCHMARKS.md quotes.
func Default() Config {
	lc := local.Default()
	lc.Players = 0
	for _, a := range []*string{&lc.OMFrontendAddr, &lc.OMBackendAddr, &lc.OMQueryAddr, &lc.MMFAddr, &lc.FrontendAddr,
		&lc.ControlAddr, &lc.AdminAddr} {
		*a = "127.0.0.1:0"
	}
	lc.FrontendHTTP, lc.MetricsAddr, lc.ConsoleAddr = "", "", ""
	lc.Capacity, lc.Servers, lc.MaxServers = 200, 2, 10
	return Config{
		Rate:       100,
		Duration:   10 * time.Second,
		GroupSize:  4,
		Lifetime:   3 * time.Second,
		FrameEvery: 100 * time.Millisecond,
		Seed:       1,
		Local:      lc,
	}
}

// Validate names the first bad setting.
func (c Config) Validate() error {
	switch {
	case c.Rate <= 0:
		return fmt.Errorf("e2e: rate %v: want > 0", c.Rate)
	case c.Duration <= 0:
		return fmt.Errorf("e2e: duration %v: want > 0", c.Duration)
	case c.GroupSize < 2:
		return fmt.Errorf("e2e: group-size %d: want >= 2 (a frame is relayed to the other members)", c.GroupSize)
	case c.Lifetime <= 0 || c.FrameEvery <= 0:
		return errors.New("e2e: lifetime and frame-interval must be > 0")
	case c.Frontend != "" && c.Key == "":
		return errors.New("e2e: -frontend needs -key (the private key its frontend trusts for player tokens)")
	case c.ProductPID != 0 && c.Frontend == "":
		return errors.New("e2e: -product-pid needs -frontend (without it the product runs in this process)")
	}
	return nil
}

// Result is what one run measured.
type Result struct {
	Cfg                  Config
	Tickets, Ok, Failed  int
	Elapsed              time.Duration
	Assign               [3]time.Duration // p50, p99, p99.9 ticket→assignment
	FirstFrame           [3]time.Duration // p50, p99, p99.9 ticket→first relayed frame
	AssignmentsPerSecond float64
	FramesReceived       uint64
	Failures             []string
	// AssignSamples are every player's ticket→assignment times, for the histogram.
	AssignSamples []time.Duration
	// GeneratorCPU is this process's CPU (user + system, getrusage) from the first ticket until
	// the last player finished; with the stack in process it includes the product's.
	GeneratorCPU time.Duration
	// ProductCPU is the same for Cfg.ProductPID and its descendants (/proc), 0 without it.
	ProductCPU time.Duration
	// ProductMainCPU is Cfg.ProductPID's own share of ProductCPU: with `kumi local`, every
	// component but the game-server processes (core, match function, frontend, director).
	ProductMainCPU time.Duration
}

// PerTicket divides a CPU time by the tickets filed.
func (r *Result) PerTicket(cpu time.Duration) time.Duration {
	if r.Tickets == 0 {
		return 0
	}
	return cpu / time.Duration(r.Tickets)
}

// Run executes one load run.
func Run(ctx context.Context, log *slog.Logger, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	addr := cfg.Frontend
	var signer *token.Signer
	if addr == "" {
		lc := cfg.Local
		lc.Players = 0
		lc.MaxMembers = max(lc.MaxMembers, cfg.GroupSize)
		lc.GroupSize = cfg.GroupSize
		sctx, cancel := context.WithCancel(ctx)
		s, err := local.Start(sctx, log, lc)
		if err != nil {
			cancel()
			return nil, err
		}
		defer func() { cancel(); _ = s.Wait() }()
		addr, signer = s.Frontend.GRPCAddr(), s.PlayerSigner
	} else {
		var err error
		if signer, err = token.LoadSigner(cfg.Key, "", token.DefaultIssuer); err != nil {
			return nil, fmt.Errorf("e2e: %w", err)
		}
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("e2e: dial frontend: %w", err)
	}
	defer conn.Close()

	rng := rand.New(rand.NewPCG(cfg.Seed, 11))
	groups := int(cfg.Rate*cfg.Duration.Seconds())/cfg.GroupSize + 1
	every := time.Duration(float64(time.Second) * float64(cfg.GroupSize) / cfg.Rate)
	run := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	var (
		mu   sync.Mutex
		reps []*player.Report
		errs []string
		wg   sync.WaitGroup
	)
	gen0, err := selfCPU()
	if err != nil {
		return nil, err
	}
	var prod0, main0 time.Duration
	if cfg.ProductPID != 0 {
		if prod0, main0, err = treeCPU(cfg.ProductPID); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	res := &Result{Cfg: cfg}
	var filed, assignedN, done, failed atomic.Int64
	if cfg.Progress != nil {
		pctx, stopProgress := context.WithCancel(ctx)
		defer stopProgress()
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-pctx.Done():
					return
				case <-t.C:
					cfg.Progress(Progress{time.Since(start), filed.Load(), assignedN.Load(), done.Load(), failed.Load()})
				}
			}
		}()
	}
filing:
	for g := range groups {
		group := "load-" + run + "-" + strconv.Itoa(g)
		for m := range cfg.GroupSize {
			pc := player.Default()
			pc.FrontendConn, pc.Signer = conn, signer
			pc.Player = group + "-" + strconv.Itoa(m)
			pc.Attributes = player.Attributes{"mode": "voice", "chat_group": group}
			pc.Talk = max(cfg.FrameEvery*3, time.Duration(rng.ExpFloat64()*float64(cfg.Lifetime)))
			pc.FrameInterval = cfg.FrameEvery
			pc.OnAssigned = func(string, player.Leg) { assignedN.Add(1) }
			pc.AssignOnly = cfg.TicketsOnly
			res.Tickets++
			filed.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				rep, err := player.Run(ctx, log, pc)
				done.Add(1)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed.Add(1)
					errs = append(errs, fmt.Sprintf("%s: %v", pc.Player, err))
					return
				}
				reps = append(reps, rep)
			}()
		}
		if time.Since(start) >= cfg.Duration {
			break
		}
		select {
		case <-ctx.Done():
			break filing
		case <-tick.C:
		}
	}
	filingTime := time.Since(start)
	wg.Wait()
	gen1, err := selfCPU()
	if err != nil {
		return nil, err
	}
	res.GeneratorCPU = gen1 - gen0
	if cfg.ProductPID != 0 {
		prod1, main1, err := treeCPU(cfg.ProductPID)
		if err != nil {
			return nil, err
		}
		res.ProductCPU, res.ProductMainCPU = prod1-prod0, main1-main0
	}
	res.Elapsed = filingTime
	res.Ok, res.Failed, res.Failures = len(reps), len(errs), errs
	var assign, first []time.Duration
	for _, r := range reps {
		l := r.First()
		assign = append(assign, l.TicketToAssignment)
		if l.AcceptToFirstFrame > 0 {
			first = append(first, l.TicketToAssignment+l.AssignmentToAccept+l.AcceptToFirstFrame)
		}
		_, recv := r.Totals()
		res.FramesReceived += recv
	}
	res.Assign, res.FirstFrame = quantiles(assign), quantiles(first)
	res.AssignSamples = assign
	res.AssignmentsPerSecond = float64(len(assign)) / filingTime.Seconds()
	return res, ctx.Err()
}

func quantiles(ds []time.Duration) [3]time.Duration {
	s := stats.Sorted(ds)
	return [3]time.Duration{stats.Quantile(s, 0.5), stats.Quantile(s, 0.99), stats.Quantile(s, 0.999)}
}

// Header writes the markdown table header Row fills.
func Header(w io.Writer) {
	fmt.Fprintln(w, "| tickets/s | mode | group | lifetime | alloc latency | tickets | failed | ticket→assignment p50 / p99 / p99.9 | ticket→first relayed frame p50 / p99 / p99.9 | assignments/s | product CPU/ticket | generator CPU/ticket |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
}

// Row writes the result as one markdown row.
func (r *Result) Row(w io.Writer) {
	d := func(q [3]time.Duration) string {
		return fmt.Sprintf("%v / %v / %v", q[0].Round(10*time.Microsecond), q[1].Round(10*time.Microsecond), q[2].Round(10*time.Microsecond))
	}
	mode := "tickets + UDP"
	if r.Cfg.TicketsOnly {
		mode = "tickets only"
	}
	// A running stack's allocation latency is its own flag, not this run's.
	lag, prod, gen := r.Cfg.Local.AllocateLag.String(), "in process", r.PerTicket(r.GeneratorCPU).Round(time.Microsecond).String()
	if r.Cfg.Frontend != "" {
		lag, prod = "the stack's", "-"
	}
	if r.Cfg.ProductPID != 0 {
		prod = fmt.Sprintf("%v (%v without game servers)", r.PerTicket(r.ProductCPU).Round(time.Microsecond), r.PerTicket(r.ProductMainCPU).Round(time.Microsecond))
	}
	if r.Cfg.Frontend == "" {
		gen += " (with the product)"
	}
	fmt.Fprintf(w, "| %.0f | %s | %d | %v | %s | %d | %d | %s | %s | %.0f | %s | %s |\n", r.Cfg.Rate, mode, r.Cfg.GroupSize, r.Cfg.Lifetime, lag,
		r.Tickets, r.Failed, d(r.Assign), d(r.FirstFrame), r.AssignmentsPerSecond, prod, gen)
}
