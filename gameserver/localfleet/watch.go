package localfleet

import (
	"context"
	"maps"
	"sync"

	"github.com/kumi-dev/kumi/allocation"
)

// watcher is one Watch call: events are queued without bound so the fleet never blocks on a slow
// reader (servers are few), and delivered in order by the watcher's goroutine.
type watcher struct {
	match  map[string]string
	seen   map[string]bool // servers currently matching, to report ones that stop matching
	mu     sync.Mutex
	queue  []allocation.Event
	notify chan struct{}
	closed bool
}

// Watch streams changes of the servers whose labels include matchLabels until ctx ends or the
// fleet stops; the channel is closed then. It starts with the current matching servers. A server
// that stops matching is reported Deleted, as a label-selector watch in Kubernetes does.
func (f *Fleet) Watch(ctx context.Context, matchLabels map[string]string) (<-chan allocation.Event, error) {
	w := &watcher{match: maps.Clone(matchLabels), seen: map[string]bool{}, notify: make(chan struct{}, 1)}
	out := make(chan allocation.Event)
	f.mu.Lock()
	if f.stopping {
		f.mu.Unlock()
		close(out)
		return out, nil
	}
	for _, s := range f.servers {
		w.offer(s, false)
	}
	f.watchers[w] = struct{}{}
	// Added under f.mu while not stopping, so the fleet's Wait cannot have started returning.
	f.wg.Add(1)
	f.mu.Unlock()

	go func() {
		defer f.wg.Done()
		defer close(out)
		defer func() {
			f.mu.Lock()
			delete(f.watchers, w)
			f.mu.Unlock()
		}()
		for {
			w.mu.Lock()
			batch := w.queue
			w.queue = nil
			closed := w.closed
			w.mu.Unlock()
			for _, ev := range batch {
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
			if closed && len(batch) == 0 {
				return
			}
			if len(batch) > 0 {
				continue
			}
			select {
			case <-ctx.Done():
				return
			case <-w.notify:
			}
		}
	}()
	return out, nil
}

// notify tells every watcher about s. f.mu is held.
func (f *Fleet) notify(s *server, deleted bool) {
	for w := range f.watchers {
		w.offer(s, deleted)
	}
}

// offer queues the event if it concerns this watcher. f.mu is held (it guards s.gs and w.seen).
func (w *watcher) offer(s *server, deleted bool) {
	matches := !deleted && labelsMatch(s.gs, w.match)
	var ev allocation.Event
	switch {
	case matches:
		w.seen[s.name] = true
		ev = allocation.Event{Server: ToGameServer(s.gs)}
	case w.seen[s.name]:
		delete(w.seen, s.name)
		ev = allocation.Event{Server: ToGameServer(s.gs), Deleted: true}
	default:
		return
	}
	w.mu.Lock()
	w.queue = append(w.queue, ev)
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

func (w *watcher) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
}
