package frontend

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/api/client"
	"github.com/kumi-dev/kumi/internal/token"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestUnauthorizedRevealsNoKids: a token signed by an unknown key gets a 401 that says the key is
// unknown but does not list the kids the frontend trusts (that would tell an attacker which key to
// go after, and which identity provider is configured).
func TestUnauthorizedRevealsNoKids(t *testing.T) {
	e := newEnv(t, nil)
	stranger, err := token.GenerateSigner(token.DefaultIssuer)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := stranger.PlayerToken("p1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", e.base+"/v1/tickets/current", nil)
	req.Header.Set("Authorization", "Bearer "+raw)
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	body := string(b)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "unknown kid") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if strings.Contains(body, e.signer.KID()) {
		t.Fatalf("401 body reveals the trusted kid %s: %s", e.signer.KID(), body)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+raw)
	_, err = e.api.GetTicket(ctx, &client.GetTicketRequest{})
	if status.Code(err) != codes.Unauthenticated || strings.Contains(err.Error(), e.signer.KID()) {
		t.Fatalf("gRPC: %v", err)
	}
}

// TestGRPCLimits: oversized headers and messages are refused, and one connection cannot hold more
// than max-streams-per-conn calls at once (the next waits for a free stream instead of running).
func TestGRPCLimits(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxStreamsPerConn = 2 })
	huge := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+strings.Repeat("a", 64<<10))
	if _, err := e.api.GetTicket(huge, &client.GetTicketRequest{}); err == nil {
		t.Fatal("64 KiB header accepted")
	}
	big := &client.CreateTicketRequest{Attributes: attrs("mode", strings.Repeat("x", 32<<10))}
	if _, err := e.api.CreateTicket(e.as("p1"), big); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("32 KiB message: %v", err)
	}

	conn, err := grpc.NewClient(e.fe.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	api := client.NewFrontendClient(conn)
	// Two watch streams fill the connection's stream quota.
	for _, p := range []string{"w1", "w2"} {
		ct, err := api.CreateTicket(e.as(p), &client.CreateTicketRequest{Attributes: attrs("mode", "duel")})
		if err != nil {
			t.Fatal(err)
		}
		ws, err := api.WatchAssignment(e.as(p), &client.WatchAssignmentRequest{TicketId: ct.GetId()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ws.Recv(); err != nil { // the first message: the stream is open on the server
			t.Fatal(err)
		}
	}
	// A third call on the same connection cannot start while both are open.
	ctx, cancel := context.WithTimeout(e.as("w3"), 300*time.Millisecond)
	defer cancel()
	if _, err := api.GetTicket(ctx, &client.GetTicketRequest{}, grpc.WaitForReady(true)); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("third concurrent call on a full connection: %v", err)
	}
	// Another connection is unaffected.
	if _, err := e.api.GetTicket(e.as("w3"), &client.GetTicketRequest{}); status.Code(err) != codes.NotFound {
		t.Fatalf("other connection: %v", err)
	}
}
