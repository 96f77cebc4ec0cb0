package conformance

import (
	"context"
	"errors"
	"io"
	"regexp"
	"slices"
	"testing"
	"time"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func wantStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || st.Message() != msg {
		t.Fatalf("got %v / %q, want %v / %q", st.Code(), st.Message(), code, msg)
	}
}

func (h *Harness) ids(t *testing.T, pool *pb.Pool) []string {
	t.Helper()
	ts, _, err := h.QueryTickets(testCtx(t), pool)
	if err != nil {
		t.Fatalf("QueryTickets: %v", err)
	}
	var ids []string
	for _, tk := range ts {
		ids = append(ids, tk.Id)
	}
	slices.Sort(ids)
	return ids
}

func sorted(ids ...string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

func (h *Harness) assign(t *testing.T, groups ...*pb.AssignmentGroup) *pb.AssignTicketsResponse {
	t.Helper()
	r, err := h.BE.AssignTickets(testCtx(t), &pb.AssignTicketsRequest{Assignments: groups})
	if err != nil {
		t.Fatalf("AssignTickets: %v", err)
	}
	return r
}

// fetchOne makes tickets pending through a FetchMatches cycle that accepts one match of them.
func (h *Harness) fetchOne(t *testing.T, tickets ...*pb.Ticket) {
	t.Helper()
	m := &pb.Match{MatchId: "m-" + tickets[0].Id, Tickets: tickets}
	h.SetMMF(func(ctx context.Context, p *pb.MatchProfile, out chan<- *pb.Match) error { out <- m; return nil })
	h.SetEvaluator(acceptAll)
	s, err := h.fetch(t, testCtx(t), "p")
	if err != nil {
		t.Fatal(err)
	}
	mustMatch(t, s, m)
	mustEOF(t, s)
}

func TestCreateTicketErrors(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	for _, tc := range []struct {
		name string
		tk   *pb.Ticket
		msg  string
	}{
		{"missing ticket", nil, ".ticket is required"},
		{"has assignment", &pb.Ticket{Assignment: &pb.Assignment{}}, "tickets cannot be created with an assignment"},
		{"has create time", &pb.Ticket{CreateTime: timestamppb.Now()}, "tickets cannot be created with create time set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := h.FE.CreateTicket(testCtx(t), &pb.CreateTicketRequest{Ticket: tc.tk})
			if r != nil {
				t.Fatalf("got ticket %v", r)
			}
			wantStatus(t, err, codes.InvalidArgument, tc.msg)
		})
	}
}

func TestCreateTicketAssignsIDAndTime(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	before := time.Now().Add(-time.Second)
	in := h.Ticket(&pb.SearchFields{DoubleArgs: map[string]float64{"skill": 3}, Tags: []string{"x"}})
	in.Id = "client-chosen"
	a, err := h.FE.CreateTicket(testCtx(t), &pb.CreateTicketRequest{Ticket: in})
	if err != nil {
		t.Fatal(err)
	}
	b := h.create(t, nil)
	if !regexp.MustCompile(`^[0-9a-v]{20}$`).MatchString(a.Id) || a.Id == b.Id {
		t.Fatalf("ids %q %q: want fresh distinct 20-char xids (client id ignored)", a.Id, b.Id)
	}
	if ct := a.CreateTime.AsTime(); ct.Before(before) || ct.After(time.Now().Add(time.Second)) {
		t.Fatalf("create_time %v not now", ct)
	}
	got, err := h.FE.GetTicket(testCtx(t), &pb.GetTicketRequest{TicketId: a.Id})
	if err != nil || !proto.Equal(got, a) {
		t.Fatalf("GetTicket = %v, %v; want %v", got, err, a)
	}
}

func TestGetTicketNotFound(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	_, err := h.FE.GetTicket(testCtx(t), &pb.GetTicketRequest{TicketId: "nope"})
	wantStatus(t, err, codes.NotFound, "Ticket id: nope not found")
}

func TestAssignTickets(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	t1, t2, t3 := h.create(t, nil), h.create(t, nil), h.create(t, nil)
	r := h.assign(t, &pb.AssignmentGroup{TicketIds: []string{t1.Id}, Assignment: &pb.Assignment{Connection: "a"}},
		&pb.AssignmentGroup{TicketIds: []string{t2.Id, t3.Id}, Assignment: &pb.Assignment{Connection: "b"}})
	if len(r.Failures) != 0 {
		t.Fatalf("failures %v", r.Failures)
	}
	for id, want := range map[string]string{t1.Id: "a", t2.Id: "b", t3.Id: "b"} {
		got, err := h.FE.GetTicket(testCtx(t), &pb.GetTicketRequest{TicketId: id})
		if err != nil || got.Assignment.GetConnection() != want {
			t.Fatalf("ticket %s: %v %v, want connection %q", id, got, err, want)
		}
	}
	// Re-assigning overwrites.
	h.assign(t, &pb.AssignmentGroup{TicketIds: []string{t1.Id}, Assignment: &pb.Assignment{Connection: "c"}})
	got, err := h.FE.GetTicket(testCtx(t), &pb.GetTicketRequest{TicketId: t1.Id})
	if err != nil || got.Assignment.GetConnection() != "c" || got.Id != t1.Id || !proto.Equal(got.SearchFields, t1.SearchFields) {
		t.Fatalf("after re-assign: %v %v", got, err)
	}
}

func TestAssignTicketsInvalidArgument(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	tk := h.create(t, nil)
	for _, tc := range []struct {
		name   string
		groups []*pb.AssignmentGroup
		msg    string
	}{
		{"missing assignment", []*pb.AssignmentGroup{{TicketIds: []string{tk.Id}}}, "AssignmentGroup.Assignment is required"},
		{"twice in one group", []*pb.AssignmentGroup{{TicketIds: []string{tk.Id, tk.Id}, Assignment: &pb.Assignment{}}},
			"Ticket id " + tk.Id + " is assigned multiple times in one assign tickets call"},
		{"twice across groups", []*pb.AssignmentGroup{{TicketIds: []string{tk.Id}, Assignment: &pb.Assignment{Connection: "a"}},
			{TicketIds: []string{tk.Id}, Assignment: &pb.Assignment{Connection: "b"}}},
			"Ticket id " + tk.Id + " is assigned multiple times in one assign tickets call"},
		{"no ticket ids", []*pb.AssignmentGroup{{Assignment: &pb.Assignment{}}}, "AssignmentGroupTicketIds is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.BE.AssignTickets(testCtx(t), &pb.AssignTicketsRequest{Assignments: tc.groups})
			wantStatus(t, err, codes.InvalidArgument, tc.msg)
		})
	}
	// No groups at all is not an error in Open Match v1.8.1: an empty answer.
	if res, err := h.BE.AssignTickets(testCtx(t), &pb.AssignTicketsRequest{}); err != nil || len(res.GetFailures()) != 0 {
		t.Fatalf("AssignTickets with no groups = %v, %v; want OK and an empty answer", res, err)
	}
	// A refused call changes nothing.
	got, err := h.FE.GetTicket(testCtx(t), &pb.GetTicketRequest{TicketId: tk.Id})
	if err != nil || got.Assignment != nil {
		t.Fatalf("ticket changed by refused calls: %v %v", got, err)
	}
}

func TestAssignTicketsMissingTicket(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	t1, t2, t3 := h.create(t, nil), h.create(t, nil), h.create(t, nil)
	if _, err := h.FE.DeleteTicket(testCtx(t), &pb.DeleteTicketRequest{TicketId: t2.Id}); err != nil {
		t.Fatal(err)
	}
	r := h.assign(t, &pb.AssignmentGroup{TicketIds: []string{t1.Id, t2.Id, t3.Id}, Assignment: &pb.Assignment{Connection: "a"}})
	want := &pb.AssignTicketsResponse{Failures: []*pb.AssignmentFailure{{TicketId: t2.Id, Cause: pb.AssignmentFailure_TICKET_NOT_FOUND}}}
	if !proto.Equal(r, want) {
		t.Fatalf("got %v, want %v", r, want)
	}
}

func TestTicketDelete(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	tk := h.create(t, nil)
	if _, err := h.FE.DeleteTicket(testCtx(t), &pb.DeleteTicketRequest{TicketId: tk.Id}); err != nil {
		t.Fatal(err)
	}
	_, err := h.FE.GetTicket(testCtx(t), &pb.GetTicketRequest{TicketId: tk.Id})
	wantStatus(t, err, codes.NotFound, "Ticket id: "+tk.Id+" not found")
	if ids := h.ids(t, h.Pool(nil)); len(ids) != 0 {
		t.Fatalf("deleted ticket still queryable: %v", ids)
	}
	// Deleting an unknown ticket is not an error.
	if _, err := h.FE.DeleteTicket(testCtx(t), &pb.DeleteTicketRequest{TicketId: "unknown"}); err != nil {
		t.Fatalf("delete unknown: %v", err)
	}
}

func TestEmptyReleaseTicketsRequest(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	r, err := h.BE.ReleaseTickets(testCtx(t), &pb.ReleaseTicketsRequest{})
	if err != nil || !proto.Equal(r, &pb.ReleaseTicketsResponse{}) {
		t.Fatalf("%v %v", r, err)
	}
}

func TestReleaseTickets(t *testing.T) {
	// The pending timeout is beyond the test's deadline on an embedded core, so a release cannot be
	// mistaken for the timeout however slow the machine is.
	h := NewWithTiming(t, func(tm *Timing) { tm.PendingRelease = time.Hour })
	h.Parallel(t)
	tk := h.create(t, nil)
	if ids := h.ids(t, h.Pool(nil)); !slices.Equal(ids, []string{tk.Id}) {
		t.Fatalf("before match: %v", ids)
	}
	matched := time.Now()
	h.fetchOne(t, tk)
	if ids := h.ids(t, h.Pool(nil)); len(ids) != 0 {
		t.Fatalf("pending ticket queryable: %v", ids)
	}
	if _, err := h.BE.ReleaseTickets(testCtx(t), &pb.ReleaseTicketsRequest{TicketIds: []string{tk.Id, "unknown"}}); err != nil {
		t.Fatal(err)
	}
	if ids := h.ids(t, h.Pool(nil)); !slices.Equal(ids, []string{tk.Id}) {
		t.Fatalf("after release: %v", ids)
	}
	if d := time.Since(matched); h.Remote && d >= h.Timing.PendingRelease {
		t.Fatalf("test too slow (%s) to tell release from timeout", d)
	}
}

func TestReleaseAllTickets(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	t1, t2, t3 := h.create(t, nil), h.create(t, nil), h.create(t, nil)
	h.fetchOne(t, t1, t2)
	if ids := h.ids(t, h.Pool(nil)); !slices.Equal(ids, []string{t3.Id}) {
		t.Fatalf("pending: %v", ids)
	}
	if _, err := h.BE.ReleaseAllTickets(testCtx(t), &pb.ReleaseAllTicketsRequest{}); err != nil {
		t.Fatal(err)
	}
	if ids := h.ids(t, h.Pool(nil)); !slices.Equal(ids, sorted(t1.Id, t2.Id, t3.Id)) {
		t.Fatalf("after release all: %v", ids)
	}
}

func TestTicketReleaseByTimeout(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	tk := h.create(t, nil)
	h.fetchOne(t, tk)
	if ids := h.ids(t, h.Pool(nil)); len(ids) != 0 {
		t.Fatalf("pending ticket queryable: %v", ids)
	}
	// Pending expiry is lazy (a query compares timestamps), so there is no event to wait on.
	time.Sleep(h.Timing.PendingRelease)
	if ids := h.ids(t, h.Pool(nil)); !slices.Equal(ids, []string{tk.Id}) {
		t.Fatalf("after pendingReleaseTimeout: %v", ids)
	}
}

func TestAssignedTicketsNotReturnedByQuery(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	tk := h.create(t, nil)
	if len(h.ids(t, h.Pool(nil))) != 1 {
		t.Fatal("new ticket not queryable")
	}
	h.assign(t, &pb.AssignmentGroup{TicketIds: []string{tk.Id}, Assignment: &pb.Assignment{Connection: "a"}})
	if ids := h.ids(t, h.Pool(nil)); len(ids) != 0 {
		t.Fatalf("assigned ticket queryable: %v", ids)
	}
	// Releasing does not bring an assigned ticket back.
	if _, err := h.BE.ReleaseAllTickets(testCtx(t), &pb.ReleaseAllTicketsRequest{}); err != nil {
		t.Fatal(err)
	}
	if ids := h.ids(t, h.Pool(nil)); len(ids) != 0 {
		t.Fatalf("assigned ticket queryable after release: %v", ids)
	}
}

func TestAssignedTicketDeleteTimeout(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	tk := h.create(t, nil)
	h.assign(t, &pb.AssignmentGroup{TicketIds: []string{tk.Id}, Assignment: &pb.Assignment{Connection: "a"}})
	got, err := h.FE.GetTicket(testCtx(t), &pb.GetTicketRequest{TicketId: tk.Id})
	if err != nil || got.Assignment.GetConnection() != "a" {
		t.Fatalf("%v %v", got, err)
	}
	// A watcher is told when the ticket goes away; that is the event this test waits on.
	w, err := h.FE.WatchAssignments(testCtx(t), &pb.WatchAssignmentsRequest{TicketId: tk.Id})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err = w.Recv(); err != nil {
			break
		}
	}
	if status.Code(err) != codes.NotFound {
		t.Fatalf("watch ended with %v, want NotFound", err)
	}
	_, err = h.FE.GetTicket(testCtx(t), &pb.GetTicketRequest{TicketId: tk.Id})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("after assignedDeleteTimeout: %v", err)
	}
}

func TestWatchAssignments(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	ctx := testCtx(t)
	tk := h.create(t, nil)
	w, err := h.FE.WatchAssignments(ctx, &pb.WatchAssignmentsRequest{TicketId: tk.Id})
	if err != nil {
		t.Fatal(err)
	}
	for _, conn := range []string{"a", "b"} {
		h.assign(t, &pb.AssignmentGroup{TicketIds: []string{tk.Id}, Assignment: &pb.Assignment{Connection: conn}})
		r, err := w.Recv()
		if err != nil || r.Assignment.GetConnection() != conn {
			t.Fatalf("want assignment %q, got %v %v", conn, r, err)
		}
	}
	if _, err := h.FE.DeleteTicket(ctx, &pb.DeleteTicketRequest{TicketId: tk.Id}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); status.Code(err) != codes.NotFound {
		t.Fatalf("after delete: %v, want NotFound", err)
	}
	w2, err := h.FE.WatchAssignments(ctx, &pb.WatchAssignmentsRequest{TicketId: "unknown"})
	if err == nil {
		_, err = w2.Recv()
	}
	wantStatus(t, err, codes.NotFound, "Ticket id: unknown not found")
}

func TestWatchAssignmentsAlreadyAssigned(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	tk := h.create(t, nil)
	h.assign(t, &pb.AssignmentGroup{TicketIds: []string{tk.Id}, Assignment: &pb.Assignment{Connection: "a"}})
	w, err := h.FE.WatchAssignments(testCtx(t), &pb.WatchAssignmentsRequest{TicketId: tk.Id})
	if err != nil {
		t.Fatal(err)
	}
	r, err := w.Recv()
	if err != nil || r.Assignment.GetConnection() != "a" {
		t.Fatalf("got %v %v", r, err)
	}
}

func TestPaging(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	n := h.Timing.PageSize*2 + 1
	want := make([]string, 0, n)
	for range n {
		want = append(want, h.create(t, nil).Id)
	}
	slices.Sort(want)
	ts, pages, err := h.QueryTickets(testCtx(t), h.Pool(nil))
	if err != nil {
		t.Fatal(err)
	}
	if pages != 3 {
		t.Fatalf("%d tickets came in %d pages, want 3 pages of at most %d", n, pages, h.Timing.PageSize)
	}
	var got []string
	for _, tk := range ts {
		got = append(got, tk.Id)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	s, err := h.Q.QueryTicketIds(testCtx(t), &pb.QueryTicketIdsRequest{Pool: h.Pool(nil)})
	if err != nil {
		t.Fatal(err)
	}
	got, pages = nil, 0
	for {
		r, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		pages++
		got = append(got, r.Ids...)
	}
	slices.Sort(got)
	if pages != 3 || !slices.Equal(got, want) {
		t.Fatalf("ids: %d pages %v, want 3 pages %v", pages, got, want)
	}
}

func TestNoPool(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	ctx := testCtx(t)
	check := func(name string, recv func() error) {
		t.Run(name, func(t *testing.T) { wantStatus(t, recv(), codes.InvalidArgument, ".pool is required") })
	}
	check("tickets", func() error {
		s, err := h.Q.QueryTickets(ctx, &pb.QueryTicketsRequest{})
		if err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	})
	check("ids", func() error {
		s, err := h.Q.QueryTicketIds(ctx, &pb.QueryTicketIdsRequest{})
		if err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	})
	check("backfills", func() error {
		s, err := h.Q.QueryBackfills(ctx, &pb.QueryBackfillsRequest{})
		if err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	})
}

func TestEmptyQuery(t *testing.T) {
	h := New(t)
	h.Parallel(t)
	s, err := h.Q.QueryTickets(testCtx(t), &pb.QueryTicketsRequest{Pool: h.Pool(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := s.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("no tickets: want a stream without messages, got %v %v", r, err)
	}
}
