package frontend

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/api/client"
	pb "github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/internal/ticketseal"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestAttackChatGroupWithoutClaimRefused: with the default allow-list, chat_group, party and skill
// come from verified claims of the player token. A player who learns another group's id cannot
// file a ticket into that group's voice room; a value the claim grants is accepted.
func TestAttackChatGroupWithoutClaimRefused(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		attrs, err := ParseAttributes(DefaultAttributes)
		if err != nil {
			t.Fatal(err)
		}
		c.Attributes = attrs
	})
	e.claims = map[string]map[string]any{
		"member":   {"groups": []string{"guild-7", "raid-2"}, "party": "p-1", "skill": 1450},
		"outsider": {"groups": []string{"other"}},
		// "anonymous" has no claims at all.
	}
	for _, tc := range []struct {
		name, player, body string
		code               int
		field, msg         string
	}{
		{"granted group", "member", `{"attributes":{"mode":"voice","chat_group":"raid-2"}}`, http.StatusCreated, "", ""},
		{"other group", "outsider", `{"attributes":{"mode":"voice","chat_group":"guild-7"}}`, http.StatusForbidden, "attributes.chat_group", `not allowed by claim "groups"`},
		{"no groups claim", "anonymous", `{"attributes":{"mode":"voice","chat_group":"guild-7"}}`, http.StatusForbidden, "attributes.chat_group", `has no such claim`},
		{"other party", "outsider", `{"attributes":{"mode":"duel","party":"p-1"}}`, http.StatusForbidden, "attributes.party", `claim "party"`},
		{"inflated skill", "member", `{"attributes":{"mode":"duel","skill":2900}}`, http.StatusForbidden, "attributes.skill", `not allowed by claim "skill"`},
		{"client-chosen attributes need no claim", "anonymous", `{"attributes":{"mode":"duel","region":"eu"}}`, http.StatusCreated, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := e.do("POST", "/v1/tickets", tc.player, tc.body)
			if code != tc.code {
				t.Fatalf("status %d, want %d: %s", code, tc.code, body)
			}
			if tc.field == "" {
				e.do("DELETE", "/v1/tickets/current", tc.player, "")
				return
			}
			var eb errorBody
			if err := json.Unmarshal(body, &eb); err != nil {
				t.Fatal(err)
			}
			if eb.Error.Field != tc.field || !strings.Contains(eb.Error.Message, tc.msg) || eb.Error.Status != "PERMISSION_DENIED" {
				t.Fatalf("error %+v, want field %s and %q", eb.Error, tc.field, tc.msg)
			}
			// The refusal must not echo what the claim grants.
			if strings.Contains(string(body), "raid-2") || strings.Contains(eb.Error.Message, "1450") {
				t.Fatalf("refusal leaks claim values: %s", body)
			}
		})
	}
	// Same over gRPC, with the status code a client can act on.
	_, err := e.api.CreateTicket(e.as("outsider"), &client.CreateTicketRequest{Attributes: attrs("mode", "voice", "chat_group", "guild-7")})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("gRPC: %v", err)
	}
}

func TestParseAttributeClaims(t *testing.T) {
	as, err := ParseAttributes("chat_group:string!@groups, skill:number=0..5000@skill, mode:string=a|b")
	if err != nil {
		t.Fatal(err)
	}
	if got := as.String(); got != "chat_group:string!@groups,skill:number=0..5000@skill,mode:string=a|b" {
		t.Fatalf("round trip %q", got)
	}
	if got := strings.Join(as.claims(), ","); got != "groups,skill" {
		t.Fatalf("claims %q", got)
	}
	for _, bad := range []string{"a:string@", "a:string@x@y", "a:string@ x"} {
		if _, err := ParseAttributes(bad); err == nil || !strings.Contains(err.Error(), "claim name") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestTicketsAreSealed: with a seal secret, every ticket the frontend files carries a seal the
// director's check accepts for its player, and only for that player.
func TestTicketsAreSealed(t *testing.T) {
	const secret = "frontend-test-seal-secret-0123456789"
	e := newEnv(t, func(c *Config) { c.TicketSealSecret = secret })
	ct, err := e.api.CreateTicket(e.as("p1"), &client.CreateTicketRequest{Attributes: attrs("mode", "voice", "chat_group", "g")})
	if err != nil {
		t.Fatal(err)
	}
	tk, err := e.om.GetTicket(context.Background(), &pb.GetTicketRequest{TicketId: ct.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := ticketseal.New(secret, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(tk, "p1", time.Now()); err != nil {
		t.Fatalf("frontend's ticket does not pass the director's check: %v", err)
	}
	if err := s.Check(tk, "p2", time.Now()); !errors.Is(err, ticketseal.ErrInvalid) {
		t.Fatalf("seal accepted for another player: %v", err)
	}
}
