package director_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/allocation"
	"github.com/kumi-dev/kumi/api/control"
	"github.com/kumi-dev/kumi/director"
	"github.com/kumi-dev/kumi/director/agones"
	"github.com/kumi-dev/kumi/director/pool"
	"github.com/kumi-dev/kumi/internal/controlauth"
	"github.com/kumi-dev/kumi/internal/kubetest/agonesalloc"
	"github.com/kumi-dev/kumi/internal/serverid"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestParseWeights(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]int
		err  string
	}{
		{"", nil, ""},
		{"local=99.99,agones=0.01", map[string]int{"local": 9999, "agones": 1}, ""},
		{"a=100%, b=0", map[string]int{"a": 10000, "b": 0}, ""},
		{"a=0.001", nil, "finer than the 0.01"},
		{"a=101", nil, "outside 0..100"},
		{"a", nil, "want backend=percent"},
		{"a=x", nil, "not a number"},
	} {
		got, err := director.ParseWeights(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseWeights(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ParseWeights(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if tc.want != nil {
			back, _ := director.ParseWeights(director.FormatWeights(got))
			if fmt.Sprint(back) != fmt.Sprint(got) {
				t.Errorf("FormatWeights round trip of %v gave %v", got, back)
			}
		}
	}
}

func TestConfigValidate(t *testing.T) {
	base := director.Default()
	base.TokenKeyFile = "key.pem"
	base.TicketSealSecretFile = "ticket.secret"
	base.AdminTokenFile = "admin.token"
	base.Insecure = true // the default control-addr binds every interface
	if err := base.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mod  func(*director.Config)
		want string
	}{
		{func(c *director.Config) { c.TokenKeyFile = "" }, "token-key"},
		{func(c *director.Config) { c.TicketSealSecretFile = "" }, "accept-unsealed-tickets"},
		{func(c *director.Config) { c.AdminTokenFile = "" }, "admin-token-file"},
		{func(c *director.Config) { c.Insecure = false }, "--insecure"},
		{func(c *director.Config) { c.AcceptUnsealedTickets = true }, "choose one"},
		{func(c *director.Config) { c.Profiles = nil }, "profiles"},
		{func(c *director.Config) { c.Profiles = []string{"a", "a"} }, "distinct"},
		{func(c *director.Config) { c.ServerLabels = []string{"novalue"} }, "key=value"},
		{func(c *director.Config) { c.Weights = "a=200" }, "outside"},
		{func(c *director.Config) { c.MMFPort = 0 }, "mmf-port"},
		{func(c *director.Config) { c.Pool.RateWindow = 0 }, "rate-window"},
		{func(c *director.Config) { c.IdleFetchGap = c.MinFetchGap - 1 }, "idle-fetch-gap"},
		{func(c *director.Config) { c.IdleFetchGap = time.Minute }, "idle-fetch-gap"},
	} {
		c := base
		tc.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want an error naming %q", err, tc.want)
		}
	}
}

// TestOnAgones runs the director over the Agones backend against a real kube-apiserver with the
// allocation responder in front (Agones' 500 ms batch wait): the pool fills by
// GameServerAllocation, matches are placed on the allocated servers' status address, a restarted
// director rebuilds its pool from the labelled GameServers, and the single-instance lock refuses
// a second director.
func TestOnAgones(t *testing.T) {
	e := newEnv(t)
	api := agonesalloc.StartCluster(t, "games", agonesalloc.DefaultConfig())
	for i := range 4 {
		api.Put(t, allocation.GameServer{Name: fmt.Sprintf("gs-%d", i), State: allocation.StateReady, Address: "10.1.0.1",
			Labels: map[string]string{"agones.dev/fleet": "voice"}, Ports: []allocation.Port{{Name: "default", Port: int32(7000 + i)}},
			Counters: map[string]allocation.CounterStatus{allocation.CounterSessions: {Capacity: 10}}})
	}
	acfg := agones.DefaultConfig()
	acfg.Namespace = "games"
	kb, err := agones.NewForRESTConfig(api.Alloc.RESTConfig(), acfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.directorConfig()
	cfg.ServerLabels = []string{"agones.dev/fleet=voice"}
	cfg.Pool.MinFreeSlots = 15
	cfg.LockFile = filepath.Join(t.TempDir(), "director.lock")
	cfg.RebuildTimeout = 0 // these GameServer objects have no process behind them to report
	ctx1, cancel1 := context.WithCancel(e.ctx)
	defer cancel1()
	d, stop1 := e.startDirector(ctx1, cfg, kb)
	waitFor(t, "pool filled by allocations", 60*time.Second, func() bool { return d.Pool().Free("agones", time.Now()) >= 15 })

	// A second director on this machine is refused while the first holds the lock.
	if _, err := director.Start(e.ctx, testLog(t), cfg, prometheus.NewRegistry(), kb); err == nil || !strings.Contains(err.Error(), "another director") {
		t.Fatalf("second director: %v", err)
	}

	ts := e.tickets()
	for i := range 12 {
		ts.create(fmt.Sprintf("p%d", i), fmt.Sprintf("room-%d", i))
	}
	got := ts.await(12, 60*time.Second)
	perServer := map[string]int{}
	for _, a := range got {
		if !strings.HasPrefix(a.conn, "10.1.0.1:700") {
			t.Fatalf("assignment %q is not an allocated server's status address", a.conn)
		}
		perServer[a.conn]++
	}
	if len(perServer) != 2 { // packed: 10 on the fullest, the rest on the next
		t.Fatalf("12 sessions spread over %v, want packing onto 2 servers", perServer)
	}
	for _, spec := range api.Alloc.Requests() {
		if spec.Metadata.Labels[allocation.LabelPool] != "it" || spec.Selectors[1].MatchLabels["agones.dev/fleet"] != "voice" {
			t.Fatalf("allocation spec %+v", spec)
		}
	}

	// Restart: the pool comes back from the labelled GameServers and their counters.
	cancel1()
	stop1()
	pooled := map[string]bool{}
	for _, name := range []string{"gs-0", "gs-1", "gs-2", "gs-3"} {
		if gs := api.Get(t, name); gs.Labels[allocation.LabelPool] == "it" {
			c := gs.Counters[allocation.CounterSessions]
			c.Count = 4 // the game server counts its live sessions
			gs.Counters[allocation.CounterSessions] = c
			api.Put(t, gs)
			pooled[name] = true
		}
	}
	if len(pooled) < 2 {
		t.Fatalf("%d pooled servers before the restart", len(pooled))
	}
	d2, _ := e.startDirector(e.ctx, cfg, kb)
	found := 0
	for _, s := range d2.Pool().Snapshot(time.Now()).Servers {
		if !pooled[s.Name] {
			continue
		}
		found++
		if s.Used != 4 || s.Capacity != 10 || s.Address == "" {
			t.Fatalf("rebuilt server %+v: want used 4 of 10 from its counter, with its address", s)
		}
	}
	if found != len(pooled) {
		t.Fatalf("restarted pool holds %d of the %d labelled servers", found, len(pooled))
	}
}

func poolServer(name string) pool.ServerInfo {
	return pool.ServerInfo{Name: name, Backend: "agones", Capacity: 1, Address: "127.0.0.1:" + map[string]string{"one": "9001", "two": "9002"}[name]}
}

// TestControlAPI checks the game servers' API answers: reports from outside the pool, bad input,
// and moves with and without room; then what a compromised game server holding the shared
// control secret and its own bootstrap proof cannot do (SECURITY.md's table).
func TestControlAPI(t *testing.T) {
	e := newEnv(t)
	api := agonesalloc.StartCluster(t, "games", agonesalloc.DefaultConfig())
	kb, err := agones.NewForRESTConfig(api.Alloc.RESTConfig(), func() agones.Config { c := agones.DefaultConfig(); c.Namespace = "games"; return c }(), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.directorConfig()
	// No local fleet needs the address in advance: a fresh port, not the env's pre-picked one
	// (freed and re-bound, another test's listener can take it meanwhile).
	cfg.ControlAddr = "127.0.0.1:0"
	cfg.RebuildTimeout = 0
	const secret = "control-secret-0123456789"
	cfg.ControlSecret = secret
	// Stands in for the agones backend's TokenReview verifier (tested against a real API server
	// in internal/serverid): one bootstrap secret per game server.
	var proofs serverid.Secrets
	cfg.Bootstrap = []serverid.Verifier{&proofs}
	d, _ := e.startDirector(e.ctx, cfg, kb)
	ctx := e.ctx

	// Without the control secret nobody gets in: MoveSession would mint tokens for anyone.
	anon, err := grpc.NewClient(d.ControlAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if _, err := control.NewDirectorClient(anon).Report(ctx, &control.LoadReport{Server: "x", State: control.ServerState_SERVER_STATE_ACCEPTING}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("report without the secret: %v", err)
	}
	if _, err := control.NewDirectorClient(anon).MoveSession(ctx, &control.MoveSessionRequest{Server: "x", SessionId: "s"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("move without the secret: %v", err)
	}
	conn, err := grpc.NewClient(d.ControlAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(controlauth.Credentials(secret)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// as is game server name's control client, registered with its own bootstrap proof.
	clients := map[string]*serverid.Client{}
	as := func(name string) *serverid.Client {
		if clients[name] == nil {
			clients[name] = serverid.NewClient(conn, serverid.StaticProof(proofs.Mint(name)))
		}
		return clients[name]
	}

	for _, tc := range []struct {
		r    *control.LoadReport
		want codes.Code
	}{
		{&control.LoadReport{}, codes.InvalidArgument},
		{&control.LoadReport{Server: "x"}, codes.InvalidArgument}, // no state
		{&control.LoadReport{Server: "x", State: control.ServerState_SERVER_STATE_ACCEPTING, Capacity: -1}, codes.InvalidArgument},
		{&control.LoadReport{Server: "x", State: control.ServerState_SERVER_STATE_ACCEPTING, Sessions: []*control.SessionLoad{{}}}, codes.InvalidArgument},
		{&control.LoadReport{Server: "stranger", State: control.ServerState_SERVER_STATE_ACCEPTING, Capacity: 5}, codes.OK},
	} {
		if tc.r.Server != "" {
			tc.r.Instance = "ins-" + tc.r.Server
		}
		rep, err := as(tc.r.GetServer()).Report(ctx, tc.r)
		if status.Code(err) != tc.want {
			t.Errorf("Report(%v) = %v, want %s", tc.r, err, tc.want)
		}
		if err == nil && (rep.GetDrain() || rep.GetReportInterval().AsDuration() != cfg.ReportInterval) {
			t.Errorf("reply %v", rep)
		}
	}
	if d.Pool().HasServer("stranger") {
		t.Fatal("a report without an address put a server into the pool")
	}
	// A Ready server the backend lists but has not allocated is never adopted (placing on it would
	// bypass allocation); a server no backend lists, reporting with the secret and an address, is.
	api.Put(t, allocation.GameServer{Name: "ready-1", State: allocation.StateReady, Address: "10.1.0.9",
		Ports: []allocation.Port{{Name: "default", Port: 7000}}})
	for _, n := range []string{"ready-1", "by-hand"} {
		if _, err := as(n).Report(ctx, &control.LoadReport{Server: n, Instance: "ins-" + n, Address: "10.1.0.9:7000", State: control.ServerState_SERVER_STATE_ACCEPTING, Capacity: 5}); err != nil {
			t.Fatal(err)
		}
	}
	if d.Pool().HasServer("ready-1") {
		t.Fatal("a Ready server of the backend was adopted")
	}
	if !d.Pool().HasServer("by-hand") {
		t.Fatal("a server no backend lists, reporting with the secret, was not adopted")
	}
	d.Pool().RemoveServer("by-hand")
	if _, err := as("stranger").MoveSession(ctx, &control.MoveSessionRequest{Server: "stranger"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("move without session: %v", err)
	}
	if _, err := as("stranger").MoveSession(ctx, &control.MoveSessionRequest{Server: "stranger", SessionId: "s"}); status.Code(err) != codes.NotFound {
		t.Fatalf("move from a server outside the pool: %v", err)
	}

	// Two pooled servers; one drains and moves its session to the other.
	now := time.Now()
	for _, n := range []string{"one", "two"} {
		d.Pool().AddServer(poolServer(n), now)
		if _, err := as(n).Report(ctx, &control.LoadReport{Server: n, Instance: "ins-" + n, Address: poolServer(n).Address, State: control.ServerState_SERVER_STATE_ACCEPTING, Capacity: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := as("one").Report(ctx, &control.LoadReport{Server: "one", Instance: "ins-one", State: control.ServerState_SERVER_STATE_DRAINING, Capacity: 1,
		Sessions: []*control.SessionLoad{{SessionId: "s1", Players: []string{"a", "b"}}}}); err != nil {
		t.Fatal(err)
	}
	mv, err := as("one").MoveSession(ctx, &control.MoveSessionRequest{Server: "one", SessionId: "s1", Players: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if mv.GetServer() != "two" || mv.GetSessionId() != "s1" || len(mv.GetTokens()) != 2 {
		t.Fatalf("move reply %v", mv)
	}
	for _, tk := range mv.GetTokens() {
		cl, err := e.signer.Verifier("", 0).VerifyServerToken(tk.GetToken(), "two")
		if err != nil || cl.PlayerID != tk.GetPlayerId() || cl.SessionID != "s1" || cl.Instance != "ins-two" {
			t.Fatalf("moved token %v: %+v %v", tk, cl, err)
		}
	}
	// "two" is now full: nowhere to move another session.
	if _, err := as("one").Report(ctx, &control.LoadReport{Server: "one", Instance: "ins-one", State: control.ServerState_SERVER_STATE_DRAINING, Capacity: 1,
		Sessions: []*control.SessionLoad{{SessionId: "s2", Players: []string{"c"}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := as("one").MoveSession(ctx, &control.MoveSessionRequest{Server: "one", SessionId: "s2", Players: []string{"c"}}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("move with no room: %v", err)
	}

	// A third server with room hosts s3; "one" is the compromised server below: it holds the
	// shared secret, its own bootstrap proof and a valid credential of its own.
	d.Pool().AddServer(pool.ServerInfo{Name: "three", Backend: "agones", Capacity: 4, Address: "127.0.0.1:9003"}, now)
	if _, err := as("three").Report(ctx, &control.LoadReport{Server: "three", Instance: "ins-three", Address: "127.0.0.1:9003", State: control.ServerState_SERVER_STATE_ACCEPTING, Capacity: 4,
		Sessions: []*control.SessionLoad{{SessionId: "s3", Players: []string{"v"}}}}); err != nil {
		t.Fatal(err)
	}
	ids := control.NewIdentityClient(conn)
	oneProof := proofs.Mint("one")
	clients["one"] = serverid.NewClient(conn, serverid.StaticProof(oneProof))
	reg, err := ids.Register(ctx, &control.RegisterRequest{Server: "one", Instance: "ins-one", Bootstrap: oneProof})
	if err != nil {
		t.Fatal(err)
	}
	withCred := func(cred string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, serverid.MetadataKey, cred)
	}
	other, err := serverid.NewIssuer(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	forged, _, err := other.Issue(serverid.Identity{Server: "three", Instance: "ins-three"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	raw := control.NewDirectorClient(conn)
	threeReport := &control.LoadReport{Server: "three", Instance: "ins-three", Address: "203.0.113.1:9", State: control.ServerState_SERVER_STATE_DRAINING, Capacity: 4}
	for _, tc := range []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"shared secret alone reports", func() error {
			_, err := raw.Report(ctx, threeReport)
			return err
		}, codes.Unauthenticated},
		{"report as another server", func() error {
			_, err := raw.Report(withCred(reg.GetCredential()), threeReport)
			return err
		}, codes.PermissionDenied},
		{"report as another instance of itself", func() error {
			_, err := raw.Report(withCred(reg.GetCredential()), &control.LoadReport{Server: "one", Instance: "ins-other", State: control.ServerState_SERVER_STATE_ACCEPTING})
			return err
		}, codes.PermissionDenied},
		{"credential signed by another key", func() error {
			_, err := raw.Report(withCred(forged), threeReport)
			return err
		}, codes.Unauthenticated},
		{"register as another server with its own proof", func() error {
			_, err := ids.Register(ctx, &control.RegisterRequest{Server: "three", Instance: "ins-x", Bootstrap: oneProof})
			return err
		}, codes.Unauthenticated},
		{"move another server's session in that server's name", func() error {
			_, err := raw.MoveSession(withCred(reg.GetCredential()), &control.MoveSessionRequest{Server: "three", SessionId: "s3", Players: []string{"v"}})
			return err
		}, codes.PermissionDenied},
		{"move a session it does not host", func() error {
			_, err := raw.MoveSession(withCred(reg.GetCredential()), &control.MoveSessionRequest{Server: "one", SessionId: "s3", Players: []string{"v"}})
			return err
		}, codes.PermissionDenied},
		{"move its session with a player who is no member", func() error {
			_, err := raw.MoveSession(withCred(reg.GetCredential()), &control.MoveSessionRequest{Server: "one", SessionId: "s2", Players: []string{"c", "mallory"}})
			return err
		}, codes.PermissionDenied},
		{"move a session it never had", func() error {
			_, err := raw.MoveSession(withCred(reg.GetCredential()), &control.MoveSessionRequest{Server: "one", SessionId: "invented", Players: []string{"mallory"}})
			return err
		}, codes.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); status.Code(err) != tc.want {
				t.Fatalf("got %v, want %s", err, tc.want)
			}
		})
	}
	// None of it changed "three" or its session, and the honest move still works.
	if srv, ok := d.Pool().SessionServer("s3"); !ok || srv != "three" {
		t.Fatalf("s3 on %q (%v), want three", srv, ok)
	}
	// The honest client reports first (its identity comes from its own Report), then moves.
	if _, err := as("one").Report(ctx, &control.LoadReport{Server: "one", Instance: "ins-one", State: control.ServerState_SERVER_STATE_DRAINING, Capacity: 1,
		Sessions: []*control.SessionLoad{{SessionId: "s2", Players: []string{"c"}}}}); err != nil {
		t.Fatal(err)
	}
	mv, err = as("one").MoveSession(ctx, &control.MoveSessionRequest{Server: "one", SessionId: "s2", Players: []string{"c"}})
	if err != nil || mv.GetServer() != "three" || len(mv.GetTokens()) != 1 {
		t.Fatalf("honest move after the attacks: %v %v", mv, err)
	}
}

// TestControlListenerHandedIn: a caller that binds the control address first (kumi local, kumi
// director with a local fleet: game servers are told the address before the director starts)
// hands the listener over; game servers report through it and players are placed. A director
// that fails to start closes it, so the address is free again.
func TestControlListenerHandedIn(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", e.ctlAddr)
	if err != nil {
		t.Fatal(err)
	}
	bad := e.directorConfig()
	bad.ControlListener = ln
	bad.Profiles = nil // refused by Validate
	if _, err := director.Start(e.ctx, testLog(t), bad, prometheus.NewRegistry()); err == nil {
		t.Fatal("Start with no profiles succeeded")
	}
	if ln, err = net.Listen("tcp", e.ctlAddr); err != nil {
		t.Fatalf("the failed director kept the control listener: %v", err)
	}

	f := e.startFleet(fleetOpts{name: "handed", capacity: 4, buffer: 1, max: 1})
	cfg := e.directorConfig()
	cfg.ControlListener = ln
	d, _ := e.startDirector(e.ctx, cfg, f)
	if d.ControlAddr() != ln.Addr().String() {
		t.Fatalf("director serves control on %s, not the listener handed in (%s)", d.ControlAddr(), ln.Addr())
	}
	ts := e.tickets()
	ts.create("p0", "room-handed")
	if got := ts.await(1, 60*time.Second); len(got) != 1 || got[0].conn == "" {
		t.Fatalf("assignments: %+v", got)
	}
}
