package openmatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"google.golang.org/protobuf/proto"
)

// errProposalWindow is what an MMF still streaming when the proposal window closes gets.
var errProposalWindow = errors.New("match function ran longer than proposal window, canceling")

// synchronizer runs cycles one at a time (reference §7). Calls arriving while a cycle is past its
// registration window block on reg until the loop starts the next cycle, so a cycle's MMFs always
// query after the previous cycle marked its tickets pending.
type synchronizer struct {
	s   *Server
	ev  evaluator
	reg chan *fetchCall
}

// fetchCall is one FetchMatches call's part in a cycle.
type fetchCall struct {
	ctx       context.Context
	mmfCancel context.CancelFunc
	joined    chan *cycle
	seen      map[string]struct{} // match ids this call proposed
	err       error               // MMF error: the call fails, its proposals are withdrawn
	results   []*pb.Match
}

type cycle struct {
	mu           sync.Mutex
	start        time.Time
	calls        []*fetchCall
	running      int // MMFs not finished
	windowClosed bool
	intakeClosed bool
	allDone      chan struct{} // closed once the window closed and every MMF finished
	proposals    []proposal
	owner        map[string]*fetchCall
	err          error         // cycle error: every call of the cycle fails with it
	done         chan struct{} // closed when results are final
}

type proposal struct {
	call *fetchCall
	m    *pb.Match
}

func newSynchronizer(s *Server, ev evaluator) *synchronizer {
	return &synchronizer{s: s, ev: ev, reg: make(chan *fetchCall)}
}

// register joins fc to the open cycle (or the next one) and returns it.
func (sy *synchronizer) register(fc *fetchCall) (*cycle, error) {
	select {
	case sy.reg <- fc:
		return <-fc.joined, nil
	case <-fc.ctx.Done():
		return nil, fc.ctx.Err()
	case <-sy.s.stopping:
		return nil, errStopping
	}
}

var errStopping = errors.New("openmatch core is shutting down")

func (sy *synchronizer) run() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-sy.s.stopping
		cancel()
	}()
	for {
		var first *fetchCall
		select {
		case first = <-sy.reg:
		case <-sy.s.stopping:
			return
		}
		cy := &cycle{start: time.Now(), allDone: make(chan struct{}), owner: make(map[string]*fetchCall), done: make(chan struct{})}
		cy.join(first)
		window := time.NewTimer(sy.s.cfg.RegistrationInterval)
	collect:
		for {
			select {
			case fc := <-sy.reg:
				cy.join(fc)
			case <-window.C:
				break collect
			case <-sy.s.stopping:
				window.Stop()
				cy.abort(errStopping)
				return
			}
		}
		cy.closeWindow()
		proposalTimer := time.NewTimer(sy.s.cfg.ProposalCollectionInterval)
		select {
		case <-cy.allDone:
		case <-proposalTimer.C:
		case <-sy.s.stopping:
			proposalTimer.Stop()
			cy.abort(errStopping)
			return
		}
		proposalTimer.Stop()
		cy.closeIntake()
		sy.evaluateAndCommit(ctx, cy)
		close(cy.done)
		sy.s.metrics.cycleSeconds.Observe(time.Since(cy.start).Seconds())
		now := time.Now().UnixNano()
		if ids, tickets := sy.s.backfills.removeExpired(now); len(ids) > 0 {
			sy.s.tickets.release(tickets)
			sy.s.log.Info("expired backfills deleted", "backfills", ids)
		}
	}
}

func (c *cycle) join(fc *fetchCall) {
	c.mu.Lock()
	c.calls = append(c.calls, fc)
	c.running++
	c.mu.Unlock()
	fc.joined <- c
}

func (c *cycle) closeWindow() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.windowClosed = true
	if c.running == 0 {
		close(c.allDone)
	}
}

// closeIntake ends proposal collection; MMFs still running are cancelled and their calls fail.
func (c *cycle) closeIntake() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.intakeClosed = true
	if c.running > 0 {
		for _, fc := range c.calls {
			if fc.err == nil && !fc.finished() {
				fc.err = errProposalWindow
				fc.mmfCancel()
			}
		}
	}
}

func (c *cycle) abort(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
	close(c.done)
}

// finished is set by mmfDone; guarded by the cycle's mutex.
func (fc *fetchCall) finished() bool { return fc.seen == nil }

// propose adds one proposal of fc to the cycle.
func (c *cycle) propose(fc *fetchCall, m *pb.Match) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.intakeClosed {
		return errProposalWindow
	}
	if fc.finished() {
		return errors.New("match function sent a proposal after its Run returned")
	}
	id := m.GetMatchId()
	if _, dup := fc.seen[id]; dup {
		return fmt.Errorf("MatchMakingFunction returned same match_id twice: %q", id)
	}
	fc.seen[id] = struct{}{}
	if other, ok := c.owner[id]; ok && other != fc {
		if c.err == nil {
			c.err = fmt.Errorf("multiple match functions used same match_id: %q", id)
		}
		return nil
	}
	c.owner[id] = fc
	c.proposals = append(c.proposals, proposal{fc, m})
	return nil
}

// mmfDone records the end of fc's match function.
func (c *cycle) mmfDone(fc *fetchCall, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if fc.err == nil && err != nil {
		fc.err = err
	}
	fc.seen = nil
	c.running--
	if c.windowClosed && c.running == 0 && !c.intakeClosed {
		close(c.allDone)
	}
}

func (sy *synchronizer) evaluateAndCommit(ctx context.Context, c *cycle) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		sy.s.metrics.cycles.WithLabelValues("error").Inc()
		return
	}
	byID := make(map[string]proposal, len(c.proposals))
	in := make([]*pb.Match, 0, len(c.proposals))
	for _, p := range c.proposals {
		if p.call.err != nil || p.call.ctx.Err() != nil {
			continue // withdrawn: its caller gets an error, its tickets must stay active
		}
		byID[p.m.GetMatchId()] = p
		in = append(in, p.m)
	}
	sy.s.metrics.proposals.Add(float64(len(c.proposals)))
	var ids []string
	if len(in) > 0 {
		// Evaluate without holding the cycle lock's callers hostage: nothing else touches the
		// cycle once intake is closed, except mmfDone of cancelled calls, which only needs fc.
		c.mu.Unlock()
		var err error
		ids, err = sy.ev.evaluate(ctx, in)
		c.mu.Lock()
		if err != nil {
			c.err = err
			sy.s.metrics.cycles.WithLabelValues("error").Inc()
			return
		}
	}
	seen := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		if _, ok := byID[id]; !ok {
			c.err = fmt.Errorf("evaluator returned match_id %q which does not correspond to its any match in its input", id)
			sy.s.metrics.cycles.WithLabelValues("error").Inc()
			return
		}
		if _, dup := seen[id]; dup {
			c.err = fmt.Errorf("evaluator returned same match_id twice: %q", id)
			sy.s.metrics.cycles.WithLabelValues("error").Inc()
			return
		}
		seen[id] = struct{}{}
	}
	now := time.Now()
	nowNs := now.UnixNano()
	for _, id := range ids {
		p := byID[id]
		if p.call.ctx.Err() != nil {
			continue // the caller left; don't hide its tickets
		}
		tids := make([]string, len(p.m.GetTickets()))
		for i, t := range p.m.GetTickets() {
			tids[i] = t.GetId()
		}
		if tid, busy := sy.s.tickets.pendingOrAssigned(tids, nowNs); busy {
			sy.s.metrics.dropped.Inc()
			sy.s.log.Warn("accepted match dropped: ticket already pending or assigned", "match", id, "ticket", tid)
			continue
		}
		m := p.m
		if bf := m.GetBackfill(); bf != nil {
			var stored *pb.Backfill
			if bf.GetId() == "" {
				stored = sy.s.backfills.create(bf, now, tids)
			} else {
				var ok bool
				if stored, ok = sy.s.backfills.updateFromMatch(bf, tids, nowNs); !ok {
					sy.s.metrics.dropped.Inc()
					sy.s.log.Info("accepted match dropped: backfill missing, expired or generation changed", "match", id, "backfill", bf.GetId(), "generation", bf.GetGeneration())
					continue
				}
			}
			m = proto.CloneOf(m)
			m.Backfill = stored
		}
		sy.s.tickets.markPending(tids, nowNs)
		p.call.results = append(p.call.results, m)
		sy.s.metrics.accepted.Inc()
	}
	sy.s.metrics.cycles.WithLabelValues("ok").Inc()
}
