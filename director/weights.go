package director

import (
	"context"
	"fmt"
	"maps"
	"time"

	"gocloud.dev/blob"

	"github.com/kumi-dev/kumi/builds"
)

// DefaultTrafficPoll is how often a TrafficSource is read when its Interval is 0.
const DefaultTrafficPoll = 2 * time.Second

// TrafficSource makes the builds bucket the single source of truth for a dedicated game's version
// weights: the builds API writes them there (PUT /v1/projects/{project}/traffic, builds.Store),
// and the director reads them back every Interval. gocloud.dev/blob has no change notification
// common to file://, gs:// and s3://, so this polls; one small object read per interval.
type TrafficSource struct {
	// Bucket is the builds bucket (the layout of builds.Store).
	Bucket *blob.Bucket
	// Tenant is the studio owning the game; the project is DedicatedGame.Game.
	Tenant string
	// Interval between reads; 0 means DefaultTrafficPoll.
	Interval time.Duration
}

// DedicatedTraffic returns a game's current weights and the error of the last refused traffic
// document (nil once a good one was applied since).
func (d *Director) DedicatedTraffic(profile string) (map[string]int, error) {
	dg := d.dedicated.get(profile)
	if dg == nil {
		return nil, fmt.Errorf("director: profile %q serves no dedicated game", profile)
	}
	dg.mu.Lock()
	defer dg.mu.Unlock()
	return maps.Clone(dg.weights), dg.trafficErr
}

// watchTraffic applies the stored weights of dg's game whenever they change. A document the
// director cannot use (unreadable, no version with weight, a version this director does not serve)
// is refused: it is logged and reported by DedicatedTraffic, and the last good weights stay.
func (d *Director) watchTraffic(ctx context.Context, profile string, dg *dedicated, src TrafficSource) {
	every := src.Interval
	if every <= 0 {
		every = DefaultTrafficPoll
	}
	store := builds.NewStore(src.Bucket, builds.DefaultLimits(), "")
	var last map[string]int
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		tr, err := store.Traffic(ctx, src.Tenant, dg.game.Game)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			d.refuseTraffic(dg, fmt.Errorf("director: traffic of %s/%s: %w", src.Tenant, dg.game.Game, err))
		case len(tr.Weights) == 0 || maps.Equal(tr.Weights, last):
			// Never set (the game's starting weights stand), or unchanged.
		default:
			if err := d.SetDedicatedWeights(profile, tr.Weights); err != nil {
				d.refuseTraffic(dg, fmt.Errorf("director: traffic of %s/%s %v refused, keeping the last good weights: %w", src.Tenant, dg.game.Game, tr.Weights, err))
			} else {
				dg.mu.Lock()
				dg.trafficErr = nil
				dg.mu.Unlock()
			}
			last = maps.Clone(tr.Weights)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (d *Director) refuseTraffic(dg *dedicated, err error) {
	dg.mu.Lock()
	changed := dg.trafficErr == nil || dg.trafficErr.Error() != err.Error()
	dg.trafficErr = err
	dg.mu.Unlock()
	if changed {
		d.log.Warn("dedicated traffic refused", "game", dg.game.Game, "err", err)
	}
}
