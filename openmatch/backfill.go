package openmatch

import (
	"sync"
	"time"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"github.com/rs/xid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// backfillStore holds backfills. They are few (one per game server with open slots), so one
// mutex is enough; backfill operations are serialized, which also stands in for upstream's
// redsync lock (backfillLockTimeout).
type backfillStore struct {
	mu  sync.Mutex
	m   map[string]*backfillRec
	ttl time.Duration // not acknowledged for this long = expired (0.8 × pendingReleaseTimeout)
}

type backfillRec struct {
	bf      *pb.Backfill // immutable; replaced on update
	tickets []string     // associated (pending) tickets, assigned on acknowledge
	lastAck int64
	idx     searchIndex
}

func newBackfillStore(pendingTimeout time.Duration) *backfillStore {
	return &backfillStore{m: make(map[string]*backfillRec), ttl: pendingTimeout * 4 / 5}
}

func (r *backfillRec) expired(now int64, ttl time.Duration) bool { return now-r.lastAck >= int64(ttl) }

func backfillNotFound(id string) error {
	return status.Errorf(codes.NotFound, "Backfill id: %s not found", id)
}

// create stores a new backfill (id, create_time, generation 1) and returns it.
func (b *backfillStore) create(in *pb.Backfill, now time.Time, tickets []string) *pb.Backfill {
	bf := proto.CloneOf(in)
	bf.Id = xid.New().String()
	bf.CreateTime = timestamppb.New(now)
	bf.Generation = 1
	b.mu.Lock()
	b.m[bf.Id] = &backfillRec{bf: bf, tickets: tickets, lastAck: now.UnixNano(), idx: newIndex(bf.SearchFields)}
	b.mu.Unlock()
	return bf
}

func (b *backfillStore) get(id string) (*pb.Backfill, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.m[id]
	if !ok {
		return nil, false
	}
	return r.bf, true
}

// update is the frontend's UpdateBackfill: it overwrites search_fields, extensions and
// persistent_field, bumps the generation and returns the associated tickets for release.
func (b *backfillStore) update(in *pb.Backfill, now int64) (*pb.Backfill, []string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.m[in.Id]
	if !ok {
		return nil, nil, backfillNotFound(in.Id)
	}
	if r.expired(now, b.ttl) {
		return nil, nil, status.Errorf(codes.Unavailable, "backfill %s is expired: it was not acknowledged for %s", in.Id, b.ttl)
	}
	bf := &pb.Backfill{
		Id:              r.bf.Id,
		SearchFields:    in.SearchFields,
		Extensions:      in.Extensions,
		PersistentField: in.PersistentField,
		CreateTime:      r.bf.CreateTime,
		Generation:      r.bf.Generation + 1,
	}
	released := r.tickets
	r.bf, r.tickets, r.idx = bf, nil, newIndex(bf.SearchFields)
	return bf, released, nil
}

// updateFromMatch applies an MMF-proposed backfill: the stored generation must equal the
// proposal's; search_fields and extensions are overwritten (persistent_field kept), the generation
// bumps and the match's tickets join the backfill. ok is false when the match must be dropped.
func (b *backfillStore) updateFromMatch(in *pb.Backfill, tickets []string, now int64) (*pb.Backfill, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.m[in.Id]
	if !ok || r.expired(now, b.ttl) || r.bf.Generation != in.Generation {
		return nil, false
	}
	bf := &pb.Backfill{
		Id:              r.bf.Id,
		SearchFields:    in.SearchFields,
		Extensions:      in.Extensions,
		PersistentField: r.bf.PersistentField,
		CreateTime:      r.bf.CreateTime,
		Generation:      r.bf.Generation + 1,
	}
	r.bf, r.idx = bf, newIndex(bf.SearchFields)
	r.tickets = append(r.tickets, tickets...)
	return bf, true
}

// acknowledge refreshes the ack time and hands back the associated tickets (for assignment).
func (b *backfillStore) acknowledge(id string, now int64) (*pb.Backfill, []string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.m[id]
	if !ok {
		return nil, nil, backfillNotFound(id)
	}
	if r.expired(now, b.ttl) {
		return nil, nil, status.Errorf(codes.Unavailable, "backfill %s is expired: it was not acknowledged for %s", id, b.ttl)
	}
	r.lastAck = now
	t := r.tickets
	r.tickets = nil
	return r.bf, t, nil
}

// remove deletes a backfill and returns its associated tickets (to release).
func (b *backfillStore) remove(id string) ([]string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.m[id]
	if !ok {
		return nil, false
	}
	delete(b.m, id)
	return r.tickets, true
}

// removeExpired deletes every expired backfill and returns the tickets to release.
func (b *backfillStore) removeExpired(now int64) (ids, tickets []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, r := range b.m {
		if r.expired(now, b.ttl) {
			delete(b.m, id)
			ids = append(ids, id)
			tickets = append(tickets, r.tickets...)
		}
	}
	return ids, tickets
}

// query returns the unexpired backfills f matches.
func (b *backfillStore) query(f *filter, now int64) []*pb.Backfill {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*pb.Backfill
	for _, r := range b.m {
		if !r.expired(now, b.ttl) && f.match(r.bf.GetCreateTime().AsTime().UnixNano(), &r.idx) {
			out = append(out, r.bf)
		}
	}
	return out
}

func (b *backfillStore) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}
