package director

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/kumi-dev/kumi/allocation"
	"github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/builds"
	"github.com/kumi-dev/kumi/director/pool"
	"github.com/kumi-dev/kumi/internal/omext"
	"github.com/kumi-dev/kumi/internal/token"
)

// DedicatedGame is one uploaded game served on dedicated servers (package builds): each server
// holds exactly one match (capacity 1 session, the match's N players), so no session is ever
// packed beside another on a stranger's binary, and a server is never reused after its match.
type DedicatedGame struct {
	// Game is the project name; its tickets carry the string attribute game=<Game> and its match
	// profile (matchfunction.GameProfile) filters on it.
	Game string
	// Profile is the MatchProfile name the director fetches this game's matches for.
	Profile string
	// Warm is how many Ready servers each version keeps allocated in advance, so a match is placed
	// without waiting for an allocation; each one taken is replaced at once, at the placement rate.
	Warm int
	// Versions are the build versions that may serve matches, with their starting weights.
	Versions []DedicatedVersion
	// Traffic, when set, is where the weights live (weights.go): the builds bucket, written by the
	// builds API. The starting weights stand until a traffic document is stored.
	Traffic *TrafficSource
}

// DedicatedVersion is one build version of a game and where its servers come from.
type DedicatedVersion struct {
	// Version is the build version label (builds.Manifest.Version).
	Version string
	// Weight is the version's share of new matches (builds.PickVersion); 0 takes none.
	Weight int
	// Backend allocates this version's servers (a Fleet per version: builds/fleet, or a local
	// fleet of `kumi gameserver wrap` processes).
	Backend allocation.Backend
	// Spec is the allocation request; nil selects any Ready server of Backend.
	Spec *allocation.Spec
}

// dedicatedGames maps a profile to its game; read on every batch, written by ServeDedicated.
type dedicatedGames struct {
	// stop is the director's Start context: a game's loops end with it as well as with their own,
	// so Wait never waits on a context only the caller of ServeDedicated could end.
	stop   context.Context
	mu     sync.RWMutex
	games  map[string]*dedicated
	closed bool // the director is stopping: no new game's loops may start (guarded by mu)
}

func (g *dedicatedGames) get(profile string) *dedicated {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.games[profile]
}

// dedicated is a served game: its weights, each version's warm servers and every server it holds.
type dedicated struct {
	game    DedicatedGame
	mu      sync.Mutex
	weights map[string]int
	warm    map[string]chan allocation.Status // version -> allocated, not yet used servers
	// servers are the allocated servers this game holds, by name (guarded by mu): warm ones and
	// those holding their one match. A server leaves only when its backend reports it gone or
	// terminal (watchDedicated), so one that outlives its match stays visible (DedicatedServers).
	servers map[string]*dedicatedServer
	// trafficErr is why the last stored traffic document was refused (nil: none refused since
	// the last good one); guarded by mu.
	trafficErr error
}

// dedicatedServer is one allocated server of a dedicated game.
type dedicatedServer struct {
	version string
	session string // the match's session; "" while warm
}

// ServeDedicated starts serving a game's matches on dedicated servers: a refill loop per version
// keeping Warm servers allocated, and a match loop for the game's profile. It stops with ctx or
// with the director, whichever ends first.
func (d *Director) ServeDedicated(ctx context.Context, g DedicatedGame) error {
	if g.Game == "" || g.Profile == "" || g.Warm < 1 || len(g.Versions) == 0 {
		return fmt.Errorf("director: dedicated game %q: game, profile, warm >= 1 and a version are required", g.Game)
	}
	if g.Traffic != nil && (g.Traffic.Bucket == nil || !builds.ValidTenant(g.Traffic.Tenant)) {
		return fmt.Errorf("director: dedicated game %q: a traffic source needs a bucket and a valid tenant", g.Game)
	}
	dg := &dedicated{game: g, weights: map[string]int{}, warm: map[string]chan allocation.Status{}, servers: map[string]*dedicatedServer{}}
	for _, v := range g.Versions {
		if v.Version == "" || v.Backend == nil || dg.warm[v.Version] != nil {
			return fmt.Errorf("director: dedicated game %q: versions need distinct names and a backend", g.Game)
		}
		dg.weights[v.Version] = v.Weight
		dg.warm[v.Version] = make(chan allocation.Status, g.Warm)
	}
	if err := builds.CheckWeights(dg.weights); err != nil {
		return fmt.Errorf("director: dedicated game %q: %w", g.Game, err)
	}
	// Logged from this copy: once the traffic watcher runs, dg.weights is written under dg.mu.
	startWeights := maps.Clone(dg.weights)
	d.dedicated.mu.Lock()
	defer d.dedicated.mu.Unlock()
	if d.dedicated.closed {
		return fmt.Errorf("director: dedicated game %q: the director is stopping", g.Game)
	}
	if d.dedicated.games == nil {
		d.dedicated.games = map[string]*dedicated{}
	}
	if d.dedicated.games[g.Profile] != nil {
		return fmt.Errorf("director: profile %q already serves a dedicated game", g.Profile)
	}
	d.dedicated.games[g.Profile] = dg
	// The loops stop with the director too: its Wait waits for them (they run under d.wg).
	ctx, cancel := context.WithCancel(ctx)
	context.AfterFunc(d.dedicated.stop, cancel)
	for _, v := range g.Versions {
		d.goRun("dedicated refill "+g.Game+"/"+v.Version, func() error { d.refillDedicated(ctx, dg, v); return nil })
		d.goRun("dedicated watch "+g.Game+"/"+v.Version, func() error { d.watchDedicated(ctx, dg, v); return nil })
	}
	d.goRun("dedicated match "+g.Profile, func() error { d.matchLoop(ctx, g.Profile); return nil })
	if g.Traffic != nil {
		src := *g.Traffic
		d.goRun("dedicated traffic "+g.Game, func() error { d.watchTraffic(ctx, g.Profile, dg, src); return nil })
	}
	d.log.Info("serving a game on dedicated servers", "game", g.Game, "profile", g.Profile, "warm", g.Warm, "weights", startWeights)
	return nil
}

// SetDedicatedWeights replaces a game's version weights; the next match uses them (a rollback is
// one call). Versions not served are refused.
func (d *Director) SetDedicatedWeights(profile string, weights map[string]int) error {
	dg := d.dedicated.get(profile)
	if dg == nil {
		return fmt.Errorf("director: profile %q serves no dedicated game", profile)
	}
	if err := builds.CheckWeights(weights); err != nil {
		return err
	}
	for v := range weights {
		if dg.warm[v] == nil {
			return fmt.Errorf("director: game %q has no version %q", dg.game.Game, v)
		}
	}
	dg.mu.Lock()
	dg.weights = map[string]int{}
	for v, w := range weights {
		dg.weights[v] = w
	}
	dg.mu.Unlock()
	d.log.Info("dedicated weights changed", "game", dg.game.Game, "weights", weights)
	return nil
}

// DedicatedServers is every allocated server a game holds now, by name: the session of its match,
// or "" while it is warm.
func (d *Director) DedicatedServers(profile string) map[string]string {
	dg := d.dedicated.get(profile)
	if dg == nil {
		return nil
	}
	dg.mu.Lock()
	defer dg.mu.Unlock()
	out := make(map[string]string, len(dg.servers))
	for name, s := range dg.servers {
		out[name] = s.session
	}
	return out
}

// WarmDedicated is how many allocated, unused servers a game's version holds now.
func (d *Director) WarmDedicated(profile, version string) int {
	dg := d.dedicated.get(profile)
	if dg == nil || dg.warm[version] == nil {
		return 0
	}
	return len(dg.warm[version])
}

// refillDedicated keeps the version's warm channel full: it allocates whenever there is room, so
// every server a match takes is replaced at once, and backs off while the backend has none Ready.
func (d *Director) refillDedicated(ctx context.Context, dg *dedicated, v DedicatedVersion) {
	spec := allocation.Spec{Selectors: []allocation.Selector{{GameServerState: allocation.StateReady}}}
	if v.Spec != nil {
		spec = *v.Spec
	}
	ch := dg.warm[v.Version]
	backoff := newBackoff(50*time.Millisecond, 2*time.Second)
	for ctx.Err() == nil {
		st, err := v.Backend.Allocate(ctx, spec)
		if err != nil || st.State != allocation.AllocationAllocated {
			if err != nil && ctx.Err() == nil {
				d.log.Warn("dedicated allocation failed", "game", dg.game.Game, "version", v.Version, "err", err)
			}
			sleep(ctx, backoff.Step())
			continue
		}
		backoff = newBackoff(50*time.Millisecond, 2*time.Second)
		dg.mu.Lock()
		prev := dg.servers[st.GameServerName]
		if prev == nil {
			dg.servers[st.GameServerName] = &dedicatedServer{version: v.Version}
		}
		dg.mu.Unlock()
		if prev != nil {
			// A server this game already holds was allocated anew: one that held a match went back to
			// Ready (its game called SDK Ready again). It never takes a second match; it stays listed
			// until it is gone.
			d.m.dedicatedServers.WithLabelValues(dg.game.Game, v.Version, "reuse_refused").Inc()
			d.log.Error("allocated a dedicated server this game already holds; not using it (one match per server)",
				"game", dg.game.Game, "version", v.Version, "server", st.GameServerName, "session", prev.session)
			continue
		}
		select {
		case ch <- st:
		case <-ctx.Done():
		}
	}
}

// watchDedicated follows the version's servers and forgets each of the game's servers its backend
// reports gone or terminal: after its match (the server shut itself down: a wrapped build does when
// the game exits) it is reclaimed, and a warm one lost before use is never handed to a match
// (take skips it) — the refill loop has already replaced it, as the Fleet replaces the server.
func (d *Director) watchDedicated(ctx context.Context, dg *dedicated, v DedicatedVersion) {
	var labels map[string]string
	if v.Spec != nil && len(v.Spec.Selectors) > 0 {
		labels = v.Spec.Selectors[0].MatchLabels
	}
	backoff := newBackoff(50*time.Millisecond, 2*time.Second)
	for ctx.Err() == nil {
		events, err := v.Backend.Watch(ctx, labels)
		if err != nil {
			d.log.Warn("watching dedicated servers failed", "game", dg.game.Game, "version", v.Version, "err", err)
			sleep(ctx, backoff.Step())
			continue
		}
		for ev := range events {
			backoff = newBackoff(50*time.Millisecond, 2*time.Second)
			if ev.Deleted || terminal(ev.Server.State) {
				d.forgetDedicated(dg, v.Version, ev.Server.Name, ev.Server.State)
			}
		}
		sleep(ctx, backoff.Step()) // the backend ended the watch (it restarts, or ctx ended)
	}
}

// forgetDedicated drops a gone server from the game's servers, counting why.
func (d *Director) forgetDedicated(dg *dedicated, version, name, state string) {
	dg.mu.Lock()
	s := dg.servers[name]
	if s != nil && s.version == version {
		delete(dg.servers, name)
	}
	dg.mu.Unlock()
	if s == nil || s.version != version {
		return
	}
	if s.session == "" {
		d.m.dedicatedServers.WithLabelValues(dg.game.Game, version, "warm_lost").Inc()
		d.log.Warn("warm dedicated server lost before its match", "game", dg.game.Game, "version", version, "server", name, "state", state)
		return
	}
	d.m.dedicatedServers.WithLabelValues(dg.game.Game, version, "reclaimed").Inc()
	d.log.Info("dedicated server reclaimed after its match", "game", dg.game.Game, "version", version, "server", name,
		"session", s.session, "state", state)
}

// take returns a warm server of the version the weights pick for the match session, waiting for a
// refill until deadline. A warm server the backend reported gone meanwhile is skipped.
func (dg *dedicated) take(ctx context.Context, deadline time.Time, session string) (string, allocation.Status, error) {
	dg.mu.Lock()
	v := builds.PickVersion(dg.weights, rand.Float64())
	dg.mu.Unlock()
	ch := dg.warm[v]
	if ch == nil {
		return v, allocation.Status{}, fmt.Errorf("game %q: no version has weight", dg.game.Game)
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for {
		var st allocation.Status
		// A warm server at hand is taken even when the batch's wait is used up.
		select {
		case st = <-ch:
		default:
			select {
			case st = <-ch:
			case <-t.C:
				return v, allocation.Status{}, fmt.Errorf("game %q version %q: %w", dg.game.Game, v, pool.ErrNoRoom)
			case <-ctx.Done():
				return v, allocation.Status{}, ctx.Err()
			}
		}
		dg.mu.Lock()
		s := dg.servers[st.GameServerName]
		if s != nil {
			s.session = session
		}
		dg.mu.Unlock()
		if s != nil {
			return v, st, nil
		}
	}
}

// placeDedicatedBatch gives each match of the batch a warm server of its own and mints its
// players' server tokens (audience = that server, one session = the match); the wrapper admits
// exactly those tokens. Matches that find no server are released.
func (d *Director) placeDedicatedBatch(ctx context.Context, profile string, dg *dedicated, batch []received) func() {
	var (
		groups  []*openmatch.AssignmentGroup
		release []string
		created = map[string]time.Time{}
		// Waiting for refills is shared by the batch, as in place: the matches behind a short
		// version wait at most PlaceWait in all, not PlaceWait each.
		deadline time.Time
	)
	for _, r := range batch {
		m := r.m
		ids, players := matchPlayers(m, created)
		if len(ids) == 0 {
			continue
		}
		if bad := d.unsealed(m, players, time.Now()); len(bad) > 0 {
			d.m.unplaced.WithLabelValues("unsealed").Inc()
			for _, id := range ids {
				if !bad[id] {
					release = append(release, id)
				}
			}
			continue
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(d.cfg.PlaceWait)
		}
		session := pool.NewSessionID("")
		version, st, err := dg.take(ctx, deadline, session)
		if err != nil {
			reason := "error"
			if errors.Is(err, pool.ErrNoRoom) {
				reason = "no_room"
			}
			d.m.unplaced.WithLabelValues(reason).Inc()
			d.log.Warn("dedicated match not placed; releasing its tickets", "match", m.GetMatchId(), "profile", profile, "err", err)
			release = append(release, ids...)
			continue
		}
		addr, err := gameAddress(st)
		if err != nil {
			d.log.Error("allocated server has no game address; releasing the match", "server", st.GameServerName, "err", err)
			release = append(release, ids...)
			continue
		}
		pl := pool.Placement{SessionID: session, Server: st.GameServerName, Address: addr, Backend: dg.game.Game + "/" + version}
		gs, err := d.dedicatedAssignments(pl, ids, players, time.Now())
		if err != nil {
			d.log.Error("minting server tokens failed; releasing the match", "match", m.GetMatchId(), "err", err)
			d.m.unplaced.WithLabelValues("token").Inc()
			release = append(release, ids...)
			continue
		}
		groups = append(groups, gs...)
		d.m.placements.WithLabelValues(pl.Backend, "new").Inc()
		d.log.Info("dedicated match placed", "match", m.GetMatchId(), "game", dg.game.Game, "version", version,
			"server", pl.Server, "address", addr, "session", pl.SessionID, "players", len(ids))
	}
	return func() { d.sendBatch(ctx, profile, batch, groups, release, created) }
}

// dedicatedAssignments mints one server token per player for the match's server and session. The
// server is a wrapped build, which reports no instance to the director: the token's audience (the
// server's name, unique per allocation) and its session (pinned by the first admission) bind it.
func (d *Director) dedicatedAssignments(pl pool.Placement, ids, players []string, now time.Time) ([]*openmatch.AssignmentGroup, error) {
	out := make([]*openmatch.AssignmentGroup, len(ids))
	for i := range ids {
		tok, claims, err := d.signer.IssueServerToken(token.ServerClaims{PlayerID: players[i], SessionID: pl.SessionID,
			Server: pl.Server, ExpiresAt: now.Add(d.cfg.TokenTTL)})
		if err != nil {
			return nil, err
		}
		ext := omext.PutString(nil, omext.Session, pl.SessionID)
		omext.PutString(ext, omext.ServerToken, tok)
		omext.PutTime(ext, omext.TokenExpiry, claims.ExpiresAt)
		out[i] = &openmatch.AssignmentGroup{TicketIds: []string{ids[i]},
			Assignment: &openmatch.Assignment{Connection: pl.Address, Extensions: ext}}
	}
	return out, nil
}

// matchPlayers returns a match's ticket ids and player ids (the frontend's player extension, else
// the ticket id), recording each ticket's creation time in created.
func matchPlayers(m *openmatch.Match, created map[string]time.Time) (ids, players []string) {
	for _, t := range m.GetTickets() {
		p := t.GetId()
		if s, ok, err := omext.String(t.GetExtensions(), omext.Player); ok && err == nil && s != "" {
			p = s
		}
		ids = append(ids, t.GetId())
		players = append(players, p)
		if ct := t.GetCreateTime(); ct != nil {
			created[t.GetId()] = ct.AsTime()
		}
	}
	return ids, players
}

// gameAddress is host:port of an allocated server's first port.
func gameAddress(st allocation.Status) (string, error) {
	if st.Address == "" || len(st.Ports) == 0 {
		return "", errors.New("no address or port in the allocation")
	}
	return net.JoinHostPort(st.Address, strconv.Itoa(int(st.Ports[0].Port))), nil
}
