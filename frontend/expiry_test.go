package frontend

import (
	"context"
	"strconv"
	"testing"
	"time"
)

func TestExpiryQueueOrderAndCompaction(t *testing.T) {
	q := newExpiryQueue()
	base := time.Now()
	const n = 3000
	for i := range n {
		q.push(expiryItem{ticketID: strconv.Itoa(i), deadline: base.Add(-time.Duration(n-i) * time.Microsecond)})
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan string, n)
	done := make(chan struct{})
	go func() {
		defer close(done)
		q.run(ctx, time.Now, 1, func(_ context.Context, it expiryItem) { got <- it.ticketID })
	}()
	for i := range n {
		if id := <-got; id != strconv.Itoa(i) {
			t.Fatalf("item %d expired as %s: not in deadline order", i, id)
		}
	}
	// A future item waits for its deadline; pushing wakes the loop.
	q.push(expiryItem{ticketID: "later", deadline: time.Now().Add(20 * time.Millisecond)})
	start := time.Now()
	if id := <-got; id != "later" || time.Since(start) < 15*time.Millisecond {
		t.Fatalf("future item %s after %s", id, time.Since(start))
	}
	cancel()
	<-done
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) != 0 || cap(q.items) > 1024 {
		t.Fatalf("queue not compacted: len %d cap %d", len(q.items), cap(q.items))
	}
}

// TestExpiryRetryNotBehindLaterDeadlines: a failed expiry is re-pushed with a short retry deadline
// after younger tickets with a full lifetime; it must fire at its own deadline, not after theirs.
func TestExpiryRetryNotBehindLaterDeadlines(t *testing.T) {
	q := newExpiryQueue()
	now := time.Now()
	q.push(expiryItem{ticketID: "young", deadline: now.Add(time.Hour)})
	q.push(expiryItem{ticketID: "retry", deadline: now.Add(-time.Millisecond)})
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan string, 2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		q.run(ctx, time.Now, 1, func(_ context.Context, it expiryItem) { got <- it.ticketID })
	}()
	defer func() { cancel(); <-done }()
	select {
	case id := <-got:
		if id != "retry" {
			t.Fatalf("expired %q first, want the retry", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the due retry waited behind a ticket with a later deadline")
	}
	if n := q.len(); n != 1 {
		t.Fatalf("%d items left, want the young one", n)
	}
}
