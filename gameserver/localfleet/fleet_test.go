package localfleet_test

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kumi-dev/kumi/allocation"
	"github.com/kumi-dev/kumi/gameserver/localfleet"
	"github.com/kumi-dev/kumi/gameserver/localsdk"
	"github.com/kumi-dev/kumi/internal/config"
)

func fleetConfig(t *testing.T) localfleet.Config {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := localfleet.Default()
	cfg.Name = "test"
	cfg.Command = []string{exe}
	// GORACE: a -race child otherwise sleeps 1 s in exit (ThreadSanitizer's atexit_sleep_ms).
	cfg.Env = []string{"LOCALFLEET_TEST_CHILD=1", "GORACE=atexit_sleep_ms=0"}
	cfg.BufferSize = 2
	cfg.MaxReplicas = 6
	cfg.SessionCapacity = 2
	cfg.Labels = map[string]string{"kumi.dev/pool": "p"}
	// Children ping every 20 ms; a missed 100 ms period five times after 1 s means Unhealthy. Half
	// a second of silence, so a -race child starved on a loaded machine is not taken for
	// an unhealthy one (tests count the unhealthy deletions exactly).
	cfg.Health = localsdk.Health{Period: 100 * time.Millisecond, FailureThreshold: 5, InitialDelay: time.Second}
	cfg.SyncInterval = 200 * time.Millisecond
	cfg.StopGrace = 2 * time.Second
	if testing.Verbose() {
		cfg.Output = os.Stderr
	}
	return cfg
}

// testLogger shows the fleet's log with -v.
func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type harness struct {
	t       *testing.T
	deleted []allocation.Event // every Deleted event read so far
	f       *localfleet.Fleet
	events  <-chan allocation.Event
	reg     *prometheus.Registry
	cancel  context.CancelFunc
}

func startFleet(t *testing.T, cfg localfleet.Config) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	reg := prometheus.NewRegistry()
	f, err := localfleet.Start(ctx, testLogger(), cfg, reg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	events, err := f.Watch(ctx, map[string]string{localfleet.LabelFleet: cfg.Name})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	h := &harness{t: t, f: f, events: events, reg: reg, cancel: cancel}
	t.Cleanup(func() {
		cancel()
		done := make(chan struct{})
		go func() { _ = f.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("fleet did not stop within 20s")
		}
	})
	return h
}

// until waits, event by event, for cond over the fleet's list.
func (h *harness) until(what string, cond func([]allocation.GameServer) bool) {
	h.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		list, err := h.f.List(context.Background(), nil)
		if err != nil {
			h.t.Fatal(err)
		}
		if cond(list) {
			return
		}
		select {
		case ev, ok := <-h.events:
			if !ok {
				h.t.Fatalf("watch closed while waiting for %s", what)
			}
			if ev.Deleted {
				h.deleted = append(h.deleted, ev)
			}
		case <-timeout:
			h.t.Fatalf("timed out waiting for %s; servers: %+v", what, list)
		}
	}
}

// waitDeleted returns the Deleted event of the named server.
func (h *harness) waitDeleted(name string) allocation.Event {
	h.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		if i := slices.IndexFunc(h.deleted, func(ev allocation.Event) bool { return ev.Server.Name == name }); i >= 0 {
			return h.deleted[i]
		}
		select {
		case ev, ok := <-h.events:
			if !ok {
				h.t.Fatalf("watch closed while waiting for %s to be deleted", name)
			}
			if ev.Deleted {
				h.deleted = append(h.deleted, ev)
			}
		case <-timeout:
			h.t.Fatalf("timed out waiting for %s to be deleted", name)
		}
	}
}

func count(list []allocation.GameServer, state string) int {
	n := 0
	for _, gs := range list {
		if gs.State == state {
			n++
		}
	}
	return n
}

func readyN(n int) func([]allocation.GameServer) bool {
	return func(l []allocation.GameServer) bool { return count(l, "Ready") == n }
}

// send sends a command to a child over its UDP port and returns the reply.
func send(t *testing.T, port int32, cmd string) string {
	t.Helper()
	c, err := net.Dial("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 512)
	for range 20 { // UDP: retry a lost datagram
		if _, err := c.Write([]byte(cmd)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil {
			return string(buf[:n])
		}
		if cmd == "exit" {
			return "" // the child is gone: no reply
		}
	}
	t.Fatalf("no reply to %q from port %d", cmd, port)
	return ""
}

func pidGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func pidOf(t *testing.T, f *localfleet.Fleet, name string) int {
	t.Helper()
	for _, s := range f.Servers() {
		if s.Name == name {
			return s.PID
		}
	}
	t.Fatalf("no server %s", name)
	return 0
}

func TestFleetKeepsBufferAndPassesPorts(t *testing.T) {
	h := startFleet(t, fleetConfig(t))
	h.until("2 Ready", readyN(2))
	list, _ := h.f.List(context.Background(), map[string]string{"kumi.dev/pool": "p"})
	if len(list) != 2 {
		t.Fatalf("List by pool = %d servers", len(list))
	}
	seen := map[int32]bool{}
	for _, gs := range list {
		if gs.Address != "127.0.0.1" || len(gs.Ports) != 1 || gs.Ports[0].Name != "default" {
			t.Fatalf("server %+v", gs)
		}
		if seen[gs.Ports[0].Port] {
			t.Fatalf("port %d given twice", gs.Ports[0].Port)
		}
		seen[gs.Ports[0].Port] = true
		// The process bound the port it read from its own SDK endpoint.
		if got := send(t, gs.Ports[0].Port, "ping"); got != "pong "+gs.Name {
			t.Fatalf("ping %s: %q", gs.Name, got)
		}
		if c := gs.Counters["sessions"]; c.Count != 0 || c.Capacity != 2 {
			t.Errorf("sessions counter = %+v", c)
		}
		if gs.Labels[localfleet.LabelFleet] != "test" {
			t.Errorf("labels = %v", gs.Labels)
		}
	}
	if l, _ := h.f.List(context.Background(), map[string]string{"kumi.dev/pool": "other"}); len(l) != 0 {
		t.Errorf("List by another pool = %v", l)
	}

	// Allocating one grows the fleet so that two stay Ready.
	st, err := h.f.Allocate(context.Background(), allocation.Spec{})
	if err != nil || st.State != allocation.AllocationAllocated {
		t.Fatalf("Allocate = %+v, %v", st, err)
	}
	h.until("1 Allocated + 2 Ready", func(l []allocation.GameServer) bool {
		return count(l, "Allocated") == 1 && count(l, "Ready") == 2 && len(l) == 3
	})
}

func TestHighDensityAllocation(t *testing.T) {
	cfg := fleetConfig(t)
	cfg.BufferSize = 1
	cfg.MaxReplicas = 2
	h := startFleet(t, cfg)
	h.until("1 Ready", readyN(1))

	inc := "Increment"
	one := int64(1)
	spec := allocation.Spec{
		Selectors: []allocation.Selector{
			{GameServerState: "Allocated", MatchLabels: map[string]string{"kumi.dev/pool": "p"}, Counters: map[string]allocation.CounterSelector{"sessions": {MinAvailable: 1}}},
			{GameServerState: "Ready", MatchLabels: map[string]string{"kumi.dev/pool": "p"}, Counters: map[string]allocation.CounterSelector{"sessions": {MinAvailable: 1}}},
		},
		Priorities: []allocation.Priority{{Type: "Counter", Key: "sessions"}},
		Metadata:   &allocation.MetaPatch{Labels: map[string]string{"kumi.dev/owner": "director-1"}},
		Counters:   map[string]allocation.CounterAction{"sessions": {Action: &inc, Amount: &one}},
	}
	ctx := context.Background()
	first, err := h.f.Allocate(ctx, spec)
	if err != nil || first.State != allocation.AllocationAllocated {
		t.Fatalf("first = %+v, %v", first, err)
	}
	if first.Address != "127.0.0.1" || len(first.Ports) != 1 || first.Source != "local" {
		t.Errorf("status = %+v", first)
	}
	if first.Counters["sessions"] != (allocation.CounterStatus{Count: 1, Capacity: 2}) {
		t.Errorf("counters = %+v", first.Counters)
	}
	if first.Metadata.Labels["kumi.dev/owner"] != "director-1" || first.Metadata.Annotations[localsdk.AnnotationLastAllocated] == "" {
		t.Errorf("metadata = %+v", first.Metadata)
	}
	// The Allocated selector comes first: the same server takes the second session.
	second, err := h.f.Allocate(ctx, spec)
	if err != nil || second.GameServerName != first.GameServerName || second.Counters["sessions"].Count != 2 {
		t.Fatalf("second = %+v, %v (first on %s)", second, err, first.GameServerName)
	}
	if second.Metadata.Annotations[localsdk.AnnotationLastAllocated] == first.Metadata.Annotations[localsdk.AnnotationLastAllocated] {
		t.Error("last-allocated not restamped on re-allocation")
	}
	// Full: the next session goes to a Ready server once the buffer has one.
	h.until("1 Allocated + 1 Ready", func(l []allocation.GameServer) bool {
		return count(l, "Allocated") == 1 && count(l, "Ready") == 1
	})
	third, err := h.f.Allocate(ctx, spec)
	if err != nil || third.State != allocation.AllocationAllocated || third.GameServerName == first.GameServerName {
		t.Fatalf("third = %+v, %v", third, err)
	}
	// At max replicas with both servers Allocated and nothing free for this selector: UnAllocated.
	full := spec
	full.Counters = map[string]allocation.CounterAction{"sessions": {Action: &inc, Amount: ptr(int64(5))}}
	if st, err := h.f.Allocate(ctx, full); err != nil || st.Counters["sessions"].Count != 2 {
		t.Fatalf("clamped allocation = %+v, %v", st, err) // third's server: 1 + 5 clamped to 2
	}
	st, err := h.f.Allocate(ctx, spec)
	if err != nil || st.State != allocation.AllocationUnAllocated || st.GameServerName != "" {
		t.Fatalf("allocation on a full fleet = %+v, %v; want UnAllocated and no error", st, err)
	}
	if _, err := h.f.Allocate(ctx, allocation.Spec{Scheduling: "Spread"}); err == nil {
		t.Fatal("invalid spec accepted")
	}
	if got := testutil.ToFloat64(counterVec(t, h.reg, "kumi_localfleet_allocations_total", "UnAllocated")); got != 1 {
		t.Errorf("UnAllocated metric = %v", got)
	}
}

func ptr[T any](v T) *T { return &v }

// counterVec reads one labelled counter from the registry.
func counterVec(t *testing.T, reg *prometheus.Registry, name, result string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "result" && lp.GetValue() == result {
					c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
					c.Add(m.GetCounter().GetValue())
					return c
				}
			}
		}
	}
	t.Fatalf("metric %s{result=%s} not found", name, result)
	return nil
}

func TestCrashedProcessIsReplaced(t *testing.T) {
	cfg := fleetConfig(t)
	cfg.BufferSize = 1
	h := startFleet(t, cfg)
	h.until("1 Ready", readyN(1))
	list, _ := h.f.List(context.Background(), nil)
	victim := list[0]
	pid := pidOf(t, h.f, victim.Name)
	send(t, victim.Ports[0].Port, "exit")
	if ev := h.waitDeleted(victim.Name); ev.Server.State != "Unhealthy" {
		t.Errorf("crashed server deleted in state %s, want Unhealthy", ev.Server.State)
	}
	h.until("replacement Ready", func(l []allocation.GameServer) bool {
		return len(l) == 1 && l[0].Name != victim.Name && l[0].State == "Ready"
	})
	if !pidGone(pid) {
		t.Errorf("crashed process %d not reaped", pid)
	}
}

func TestHealthLossIsReplaced(t *testing.T) {
	cfg := fleetConfig(t)
	cfg.BufferSize = 1
	h := startFleet(t, cfg)
	h.until("1 Ready", readyN(1))
	list, _ := h.f.List(context.Background(), nil)
	victim := list[0]
	pid := pidOf(t, h.f, victim.Name)
	if got := send(t, victim.Ports[0].Port, "stop-health"); got != "ok" {
		t.Fatalf("stop-health: %q", got)
	}
	// The process keeps running; only its missing pings make it Unhealthy.
	h.until("victim Unhealthy or gone", func(l []allocation.GameServer) bool {
		for _, gs := range l {
			if gs.Name == victim.Name {
				return gs.State == "Unhealthy"
			}
		}
		return true
	})
	if ev := h.waitDeleted(victim.Name); ev.Server.State != "Unhealthy" {
		t.Errorf("deleted in state %s, want Unhealthy", ev.Server.State)
	}
	h.until("replacement Ready", func(l []allocation.GameServer) bool {
		return len(l) == 1 && l[0].Name != victim.Name && l[0].State == "Ready"
	})
	if !pidGone(pid) {
		t.Errorf("unhealthy process %d still running", pid)
	}
	if got := testutil.ToFloat64(counterVecReason(t, h.reg, "unhealthy")); got != 1 {
		t.Errorf("deleted{reason=unhealthy} = %v", got)
	}
}

func counterVecReason(t *testing.T, reg *prometheus.Registry, reason string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "kumi_localfleet_gameservers_deleted_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "reason" && lp.GetValue() == reason {
					c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
					c.Add(m.GetCounter().GetValue())
					return c
				}
			}
		}
	}
	t.Fatalf("deleted{reason=%s} not found", reason)
	return nil
}

// TestBootstrapSecretPerProcess: each process gets a secret of its own that proves its name, and
// only its name, to the director (serverid.Verifier), until the process is removed.
func TestBootstrapSecretPerProcess(t *testing.T) {
	h := startFleet(t, fleetConfig(t))
	h.until("2 Ready", readyN(2))
	list, _ := h.f.List(context.Background(), nil)
	a, b := list[0], list[1]
	secretA, secretB := send(t, a.Ports[0].Port, "bootstrap"), send(t, b.Ports[0].Port, "bootstrap")
	if secretA == "" || secretA == secretB {
		t.Fatalf("secrets %q and %q: want two different ones", secretA, secretB)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		server, proof string
		ok            bool
	}{
		{a.Name, secretA, true},
		{b.Name, secretB, true},
		{b.Name, secretA, false},
		{a.Name, secretB, false},
	} {
		if err := h.f.VerifyBootstrap(ctx, tc.server, tc.proof); (err == nil) != tc.ok {
			t.Errorf("VerifyBootstrap(%s) = %v, want ok=%v", tc.server, err, tc.ok)
		}
	}
	if got := send(t, a.Ports[0].Port, "shutdown"); got != "ok" {
		t.Fatalf("shutdown: %q", got)
	}
	h.waitDeleted(a.Name)
	if err := h.f.VerifyBootstrap(ctx, a.Name, secretA); err == nil {
		t.Fatal("a removed process's secret still proves its name")
	}
}

func TestShutdownRemovesServer(t *testing.T) {
	cfg := fleetConfig(t)
	cfg.BufferSize = 1
	h := startFleet(t, cfg)
	h.until("1 Ready", readyN(1))
	list, _ := h.f.List(context.Background(), nil)
	victim := list[0]
	pid := pidOf(t, h.f, victim.Name)
	if got := send(t, victim.Ports[0].Port, "shutdown"); got != "ok" {
		t.Fatalf("shutdown: %q", got)
	}
	if ev := h.waitDeleted(victim.Name); ev.Server.State != "Shutdown" {
		t.Errorf("deleted in state %s, want Shutdown", ev.Server.State)
	}
	h.until("replacement Ready", func(l []allocation.GameServer) bool {
		return len(l) == 1 && l[0].Name != victim.Name && l[0].State == "Ready"
	})
	if !pidGone(pid) {
		t.Errorf("process %d not reaped after Shutdown", pid)
	}
}

func TestStopReapsEveryChild(t *testing.T) {
	cfg := fleetConfig(t)
	cfg.BufferSize = 2
	cfg.StopGrace = 300 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f, err := localfleet.Start(ctx, slog.New(slog.DiscardHandler), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	events, err := f.Watch(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, f: f, events: events}
	h.until("2 Ready", readyN(2))
	list, _ := f.List(ctx, nil)
	// One child ignores SIGTERM: it must be killed after the grace.
	if got := send(t, list[0].Ports[0].Port, "ignore-term"); got != "ok" {
		t.Fatalf("ignore-term: %q", got)
	}
	var pids []int
	for _, s := range f.Servers() {
		pids = append(pids, s.PID)
	}
	cancel()
	start := time.Now()
	if err := f.Wait(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("stop took %s", d)
	}
	for _, pid := range pids {
		if !pidGone(pid) {
			t.Errorf("child %d survived the fleet", pid)
		}
	}
	for range events {
	} // the watch channel is closed once the fleet stops
	if _, err := f.Allocate(context.Background(), allocation.Spec{}); err == nil || !strings.Contains(err.Error(), "fleet stopped") {
		t.Errorf("Allocate on a stopped fleet = %v, want an error", err)
	}
}

func TestAllocationLatency(t *testing.T) {
	cfg := fleetConfig(t)
	cfg.BufferSize = 0
	cfg.AllocationLatency = 150 * time.Millisecond
	h := startFleet(t, cfg)
	start := time.Now()
	st, err := h.f.Allocate(context.Background(), allocation.Spec{})
	if err != nil || st.State != allocation.AllocationUnAllocated {
		t.Fatalf("Allocate on an empty fleet = %+v, %v", st, err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("allocation answered after %s, before the simulated latency", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := h.f.Allocate(ctx, allocation.Spec{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Allocate with a short deadline = %v", err)
	}
}

func TestStartFailureIsReported(t *testing.T) {
	cfg := fleetConfig(t)
	cfg.Command = []string{"/nonexistent/kumi-gameserver"}
	cfg.BufferSize = 1
	h := startFleet(t, cfg)
	timeout := time.After(10 * time.Second)
	for {
		mfs, err := h.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "kumi_localfleet_start_failures_total" && mf.GetMetric()[0].GetCounter().GetValue() >= 1 {
				if l, _ := h.f.List(context.Background(), nil); len(l) != 0 {
					t.Fatalf("servers listed without a process: %+v", l)
				}
				return
			}
		}
		select {
		case <-timeout:
			t.Fatal("no start failure reported")
		case <-time.After(50 * time.Millisecond): // polling a metric: no event exists for it
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mod     func(*localfleet.Config)
		wantErr string
	}{
		{"default", func(*localfleet.Config) {}, ""},
		{"no name", func(c *localfleet.Config) { c.Name = "" }, "name must be set"},
		{"min over max", func(c *localfleet.Config) { c.MinReplicas, c.MaxReplicas = 5, 2 }, "min-replicas"},
		{"negative buffer", func(c *localfleet.Config) { c.BufferSize = -1 }, "buffer-size"},
		{"sessions declared twice", func(c *localfleet.Config) {
			c.Counters = map[string]allocation.CounterStatus{"sessions": {Capacity: 1}}
		}, `counter "sessions"`},
		{"bad health", func(c *localfleet.Config) { c.Health.Period = 0 }, "health-period"},
		{"bad label", func(c *localfleet.Config) { c.Labels = map[string]string{"a b": "c"} }, "label"},
		{"zero sync", func(c *localfleet.Config) { c.SyncInterval = 0 }, "sync-interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := localfleet.Default()
			tc.mod(&cfg)
			err := cfg.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestCrashLoopBacksOff runs a command that dies at once: the fleet keeps replacing it, but with a
// pause between replacements instead of spinning. The pauses themselves are TestNextBackoff's; here
// the fleet must honour them: five starts take at least the four pauses between them (100 + 200 +
// 400 + 400 ms), a lower bound a loaded machine only makes easier to meet, while a fleet that
// ignored the backoff would start five in a few process lifetimes.
func TestCrashLoopBacksOff(t *testing.T) {
	cfg := fleetConfig(t)
	cfg.Command = []string{"/bin/sh", "-c", "exit 1"}
	cfg.BufferSize = 1
	cfg.RestartBackoffMax = 400 * time.Millisecond
	t0 := time.Now()
	h := startFleet(t, cfg)
	const starts = 5
	for metricValue(t, h.reg, "kumi_localfleet_gameservers_started_total") < starts {
		select {
		case _, ok := <-h.events: // every start and crash is an event
			if !ok {
				t.Fatal("watch closed")
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%d starts in 30s of a crash loop, want %d", int(metricValue(t, h.reg, "kumi_localfleet_gameservers_started_total")), starts)
		}
	}
	if took, least := time.Since(t0), (100+200+400+400)*time.Millisecond; took < least {
		t.Errorf("%d starts of a crash loop took %s, less than the %s of pauses between them", starts, took, least)
	}
	if crashes := metricValue(t, h.reg, "kumi_localfleet_gameservers_deleted_total"); crashes < 1 {
		t.Errorf("deleted = %v, want the crashed servers deleted", crashes)
	}
}

// metricValue sums every series of a metric family.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
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

func TestDefaultCommandIsKumiGameServer(t *testing.T) {
	cfg := localfleet.Default()
	cfg.BufferSize = 0 // start nothing
	cfg.Args = []string{"-director=127.0.0.1:1"}
	h := startFleet(t, cfg)
	exe, _ := os.Executable()
	want := []string{exe, "gameserver", "-listen-addr=127.0.0.1:0", "-director=127.0.0.1:1"}
	if got := h.f.Command(); !slices.Equal(got, want) {
		t.Errorf("Command = %q, want %q", got, want)
	}
	if h.f.Name() != "local:kumi-local" {
		t.Errorf("Name = %q", h.f.Name())
	}
}

// TestConcurrentAllocationsNeverOverfill: allocations race each other (and the servers' own SDK
// traffic); the counter bounds still hold exactly.
func TestConcurrentAllocationsNeverOverfill(t *testing.T) {
	cfg := fleetConfig(t)
	cfg.BufferSize, cfg.MaxReplicas = 2, 2
	cfg.SessionCapacity = 3
	h := startFleet(t, cfg)
	h.until("2 Ready", readyN(2))
	inc, one := "Increment", int64(1)
	spec := allocation.Spec{
		Selectors: []allocation.Selector{
			{GameServerState: "Allocated", Counters: map[string]allocation.CounterSelector{"sessions": {MinAvailable: 1}}},
			{GameServerState: "Ready", Counters: map[string]allocation.CounterSelector{"sessions": {MinAvailable: 1}}},
		},
		Counters: map[string]allocation.CounterAction{"sessions": {Action: &inc, Amount: &one}},
	}
	type result struct {
		st  allocation.Status
		err error
	}
	results := make(chan result, 10)
	for range 10 {
		go func() {
			st, err := h.f.Allocate(context.Background(), spec)
			results <- result{st, err}
		}()
	}
	perServer := map[string][]int64{}
	unallocated := 0
	for range 10 {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.st.State == allocation.AllocationUnAllocated {
			unallocated++
			continue
		}
		perServer[r.st.GameServerName] = append(perServer[r.st.GameServerName], r.st.Counters["sessions"].Count)
	}
	if unallocated != 4 || len(perServer) != 2 {
		t.Fatalf("unallocated %d, servers %v; want 4 and 2 servers", unallocated, perServer)
	}
	for name, counts := range perServer {
		slices.Sort(counts)
		if !slices.Equal(counts, []int64{1, 2, 3}) {
			t.Errorf("%s saw counts %v, want each of 1, 2, 3 once", name, counts)
		}
	}
}

// TestWatchLabelSelector: a server enters a label-selected watch when allocation labels it, and is
// reported Deleted when a later allocation changes the label so it no longer matches.
func TestWatchLabelSelector(t *testing.T) {
	cfg := fleetConfig(t)
	cfg.BufferSize = 1
	h := startFleet(t, cfg)
	h.until("1 Ready", readyN(1))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	owned, err := h.f.Watch(ctx, map[string]string{"kumi.dev/owner": "d1"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := h.f.Allocate(ctx, allocation.Spec{Metadata: &allocation.MetaPatch{Labels: map[string]string{"kumi.dev/owner": "d1"}}})
	if err != nil || st.State != allocation.AllocationAllocated {
		t.Fatalf("Allocate = %+v, %v", st, err)
	}
	next := func() allocation.Event {
		select {
		case ev := <-owned:
			return ev
		case <-time.After(10 * time.Second):
			t.Fatal("no event on the label-selected watch")
			return allocation.Event{}
		}
	}
	ev := next()
	if ev.Deleted || ev.Server.Name != st.GameServerName || ev.Server.State != "Allocated" {
		t.Fatalf("first event %+v", ev)
	}
	if l, _ := h.f.List(ctx, map[string]string{"kumi.dev/owner": "d1"}); len(l) != 1 || l[0].Name != st.GameServerName {
		t.Fatalf("List by owner = %+v", l)
	}
	// Re-allocate the same server with another owner.
	st2, err := h.f.Allocate(ctx, allocation.Spec{
		Selectors: []allocation.Selector{{GameServerState: "Allocated", MatchLabels: map[string]string{"kumi.dev/owner": "d1"}}},
		Metadata:  &allocation.MetaPatch{Labels: map[string]string{"kumi.dev/owner": "d2"}},
	})
	if err != nil || st2.GameServerName != st.GameServerName {
		t.Fatalf("re-allocation = %+v, %v", st2, err)
	}
	for {
		ev = next()
		if ev.Deleted {
			break
		}
	}
	if ev.Server.Name != st.GameServerName || ev.Server.Labels["kumi.dev/owner"] != "d2" {
		t.Errorf("deleted event %+v, want %s relabelled d2", ev, st.GameServerName)
	}
}

// TestConfigBindsToFlags: every tagged setting is a flag (so `kumi local` can expose them).
func TestConfigBindsToFlags(t *testing.T) {
	cfg := localfleet.Default()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	if err := config.Bind(fs, "fleet.", &cfg); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"-fleet.buffer-size=7", "-fleet.health-period=250ms", "-fleet.args=-a,-b"}); err != nil {
		t.Fatal(err)
	}
	if cfg.BufferSize != 7 || cfg.Health.Period != 250*time.Millisecond || !slices.Equal(cfg.Args, []string{"-a", "-b"}) {
		t.Errorf("bound config = %+v", cfg)
	}
}
