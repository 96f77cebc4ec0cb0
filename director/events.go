package director

import (
	"strconv"
	"sync"
	"time"

	"github.com/kumi-dev/kumi/console"
)

// maxEvents is how many recent events the director keeps for the console.
const maxEvents = 50

// eventLog keeps the director's latest drains, session moves and weight changes for the live
// console (console/); the zero value is ready. It only records: nothing in the director reads it.
type eventLog struct {
	mu      sync.Mutex
	seq     uint64
	ring    []console.Event
	changed chan struct{} // closed (and replaced) on every event; nil until someone waits
}

// add records e, stamping its sequence number and time.
func (l *eventLog) add(e console.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	e.Seq, e.Time = l.seq, time.Now()
	if len(l.ring) == maxEvents {
		l.ring = append(l.ring[:0], l.ring[1:]...)
	}
	l.ring = append(l.ring, e)
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
}

// list returns the kept events, oldest first.
func (l *eventLog) list() []console.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append(make([]console.Event, 0, len(l.ring)), l.ring...) // [] not null in JSON
}

// wait returns a channel closed on the next event.
func (l *eventLog) wait() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.changed == nil {
		l.changed = make(chan struct{})
	}
	return l.changed
}

// noteDrain records a server asked to drain (why: "scale-in", "admin API").
func (d *Director) noteDrain(server, why string) {
	d.events.add(console.Event{Kind: "drain", Server: server, Detail: why})
}

// noteMove records a draining server's session given a new home.
func (d *Director) noteMove(from, to, session string, players int) {
	d.events.add(console.Event{Kind: "move", Server: from, To: to, Session: session, Detail: strconv.Itoa(players) + " players"})
}

// noteMoveFailed records a session that found no room to move to.
func (d *Director) noteMoveFailed(from, session string) {
	d.events.add(console.Event{Kind: "move_failed", Server: from, Session: session, Detail: "no room"})
}

// noteWeights records new traffic weights.
func (d *Director) noteWeights() {
	d.events.add(console.Event{Kind: "weights", Detail: FormatWeights(d.pool.Weights())})
}
