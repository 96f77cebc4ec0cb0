package frontend

import (
	"container/heap"
	"context"
	"slices"
	"sync"
	"time"
)

// expiryQueue holds (ticket, deadline) ordered by deadline. New tickets arrive almost sorted (one
// lifetime after creation), but a failed expiry is pushed again with a short retry deadline, which
// must not wait behind every younger ticket's full lifetime: hence a heap, not a FIFO.
type expiryQueue struct {
	mu     sync.Mutex
	items  expiryHeap
	signal chan struct{} // 1-buffered: something was pushed
}

type expiryItem struct {
	ticketID, player string
	deadline         time.Time
}

type expiryHeap []expiryItem

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryItem)) }
func (h *expiryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = expiryItem{}
	*h = old[:len(old)-1]
	return it
}

func newExpiryQueue() *expiryQueue { return &expiryQueue{signal: make(chan struct{}, 1)} }

func (q *expiryQueue) push(it expiryItem) {
	q.mu.Lock()
	heap.Push(&q.items, it)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *expiryQueue) peek() (expiryItem, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return expiryItem{}, false
	}
	return q.items[0], true
}

func (q *expiryQueue) pop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	heap.Pop(&q.items)
	// Shrink once mostly empty, so a burst does not pin its peak memory forever.
	if cap(q.items) > 1024 && len(q.items) < cap(q.items)/4 {
		q.items = slices.Clone(q.items)
	}
}

func (q *expiryQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
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
