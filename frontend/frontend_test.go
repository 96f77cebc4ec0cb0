package frontend

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/kumi-dev/kumi/api/client"
	pb "github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/internal/token"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// TestGRPCCreateWatchAssign is the whole player flow over gRPC: create, watch, the director assigns
// through the core's BackendService, the client receives address, session, token and expiry.
func TestGRPCCreateWatchAssign(t *testing.T) {
	e := newEnv(t, nil)
	ctx := e.as("p1")
	ct, err := e.api.CreateTicket(ctx, &client.CreateTicketRequest{Attributes: attrs("mode", "duel", "region", "eu", "skill", 1450.0, "ranked", true, "party", "")})
	if err != nil {
		t.Fatal(err)
	}
	if ct.GetState() != client.Ticket_SEARCHING || ct.GetId() == "" || ct.GetCreateTime() == nil {
		t.Fatalf("created %v", ct)
	}
	if got := ct.GetExpireTime().AsTime().Sub(ct.GetCreateTime().AsTime()); got != e.cfg.TicketLifetime {
		t.Fatalf("expire_time - create_time = %s, want %s", got, e.cfg.TicketLifetime)
	}
	// What Open Match holds: typed search fields and the owner.
	ot, err := e.om.GetTicket(context.Background(), &pb.GetTicketRequest{TicketId: ct.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	sf := ot.GetSearchFields()
	if sf.GetStringArgs()["mode"] != "duel" || sf.GetStringArgs()["region"] != "eu" || sf.GetDoubleArgs()["skill"] != 1450 ||
		len(sf.GetTags()) != 1 || sf.GetTags()[0] != "ranked" {
		t.Fatalf("search fields %v", sf)
	}
	if owner(ot) != "p1" {
		t.Fatalf("owner %q", owner(ot))
	}

	stream, err := e.api.WatchAssignment(ctx, &client.WatchAssignmentRequest{TicketId: ct.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || first.GetState() != client.Ticket_SEARCHING {
		t.Fatalf("first watch message %v %v", first, err)
	}
	exp := time.Now().Add(time.Minute).Truncate(time.Second)
	e.assign(assignment("10.0.0.7:7777", "sess-1", "server-token", exp), ct.GetId())
	got, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	a := got.GetAssignment()
	if got.GetState() != client.Ticket_ASSIGNED || a.GetAddress() != "10.0.0.7:7777" || a.GetSessionId() != "sess-1" ||
		a.GetServerToken() != "server-token" || !a.GetServerTokenExpireTime().AsTime().Equal(exp) {
		t.Fatalf("assigned ticket %v", got)
	}
	if !proto.Equal(got.GetAttributes()["skill"], ct.GetAttributes()["skill"]) || got.GetAttributes()["ranked"].GetBoolValue() != true {
		t.Fatalf("attributes not carried: %v", got.GetAttributes())
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("watch did not end after the assignment: %v", err)
	}
	// Assigned: GetTicket shows it; the player may search again with a new ticket.
	g, err := e.api.GetTicket(ctx, &client.GetTicketRequest{TicketId: ct.GetId()})
	if err != nil || g.GetAssignment().GetSessionId() != "sess-1" {
		t.Fatalf("get after assign: %v %v", g, err)
	}
	again, err := e.api.CreateTicket(ctx, &client.CreateTicketRequest{Attributes: attrs("mode", "duel")})
	if err != nil || again.GetId() == ct.GetId() {
		t.Fatalf("create after assignment: %v %v", again, err)
	}
	// A watch started after the assignment gets the assigned ticket at once, then ends.
	e.assign(assignment("10.0.0.8:7777", "sess-2", "t2", exp), again.GetId())
	s2, err := e.api.WatchAssignment(ctx, &client.WatchAssignmentRequest{TicketId: again.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := s2.Recv(); err != nil || m.GetAssignment().GetSessionId() != "sess-2" {
		t.Fatalf("late watch: %v %v", m, err)
	}
	if _, err := s2.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("late watch did not end: %v", err)
	}
	// The player has no live ticket now: "current" is not found.
	if _, err := e.api.GetTicket(ctx, &client.GetTicketRequest{}); status.Code(err) != codes.NotFound {
		t.Fatalf("current after assignment: %v", err)
	}
}

// TestHTTPFlow covers the JSON API: created/idempotent/conflict, long-poll, server-sent events.
func TestHTTPFlow(t *testing.T) {
	e := newEnv(t, nil)
	body := `{"attributes": {"mode": "voice", "chat_group": "guild-7", "skill": 3}}`
	code, _, b := e.do("POST", "/v1/tickets", "p1", body)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, b)
	}
	ct := decodeTicket(t, b)
	if !strings.Contains(string(b), `"create_time"`) || !strings.Contains(string(b), `"chat_group":"guild-7"`) {
		t.Fatalf("JSON uses proto names and plain attribute values: %s", b)
	}
	// Same attributes (other order): the same ticket, 200.
	code, _, b = e.do("POST", "/v1/tickets", "p1", `{"attributes": {"skill": 3, "chat_group": "guild-7", "mode": "voice"}}`)
	if code != http.StatusOK || decodeTicket(t, b).GetId() != ct.GetId() {
		t.Fatalf("idempotent create: %d %s", code, b)
	}
	// Different attributes while the ticket is live: 409 naming it.
	code, _, b = e.do("POST", "/v1/tickets", "p1", `{"attributes": {"mode": "duel"}}`)
	if er := decodeErr(t, b); code != http.StatusConflict || !strings.Contains(er.Error.Message, ct.GetId()) || er.Error.Status != "ALREADY_EXISTS" {
		t.Fatalf("conflicting create: %d %s", code, b)
	}
	// Long-poll that times out: still searching.
	start := time.Now()
	code, _, b = e.do("GET", "/v1/tickets/"+ct.GetId()+"?wait=100ms", "p1", "")
	if code != http.StatusOK || decodeTicket(t, b).GetState() != client.Ticket_SEARCHING || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("long-poll timeout: %d %s after %s", code, b, time.Since(start))
	}

	// Server-sent events and a long-poll wait together for the same ticket.
	req, _ := http.NewRequest("GET", e.base+"/v1/tickets/current/events", nil)
	req.Header.Set("Authorization", "Bearer "+e.token("p1"))
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %v", resp.StatusCode, resp.Header)
	}
	ev := &sse{r: bufio.NewReader(resp.Body)}
	name, data, err := ev.next()
	if err != nil || name != "ticket" || decodeTicket(t, []byte(data)).GetState() != client.Ticket_SEARCHING {
		t.Fatalf("first event %q %q %v", name, data, err)
	}
	// The body is decoded by the test goroutine: t.Fatal must not run on this one.
	polled := make(chan []byte, 1)
	go func() {
		req, _ := http.NewRequest("GET", e.base+"/v1/tickets/"+ct.GetId()+"?wait=20", nil)
		req.Header.Set("Authorization", "Bearer "+e.token("p1"))
		resp, err := e.hc.Do(req)
		if err != nil {
			polled <- []byte(err.Error())
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		polled <- b
	}()
	// Assign once the long-poll is parked on the shared watch.
	waitFor(t, func() bool { return e.fe.svc.watches.refs(ct.GetId()) == 2 })
	e.assign(assignment("10.0.0.9:7000", "voice-1", "tok", time.Now().Add(time.Minute)), ct.GetId())
	name, data, err = ev.next()
	if err != nil || name != "ticket" {
		t.Fatalf("second event %q %q %v", name, data, err)
	}
	if got := decodeTicket(t, []byte(data)); got.GetAssignment().GetAddress() != "10.0.0.9:7000" || got.GetAssignment().GetSessionId() != "voice-1" {
		t.Fatalf("assigned event %s", data)
	}
	if _, _, err := ev.next(); !errors.Is(err, io.EOF) {
		t.Fatalf("event stream did not end after the assignment: %v", err)
	}
	if p := decodeTicket(t, <-polled); p.GetAssignment().GetSessionId() != "voice-1" {
		t.Fatalf("long-poll got %v", p)
	}
	// Health.
	if code, _, _ := e.do("GET", "/healthz", "", ""); code != 200 {
		t.Fatalf("healthz %d", code)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 30s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAuth: every way of presenting a bad player token is refused with 401 / Unauthenticated and a
// reason, over both transports.
func TestAuth(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.JWT.MaxTokenBytes = 2048 })
	other, _ := token.GenerateSigner(token.DefaultIssuer)
	now := time.Now()
	mk := func(s *token.Signer, c token.PlayerClaims) string {
		raw, err := s.SignPlayer(c)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	good := e.token("p1")
	parts := strings.Split(good, ".")
	serverTok, _ := e.signer.ServerToken(token.ServerClaims{PlayerID: "p1", SessionID: "s", Server: "kumi", ExpiresAt: now.Add(time.Minute)})
	cases := []struct {
		name, header, want string
	}{
		{"no header", "", "missing player token"},
		{"basic scheme", "Basic cDE6cA==", "missing player token"},
		{"bearer without token", "Bearer ", "missing player token"},
		{"garbage", "Bearer abc", "malformed"},
		{"alg none", "Bearer " + b64json(`{"alg":"none","kid":"`+e.signer.KID()+`"}`) + "." + parts[1] + ".", `algorithm "none" not allowed`},
		{"expired", "Bearer " + mk(e.signer, token.PlayerClaims{PlayerID: "p1", Audience: []string{"kumi"}, ExpiresAt: now.Add(-time.Hour)}), "expired at"},
		{"not yet valid", "Bearer " + mk(e.signer, token.PlayerClaims{PlayerID: "p1", Audience: []string{"kumi"}, NotBefore: now.Add(time.Hour), ExpiresAt: now.Add(2 * time.Hour)}), "not valid before"},
		{"wrong audience", "Bearer " + mk(e.signer, token.PlayerClaims{PlayerID: "p1", Audience: []string{"other-game"}, ExpiresAt: now.Add(time.Hour)}), "audience"},
		{"wrong issuer", "Bearer " + mk(e.signer, token.PlayerClaims{PlayerID: "p1", Issuer: "evil", Audience: []string{"kumi"}, ExpiresAt: now.Add(time.Hour)}), "issuer"},
		{"unknown key", "Bearer " + mk(other, token.PlayerClaims{PlayerID: "p1", Audience: []string{"kumi"}, ExpiresAt: now.Add(time.Hour)}), "unknown kid"},
		{"tampered", "Bearer " + parts[0] + "." + b64json(`{"sub":"admin","aud":["kumi"],"iss":"kumi","exp":9999999999}`) + "." + parts[2], "signature does not verify"},
		{"oversized", "Bearer " + parts[0] + "." + strings.Repeat("A", 3000) + "." + parts[2], "exceeds the limit of 2048"},
		{"server token", "Bearer " + serverTok, "server token is not a player token"},
		{"no subject", "Bearer " + signMap(t, e.signer, jwt.MapClaims{"iss": "kumi", "aud": "kumi", "exp": now.Add(time.Hour).Unix()}), "no sub"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", e.base+"/v1/tickets", strings.NewReader(`{"attributes":{"mode":"duel"}}`))
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			resp, err := e.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			er := decodeErr(t, b)
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(er.Error.Message, tc.want) || resp.Header.Get("WWW-Authenticate") == "" {
				t.Fatalf("http: %d %s (want 401 containing %q)", resp.StatusCode, b, tc.want)
			}
			ctx := context.Background()
			if tc.header != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", tc.header)
			}
			_, err = e.api.CreateTicket(ctx, &client.CreateTicketRequest{Attributes: attrs("mode", "duel")})
			if status.Code(err) != codes.Unauthenticated || !strings.Contains(status.Convert(err).Message(), tc.want) {
				t.Fatalf("grpc: %v (want Unauthenticated containing %q)", err, tc.want)
			}
		})
	}
	// Nothing was created by any of them.
	if n := e.fe.svc.players.count(); n != 0 {
		t.Fatalf("%d players have state after refused requests", n)
	}
}

// signMap signs arbitrary claims with s's key, for tokens SignPlayer refuses to make.
func signMap(t *testing.T, s *token.Signer, claims jwt.MapClaims) string {
	tk := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tk.Header["kid"] = s.KID()
	raw, err := tk.SignedString(s.PrivateKey())
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func b64json(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
