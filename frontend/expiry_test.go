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
			t.Fatalf("item %d expired as %s: not FIFO", i, id)
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
	if len(q.items)-q.head != 0 || q.head > 1024 {
		t.Fatalf("queue not compacted: head %d len %d", q.head, len(q.items))
	}
}
