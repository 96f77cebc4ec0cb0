package director

import (
	"context"
	"errors"
	"time"

	"github.com/kumi-dev/kumi/director/pool"
)

// Failover policies (Config.Failover).
const (
	// FailoverNone keeps every backend within its weight's share of new sessions: a match whose
	// chosen backend stays short past PlaceWait is released to Open Match and comes back.
	FailoverNone = "none"
	// FailoverSpill places it on another backend with weight after PlaceWait, counted in
	// kumi_director_failovers_total.
	FailoverSpill = "spill"
)

// place places one match. When the backend the weights chose has no free slot it pokes that
// backend's refill and waits for new room until *deadline (set on the batch's first wait and
// shared by the rest of the batch, so one batch waits at most PlaceWait in all); after that the
// match fails over only under FailoverSpill.
func (d *Director) place(ctx context.Context, req pool.Request, deadline *time.Time) (pool.Placement, error) {
	waited := ""
	for {
		changed := d.pool.Changed()
		pl, err := d.pool.Place(req, time.Now())
		var short *pool.ShortError
		if !errors.As(err, &short) {
			if waited != "" {
				d.m.placeWaits.WithLabelValues(waited, "refilled").Inc()
			}
			return pl, err
		}
		if bl := d.backends[short.Backend]; bl != nil {
			bl.poke()
		}
		if deadline.IsZero() {
			*deadline = time.Now().Add(d.cfg.PlaceWait)
		}
		wait := time.Until(*deadline)
		if wait <= 0 || ctx.Err() != nil {
			if waited != "" {
				d.m.placeWaits.WithLabelValues(waited, "timeout").Inc()
			}
			if d.cfg.Failover != FailoverSpill {
				return pl, err
			}
			req.Failover = true
			pl, err = d.pool.Place(req, time.Now())
			for part := &pl; err == nil && part != nil; part = part.Rest {
				if part.FailedOver != "" {
					d.m.failovers.WithLabelValues(part.FailedOver, part.Backend).Inc()
					d.log.Info("session failed over to another backend", "session", part.SessionID, "chosen", part.FailedOver, "placed_on", part.Backend)
				}
			}
			return pl, err
		}
		waited = short.Backend
		t := time.NewTimer(wait)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
}
