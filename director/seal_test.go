package director_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/internal/omext"
	"github.com/kumi-dev/kumi/internal/ticketseal"
	"google.golang.org/protobuf/types/known/anypb"
)

// testSealSecret is the secret the harness seals its tickets with, standing in for kumi's frontend.
const testSealSecret = "test-seal-secret-0123456789abcdef"

var testSealer = func() *ticketseal.Sealer {
	s, err := ticketseal.New(testSealSecret, 0)
	if err != nil {
		panic(err)
	}
	return s
}()

// TestAttackTicketStraightInCoreNeverAssigned: someone on the pod network creates tickets straight
// in the Open Match core (bypassing the frontend's JWT check and rate limits), naming a player and
// a chat group: unsealed, sealed with another key, or a sealed ticket's seal copied onto another
// player. The director never assigns them (no server token is minted), counts them, and still
// places the group's genuine members, who shared a match with the forgeries.
func TestAttackTicketStraightInCoreNeverAssigned(t *testing.T) {
	e := newEnv(t)
	f := e.startFleet(fleetOpts{name: "seal", capacity: 20, buffer: 1, max: 2})
	e.startDirector(e.ctx, e.directorConfig(), f)

	wrongKey, _ := ticketseal.New("someone-elses-secret-0123456789", 0)
	sf := func() *openmatch.SearchFields {
		return &openmatch.SearchFields{StringArgs: map[string]string{"mode": "voice", "chat_group": "guild"}}
	}
	genuine := omext.PutString(nil, omext.Player, "victim")
	testSealer.Seal(genuine, "victim", sf(), time.Now())
	stolen := omext.PutString(nil, omext.Player, "attacker")
	stolen[omext.Seal] = genuine[omext.Seal] // the victim's seal on the attacker's ticket
	forged := []map[string]*anypb.Any{
		omext.PutString(nil, omext.Player, "victim"),                                            // no seal
		wrongKey.Seal(omext.PutString(nil, omext.Player, "victim"), "victim", sf(), time.Now()), // another key
		stolen, // copied seal
		testSealer.Seal(omext.PutString(nil, omext.Player, "victim"), "victim", &openmatch.SearchFields{ // other group
			StringArgs: map[string]string{"mode": "voice", "chat_group": "elsewhere"}}, time.Now()),
	}
	var forgedIDs []string
	for _, ext := range forged {
		tk, err := e.fe.CreateTicket(e.ctx, &openmatch.CreateTicketRequest{Ticket: &openmatch.Ticket{SearchFields: sf(), Extensions: ext}})
		if err != nil {
			t.Fatal(err)
		}
		forgedIDs = append(forgedIDs, tk.GetId())
	}
	// Genuine members of the same group, sealed as the frontend does.
	ts := e.tickets()
	for _, p := range []string{"m1", "m2", "m3"} {
		ts.create(p, "guild")
	}
	if got := ts.await(3, 60*time.Second); len(got) != 3 {
		t.Fatalf("%d of 3 genuine members assigned", len(got))
	}
	waitFor(t, "the forged tickets to be refused", 30*time.Second, func() bool {
		return e.counter("kumi_director_tickets_refused_total") >= float64(len(forgedIDs))
	})
	for _, id := range forgedIDs {
		tk, err := e.fe.GetTicket(e.ctx, &openmatch.GetTicketRequest{TicketId: id})
		if err != nil {
			t.Fatal(err)
		}
		if tk.GetAssignment() != nil {
			t.Fatalf("forged ticket %s assigned: %v", id, tk.GetAssignment())
		}
	}
}

// testAdminToken is the harness director's admin API token.
const testAdminToken = "test-admin-token-0123456789abcdef"

// adminHeaders makes req an authorised JSON admin API request.
func adminHeaders(req *http.Request) {
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	req.Header.Set("Content-Type", "application/json")
}
