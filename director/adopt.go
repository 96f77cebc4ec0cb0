package director

import (
	"context"
	"sync"
	"time"

	"github.com/kumi-dev/kumi/director/pool"
)

// Adoption: a game server that reports with the control secret but that no backend lists (a
// hand-started `kumi gameserver`, or one on a machine kumi does not manage) joins the pool under
// cfg.AdoptBackend's traffic share, so it gets sessions like an allocated one. Only with a control
// secret: the secret is what tells a game server from anyone else who can reach the control port,
// and an adopted server receives players. A server some backend lists but has not allocated (a
// Ready server of the local fleet or of Agones) is never adopted: placing on it would bypass
// allocation, and its backend might hand it to someone else or delete it.

// knownRefresh is the least time between two listings of the backends' servers; an unknown
// server's reports (about one a second) then cost at most one listing per period.
const knownRefresh = 5 * time.Second

// adoption holds what adopt needs between reports.
type adoption struct {
	mu       sync.Mutex
	known    map[string]bool // servers the backends listed at listedAt, any state or label
	listedAt time.Time
	told     map[string]string // server → the last reason logged for not adopting it (logged once)
}

// adopt decides whether an unknown server's report makes it a pool member, and logs (once per
// server and reason) why not when it does not: an unknown server's report is never dropped silently.
func (d *Director) adopt(ctx context.Context, r pool.Report, now time.Time) bool {
	a := &d.adoption
	if why := d.adoptRefusal(ctx, r, now); why != "" {
		a.mu.Lock()
		first := a.told[r.Server] != why
		if first {
			if len(a.told) > 10000 {
				clear(a.told) // bounded: a flood of names must not grow memory
			}
			a.told[r.Server] = why
		}
		a.mu.Unlock()
		if first {
			d.log.Info("report from a server outside the pool; not adopting it", "server", r.Server, "address", r.Address, "reason", why)
		}
		return false
	}
	info := pool.ServerInfo{Name: r.Server, Backend: d.adoptInto, Address: r.Address, Capacity: r.Capacity}
	if !d.pool.AdoptServer(info, now) {
		return true // adopted by a concurrent report
	}
	a.mu.Lock()
	delete(a.told, r.Server)
	a.mu.Unlock()
	d.log.Info("adopted a game server that reported with the control secret", "server", r.Server, "address", r.Address,
		"capacity", r.Capacity, "backend_share", d.adoptInto)
	if bl := d.backends[d.adoptInto]; bl != nil {
		bl.poke()
	}
	return true
}

// adoptRefusal is why r's server is not adopted, or "" when it is.
func (d *Director) adoptRefusal(ctx context.Context, r pool.Report, now time.Time) string {
	switch {
	case d.adoptInto == "":
		return "adoption is off (-adopt-backend=none)"
	case !d.secured:
		return "adoption needs a control secret (-control-secret-file): without one anyone who reaches the control port could pose as a game server"
	case r.State != pool.Accepting:
		return "it is not accepting sessions (state " + r.State.String() + ")"
	case r.Address == "":
		return "its report carries no address players could use"
	}
	if d.backendKnows(ctx, r.Server, now) {
		return "a backend lists it but has not allocated it into the pool yet (it joins when allocated)"
	}
	return ""
}

// backendKnows reports whether some backend lists the server, in any state. The list is cached and
// refreshed at most every knownRefresh, and only when asked about a name it does not hold.
func (d *Director) backendKnows(ctx context.Context, name string, now time.Time) bool {
	a := &d.adoption
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.known[name] {
		return true
	}
	if !a.listedAt.IsZero() && now.Sub(a.listedAt) < knownRefresh {
		return false
	}
	known := map[string]bool{}
	for bn, bl := range d.backends {
		lctx, cancel := context.WithTimeout(ctx, d.cfg.RPCTimeout)
		servers, err := bl.b.List(lctx, nil)
		cancel()
		if err != nil {
			// Unsure: treat it as known (not adopting is the safe side) and try again next time.
			d.log.Warn("listing servers to decide on adoption failed", "backend", bn, "err", err)
			return true
		}
		for _, gs := range servers {
			known[gs.Name] = true
		}
	}
	a.known, a.listedAt = known, now
	return known[name]
}
