package director

import (
	"context"
	"errors"
	"fmt"
	"github.com/kumi-dev/kumi/internal/tracing"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"io"
	"sync"
	"time"

	"github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/director/pool"
	"github.com/kumi-dev/kumi/internal/omext"
	"github.com/kumi-dev/kumi/internal/omwire"
	"github.com/kumi-dev/kumi/internal/ticketseal"
	"github.com/kumi-dev/kumi/internal/token"
)

// received is a match and when it arrived.
type received struct {
	m  *openmatch.Match
	at time.Time
}

// maxBatch bounds how many matches share one AssignTickets call.
const maxBatch = 256

// maxRPCs bounds the AssignTickets/ReleaseTickets calls in flight per profile.
const maxRPCs = 4

type rpcGroup struct {
	sem chan struct{}
	wg  sync.WaitGroup
}

// matchLoop fetches matches for one profile back to back: the next FetchMatches starts as soon as
// the previous stream ended, so the core's own cycle paces it; errors back off exponentially.
func (d *Director) matchLoop(ctx context.Context, profile string) {
	// AssignTickets/ReleaseTickets run behind the loop (a few at once), so the next FetchMatches
	// starts while the previous batch's answer is on its way; the tickets are pending meanwhile,
	// so no cycle can see them again.
	rpcs := &rpcGroup{sem: make(chan struct{}, maxRPCs)}
	defer rpcs.wg.Wait()
	backoff := newBackoff(50*time.Millisecond, d.cfg.FetchBackoffMax)
	var lastMatch time.Time // of the last cycle that returned matches; zero: none yet
	for ctx.Err() == nil {
		start := time.Now()
		n, err := d.fetchOnce(ctx, profile, rpcs)
		if err != nil {
			d.m.fetches.WithLabelValues(profile, "error").Inc()
			if ctx.Err() != nil {
				return
			}
			pause := backoff.Step()
			d.log.Warn("fetch matches failed", "profile", profile, "err", err, "retry_in", pause)
			sleep(ctx, pause)
			continue
		}
		d.m.fetches.WithLabelValues(profile, "ok").Inc()
		backoff = newBackoff(50*time.Millisecond, d.cfg.FetchBackoffMax)
		if n > 0 {
			lastMatch = time.Now()
			continue
		}
		sleep(ctx, fetchGap(d.cfg, start, lastMatch)-time.Since(start))
	}
}

// idleAfter is how long a profile must have matched nothing before it polls at IdleFetchGap:
// long enough that sparse but steady play (a match every few seconds) keeps the fast pace.
const idleAfter = 5 * time.Second

// fetchGap is the least time from the start of an empty cycle to the next: MinFetchGap while the
// profile matched something within idleAfter, else IdleFetchGap. Cycles that return matches run
// back to back. An idle kumi local polled its two profiles 200 times a second, ~0.2 of a core
// (BENCHMARKS.md); a real Open Match core queries Redis on every call.
func fetchGap(cfg Config, start, lastMatch time.Time) time.Duration {
	if !lastMatch.IsZero() && start.Sub(lastMatch) < idleAfter {
		return cfg.MinFetchGap
	}
	return cfg.IdleFetchGap
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// fetchOnce runs one FetchMatches stream to its end, placing matches in batches as they arrive.
// When ctx ends mid-stream the stream may finish for ShutdownGrace, so the matches Open Match has
// already marked pending are placed (or released) rather than left pending until its timeout.
func (d *Director) fetchOnce(ctx context.Context, profile string, rpcs *rpcGroup) (int, error) {
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(d.cfg.ShutdownGrace, cancel)
		context.AfterFunc(fctx, func() { t.Stop() })
	})
	defer stop()
	// The cycle is its own trace (it serves many tickets); it links to each ticket it matched, and
	// the core's FetchMatches and the match function's Run continue it through gRPC metadata.
	// A new variable, not fctx: the AfterFunc above reads fctx from another goroutine.
	sctx, span := tracer().Start(fctx, "director.FetchMatches", trace.WithAttributes(tracing.Profile.String(profile)))
	defer span.End()
	ctx = trace.ContextWithSpan(ctx, span)
	// Matches decode without protobuf-go's reflective map decoding (internal/omwire): at 500
	// matches per cycle that decode was about a fifth of the cycle's CPU (BENCHMARKS.md). The
	// director reads every field of every ticket (the seal covers the search fields), so it
	// decodes them all.
	stream, err := d.om.FetchMatches(sctx, &openmatch.FetchMatchesRequest{
		Config:  &openmatch.FunctionConfig{Host: d.cfg.MMFHost, Port: int32(d.cfg.MMFPort), Type: openmatch.FunctionConfig_GRPC},
		Profile: &openmatch.MatchProfile{Name: profile},
	}, grpc.ForceCodecV2(omwire.NewCodec(nil)))
	if err != nil {
		return 0, fmt.Errorf("FetchMatches(%s): %w", profile, err)
	}
	matches := make(chan received, maxBatch)
	recvErr := make(chan error, 1)
	go func() {
		defer close(matches)
		for {
			res, err := stream.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				recvErr <- err
				return
			}
			if span.IsRecording() {
				for _, t := range res.GetMatch().GetTickets() {
					tp, _, _ := omext.String(t.GetExtensions(), omext.TraceParent)
					if l, ok := tracing.Link(tp, tracing.TicketID.String(t.GetId())); ok {
						span.AddLink(l)
					}
				}
			}
			matches <- received{res.GetMatch(), time.Now()}
		}
	}()
	n := 0
	for m := range matches {
		batch := []received{m}
	drain:
		for len(batch) < maxBatch {
			select {
			case m2, ok := <-matches:
				if !ok {
					break drain
				}
				batch = append(batch, m2)
			default:
				break drain
			}
		}
		n += len(batch)
		send := d.placeBatch(ctx, profile, batch)
		rpcs.sem <- struct{}{}
		rpcs.wg.Go(func() {
			defer func() { <-rpcs.sem }()
			send()
		})
	}
	if err := <-recvErr; err != nil {
		return n, fmt.Errorf("FetchMatches(%s) stream: %w", profile, err)
	}
	return n, nil
}

// placeBatch places each match and mints its tokens; the returned func assigns every placed ticket
// in one AssignTickets call and releases the tickets of matches that could not be placed in one
// ReleaseTickets call.
func (d *Director) placeBatch(ctx context.Context, profile string, batch []received) (send func()) {
	if dg := d.dedicated.get(profile); dg != nil {
		return d.placeDedicatedBatch(ctx, profile, dg, batch)
	}
	var (
		groups   []*openmatch.AssignmentGroup
		release  []string
		created  = map[string]time.Time{}
		deadline time.Time // of waiting for a short backend's refill, shared by the batch
	)
	for _, r := range batch {
		m := r.m
		tickets := m.GetTickets()
		if len(tickets) == 0 {
			continue
		}
		ids := make([]string, len(tickets))
		players := make([]string, len(tickets))
		tps := make([]string, len(tickets))
		for i, t := range tickets {
			ids[i] = t.GetId()
			tps[i], _, _ = omext.String(t.GetExtensions(), omext.TraceParent)
			players[i] = t.GetId()
			if p, ok, err := omext.String(t.GetExtensions(), omext.Player); ok && err == nil && p != "" {
				players[i] = p
			}
			if ct := t.GetCreateTime(); ct != nil {
				created[t.GetId()] = ct.AsTime()
			}
		}
		if bad := d.unsealed(m, players, time.Now()); len(bad) > 0 {
			// Tickets that did not come through a kumi frontend are neither assigned nor released: they
			// stay pending until the core's pending timeout, so a forger gets no server token and cannot
			// make the match function spin on them. The match's other tickets go back at once.
			d.m.unplaced.WithLabelValues("unsealed").Inc()
			for i, id := range ids {
				if !bad[id] {
					release = append(release, ids[i])
				}
			}
			continue
		}
		group, _, gerr := omext.String(m.GetExtensions(), omext.Group)
		maxMembers, _, merr := omext.Int(m.GetExtensions(), omext.MaxMembers)
		if err := errors.Join(gerr, merr); err != nil {
			d.log.Warn("match has malformed extensions; releasing its tickets", "match", m.GetMatchId(), "profile", profile, "err", err)
			d.m.unplaced.WithLabelValues("bad_extensions").Inc()
			release = append(release, ids...)
			continue
		}
		// Placement (pool choice and reservation) is one span per match in the cycle's trace,
		// linked to each ticket; the per-ticket spans that mint tokens join the tickets' traces.
		pctx, span := tracer().Start(ctx, "director.Place", trace.WithLinks(ticketLinks(ids, tps)...))
		pl, err := d.place(pctx, pool.Request{SessionID: pool.NewSessionID(group), ChoiceKey: pool.ChoiceKeyOf(players), Group: group, Players: players, MaxMembers: int(maxMembers)}, &deadline)
		now := time.Now()
		if err != nil {
			reason := "error"
			if errors.Is(err, pool.ErrNoRoom) {
				reason = "no_room"
			}
			d.m.unplaced.WithLabelValues(reason).Inc()
			span.SetStatus(otelcodes.Error, err.Error())
			span.End()
			d.log.WarnContext(pctx, "match not placed; releasing its tickets", "match", m.GetMatchId(), "profile", profile, "tickets", len(ids), "err", err)
			release = append(release, ids...)
			d.pokeAll()
			continue
		}
		// A rendezvous match may be split: its oldest players fill the group's open session, the
		// rest open the next one (pl.Rest). Players and ids are in the same order.
		span.SetAttributes(tracing.SessionID.String(pl.SessionID), tracing.Server.String(pl.Server))
		var mgs []*openmatch.AssignmentGroup
		off := 0
		for part := &pl; part != nil && err == nil; part = part.Rest {
			k := len(ids) - off
			if part.Players != nil {
				k = len(part.Players)
			}
			var gs []*openmatch.AssignmentGroup
			gs, err = d.assignmentGroups(pctx, *part, ids[off:off+k], players[off:off+k], tps[off:off+k], now)
			mgs = append(mgs, gs...)
			off += k
		}
		span.End()
		if err != nil {
			d.log.ErrorContext(pctx, "minting server tokens failed; releasing the match", "match", m.GetMatchId(), "err", err)
			d.m.unplaced.WithLabelValues("token").Inc()
			release = append(release, ids...)
			continue
		}
		groups = append(groups, mgs...)
		for part := &pl; part != nil; part = part.Rest {
			kind := "new"
			if part.Joined {
				kind = "joined"
			}
			d.m.placements.WithLabelValues(part.Backend, kind).Inc()
			d.log.DebugContext(pctx, "match placed", "match", m.GetMatchId(), "session", part.SessionID, "server", part.Server,
				"backend", part.Backend, "group", group, "joined", part.Joined, "tickets", len(ids), "split", pl.Rest != nil)
			if bl := d.backends[part.Backend]; bl != nil {
				bl.poke()
			}
		}
	}
	return func() { d.sendBatch(ctx, profile, batch, groups, release, created) }
}

// sendBatch tells Open Match the outcome of one batch.
func (d *Director) sendBatch(ctx context.Context, profile string, batch []received, groups []*openmatch.AssignmentGroup,
	release []string, created map[string]time.Time) {
	// The core's answers must arrive even when ctx ended: these tickets are pending in Open Match.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.RPCTimeout)
	defer cancel()
	if len(groups) > 0 {
		// AssignTickets serves the batch's tickets, each in its own trace: it links to each
		// ticket's placement span (the traceparent the director put on its assignment).
		var links []trace.Link
		if tracing.On() {
			for _, g := range groups {
				tp, _, _ := omext.String(g.GetAssignment().GetExtensions(), omext.TraceParent)
				if l, ok := tracing.Link(tp, tracing.TicketID.String(g.GetTicketIds()[0])); ok {
					links = append(links, l)
				}
			}
		}
		var span trace.Span
		rctx, span = tracer().Start(rctx, "director.AssignTickets", trace.WithLinks(links...))
		defer span.End()
		res, err := d.om.AssignTickets(rctx, &openmatch.AssignTicketsRequest{Assignments: groups})
		if err != nil {
			d.log.ErrorContext(rctx, "AssignTickets failed; releasing the batch", "profile", profile, "tickets", len(groups), "err", err)
			for _, g := range groups {
				release = append(release, g.GetTicketIds()...)
			}
		} else {
			failed := map[string]bool{}
			for _, f := range res.GetFailures() {
				failed[f.GetTicketId()] = true
				d.m.assignFailed.WithLabelValues(f.GetCause().String()).Inc()
				d.log.InfoContext(rctx, "ticket not assigned", "ticket", f.GetTicketId(), "cause", f.GetCause().String())
			}
			done := time.Now()
			for _, r := range batch {
				d.m.placeLatency.Observe(done.Sub(r.at).Seconds())
			}
			for _, g := range groups {
				id := g.GetTicketIds()[0]
				if failed[id] {
					continue
				}
				d.m.assigned.Inc()
				if c, ok := created[id]; ok {
					d.m.assignLatency.Observe(done.Sub(c).Seconds())
				}
			}
		}
	}
	if len(release) > 0 {
		if _, err := d.om.ReleaseTickets(rctx, &openmatch.ReleaseTicketsRequest{TicketIds: release}); err != nil {
			d.log.Error("ReleaseTickets failed; the tickets return after Open Match's pending timeout", "tickets", len(release), "err", err)
		}
	}
}

// unsealed returns the tickets of m without a valid frontend seal (nil when all are sealed or the
// director accepts unsealed tickets), counting and logging each.
func (d *Director) unsealed(m *openmatch.Match, players []string, now time.Time) map[string]bool {
	if d.seal == nil {
		return nil
	}
	var bad map[string]bool
	for i, t := range m.GetTickets() {
		err := d.seal.Check(t, players[i], now)
		if err == nil {
			continue
		}
		reason := "invalid"
		switch {
		case errors.Is(err, ticketseal.ErrMissing):
			reason = "missing"
		case errors.Is(err, ticketseal.ErrExpired):
			reason = "expired"
		}
		d.m.refused.WithLabelValues(reason).Inc()
		d.log.Warn("ticket refused: no valid kumi frontend seal (created straight in the core?); not assigning it",
			"ticket", t.GetId(), "player", players[i], "match", m.GetMatchId(), "reason", err)
		if bad == nil {
			bad = map[string]bool{}
		}
		bad[t.GetId()] = true
	}
	return bad
}

// assignmentGroups mints one server token per player and builds one assignment per ticket.
//
// Each ticket gets a span in its own trace (parent: the ticket's traceparent from the frontend,
// linked to the placement span in ctx); its context rides in the server token (claim tp) to the
// game server's JOIN and in the assignment to the frontend's delivery.
func (d *Director) assignmentGroups(ctx context.Context, pl pool.Placement, ids, players, tps []string, now time.Time) ([]*openmatch.AssignmentGroup, error) {
	out := make([]*openmatch.AssignmentGroup, len(ids))
	inst := d.instances.get(pl.Server)
	if inst == "" {
		d.log.Warn("server has not reported its instance: its tokens cannot be used", "server", pl.Server)
	}
	placeSpan := trace.SpanFromContext(ctx)
	for i := range ids {
		var tp string
		span, own := placeSpan, false // spans may be uncomparable: track ownership, don't compare
		if tps[i] != "" {
			own = true
			// The ticket's own sampling decision (its traceparent's flag) rules this span.
			_, span = tracer().Start(tracing.ContextWith(context.Background(), tps[i]), "director.AssignTicket",
				trace.WithLinks(trace.Link{SpanContext: placeSpan.SpanContext()}),
				trace.WithAttributes(tracing.TicketID.String(ids[i]), tracing.SessionID.String(pl.SessionID), tracing.Server.String(pl.Server)))
			tp = tracing.TraceParent(trace.ContextWithSpan(ctx, span))
		}
		tok, claims, err := d.signer.IssueServerToken(token.ServerClaims{PlayerID: players[i], SessionID: pl.SessionID,
			Server: pl.Server, Instance: inst, ExpiresAt: now.Add(d.cfg.TokenTTL), TraceParent: tp})
		if own {
			span.End()
		}
		if err != nil {
			return nil, err
		}
		ext := omext.PutString(nil, omext.Session, pl.SessionID)
		if tp != "" {
			omext.PutString(ext, omext.TraceParent, tp)
		}
		omext.PutString(ext, omext.ServerToken, tok)
		omext.PutTime(ext, omext.TokenExpiry, claims.ExpiresAt)
		out[i] = &openmatch.AssignmentGroup{TicketIds: []string{ids[i]},
			Assignment: &openmatch.Assignment{Connection: pl.Address, Extensions: ext}}
	}
	return out, nil
}

func (d *Director) pokeAll() {
	for _, bl := range d.backends {
		bl.poke()
	}
}

// tracer makes the director's spans from the global provider (internal/tracing).
func tracer() trace.Tracer { return tracing.Tracer("director") }

// ticketLinks links a span to the traces of the tickets that carry a traceparent.
func ticketLinks(ids, tps []string) []trace.Link {
	var links []trace.Link
	for i, tp := range tps {
		if l, ok := tracing.Link(tp, tracing.TicketID.String(ids[i])); ok {
			links = append(links, l)
		}
	}
	return links
}
