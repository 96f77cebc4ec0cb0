package frontend

import (
	"context"
	"sync"
	"time"
)

// expiryQueue holds (ticket, deadline) in creation order. The lifetime is one constant, so
// deadlines arrive sorted and a FIFO replaces a heap: O(1) per ticket.
type expiryQueue struct {
	mu     sync.Mutex
	items  []expiryItem
	head   int
	signal chan struct{} // 1-buffered: something was pushed
}

type expiryItem struct {
	ticketID, player string
	deadline         time.Time
}

func newExpiryQueue() *expiryQueue { return &expiryQueue{signal: make(chan struct{}, 1)} }

func (q *expiryQueue) push(it expiryItem) {
	q.mu.Lock()
	q.items = append(q.items, it)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *expiryQueue) peek() (expiryItem, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.items) {
		return expiryItem{}, false
	}
	return q.items[q.head], true
}

func (q *expiryQueue) pop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items[q.head] = expiryItem{}
	q.head++
	// Compact once the consumed prefix dominates, so the slice does not grow forever.
	if q.head > 1024 && q.head*2 > len(q.items) {
		q.items = append(q.items[:0], q.items[q.head:]...)
		q.head = 0
	}
}

func (q *expiryQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) - q.head
}

// run calls expire for each item at its deadline until ctx ends; expire runs on up to workers
// goroutines so slow Open Match calls do not delay later deadlines.
func (q *expiryQueue) run(ctx context.Context, now func() time.Time, workers int, expire func(context.Context, expiryItem)) {
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		it, ok := q.peek()
		var wake <-chan time.Time
		if ok {
			d := it.deadline.Sub(now())
			if d <= 0 {
				q.pop()
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					expire(ctx, it)
				}()
				continue
			}
			timer.Reset(d)
			wake = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-q.signal:
		case <-wake:
		}
	}
}
