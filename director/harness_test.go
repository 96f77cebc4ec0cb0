package director_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/allocation"
	"github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/director"
	"github.com/kumi-dev/kumi/gameserver"
	"github.com/kumi-dev/kumi/gameserver/localfleet"
	"github.com/kumi-dev/kumi/gameserver/localsdk"
	"github.com/kumi-dev/kumi/internal/omext"
	"github.com/kumi-dev/kumi/internal/testport"
	"github.com/kumi-dev/kumi/internal/token"
	"github.com/kumi-dev/kumi/matchfunction"
	omcore "github.com/kumi-dev/kumi/openmatch"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
)

// The test binary doubles as the game-server process the local fleet starts (real `kumi
// gameserver` code, real UDP, real SDK client against the fleet's local SDK endpoint).
const (
	childEnv      = "KUMI_DIRECTOR_TEST_CHILD"
	childKey      = "KUMI_DIRECTOR_TEST_KEY"
	childDirector = "KUMI_DIRECTOR_TEST_DIRECTOR"
	childCapacity = "KUMI_DIRECTOR_TEST_CAPACITY"
	childMembers  = "KUMI_DIRECTOR_TEST_MEMBERS"
	childSecret   = "KUMI_DIRECTOR_TEST_SECRET_FILE"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "gameserver" {
		os.Exit(runGameServer())
	}
	os.Exit(m.Run())
}

func runGameServer() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 6*time.Minute) // never outlive a test run (its env lasts 5 min)
	defer cancel()
	cfg := gameserver.Default()
	cfg.SDK = true
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.HealthPeriod = 200 * time.Millisecond
	cfg.Director = os.Getenv(childDirector)
	cfg.ReportInterval = 200 * time.Millisecond
	cfg.ReportDebounce = 10 * time.Millisecond
	cfg.DrainGrace = 0
	cfg.ExitWhenDrained = true
	cfg.Capacity, _ = strconv.Atoi(os.Getenv(childCapacity))
	cfg.MaxMembers, _ = strconv.Atoi(os.Getenv(childMembers))
	cfg.Token.PublicKeys = []string{os.Getenv(childKey)}
	cfg.DirectorSecretFile = os.Getenv(childSecret)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := gameserver.Start(ctx, log, cfg, prometheus.NewRegistry())
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: start:", err)
		return 2
	}
	if err := s.Wait(); err != nil {
		fmt.Fprintln(os.Stderr, "child: wait:", err)
		return 1
	}
	return 0
}

func testLog(t testing.TB) *slog.Logger {
	if testing.Verbose() && os.Getenv("KUMI_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// env is a whole kumi placement path on 127.0.0.1: the embedded Open Match core, the real match
// function, local fleets of real game-server processes, and (started by tests) directors.
type env struct {
	t       testing.TB
	ctx     context.Context
	signer  *token.Signer
	keyArg  string
	ctlAddr string
	om      *omcore.Server
	mmf     *matchfunction.Server
	fe      openmatch.FrontendServiceClient
	// reg is the registry of the director started last.
	reg *prometheus.Registry
}

const maxMembers = 8

func newEnv(t testing.TB) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	e := &env{t: t, ctx: ctx}
	var waits []func() error
	t.Cleanup(func() {
		cancel()
		for i := len(waits) - 1; i >= 0; i-- {
			if err := waits[i](); err != nil {
				t.Logf("stop: %v", err)
			}
		}
	})
	signer, err := token.GenerateSigner(token.DefaultIssuer)
	if err != nil {
		t.Fatal(err)
	}
	e.signer = signer
	pem, err := token.MarshalPublicKeyPEM(signer.PublicKey().Key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "director.pub.pem")
	if err := os.WriteFile(keyFile, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	e.keyArg = signer.KID() + "=" + keyFile
	// The control address is fixed up front: game servers are told it when they start, and a
	// restarted director must come back on it.
	e.ctlAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(testport.Free(t)))

	omCfg := omcore.Default()
	omCfg.FrontendAddr, omCfg.BackendAddr, omCfg.QueryAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	omCfg.PendingReleaseTimeout = 3 * time.Second
	e.om, err = omcore.Start(ctx, testLog(t), omCfg, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	waits = append(waits, e.om.Wait)
	mfCfg := matchfunction.Default()
	mfCfg.ListenAddr, mfCfg.QueryAddr = "127.0.0.1:0", e.om.QueryAddr()
	mfCfg.Profiles = []matchfunction.Profile{{Name: "voice", Kind: omext.KindRendezvous, GroupArg: "chat_group", MaxMembers: maxMembers,
		Pools: []matchfunction.PoolSpec{{Name: "voice", StringEquals: map[string]string{"mode": "voice"}}}}}
	e.mmf, err = matchfunction.Start(ctx, testLog(t), mfCfg, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	waits = append(waits, e.mmf.Wait)
	conn, err := grpc.NewClient(e.om.FrontendAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e.fe = openmatch.NewFrontendServiceClient(conn)
	return e
}

type fleetOpts struct {
	name      string
	capacity  int
	buffer    int
	max       int
	allocWait time.Duration
	// secretFile is the control secret the servers present (none when empty).
	secretFile string
}

// startFleet starts a local fleet of real game-server processes reporting to the env's director.
func (e *env) startFleet(o fleetOpts) *localfleet.Fleet {
	t := e.t
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := localfleet.Default()
	cfg.Name = o.name
	cfg.Command = []string{exe}
	cfg.Env = []string{childEnv + "=gameserver", childKey + "=" + e.keyArg, childDirector + "=" + e.ctlAddr,
		childCapacity + "=" + strconv.Itoa(o.capacity), childMembers + "=" + strconv.Itoa(maxMembers), childSecret + "=" + o.secretFile, "GORACE=atexit_sleep_ms=0"}
	cfg.BufferSize, cfg.MaxReplicas = o.buffer, o.max
	cfg.SessionCapacity = int64(o.capacity)
	cfg.AllocationLatency = o.allocWait
	cfg.Health = localsdk.Health{Period: 500 * time.Millisecond, FailureThreshold: 5, InitialDelay: 5 * time.Second}
	cfg.SyncInterval = 200 * time.Millisecond
	cfg.StopGrace = 2 * time.Second
	if testing.Verbose() && os.Getenv("KUMI_TEST_LOG") != "" {
		cfg.Output = os.Stderr
	}
	ctx, cancel := context.WithCancel(e.ctx)
	f, err := localfleet.Start(ctx, testLog(t), cfg, prometheus.NewRegistry())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := f.Wait(); err != nil {
			t.Logf("fleet %s: %v", o.name, err)
		}
	})
	return f
}

func (e *env) directorConfig() director.Config {
	cfg := director.Default()
	cfg.ControlAddr = e.ctlAddr
	cfg.AdminAddr = "127.0.0.1:0"
	cfg.BackendAddr = e.om.BackendAddr()
	host, port, _ := net.SplitHostPort(e.mmf.Addr())
	cfg.MMFHost = host
	cfg.MMFPort, _ = strconv.Atoi(port)
	cfg.Profiles = []string{"voice"}
	cfg.PoolName = "it"
	cfg.Signer = e.signer
	cfg.TicketSealSecret = testSealSecret
	cfg.AdminToken = testAdminToken
	cfg.ReportInterval = 200 * time.Millisecond
	cfg.RebuildTimeout = 3 * time.Second
	cfg.Pool.MinFreeSlots = 10
	cfg.Pool.ReportTimeout = 3 * time.Second
	cfg.Pool.ScaleInAfter = time.Hour
	return cfg
}

// startDirector starts a director that stops with ctx; the returned stop cancels it and waits.
func (e *env) startDirector(ctx context.Context, cfg director.Config, backends ...allocation.Backend) (*director.Director, func()) {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	e.reg = prometheus.NewRegistry()
	d, err := director.Start(ctx, testLog(t), cfg, e.reg, backends...)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := d.Wait(); err != nil {
				t.Errorf("director: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return d, stop
}

// assignment is what a player got.
type assignment struct {
	ticket, player, group string
	conn, session, token  string
	latency               time.Duration // CreateTicket returned → assignment received
	count                 int           // assignments seen on the ticket's watch (must stay 1)
}

// tickets files tickets and watches their assignments.
type tickets struct {
	e    *env
	mu   sync.Mutex
	all  []*assignment
	done chan *assignment
	wg   sync.WaitGroup
}

func (e *env) tickets() *tickets {
	return &tickets{e: e, done: make(chan *assignment, 10000)}
}

// create files one ticket for player in chat group and watches it until the env ends.
func (ts *tickets) create(player, group string) {
	e := ts.e
	ext := omext.PutString(nil, omext.Player, player)
	sf := &openmatch.SearchFields{StringArgs: map[string]string{"mode": "voice", "chat_group": group}}
	testSealer.Seal(ext, player, sf, time.Now()) // as kumi's frontend does
	tk, err := e.fe.CreateTicket(e.ctx, &openmatch.CreateTicketRequest{Ticket: &openmatch.Ticket{
		SearchFields: sf,
		Extensions:   ext,
	}})
	if err != nil {
		e.t.Errorf("create ticket: %v", err)
		return
	}
	created := time.Now()
	a := &assignment{ticket: tk.GetId(), player: player, group: group}
	ts.mu.Lock()
	ts.all = append(ts.all, a)
	ts.mu.Unlock()
	ws, err := e.fe.WatchAssignments(e.ctx, &openmatch.WatchAssignmentsRequest{TicketId: tk.GetId()})
	if err != nil {
		e.t.Errorf("watch: %v", err)
		return
	}
	ts.wg.Add(1)
	go func() {
		defer ts.wg.Done()
		for {
			res, err := ws.Recv()
			if err != nil {
				return
			}
			at := time.Now()
			ts.mu.Lock()
			a.count++
			first := a.count == 1
			if first {
				a.latency = at.Sub(created)
				a.conn = res.GetAssignment().GetConnection()
				a.session = str(res.GetAssignment().GetExtensions(), omext.Session)
				a.token = str(res.GetAssignment().GetExtensions(), omext.ServerToken)
			}
			ts.mu.Unlock()
			if first {
				ts.done <- a
			}
		}
	}()
}

func str(m map[string]*anypb.Any, k string) string {
	s, _, _ := omext.String(m, k)
	return s
}

// await waits for n assignments (beyond those already awaited) or fails.
func (ts *tickets) await(n int, within time.Duration) []*assignment {
	ts.e.t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	var got []*assignment
	for len(got) < n {
		select {
		case a := <-ts.done:
			got = append(got, a)
		case <-deadline.C:
			ts.e.t.Fatalf("only %d of %d tickets assigned within %s", len(got), n, within)
		}
	}
	return got
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	i := int(p * float64(len(s)-1))
	return s[i]
}

// waitFor polls cond (state lives in other processes, so there is no event to wait on).
func waitFor(t testing.TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// counter sums a counter family of the last director's registry.
func (e *env) counter(name string) float64 {
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// quantile estimates a histogram's q-quantile of the last director's registry (linear within the
// bucket, like PromQL's histogram_quantile).
func (e *env) quantile(name string, q float64) time.Duration {
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) == 0 {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		total := float64(h.GetSampleCount())
		if total == 0 {
			return 0
		}
		rank, lower, below := q*total, 0.0, 0.0
		for _, bk := range h.GetBucket() {
			c := float64(bk.GetCumulativeCount())
			if c >= rank {
				frac := (rank - below) / max(c-below, 1)
				return time.Duration((lower + frac*(bk.GetUpperBound()-lower)) * float64(time.Second))
			}
			lower, below = bk.GetUpperBound(), c
		}
		return time.Duration(lower * float64(time.Second))
	}
	return 0
}
