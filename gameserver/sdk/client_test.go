package sdk_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/kumi-dev/kumi/allocation"
	sdkpb "github.com/kumi-dev/kumi/api/agones/sdk"
	betapb "github.com/kumi-dev/kumi/api/agones/sdk/beta"
	"github.com/kumi-dev/kumi/gameserver/localsdk"
	"github.com/kumi-dev/kumi/gameserver/sdk"
)

func testConfig() localsdk.Config {
	cfg := localsdk.Default()
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.Name = "gs-test"
	cfg.Health.Disabled = true
	cfg.Counters = map[string]allocation.CounterStatus{"sessions": {Count: 1, Capacity: 10}}
	cfg.Lists = map[string]allocation.ListStatus{"players": {Capacity: 3, Values: []string{"a", "b"}}}
	return cfg
}

// start runs a local SDK server and a client connected to it, both stopped by t.Cleanup.
func start(t testing.TB, cfg localsdk.Config) (*localsdk.Server, *sdk.Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := localsdk.Start(ctx, slog.New(slog.DiscardHandler), cfg)
	if err != nil {
		cancel()
		t.Fatalf("localsdk.Start: %v", err)
	}
	c, err := sdk.Dial(ctx, srv.Addr())
	if err != nil {
		cancel()
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() {
		_ = c.Close()
		cancel()
		if err := srv.Wait(); err != nil {
			t.Errorf("server Wait: %v", err)
		}
	})
	return srv, c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// watchStates runs WatchGameServer and delivers every state it sees.
func watchStates(t *testing.T, c *sdk.Client) <-chan *sdkpb.GameServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan *sdkpb.GameServer, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.WatchGameServer(ctx, func(gs *sdkpb.GameServer) { ch <- gs })
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ch
}

// waitState reads updates until one is in state want, failing on timeout.
func waitState(t *testing.T, ch <-chan *sdkpb.GameServer, want string) *sdkpb.GameServer {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case gs := <-ch:
			if gs.GetStatus().GetState() == want {
				return gs
			}
		case <-timeout:
			t.Fatalf("state %s not seen within 30s", want)
			return nil
		}
	}
}

func TestAddrFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"defaults", nil, "localhost:9357"},
		{"port only", map[string]string{sdk.EnvGRPCPort: "1234"}, "localhost:1234"},
		{"host and port", map[string]string{sdk.EnvGRPCHost: "127.0.0.1", sdk.EnvGRPCPort: "40000"}, "127.0.0.1:40000"},
		{"ipv6 host", map[string]string{sdk.EnvGRPCHost: "::1"}, "[::1]:9357"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sdk.AddrFromEnv(func(k string) string { return tc.env[k] }); got != tc.want {
				t.Errorf("AddrFromEnv = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDialRejectsBadAddress(t *testing.T) {
	if _, err := sdk.Dial(context.Background(), "no-port"); err == nil || !strings.Contains(err.Error(), "host:port") {
		t.Fatalf("Dial(no-port) = %v, want an error naming host:port", err)
	}
}

func TestFromEnv(t *testing.T) {
	srv, _ := start(t, testConfig())
	t.Setenv(sdk.EnvGRPCHost, "127.0.0.1")
	t.Setenv(sdk.EnvGRPCPort, strings.TrimPrefix(srv.Addr(), "127.0.0.1:"))
	c, err := sdk.FromEnv(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	gs, err := c.GetGameServer(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if gs.GetObjectMeta().GetName() != "gs-test" {
		t.Errorf("name = %q", gs.GetObjectMeta().GetName())
	}
}

func TestGetGameServerCarriesConfig(t *testing.T) {
	cfg := testConfig()
	cfg.Ports = []allocation.Port{{Name: "default", Port: 7654}}
	cfg.Labels = map[string]string{"kumi.dev/pool": "p1"}
	_, c := start(t, cfg)
	gs, err := c.GetGameServer(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	st := gs.GetStatus()
	if st.GetState() != localsdk.StateScheduled || st.GetAddress() != "127.0.0.1" {
		t.Errorf("state/address = %s/%s", st.GetState(), st.GetAddress())
	}
	if len(st.GetPorts()) != 1 || st.GetPorts()[0].GetPort() != 7654 || st.GetPorts()[0].GetName() != "default" {
		t.Errorf("ports = %v", st.GetPorts())
	}
	if gs.GetObjectMeta().GetLabels()["kumi.dev/pool"] != "p1" {
		t.Errorf("labels = %v", gs.GetObjectMeta().GetLabels())
	}
	if c := st.GetCounters()["sessions"]; c.GetCount() != 1 || c.GetCapacity() != 10 {
		t.Errorf("counter = %v", c)
	}
	if l := st.GetLists()["players"]; l.GetCapacity() != 3 || len(l.GetValues()) != 2 {
		t.Errorf("list = %v", l)
	}
	if h := gs.GetSpec().GetHealth(); h.GetPeriodSeconds() != 3 || h.GetFailureThreshold() != 5 {
		t.Errorf("health = %v", h)
	}
}

func TestStateTransitions(t *testing.T) {
	_, c := start(t, testConfig())
	ctx := testCtx(t)
	ch := watchStates(t, c)
	waitState(t, ch, localsdk.StateScheduled)

	// Ready goes through RequestReady; the stand-in controller then makes it Ready.
	if err := c.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	waitState(t, ch, localsdk.StateRequestReady)
	waitState(t, ch, localsdk.StateReady)

	if err := c.Allocate(ctx); err != nil {
		t.Fatal(err)
	}
	gs := waitState(t, ch, localsdk.StateAllocated)
	stamp := gs.GetObjectMeta().GetAnnotations()[localsdk.AnnotationLastAllocated]
	if _, err := time.Parse(time.RFC3339, stamp); err != nil {
		t.Errorf("last-allocated %q is not RFC 3339: %v", stamp, err)
	}

	// Ready on an Allocated server returns it to the pool.
	if err := c.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	waitState(t, ch, localsdk.StateReady)

	// Reserve with a period returns to Ready when it expires.
	if err := c.Reserve(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	waitState(t, ch, localsdk.StateReserved)
	waitState(t, ch, localsdk.StateReady)

	// Reserve(0) holds until another state request; Allocate cancels it.
	if err := c.Reserve(ctx, 0); err != nil {
		t.Fatal(err)
	}
	waitState(t, ch, localsdk.StateReserved)
	if err := c.Allocate(ctx); err != nil {
		t.Fatal(err)
	}
	waitState(t, ch, localsdk.StateAllocated)

	// Shutdown is terminal: later state requests are ignored.
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitState(t, ch, localsdk.StateShutdown)
	for _, call := range []func(context.Context) error{c.Ready, c.Allocate} {
		if err := call(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Reserve(ctx, 0); err != nil {
		t.Fatal(err)
	}
	gs, err := c.GetGameServer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if gs.GetStatus().GetState() != localsdk.StateShutdown {
		t.Errorf("state after requests on a Shutdown server = %s, want Shutdown", gs.GetStatus().GetState())
	}
}

func TestReserveCancelledByReady(t *testing.T) {
	_, c := start(t, testConfig())
	ctx := testCtx(t)
	ch := watchStates(t, c)
	if err := c.Reserve(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	waitState(t, ch, localsdk.StateReserved)
	if err := c.Allocate(ctx); err != nil {
		t.Fatal(err)
	}
	waitState(t, ch, localsdk.StateAllocated)
	// Had the timer survived, it would move the server to RequestReady after 1 s.
	select {
	case gs := <-ch:
		t.Fatalf("unexpected update after the reservation was cancelled: %s", gs.GetStatus().GetState())
	case <-time.After(1500 * time.Millisecond):
	}
}

func TestReserveNegative(t *testing.T) {
	_, c := start(t, testConfig())
	if err := c.Reserve(testCtx(t), -time.Second); err == nil {
		t.Fatal("Reserve(-1s) succeeded")
	}
}

func TestLabelsAndAnnotations(t *testing.T) {
	_, c := start(t, testConfig())
	ctx := testCtx(t)
	long := strings.Repeat("x", 60) // 4 + 60 > 63 after the sdk- prefix
	for _, tc := range []struct {
		name       string
		annotation bool
		key, value string
		wantErr    bool
	}{
		{"label", false, "gs-session-ready", "true", false},
		{"label empty value", false, "empty", "", false},
		{"label key with slash", false, "a/b", "v", true},
		{"label key with space", false, "bad key", "v", true},
		{"label key too long", false, long, "v", true},
		{"label value invalid", false, "k", "-bad", true},
		{"label value too long", false, "k", long + long, true},
		{"annotation free value", true, "note", "any text, even spaces/slashes", false},
		{"annotation bad key", true, "bad key", "v", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := c.SetLabel
			if tc.annotation {
				set = c.SetAnnotation
			}
			err := set(ctx, tc.key, tc.value)
			if tc.wantErr {
				if status.Code(err) != codes.InvalidArgument {
					t.Fatalf("err = %v, want InvalidArgument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			gs, err := c.GetGameServer(ctx)
			if err != nil {
				t.Fatal(err)
			}
			m := gs.GetObjectMeta().GetLabels()
			if tc.annotation {
				m = gs.GetObjectMeta().GetAnnotations()
			}
			if got, ok := m[localsdk.MetadataPrefix+tc.key]; !ok || got != tc.value {
				t.Errorf("%s%s = %q (present %v), want %q", localsdk.MetadataPrefix, tc.key, got, ok, tc.value)
			}
		})
	}
}

func TestCounters(t *testing.T) {
	_, c := start(t, testConfig())
	ctx := testCtx(t)
	type step struct {
		name    string
		do      func() (*betapb.Counter, error)
		want    [2]int64 // count, capacity after the step
		wantErr string
	}
	steps := []step{
		{"get", func() (*betapb.Counter, error) { return c.GetCounter(ctx, "sessions") }, [2]int64{1, 10}, ""},
		{"get unknown", func() (*betapb.Counter, error) { return c.GetCounter(ctx, "rooms") }, [2]int64{}, "not found. rooms Counter not found"},
		{"increment", func() (*betapb.Counter, error) { return c.UpdateCounter(ctx, "sessions", 4) }, [2]int64{5, 10}, ""},
		{"decrement", func() (*betapb.Counter, error) { return c.UpdateCounter(ctx, "sessions", -2) }, [2]int64{3, 10}, ""},
		{"diff 0 reads", func() (*betapb.Counter, error) { return c.UpdateCounter(ctx, "sessions", 0) }, [2]int64{3, 10}, ""},
		{"past capacity", func() (*betapb.Counter, error) { return c.UpdateCounter(ctx, "sessions", 8) }, [2]int64{}, "out of range. Count must be within range [0,Capacity]. Found Count: 11, Capacity: 10"},
		{"below zero", func() (*betapb.Counter, error) { return c.UpdateCounter(ctx, "sessions", -4) }, [2]int64{}, "out of range. Count must be within range [0,Capacity]. Found Count: -1, Capacity: 10"},
		{"update unknown", func() (*betapb.Counter, error) { return c.UpdateCounter(ctx, "rooms", 1) }, [2]int64{}, "not found. rooms Counter not found"},
		{"set count", func() (*betapb.Counter, error) {
			return nil, c.SetCounterCount(ctx, "sessions", 7)
		}, [2]int64{7, 10}, ""},
		{"set count past capacity", func() (*betapb.Counter, error) {
			return nil, c.SetCounterCount(ctx, "sessions", 11)
		}, [2]int64{}, "out of range. Count must be within range [0,Capacity]. Found Count: 11, Capacity: 10"},
		{"set capacity", func() (*betapb.Counter, error) {
			return nil, c.SetCounterCapacity(ctx, "sessions", 7)
		}, [2]int64{7, 7}, ""},
		{"set capacity negative", func() (*betapb.Counter, error) {
			return nil, c.SetCounterCapacity(ctx, "sessions", -1)
		}, [2]int64{}, "out of range. Capacity must be greater than or equal to 0. Found Capacity: -1"},
		{"capacity below count lowers the count", func() (*betapb.Counter, error) {
			return nil, c.SetCounterCapacity(ctx, "sessions", 5)
		}, [2]int64{5, 5}, ""},
	}
	for _, st := range steps {
		got, err := st.do()
		if st.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), st.wantErr) {
				t.Fatalf("%s: err = %v, want %q", st.name, err, st.wantErr)
			}
			if status.Code(err) != codes.Unknown {
				t.Errorf("%s: code = %s, want Unknown as the sidecar sends", st.name, status.Code(err))
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got == nil {
			if got, err = c.GetCounter(ctx, "sessions"); err != nil {
				t.Fatal(err)
			}
		}
		if got.GetCount() != st.want[0] || got.GetCapacity() != st.want[1] {
			t.Fatalf("%s: counter = %d/%d, want %d/%d", st.name, got.GetCount(), got.GetCapacity(), st.want[0], st.want[1])
		}
	}
	// The GameServer status shows the last value.
	gs, err := c.GetGameServer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cs := gs.GetStatus().GetCounters()["sessions"]; cs.GetCount() != 5 || cs.GetCapacity() != 5 {
		t.Errorf("status counter = %v, want 5/5", cs)
	}
}

func TestLists(t *testing.T) {
	srv, c := start(t, testConfig())
	ctx := testCtx(t)
	type step struct {
		name    string
		do      func() (*betapb.List, error)
		want    []string
		wantCap int64
		wantErr string
	}
	steps := []step{
		{"get", func() (*betapb.List, error) { return c.GetList(ctx, "players") }, []string{"a", "b"}, 3, ""},
		{"get unknown", func() (*betapb.List, error) { return c.GetList(ctx, "rooms") }, nil, 0, "not found. rooms List not found"},
		{"add", func() (*betapb.List, error) { return c.AddListValue(ctx, "players", "c") }, []string{"a", "b", "c"}, 3, ""},
		{"add when full", func() (*betapb.List, error) { return c.AddListValue(ctx, "players", "d") }, nil, 0, "out of range. No available capacity. Current Capacity: 3, List Size: 3"},
		{"remove", func() (*betapb.List, error) { return c.RemoveListValue(ctx, "players", "b") }, []string{"a", "c"}, 3, ""},
		{"add duplicate", func() (*betapb.List, error) { return c.AddListValue(ctx, "players", "a") }, nil, 0, "already exists. Value: a already in List: players"},
		{"remove missing", func() (*betapb.List, error) { return c.RemoveListValue(ctx, "players", "zz") }, nil, 0, "not found. Value: zz not found in List: players"},
		{"add unknown list", func() (*betapb.List, error) { return c.AddListValue(ctx, "rooms", "x") }, nil, 0, "not found. rooms List not found"},
		{"remove unknown list", func() (*betapb.List, error) { return c.RemoveListValue(ctx, "rooms", "x") }, nil, 0, "not found. rooms List not found"},
		{"capacity over 1000", func() (*betapb.List, error) { return c.SetListCapacity(ctx, "players", 1001) }, nil, 0, "out of range. Capacity must be within range [0,1000]. Found Capacity: 1001"},
		{"capacity negative", func() (*betapb.List, error) { return c.SetListCapacity(ctx, "players", -1) }, nil, 0, "out of range. Capacity must be within range [0,1000]. Found Capacity: -1"},
		{"capacity raised", func() (*betapb.List, error) { return c.SetListCapacity(ctx, "players", 1000) }, []string{"a", "c"}, 1000, ""},
		{"values replaced", func() (*betapb.List, error) {
			return c.UpdateList(ctx, &betapb.List{Name: "players", Values: []string{"x", "y", "z"}, Capacity: 5}, "values")
		}, []string{"x", "y", "z"}, 1000, ""},
		{"capacity lowered truncates", func() (*betapb.List, error) { return c.SetListCapacity(ctx, "players", 1) }, []string{"x"}, 1, ""},
		{"bad mask path", func() (*betapb.List, error) {
			return c.UpdateList(ctx, &betapb.List{Name: "players"}, "size")
		}, nil, 0, "invalid argument. Field Mask Path(s): [size] are invalid for List"},
		{"update unknown list", func() (*betapb.List, error) { return c.SetListCapacity(ctx, "rooms", 1) }, nil, 0, "not found. rooms List not found"},
	}
	for _, st := range steps {
		got, err := st.do()
		if st.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), st.wantErr) {
				t.Fatalf("%s: err = %v, want %q", st.name, err, st.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if strings.Join(got.GetValues(), ",") != strings.Join(st.want, ",") || got.GetCapacity() != st.wantCap {
			t.Fatalf("%s: list = %v cap %d, want %v cap %d", st.name, got.GetValues(), got.GetCapacity(), st.want, st.wantCap)
		}
	}
	if l := srv.GameServer().GetStatus().GetLists()["players"]; strings.Join(l.GetValues(), ",") != "x" || l.GetCapacity() != 1 {
		t.Errorf("status list = %v", l)
	}
}

// TestUpdateListNilMask drives the raw API: the client refuses an empty mask itself.
func TestUpdateListNilMask(t *testing.T) {
	srv, c := start(t, testConfig())
	if _, err := c.UpdateList(testCtx(t), &betapb.List{Name: "players"}); err == nil {
		t.Fatal("client UpdateList with no paths succeeded")
	}
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw := betapb.NewSDKClient(conn)
	_, err = raw.UpdateList(testCtx(t), &betapb.UpdateListRequest{List: &betapb.List{Name: "players"}})
	if err == nil || !strings.Contains(err.Error(), "invalid argument.") {
		t.Fatalf("UpdateList without mask: %v", err)
	}
	_, err = raw.UpdateCounter(testCtx(t), &betapb.UpdateCounterRequest{})
	if err == nil || !strings.Contains(err.Error(), "invalid argument. CounterUpdateRequest cannot be nil") {
		t.Fatalf("UpdateCounter without request: %v", err)
	}
	l, err := raw.UpdateList(testCtx(t), &betapb.UpdateListRequest{List: &betapb.List{Name: "players", Capacity: 2}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"capacity"}}})
	if err != nil || l.GetCapacity() != 2 || len(l.GetValues()) != 2 {
		t.Fatalf("UpdateList capacity: %v %v", l, err)
	}
}

func TestWatchSeesEveryChange(t *testing.T) {
	_, c := start(t, testConfig())
	ctx := testCtx(t)
	ch := watchStates(t, c)
	waitState(t, ch, localsdk.StateScheduled)
	for i := range 5 {
		if _, err := c.UpdateCounter(ctx, "sessions", 1); err != nil {
			t.Fatal(err)
		}
		gs := <-ch
		if got := gs.GetStatus().GetCounters()["sessions"].GetCount(); got != int64(2+i) {
			t.Fatalf("update %d: watched count %d, want %d", i, got, 2+i)
		}
	}
	if err := c.SetLabel(ctx, "x", "y"); err != nil {
		t.Fatal(err)
	}
	if gs := <-ch; gs.GetObjectMeta().GetLabels()["agones.dev/sdk-x"] != "y" {
		t.Fatalf("watched labels %v", gs.GetObjectMeta().GetLabels())
	}
}

// TestWatchReconnects restarts the server on the same port: the watch resumes by itself.
func TestWatchReconnects(t *testing.T) {
	cfg := testConfig()
	ctx1, cancel1 := context.WithCancel(context.Background())
	srv1, err := localsdk.Start(ctx1, slog.New(slog.DiscardHandler), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel1()
	c, err := sdk.Dial(context.Background(), srv1.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch := watchStates(t, c)
	waitState(t, ch, localsdk.StateScheduled)
	cancel1()
	if err := srv1.Wait(); err != nil {
		t.Fatal(err)
	}
	cfg.ListenAddr = srv1.Addr()
	cfg.State = localsdk.StateAllocated
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	srv2, err := localsdk.Start(ctx2, slog.New(slog.DiscardHandler), cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, ch, localsdk.StateAllocated)
	cancel2()
	_ = srv2.Wait()
}

func TestHealthLossMarksUnhealthy(t *testing.T) {
	cfg := testConfig()
	// 1.5 s of silence makes it Unhealthy: a pinger (every 10 ms) stalled that long by a loaded
	// machine is far less likely than one stalled for the 150 ms this test once allowed.
	cfg.Health = localsdk.Health{Period: 500 * time.Millisecond, FailureThreshold: 3, InitialDelay: 0}
	_, c := start(t, cfg)
	ctx := testCtx(t)
	ch := watchStates(t, c)
	if err := c.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	waitState(t, ch, localsdk.StateReady)

	// Pinging keeps it healthy well past period × threshold.
	pingCtx, stopPing := context.WithCancel(ctx)
	pingDone := make(chan error, 1)
	go func() {
		pingDone <- c.KeepHealthy(pingCtx, 10*time.Millisecond, func(err error) { t.Errorf("health ping: %v", err) })
	}()
	healthyFor := time.After(400 * time.Millisecond)
	for waiting := true; waiting; {
		select {
		case gs := <-ch:
			t.Fatalf("state changed while pinging: %s", gs.GetStatus().GetState())
		case <-healthyFor:
			waiting = false
		}
	}
	stopPing()
	if err := <-pingDone; err != nil {
		t.Fatal(err)
	}
	// Silence: Unhealthy after about period × threshold.
	stopped := time.Now()
	waitState(t, ch, localsdk.StateUnhealthy)
	if d := time.Since(stopped); d < time.Second {
		t.Errorf("Unhealthy after %s, before period × threshold", d)
	}
	// Terminal: Ready and more pings change nothing.
	if err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	gs, err := c.GetGameServer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if gs.GetStatus().GetState() != localsdk.StateUnhealthy {
		t.Errorf("state = %s, want Unhealthy to stay", gs.GetStatus().GetState())
	}
}

func TestHealthInitialDelay(t *testing.T) {
	cfg := testConfig()
	cfg.Health = localsdk.Health{Period: 20 * time.Millisecond, FailureThreshold: 1, InitialDelay: 300 * time.Millisecond}
	started := time.Now()
	_, c := start(t, cfg)
	ch := watchStates(t, c)
	waitState(t, ch, localsdk.StateUnhealthy)
	if d := time.Since(started); d < 300*time.Millisecond {
		t.Errorf("Unhealthy after %s, inside the initial delay", d)
	}
}

func TestHealthReopensStream(t *testing.T) {
	cfg := testConfig()
	ctx1, cancel1 := context.WithCancel(context.Background())
	srv1, err := localsdk.Start(ctx1, slog.New(slog.DiscardHandler), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel1()
	c, err := sdk.Dial(context.Background(), srv1.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testCtx(t)
	if err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	cancel1()
	_ = srv1.Wait()
	cfg.ListenAddr = srv1.Addr()
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	srv2, err := localsdk.Start(ctx2, slog.New(slog.DiscardHandler), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The old stream is dead; within a few pings the client has a new one. The budget outlasts
	// one gRPC reconnect backoff (1 s ± 20 %), in case the channel tried to reconnect before srv2
	// was listening.
	var lastErr error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if lastErr = c.Health(ctx); lastErr == nil {
			break
		}
		time.Sleep(20 * time.Millisecond) // reconnect backoff of the gRPC channel, no event to wait on
	}
	if lastErr != nil {
		t.Fatalf("Health after server restart: %v", lastErr)
	}
	cancel2()
	_ = srv2.Wait()
}

func TestClosedClient(t *testing.T) {
	_, c := start(t, testConfig())
	ctx := testCtx(t)
	if err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Health(ctx); err == nil {
		t.Fatal("Health on a closed client succeeded")
	}
	if err := c.KeepHealthy(ctx, 0, nil); err == nil {
		t.Fatal("KeepHealthy with period 0 succeeded")
	}
}
