package openmatch

import (
	"hash/maphash"
	"math"
	"slices"
	"sync"
	"time"
	"unsafe"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"google.golang.org/protobuf/encoding/protowire"
)

// nShards spreads the ticket map over independent locks so concurrent CreateTicket calls rarely
// contend; 64 is plenty for a handful of cores and costs nothing when idle.
const nShards = 64

// ticketStore holds every ticket in memory. A ticket is kept as its marshalled bytes (served to
// queries without re-marshalling) plus a compact copy of its search fields for filtering, which
// is roughly a third of the memory of a decoded *pb.Ticket.
type ticketStore struct {
	seed    maphash.Seed
	shards  [nShards]shard
	pending time.Duration // pendingReleaseTimeout
	expiry  time.Duration // assignedDeleteTimeout

	expMu    sync.Mutex
	expQueue []expiryEntry // assigned tickets in assignment order; deadlines are monotone
}

type shard struct {
	shardData
	// Pads shards to a 64-byte stride so each shard's lock and map stay within one cache line of
	// their own instead of drifting across lines shared with a neighbour.
	_ [64 - unsafe.Sizeof(shardData{})%64]byte
}

type shardData struct {
	mu sync.RWMutex
	m  map[string]*ticketRec
	// open holds m's unassigned tickets, the only ones a query can return. Assigned tickets stay
	// in m for assignedDeleteTimeout (600k of them at a steady 1000 tickets/s with the default
	// 10 min); queries scan open, so they cost what the waiting tickets cost.
	open map[string]*ticketRec
}

type expiryEntry struct {
	id string
	at int64
}

// ticketRec is one ticket. raw is its marshalled form; the map key (id) and every string of idx
// are substrings of raw, so a stored ticket is three or four heap objects however many fields it
// has (fewer objects for the garbage collector to visit, less memory). raw is immutable: an update
// replaces it, so readers may keep it after unlocking.
type ticketRec struct {
	raw       string
	created   int64 // unix nanos
	pendingAt int64 // unix nanos when marked pending; 0 = not pending
	expireAt  int64 // unix nanos when an assigned ticket is deleted
	asg       *pb.Assignment
	idx       searchIndex
	watchers  *watchSet
}

// searchIndex is the ticket's SearchFields flattened into slices (a map per ticket would cost
// hundreds of bytes; tickets carry a handful of fields, so a linear scan is faster anyway).
type searchIndex struct {
	dbl  []dblArg
	str  []strArg
	tags []string
}

type dblArg struct {
	key string
	v   float64
}

type strArg struct{ key, v string }

type watchSet struct{ chans []chan struct{} }

func newIndex(sf *pb.SearchFields) searchIndex {
	var ix searchIndex
	if sf == nil {
		return ix
	}
	if n := len(sf.DoubleArgs); n > 0 {
		ix.dbl = make([]dblArg, 0, n)
		for k, v := range sf.DoubleArgs {
			ix.dbl = append(ix.dbl, dblArg{k, v})
		}
	}
	if n := len(sf.StringArgs); n > 0 {
		ix.str = make([]strArg, 0, n)
		for k, v := range sf.StringArgs {
			ix.str = append(ix.str, strArg{k, v})
		}
	}
	if len(sf.Tags) > 0 {
		ix.tags = slices.Clip(sf.Tags)
	}
	return ix
}

func newTicketStore(pending, expiry time.Duration) *ticketStore {
	s := &ticketStore{seed: maphash.MakeSeed(), pending: pending, expiry: expiry}
	for i := range s.shards {
		s.shards[i].m = make(map[string]*ticketRec)
		s.shards[i].open = make(map[string]*ticketRec)
	}
	return s
}

func (s *ticketStore) shard(id string) *shard {
	return &s.shards[maphash.String(s.seed, id)%nShards]
}

// put stores a new ticket; new tickets are unassigned, so it enters open too.
func (s *ticketStore) put(id string, r *ticketRec) {
	sh := s.shard(id)
	sh.mu.Lock()
	sh.m[id] = r
	sh.open[id] = r
	sh.mu.Unlock()
}

// live reports whether r still exists at now (assigned tickets vanish at their deadline even
// before the sweeper deletes them).
func (r *ticketRec) live(now int64) bool { return r.asg == nil || now < r.expireAt }

func (r *ticketRec) isPending(now int64, timeout time.Duration) bool {
	return r.pendingAt != 0 && now-r.pendingAt < int64(timeout)
}

// active: indexed (unassigned) and not pending.
func (r *ticketRec) active(now int64, timeout time.Duration) bool {
	return r.asg == nil && !r.isPending(now, timeout)
}

// get returns the ticket's bytes.
func (s *ticketStore) get(id string) (string, bool) {
	sh := s.shard(id)
	now := time.Now().UnixNano()
	sh.mu.RLock()
	r, ok := sh.m[id]
	if ok && !r.live(now) {
		ok = false
	}
	var raw string
	if ok {
		raw = r.raw
	}
	sh.mu.RUnlock()
	return raw, ok
}

// remove deletes a ticket and wakes its watchers. It reports whether the ticket existed.
func (s *ticketStore) remove(id string) bool {
	sh := s.shard(id)
	sh.mu.Lock()
	r, ok := sh.m[id]
	if ok {
		delete(sh.m, id)
		delete(sh.open, id)
		r.notify()
	}
	sh.mu.Unlock()
	return ok
}

func (r *ticketRec) notify() {
	if r.watchers == nil {
		return
	}
	for _, c := range r.watchers.chans {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// watch registers c to be signalled whenever the ticket's assignment changes or it disappears,
// and returns the current assignment and expiry. ok is false for an unknown ticket.
func (s *ticketStore) watch(id string, c chan struct{}) (asg *pb.Assignment, expireAt int64, ok bool) {
	sh := s.shard(id)
	now := time.Now().UnixNano()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r, ok := sh.m[id]
	if !ok || !r.live(now) {
		return nil, 0, false
	}
	if r.watchers == nil {
		r.watchers = &watchSet{}
	}
	r.watchers.chans = append(r.watchers.chans, c)
	return r.asg, r.expireAt, true
}

func (s *ticketStore) unwatch(id string, c chan struct{}) {
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r, ok := sh.m[id]
	if !ok || r.watchers == nil {
		return
	}
	r.watchers.chans = slices.DeleteFunc(r.watchers.chans, func(x chan struct{}) bool { return x == c })
	if len(r.watchers.chans) == 0 {
		r.watchers = nil
	}
}

// assignment returns the current assignment state of a ticket.
func (s *ticketStore) assignment(id string) (asg *pb.Assignment, expireAt int64, ok bool) {
	sh := s.shard(id)
	now := time.Now().UnixNano()
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	r, ok := sh.m[id]
	if !ok || !r.live(now) {
		return nil, 0, false
	}
	return r.asg, r.expireAt, true
}

// assign sets asg (whose marshalled form is asgRaw) on ticket id: it leaves the query index and
// the pending set and is deleted after assignedDeleteTimeout. It reports false if the ticket does
// not exist.
func (s *ticketStore) assign(id string, asg *pb.Assignment, asgRaw []byte, now int64) bool {
	sh := s.shard(id)
	sh.mu.Lock()
	r, ok := sh.m[id]
	if !ok || !r.live(now) {
		sh.mu.Unlock()
		return false
	}
	r.raw = withAssignment(r.raw, asgRaw, r.asg != nil)
	r.idx = searchIndex{} // assigned tickets are never queried again
	delete(sh.open, id)
	r.asg = asg
	r.pendingAt = 0
	r.expireAt = now + int64(s.expiry)
	r.notify()
	sh.mu.Unlock()

	s.expMu.Lock()
	s.expQueue = append(s.expQueue, expiryEntry{id, now + int64(s.expiry)})
	s.expMu.Unlock()
	return true
}

// withAssignment returns a copy of a marshalled Ticket with field 3 (assignment) replaced.
func withAssignment(raw string, asgRaw []byte, hadAssignment bool) string {
	out := make([]byte, 0, len(raw)+len(asgRaw)+4)
	if !hadAssignment {
		out = append(out, raw...)
	} else {
		b := []byte(raw)
		for len(b) > 0 {
			num, typ, n := protowire.ConsumeTag(b)
			if n < 0 {
				break
			}
			m := protowire.ConsumeFieldValue(num, typ, b[n:])
			if m < 0 {
				break
			}
			if num != 3 {
				out = append(out, b[:n+m]...)
			}
			b = b[n+m:]
		}
	}
	out = protowire.AppendTag(out, 3, protowire.BytesType)
	return string(protowire.AppendBytes(out, asgRaw))
}

// indexRaw reads a marshalled Ticket (raw, and b holding the same bytes) and returns its id and
// search index as substrings of raw. nd, ns and nt size the index slices.
func indexRaw(raw string, b []byte, nd, ns, nt int) (id string, ix searchIndex, err error) {
	if nd > 0 {
		ix.dbl = make([]dblArg, 0, nd)
	}
	if ns > 0 {
		ix.str = make([]strArg, 0, ns)
	}
	if nt > 0 {
		ix.tags = make([]string, 0, nt)
	}
	err = walk(b, 0, func(num protowire.Number, start, n int, _ uint64) error {
		switch num {
		case 1:
			id = raw[start : start+n]
		case 4:
			return walk(b[:start+n], start, func(num protowire.Number, start, n int, _ uint64) error {
				switch num {
				case 1, 2: // double_args / string_args entry: key 1, value 2
					var key, val string
					var dv uint64
					err := walk(b[:start+n], start, func(f protowire.Number, s, l int, fixed uint64) error {
						switch {
						case f == 1 && l >= 0:
							key = raw[s : s+l]
						case f == 2 && l >= 0:
							val = raw[s : s+l]
						case f == 2:
							dv = fixed
						}
						return nil
					})
					if err != nil {
						return err
					}
					if num == 1 {
						ix.dbl = append(ix.dbl, dblArg{key, math.Float64frombits(dv)})
					} else {
						ix.str = append(ix.str, strArg{key, val})
					}
				case 3:
					ix.tags = append(ix.tags, raw[start:start+n])
				}
				return nil
			})
		}
		return nil
	})
	return id, ix, err
}

// walk calls fn for each field of the message in b[from:]: length-delimited fields with their
// payload's offset and length, fixed64 fields with n = -1 and their value; other fields are skipped.
func walk(b []byte, from int, fn func(num protowire.Number, start, n int, fixed uint64) error) error {
	off := from
	for off < len(b) {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return protowire.ParseError(n)
		}
		off += n
		switch typ {
		case protowire.BytesType:
			v, m := protowire.ConsumeBytes(b[off:])
			if m < 0 {
				return protowire.ParseError(m)
			}
			if err := fn(num, off+m-len(v), len(v), 0); err != nil {
				return err
			}
			off += m
		case protowire.Fixed64Type:
			v, m := protowire.ConsumeFixed64(b[off:])
			if m < 0 {
				return protowire.ParseError(m)
			}
			if err := fn(num, off, -1, v); err != nil {
				return err
			}
			off += m
		default:
			m := protowire.ConsumeFieldValue(num, typ, b[off:])
			if m < 0 {
				return protowire.ParseError(m)
			}
			off += m
		}
	}
	return nil
}

// sweep deletes assigned tickets whose deadline passed and returns how many it deleted.
func (s *ticketStore) sweep(now int64) int {
	s.expMu.Lock()
	i := 0
	for i < len(s.expQueue) && s.expQueue[i].at <= now {
		i++
	}
	due := slices.Clone(s.expQueue[:i])
	s.expQueue = slices.Delete(s.expQueue, 0, i)
	if cap(s.expQueue) > 1024 && len(s.expQueue) < cap(s.expQueue)/4 {
		s.expQueue = slices.Clone(s.expQueue)
	}
	s.expMu.Unlock()

	n := 0
	for _, e := range due {
		sh := s.shard(e.id)
		sh.mu.Lock()
		// A re-assignment pushed a later deadline; only the entry matching the current one counts.
		if r, ok := sh.m[e.id]; ok && r.asg != nil && r.expireAt == e.at {
			delete(sh.m, e.id)
			r.notify()
			n++
		}
		sh.mu.Unlock()
	}
	return n
}

// pendingOrAssigned reports whether any of ids is pending or assigned at now.
func (s *ticketStore) pendingOrAssigned(ids []string, now int64) (string, bool) {
	for _, id := range ids {
		sh := s.shard(id)
		sh.mu.RLock()
		r, ok := sh.m[id]
		busy := ok && r.live(now) && (r.asg != nil || r.isPending(now, s.pending))
		sh.mu.RUnlock()
		if busy {
			return id, true
		}
	}
	return "", false
}

// markPending hides ids from queries until released, assigned or pendingReleaseTimeout passes.
func (s *ticketStore) markPending(ids []string, now int64) {
	for _, id := range ids {
		sh := s.shard(id)
		sh.mu.Lock()
		if r, ok := sh.m[id]; ok && r.asg == nil {
			r.pendingAt = now
		}
		sh.mu.Unlock()
	}
}

// release makes pending tickets active again; unknown ids are ignored.
func (s *ticketStore) release(ids []string) {
	for _, id := range ids {
		sh := s.shard(id)
		sh.mu.Lock()
		if r, ok := sh.m[id]; ok {
			r.pendingAt = 0
		}
		sh.mu.Unlock()
	}
}

func (s *ticketStore) releaseAll() {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for _, r := range sh.open {
			r.pendingAt = 0
		}
		sh.mu.Unlock()
	}
}

// counts returns the number of active, pending and assigned tickets (for gauges).
func (s *ticketStore) counts() (active, pending, assigned int) {
	now := time.Now().UnixNano()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		for _, r := range sh.m {
			switch {
			case !r.live(now):
			case r.asg != nil:
				assigned++
			case r.isPending(now, s.pending):
				pending++
			default:
				active++
			}
		}
		sh.mu.RUnlock()
	}
	return
}

// scan calls fn for every active ticket that f matches, shard by shard under the shard's read
// lock (fn must not block).
func (s *ticketStore) scan(f *filter, fn func(id string, r *ticketRec)) {
	now := time.Now().UnixNano()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		for id, r := range sh.open {
			if r.active(now, s.pending) && f.match(r.created, &r.idx) {
				fn(id, r)
			}
		}
		sh.mu.RUnlock()
	}
}

// within checks a value against a DoubleRangeFilter's bounds; NaN never matches.
func within(v, lo, hi float64, ex pb.DoubleRangeFilter_Exclude) bool {
	if math.IsNaN(v) {
		return false
	}
	switch ex {
	case pb.DoubleRangeFilter_MIN:
		return lo < v && v <= hi
	case pb.DoubleRangeFilter_MAX:
		return lo <= v && v < hi
	case pb.DoubleRangeFilter_BOTH:
		return lo < v && v < hi
	default:
		return lo <= v && v <= hi
	}
}
