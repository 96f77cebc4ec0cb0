package frontend

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/api/client"
	pb "github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/internal/token"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// TestBadAttributes: unknown or badly typed attributes are refused with 400 / InvalidArgument naming
// the field, and nothing reaches Open Match.
func TestBadAttributes(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		var err error
		c.Attributes, err = ParseAttributes("mode:string!=voice|duel,region:string,skill:number=0..5000,ranked:bool,chat_group:string")
		if err != nil {
			t.Fatal(err)
		}
		c.MaxStringBytes = 16
	})
	cases := []struct {
		name, body, field, msg string
	}{
		{"unknown attribute", `{"attributes":{"mode":"duel","admin":true}}`, "attributes.admin", `attribute "admin" is not allowed`},
		{"reserved name", `{"attributes":{"mode":"duel","kumi.player":"p2"}}`, "attributes.kumi.player", "not allowed"},
		{"number as string", `{"attributes":{"mode":"duel","skill":"high"}}`, "attributes.skill", `"skill" must be a number, got a string`},
		{"string as number", `{"attributes":{"mode":"duel","region":5}}`, "attributes.region", `"region" must be a string, got a number`},
		{"bool as string", `{"attributes":{"mode":"duel","ranked":"yes"}}`, "attributes.ranked", "must be a bool"},
		{"null", `{"attributes":{"mode":"duel","region":null}}`, "attributes.region", "got null"},
		{"list", `{"attributes":{"mode":"duel","region":["eu"]}}`, "attributes.region", "got a list"},
		{"object", `{"attributes":{"mode":"duel","region":{"a":1}}}`, "attributes.region", "got an object"},
		{"enum", `{"attributes":{"mode":"battle"}}`, "attributes.mode", `value "battle" not allowed (allowed: voice, duel)`},
		{"range", `{"attributes":{"mode":"duel","skill":9000}}`, "attributes.skill", "outside 0..5000"},
		{"too long", `{"attributes":{"mode":"duel","chat_group":"` + strings.Repeat("g", 17) + `"}}`, "attributes.chat_group", "at most 16 bytes"},
		{"required missing", `{"attributes":{"region":"eu"}}`, "attributes.mode", `"mode" (string) is required`},
		{"not JSON", `{"attributes":`, "body", "not a CreateTicketRequest"},
		{"unknown top-level field", `{"attributes":{"mode":"duel"},"player_id":"p2"}`, "body", "player_id"},
		{"attributes not an object", `{"attributes":"mode=duel"}`, "body", "not a CreateTicketRequest"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, b := e.do("POST", "/v1/tickets", "p1", tc.body)
			er := decodeErr(t, b)
			if code != http.StatusBadRequest || er.Error.Field != tc.field || !strings.Contains(er.Error.Message, tc.msg) {
				t.Fatalf("got %d %s, want 400 field %q containing %q", code, b, tc.field, tc.msg)
			}
		})
	}
	// gRPC: InvalidArgument with a BadRequest field violation.
	_, err := e.api.CreateTicket(e.as("p1"), &client.CreateTicketRequest{Attributes: attrs("mode", "duel", "skill", "high")})
	st := status.Convert(err)
	var field string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) == 1 {
			field = br.GetFieldViolations()[0].GetField()
		}
	}
	if st.Code() != codes.InvalidArgument || field != "attributes.skill" {
		t.Fatalf("grpc: %v details %v", err, st.Details())
	}
	// Too many attributes.
	many := map[string]*structpb.Value{}
	for i := range maxAttributes + 1 {
		many["a"+strconv.Itoa(i)] = structpb.NewBoolValue(true)
	}
	if _, err := e.api.CreateTicket(e.as("p1"), &client.CreateTicketRequest{Attributes: many}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("too many attributes: %v", err)
	}
	if n := e.fe.svc.players.count(); n != 0 {
		t.Fatalf("refused creates left %d player entries", n)
	}
	// A valid one still works afterwards.
	e.createHTTP("p1", `{"attributes":{"mode":"duel","skill":0,"ranked":false}}`)
}

// TestBodyLimit: bodies over max-body-bytes get 413 whether or not their length is announced.
func TestBodyLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxBodyBytes = 256 })
	big := `{"attributes":{"mode":"` + strings.Repeat("x", 400) + `"}}`
	code, _, b := e.do("POST", "/v1/tickets", "p1", big)
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "max-body-bytes") {
		t.Fatalf("announced length: %d %s", code, b)
	}
	// Chunked: no Content-Length, the limit applies while reading.
	req, _ := http.NewRequest("POST", e.base+"/v1/tickets", io.MultiReader(strings.NewReader(big)))
	req.ContentLength = -1
	req.Header.Set("Authorization", "Bearer "+e.token("p1"))
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked: %d %s", resp.StatusCode, b)
	}
	// gRPC: the message size limit.
	_, err = e.api.CreateTicket(e.as("p1"), &client.CreateTicketRequest{Attributes: attrs("mode", strings.Repeat("x", 400))})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("grpc oversized: %v", err)
	}
}

// TestRateLimits: a flood from one player gets 429 with Retry-After while another player is served;
// the global limit applies to everyone.
func TestRateLimits(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.PlayerRate, c.PlayerBurst = 0.5, 3 })
	for i := range 3 {
		if code, _, b := e.do("GET", "/v1/tickets/current", "flood", ""); code != http.StatusNotFound {
			t.Fatalf("request %d within burst: %d %s", i, code, b)
		}
	}
	code, h, b := e.do("GET", "/v1/tickets/current", "flood", "")
	// 1 token at 0.5/s is 2 s away, less whatever the three requests took (more than 1 s only on
	// a starved machine).
	if ra := h.Get("Retry-After"); code != http.StatusTooManyRequests || (ra != "2" && ra != "1") || !strings.Contains(string(b), `too many requests from player \"flood\"`) {
		t.Fatalf("flood: %d %v %s", code, h.Get("Retry-After"), b)
	}
	if code, _, _ := e.do("POST", "/v1/tickets", "calm", `{"attributes":{"mode":"duel"}}`); code != http.StatusCreated {
		t.Fatalf("other player limited too: %d", code)
	}
	var hdr metadata.MD
	_, err := e.api.GetTicket(e.as("flood"), &client.GetTicketRequest{}, grpc.Header(&hdr))
	st := status.Convert(err)
	var retry time.Duration
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retry = ri.GetRetryDelay().AsDuration()
		}
	}
	if st.Code() != codes.ResourceExhausted || retry <= 0 || len(hdr.Get("retry-after")) != 1 {
		t.Fatalf("grpc flood: %v retry %s header %v", err, retry, hdr)
	}

	// Per source, before the token is even read: the third request from this address is refused
	// whoever it claims to be, and a bad token costs the same as a good one.
	g := newEnv(t, func(c *Config) { c.SourceRate, c.SourceBurst = 0.1, 2 })
	g.do("GET", "/v1/tickets/current", "a", "")
	g.do("GET", "/v1/tickets/current", "", "")
	code, h, b = g.do("GET", "/v1/tickets/current", "c", "")
	if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" || !strings.Contains(string(b), "from your address") {
		t.Fatalf("source: %d %v %s", code, h, b)
	}
}

// TestNoLeak: another player's ticket id reads, watches and cancels exactly like a missing id.
func TestNoLeak(t *testing.T) {
	e := newEnv(t, nil)
	mine := e.createHTTP("p1", `{"attributes":{"mode":"duel"}}`)
	for _, path := range []string{"/v1/tickets/" + mine.GetId(), "/v1/tickets/" + mine.GetId() + "/events", "/v1/tickets/" + mine.GetId() + "?wait=1s"} {
		code, _, b := e.do("GET", path, "p2", "")
		code2, _, b2 := e.do("GET", strings.Replace(path, mine.GetId(), "doesnotexist0000000", 1), "p2", "")
		if code != http.StatusNotFound || code2 != http.StatusNotFound ||
			strings.ReplaceAll(string(b), mine.GetId(), "ID") != strings.ReplaceAll(string(b2), "doesnotexist0000000", "ID") {
			t.Fatalf("%s: foreign %d %s vs missing %d %s", path, code, b, code2, b2)
		}
		// The ticket id itself is random base32hex and may contain "p1"; look past it.
		if rest := strings.ReplaceAll(string(b), mine.GetId(), "ID"); strings.Contains(rest, "p1") || strings.Contains(rest, "duel") {
			t.Fatalf("%s leaks the owner or attributes: %s", path, b)
		}
	}
	if code, _, _ := e.do("DELETE", "/v1/tickets/"+mine.GetId(), "p2", ""); code != http.StatusOK {
		t.Fatalf("foreign cancel: %d", code)
	}
	if _, err := e.om.GetTicket(context.Background(), &pb.GetTicketRequest{TicketId: mine.GetId()}); err != nil {
		t.Fatalf("p2's cancel deleted p1's ticket: %v", err)
	}
	if _, err := e.api.GetTicket(e.as("p2"), &client.GetTicketRequest{TicketId: mine.GetId()}); status.Code(err) != codes.NotFound {
		t.Fatalf("grpc foreign get: %v", err)
	}
	stream, err := e.api.WatchAssignment(e.as("p2"), &client.WatchAssignmentRequest{TicketId: mine.GetId()})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.NotFound {
		t.Fatalf("grpc foreign watch: %v", err)
	}
	// p2's "current" is their own (none), not p1's.
	if code, _, _ := e.do("GET", "/v1/tickets/current", "p2", ""); code != http.StatusNotFound {
		t.Fatalf("p2 current: %d", code)
	}
	if got := e.createHTTP("p1", `{"attributes":{"mode":"duel"}}`); got.GetId() != mine.GetId() {
		t.Fatalf("p1's ticket changed: %s", got.GetId())
	}
}

// TestCancel: the owner's cancel deletes the Open Match ticket, is idempotent, ends watches with
// NOT_FOUND, and frees the player to search again.
func TestCancel(t *testing.T) {
	e := newEnv(t, nil)
	ct := e.createHTTP("p1", `{"attributes":{"mode":"duel"}}`)
	ctx := e.as("p1")
	stream, err := e.api.WatchAssignment(ctx, &client.WatchAssignmentRequest{TicketId: ct.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if code, _, b := e.do("DELETE", "/v1/tickets/current", "p1", ""); code != http.StatusOK {
		t.Fatalf("cancel: %d %s", code, b)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "no longer exists") {
		t.Fatalf("watch after cancel: %v", err)
	}
	if _, err := e.om.GetTicket(context.Background(), &pb.GetTicketRequest{TicketId: ct.GetId()}); status.Code(err) != codes.NotFound {
		t.Fatalf("open match still has the ticket: %v", err)
	}
	if _, err := e.api.CancelTicket(ctx, &client.CancelTicketRequest{TicketId: ct.GetId()}); err != nil {
		t.Fatalf("second cancel: %v", err)
	}
	if got := e.createHTTP("p1", `{"attributes":{"mode":"voice"}}`); got.GetId() == ct.GetId() {
		t.Fatal("no new ticket after cancel")
	}
}

// TestExpiry: an unassigned ticket is deleted after ticket-lifetime (its watcher sees NOT_FOUND); an
// assigned one is left to Open Match.
func TestExpiry(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.TicketLifetime = 300 * time.Millisecond; c.expiryWorkers = 1 })
	assignedT := e.createHTTP("pa", `{"attributes":{"mode":"duel"}}`)
	e.assign(assignment("10.0.0.1:1", "s", "t", time.Now().Add(time.Minute)), assignedT.GetId())
	ct := e.createHTTP("p1", `{"attributes":{"mode":"duel"}}`)
	start := time.Now()
	stream, err := e.api.WatchAssignment(e.as("p1"), &client.WatchAssignmentRequest{TicketId: ct.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	// Under load the ticket may already be gone when the watch starts: then the first Recv is the
	// NOT_FOUND; otherwise a SEARCHING message comes first. Never an assignment.
	for {
		m, err := stream.Recv()
		if err != nil {
			if status.Code(err) != codes.NotFound {
				t.Fatalf("watch of an expiring ticket: %v", err)
			}
			break
		}
		if m.GetState() != client.Ticket_SEARCHING {
			t.Fatalf("watch of an expiring ticket got %v", m)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("expired after %s", d)
	}
	if _, err := e.om.GetTicket(context.Background(), &pb.GetTicketRequest{TicketId: ct.GetId()}); status.Code(err) != codes.NotFound {
		t.Fatalf("expired ticket still in open match: %v", err)
	}
	// One worker, FIFO: the assigned ticket's check ran before p1's deletion.
	if _, err := e.om.GetTicket(context.Background(), &pb.GetTicketRequest{TicketId: assignedT.GetId()}); err != nil {
		t.Fatalf("assigned ticket was deleted by expiry: %v", err)
	}
	if got := e.createHTTP("p1", `{"attributes":{"mode":"duel"}}`); got.GetId() == ct.GetId() {
		t.Fatal("expired ticket returned again")
	}
}

// TestOneTicketUnderConcurrency: many simultaneous creates by one player yield one ticket.
func TestOneTicketUnderConcurrency(t *testing.T) {
	e := newEnv(t, nil)
	ctx := e.as("p1")
	ids := make(chan string, 20)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ct, err := e.api.CreateTicket(ctx, &client.CreateTicketRequest{Attributes: attrs("mode", "duel")})
			if err != nil {
				t.Error(err)
				return
			}
			ids <- ct.GetId()
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	if len(seen) != 1 {
		t.Fatalf("%d distinct tickets for one player: %v", len(seen), seen)
	}
}

// TestRestartRecovery: a new frontend with om-query-addr finds the player's live ticket again.
func TestRestartRecovery(t *testing.T) {
	e := newEnv(t, nil)
	ct := e.createHTTP("p1", `{"attributes":{"mode":"duel","skill":7}}`)
	other := e.createHTTP("p2", `{"attributes":{"mode":"voice"}}`)
	e.assign(assignment("10.0.0.1:1", "s", "t", time.Now().Add(time.Minute)), other.GetId())

	cfg := e.cfg
	cfg.OpenMatchQueryAddr = e.core.QueryAddr()
	fe2, _ := startFrontend(t, e.core, cfg)
	api2 := client.NewFrontendClient(dial(t, fe2.GRPCAddr()))
	got, err := api2.CreateTicket(e.as("p1"), &client.CreateTicketRequest{Attributes: attrs("skill", 7.0, "mode", "duel")})
	if err != nil || got.GetId() != ct.GetId() {
		t.Fatalf("after restart: %v %v, want ticket %s", got, err, ct.GetId())
	}
	if _, err := api2.CreateTicket(e.as("p1"), &client.CreateTicketRequest{Attributes: attrs("mode", "voice")}); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("conflict after restart: %v", err)
	}
	cur, err := api2.GetTicket(e.as("p1"), &client.GetTicketRequest{TicketId: "current"})
	if err != nil || cur.GetId() != ct.GetId() {
		t.Fatalf("current after restart: %v %v", cur, err)
	}
	if n := fe2.svc.players.count(); n != 1 {
		t.Fatalf("recovered %d players, want 1 (p2's ticket is assigned)", n)
	}
}

func TestParseAttributes(t *testing.T) {
	good, err := ParseAttributes(" mode:string!=voice|duel , skill:number=-5..5000,ranked:bool")
	if err != nil || len(good) != 3 || !good[0].Required || good[1].Min != -5 || good[2].Type != Bool {
		t.Fatalf("%v %v", good, err)
	}
	if s := good.String(); s != "mode:string!=voice|duel,skill:number=-5..5000,ranked:bool" {
		t.Fatalf("round trip %q", s)
	}
	for _, bad := range []string{"mode", "mode:text", ":string", "a:string,a:number", "x:number=5..1", "x:number=a..b", "x:number=NaN..NaN", "x:number=0..NaN", "x:number=0..0", "x:bool=true", "kumi.player:string", "x:string=a||b"} {
		if _, err := ParseAttributes(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := ParseAttributes(Default().Attributes.String()); err != nil {
		t.Fatal(err)
	}
}

func TestParseWait(t *testing.T) {
	for in, want := range map[string]time.Duration{"": 0, "30s": 30 * time.Second, "5": 5 * time.Second, "10m": time.Minute} {
		if got, err := parseWait(in, time.Minute); err != nil || got != want {
			t.Errorf("%q: %s %v", in, got, err)
		}
	}
	for _, bad := range []string{"-1s", "soon", "1.5"} {
		if _, err := parseWait(bad, time.Minute); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for name, mut := range map[string]func(*Config){
		"no listeners": func(c *Config) { c.GRPCAddr, c.HTTPAddr = "", "" },
		"no om":        func(c *Config) { c.OpenMatchAddr = "" },
		"lifetime":     func(c *Config) { c.TicketLifetime = 0 },
		"player rate":  func(c *Config) { c.PlayerRate = 0 },
		"body":         func(c *Config) { c.MaxBodyBytes = 1 },
	} {
		c := Default()
		mut(&c)
		if err := c.validate(); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	// The defaults listen on every interface: plaintext needs the explicit opt-out.
	c := Default()
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), "--insecure") {
		t.Fatalf("plaintext on :50600 without --insecure: %v", err)
	}
	c.Insecure = true
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	c = Default()
	c.GRPCAddr, c.HTTPAddr = "127.0.0.1:50600", "[::1]:8080"
	if err := c.validate(); err != nil {
		t.Fatalf("loopback without TLS: %v", err)
	}
}

// TestMetrics: the counters move and /metrics serves them on its own port.
func TestMetrics(t *testing.T) {
	signer, err := token.GenerateSigner(token.DefaultIssuer)
	if err != nil {
		t.Fatal(err)
	}
	core := startCore(t)
	cfg := testConfig(signer)
	cfg.MetricsAddr = "127.0.0.1:0"
	cfg.OpenMatchAddr = core.FrontendAddr()
	ctx, cancel := context.WithCancel(context.Background())
	reg := prometheus.NewRegistry()
	fe, err := Start(ctx, testLog(t), cfg, reg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); fe.Wait() })
	e := &env{t: t, fe: fe, signer: signer, base: "http://" + fe.HTTPAddr(), hc: &http.Client{Timeout: 10 * time.Second}}
	e.createHTTP("p1", `{"attributes":{"mode":"duel"}}`)
	e.do("POST", "/v1/tickets", "", `{}`)
	resp, err := e.hc.Get("http://" + fe.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		"kumi_frontend_tickets_created_total 1",
		`kumi_frontend_auth_failures_total{reason="missing"} 1`,
		`kumi_frontend_requests_total{code="OK",method="CreateTicket",transport="http"} 1`,
		"kumi_frontend_live_players 1",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// A registerer that cannot be gathered is refused when metrics-addr is set.
	if _, err := Start(ctx, testLog(t), cfg, prometheus.WrapRegistererWithPrefix("x_", reg)); err == nil || !strings.Contains(err.Error(), "cannot be gathered") {
		t.Fatalf("ungatherable registerer: %v", err)
	}
}

// TestWatchCap: one player cannot hold more than max-watches-per-player streams and long-polls.
func TestWatchCap(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxWatchesPerPlayer = 2 })
	ct := e.createHTTP("p1", `{"attributes":{"mode":"duel"}}`)
	var cancels []context.CancelFunc
	for range 2 {
		ctx, cancel := context.WithCancel(e.as("p1"))
		cancels = append(cancels, cancel)
		s, err := e.api.WatchAssignment(ctx, &client.WatchAssignmentRequest{TicketId: ct.GetId()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	code, _, b := e.do("GET", "/v1/tickets/"+ct.GetId()+"?wait=5s", "p1", "")
	if code != http.StatusTooManyRequests || !strings.Contains(string(b), "max-watches-per-player") {
		t.Fatalf("third watch: %d %s", code, b)
	}
	// Another player is unaffected; a plain GET (no wait) is not a watch.
	if code, _, _ := e.do("GET", "/v1/tickets/"+ct.GetId(), "p1", ""); code != http.StatusOK {
		t.Fatalf("plain get: %d", code)
	}
	cancels[0]()
	waitFor(t, func() bool {
		e.fe.svc.watchers.mu.Lock()
		defer e.fe.svc.watchers.mu.Unlock()
		return e.fe.svc.watchers.n["p1"] == 1
	})
	if code, _, b := e.do("GET", "/v1/tickets/"+ct.GetId()+"?wait=10ms", "p1", ""); code != http.StatusOK {
		t.Fatalf("watch after one closed: %d %s", code, b)
	}
	cancels[1]()
	// gRPC health answers SERVING.
	hr, err := healthpb.NewHealthClient(dial(t, e.fe.GRPCAddr())).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", hr, err)
	}
	// Over-long ids are refused without a lookup.
	if code, _, _ := e.do("GET", "/v1/tickets/"+strings.Repeat("x", 100), "p1", ""); code != http.StatusNotFound {
		t.Fatalf("long id: %d", code)
	}
}

// TestShutdownEndsWatches: stopping the frontend ends open watches with UNAVAILABLE (so clients
// reconnect elsewhere) and releases everything promptly.
func TestShutdownEndsWatches(t *testing.T) {
	signer, err := token.GenerateSigner(token.DefaultIssuer)
	if err != nil {
		t.Fatal(err)
	}
	core := startCore(t)
	fe, stop := startFrontend(t, core, testConfig(signer))
	e := &env{t: t, fe: fe, signer: signer, api: client.NewFrontendClient(dial(t, fe.GRPCAddr())),
		base: "http://" + fe.HTTPAddr(), hc: &http.Client{Timeout: 10 * time.Second}}
	ct := e.createHTTP("p1", `{"attributes":{"mode":"duel"}}`)
	s, err := e.api.WatchAssignment(e.as("p1"), &client.WatchAssignmentRequest{TicketId: ct.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	polled := make(chan int, 1)
	req, _ := http.NewRequest("GET", e.base+"/v1/tickets/"+ct.GetId()+"?wait=30s", nil)
	req.Header.Set("Authorization", "Bearer "+e.token("p1"))
	go func() {
		resp, err := e.hc.Do(req)
		if err != nil {
			polled <- 0
			return
		}
		resp.Body.Close()
		polled <- resp.StatusCode
	}()
	waitFor(t, func() bool { return fe.svc.watches.refs(ct.GetId()) == 2 })
	start := time.Now()
	stop()
	if _, err := s.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("watch at shutdown: %v", err)
	}
	if code := <-polled; code != http.StatusServiceUnavailable {
		t.Fatalf("long-poll at shutdown: %d", code)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("shutdown took %s", d)
	}
}

// TestShutdownReportsNotServing: a gRPC health watcher hears NOT_SERVING once the frontend begins
// to stop.
func TestShutdownReportsNotServing(t *testing.T) {
	signer, err := token.GenerateSigner(token.DefaultIssuer)
	if err != nil {
		t.Fatal(err)
	}
	fe, stop := startFrontend(t, startCore(t), testConfig(signer))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := healthpb.NewHealthClient(dial(t, fe.GRPCAddr())).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("before stop: %v %v", r, err)
	}
	stopped := make(chan struct{})
	go func() { defer close(stopped); stop() }()
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("after stop began: %v %v, want NOT_SERVING", r, err)
	}
	cancel() // an open health watch would hold the graceful stop for the whole grace period
	<-stopped
}

// TestSSEHeartbeat: an idle event stream carries keep-alive comments, then the assignment.
func TestSSEHeartbeat(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SSEHeartbeat = 10 * time.Millisecond })
	ct := e.createHTTP("p1", `{"attributes":{"mode":"duel"}}`)
	req, _ := http.NewRequest("GET", e.base+"/v1/tickets/"+ct.GetId()+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+e.token("p1"))
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	beats := 0
	for beats < 2 {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == ": keep-alive\n" {
			beats++
		}
	}
	e.assign(assignment("10.0.0.2:2", "s", "t", time.Now().Add(time.Minute)), ct.GetId())
	ev := &sse{r: r}
	for {
		name, data, err := ev.next()
		if err != nil {
			t.Fatalf("stream ended before the assignment: %v", err)
		}
		if name == "ticket" && decodeTicket(t, []byte(data)).GetState() == client.Ticket_ASSIGNED {
			break
		}
	}
}
