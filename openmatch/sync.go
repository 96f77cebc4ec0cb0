package openmatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
)

var (
	// errProposalWindow is what a call gets when its MMF still ran as the proposal window closed.
	errProposalWindow = errors.New("match function ran longer than proposal window, canceling")
	errStopping       = errors.New("openmatch core is shutting down")
)

// synchronizer runs cycles one at a time (reference §7). A call arriving while a cycle is past its
// registration window blocks on reg until the loop starts the next cycle, so a cycle's MMFs always
// query after the previous cycle marked its tickets pending, and every call that waited shares
// that next cycle's evaluation.
type synchronizer struct {
	s   *Server
	ev  evaluator
	reg chan *fetchCall
	// sizeHint is the last cycle's proposal count (read and written only by run's goroutine),
	// the initial size of the next cycle's maps.
	sizeHint int
}

// maxSizeHint bounds sizeHint so one huge cycle does not make every later one allocate as much.
const maxSizeHint = 1 << 16

// fetchCall is one FetchMatches call's part in a cycle. Fields after joined are guarded by the
// cycle's mutex.
type fetchCall struct {
	ctx       context.Context
	mmfCancel context.CancelFunc
	joined    chan *cycle

	seen        map[string]struct{} // match ids this call proposed
	mmfFinished bool
	left        bool
	err         error // MMF error: the call fails with it; its proposals no longer count
	syncErr     error // synchronizer error for this call only (proposal window)
	results     []*proposal
	wake        chan struct{} // signalled when results grow
}

// cycle is one synchronizer cycle: one evaluation shared by every call registered in its window.
type cycle struct {
	sy     *synchronizer
	ctx    context.Context // the evaluation's; cancelled when the cycle fails or every caller left
	cancel context.CancelFunc
	sess   evalSession
	start  time.Time

	mu            sync.Mutex
	calls         []*fetchCall
	running       int // MMFs not finished
	live          int // calls still waiting for results
	windowClosed  bool
	intakeClosed  bool
	allDone       chan struct{} // closed once the window closed and every MMF finished
	allLeft       chan struct{} // closed when every call left early (after the window)
	allLeftClosed bool
	inflight      sync.WaitGroup
	owner         map[string]*fetchCall
	proposals     map[string]*proposal // forwarded to the evaluator, by match id
	accepted      map[string]struct{}
	err           error         // every call of the cycle fails with it
	evalDone      chan struct{} // closed when the evaluator's output ended
	done          chan struct{} // closed when the cycle is over
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

func (sy *synchronizer) run() {
	base := sy.s.stopCtx
	for {
		var first *fetchCall
		select {
		case first = <-sy.reg:
		case <-sy.s.stopping:
			return
		}
		cy := sy.newCycle(base)
		cy.join(first)
		window := time.NewTimer(sy.s.cfg.RegistrationInterval)
	collect:
		for {
			select {
			case fc := <-sy.reg:
				cy.join(fc)
			case <-window.C:
				break collect
			}
		}
		cy.closeWindow()
		proposalTimer := time.NewTimer(sy.s.cfg.ProposalCollectionInterval)
		select {
		case <-cy.allDone:
		case <-proposalTimer.C:
			sy.s.log.Warn("proposal window closed with match functions still running; cancelling them",
				"window", sy.s.cfg.ProposalCollectionInterval)
		case <-sy.s.stopping:
		}
		proposalTimer.Stop()
		cy.closeIntake()
		select {
		case <-cy.evalDone:
		case <-cy.allLeft:
			// Nobody is waiting for the results: stop the evaluator instead of waiting for it.
			cy.cancel()
			<-cy.evalDone
		}
		cy.cancel()
		cy.mu.Lock()
		sy.sizeHint = min(len(cy.proposals), maxSizeHint)
		result := "ok"
		if cy.err != nil {
			result = "error"
		}
		cy.mu.Unlock()
		// Expired backfills go before the callers hear the cycle ended, so a caller that saw the
		// end also sees the cleanup.
		if ids, tickets := sy.s.backfills.removeExpired(time.Now().UnixNano()); len(ids) > 0 {
			sy.s.tickets.release(tickets)
			sy.s.log.Info("expired backfills deleted", "backfills", ids)
		}
		sy.s.metrics.cycles.WithLabelValues(result).Inc()
		sy.s.metrics.cycleSeconds.Observe(time.Since(cy.start).Seconds())
		close(cy.done)
	}
}

func (sy *synchronizer) newCycle(base context.Context) *cycle {
	ctx, cancel := context.WithCancel(base)
	c := &cycle{sy: sy, ctx: ctx, cancel: cancel, start: time.Now(),
		allDone: make(chan struct{}), allLeft: make(chan struct{}), evalDone: make(chan struct{}), done: make(chan struct{}),
		// Sized like the last cycle: growing these maps from empty was ~3 % of a 500-proposal cycle.
		owner: make(map[string]*fetchCall, sy.sizeHint), proposals: make(map[string]*proposal, sy.sizeHint),
		accepted: make(map[string]struct{}, sy.sizeHint)}
	sess, err := sy.ev.start(ctx)
	if err != nil {
		c.err = err
		close(c.evalDone)
		return c
	}
	c.sess = sess
	go c.receive()
	return c
}

func (c *cycle) join(fc *fetchCall) {
	c.mu.Lock()
	c.calls = append(c.calls, fc)
	c.running++
	c.live++
	c.mu.Unlock()
	fc.joined <- c
}

// leave records that fc's caller went away before the cycle ended.
func (c *cycle) leave(fc *fetchCall) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if fc.left {
		return
	}
	fc.left = true
	c.live--
	c.checkAllLeftLocked()
}

// checkAllLeftLocked closes allLeft once the window is closed (no one can join any more) and
// every call has left.
func (c *cycle) checkAllLeftLocked() {
	if c.windowClosed && c.live == 0 && !c.allLeftClosed {
		c.allLeftClosed = true
		close(c.allLeft)
	}
}

func (c *cycle) closeWindow() {
	c.mu.Lock()
	c.windowClosed = true
	if c.running == 0 {
		close(c.allDone)
	}
	c.checkAllLeftLocked()
	alone := c.earlyCycle() && c.err == nil
	c.mu.Unlock()
	if alone {
		// Not under c.mu: the session's lock is taken before c.mu in closeSend.
		c.acceptEarly()
	}
}

// closeIntake ends proposal collection: MMFs still running are cancelled and their calls fail;
// the evaluator sees the end of its input.
func (c *cycle) closeIntake() {
	c.mu.Lock()
	c.intakeClosed = true
	for _, fc := range c.calls {
		if !fc.mmfFinished && fc.syncErr == nil {
			fc.syncErr = errProposalWindow
			fc.mmfCancel()
		}
	}
	c.mu.Unlock()
	// A proposal may be blocked on a slow evaluator; if nobody waits for the cycle any more (or
	// the core stops) cancelling the evaluation unblocks it.
	sent := make(chan struct{})
	go func() {
		c.inflight.Wait()
		close(sent)
	}()
	select {
	case <-sent:
	case <-c.allLeft:
		c.cancel()
		<-sent
	case <-c.sy.s.stopping:
		<-sent // the base context is cancelled on stop
	}
	if c.sess != nil {
		c.sess.closeSend(func(id string) bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			fc := c.owner[id]
			return fc != nil && fc.err == nil && fc.syncErr == nil && !fc.left
		})
	}
}

// failLocked fails the whole cycle (first error wins) and stops its evaluator.
func (c *cycle) failLocked(err error) {
	if c.err == nil {
		c.err = err
		c.cancel()
	}
}

// propose adds one proposal of fc to the cycle and forwards it to the evaluator. An error fails
// only fc (its MMF stops); cycle-wide errors are recorded on the cycle.
func (c *cycle) propose(fc *fetchCall, m *proposal) error {
	c.mu.Lock()
	if c.intakeClosed {
		c.mu.Unlock()
		return errProposalWindow
	}
	if fc.mmfFinished {
		c.mu.Unlock()
		return errors.New("match function sent a proposal after its Run returned")
	}
	id := m.id
	if _, dup := fc.seen[id]; dup {
		c.mu.Unlock()
		return fmt.Errorf("MatchMakingFunction returned same match_id twice: %q", id)
	}
	fc.seen[id] = struct{}{}
	if _, taken := c.owner[id]; taken {
		c.failLocked(fmt.Errorf("multiple match functions used same match_id: %q", id))
		c.mu.Unlock()
		return nil
	}
	c.owner[id] = fc
	if c.err != nil {
		c.mu.Unlock()
		return nil
	}
	c.proposals[id] = m
	if c.early(m) {
		// Accepted as it arrives: the caller streams it while the function is still sending.
		if w := c.commitLocked(id); w != nil {
			w.notify()
		}
		c.mu.Unlock()
		c.sy.s.metrics.proposals.Inc()
		return nil
	}
	c.inflight.Add(1)
	c.mu.Unlock()
	c.sy.s.metrics.proposals.Inc()
	err := c.sess.send(m)
	c.inflight.Done()
	if err != nil {
		c.mu.Lock()
		c.failLocked(fmt.Errorf("evaluator: %w", err))
		c.mu.Unlock()
	}
	return nil
}

// early reports whether proposal m can be accepted now instead of at the end of the cycle:
// the default evaluator's answer cannot change any more. That holds when the cycle's only call
// (its registration window closed, so no other call can join with overlapping proposals) has a
// match function that promised disjoint proposals (pb.DisjointProposalsHeader), and m has a
// score the evaluator reads and no backfill (backfills may collide across proposals). The
// default evaluator then accepts every such proposal, whatever the order. Should the function
// break its promise, the ticket is still never matched twice: commitLocked drops a match with a
// ticket already pending. Called with c.mu held.
func (c *cycle) early(m *proposal) bool { return m.earlyOK() && c.earlyCycle() }

// earlyOK is the proposal's part of cycle.early.
func (p *proposal) earlyOK() bool { return p.disjoint && !p.badScore && p.backfill == nil }

// earlyCycle is the cycle's part of cycle.early. Called with c.mu held.
func (c *cycle) earlyCycle() bool {
	_, defaultEval := c.sy.ev.(defaultEvaluator)
	return c.windowClosed && len(c.calls) == 1 && defaultEval
}

// acceptEarly accepts, as the registration window closes on a cycle of one call, the proposals
// that arrived before and could have been accepted early (cycle.early), and wakes the caller.
func (c *cycle) acceptEarly() {
	d, ok := c.sess.(*defaultSession)
	if !ok {
		return
	}
	ps := d.take((*proposal).earlyOK)
	if len(ps) == 0 {
		return
	}
	ids := make([]string, len(ps))
	for i, p := range ps {
		ids[i] = p.id
	}
	c.commit(ids)
}

// mmfDone records the end of fc's match function.
func (c *cycle) mmfDone(fc *fetchCall, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if fc.err == nil && err != nil {
		fc.err = err
	}
	fc.mmfFinished = true
	c.running--
	if c.windowClosed && c.running == 0 && !c.intakeClosed {
		close(c.allDone)
	}
}

// receive commits each accepted match as the evaluator returns it, so matches stream to their
// callers while the cycle is still running.
func (c *cycle) receive() {
	defer close(c.evalDone)
	for {
		ids, err := c.sess.recv()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			c.mu.Lock()
			c.failLocked(err)
			c.mu.Unlock()
			return
		}
		c.commit(ids)
	}
}

// commit applies a batch of accepted ids under one lock and wakes each caller once, so a caller
// streams its matches in a burst (gRPC then coalesces them into few writes).
func (c *cycle) commit(ids []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	woken := make(map[*fetchCall]struct{})
	for _, id := range ids {
		if c.err != nil {
			return
		}
		if fc := c.commitLocked(id); fc != nil {
			woken[fc] = struct{}{}
		}
	}
	for fc := range woken {
		fc.notify()
	}
}

// notify wakes the call's sender if it is not already due to wake.
func (fc *fetchCall) notify() {
	select {
	case fc.wake <- struct{}{}:
	default:
	}
}

// commitLocked accepts one match and returns the call to wake, if any.
func (c *cycle) commitLocked(id string) *fetchCall {
	s := c.sy.s
	m, ok := c.proposals[id]
	if !ok {
		c.failLocked(fmt.Errorf("evaluator returned match_id %q which does not correspond to its any match in its input", id))
		return nil
	}
	if _, dup := c.accepted[id]; dup {
		c.failLocked(fmt.Errorf("evaluator returned same match_id twice: %q", id))
		return nil
	}
	c.accepted[id] = struct{}{}
	fc := c.owner[id]
	if fc.err != nil || fc.syncErr != nil || fc.left || fc.ctx.Err() != nil {
		return nil // withdrawn: the caller failed or left, so its tickets stay active
	}
	now := time.Now()
	nowNs := now.UnixNano()
	tids := m.tickets
	if tid, busy := s.tickets.pendingOrAssigned(tids, nowNs); busy {
		s.metrics.dropped.Inc()
		s.log.Warn("accepted match dropped: ticket already pending or assigned", "match", id, "ticket", tid)
		return nil
	}
	if bf := m.backfill; bf != nil {
		if bf.GetId() == "" {
			// The caller learns the new backfill's id from the streamed match.
			msg, err := m.match()
			if err != nil {
				c.failLocked(err)
				return nil
			}
			msg = proto.CloneOf(msg)
			msg.Backfill = s.backfills.create(bf, now, tids)
			m = &proposal{id: m.id, tickets: m.tickets, backfill: msg.Backfill, msg: msg}
		} else if _, ok = s.backfills.updateFromMatch(bf, tids, nowNs); !ok {
			s.metrics.dropped.Inc()
			s.log.Info("accepted match dropped: backfill missing, expired or at another generation", "match", id, "backfill", bf.GetId(), "generation", bf.GetGeneration())
			return nil
		}
		// An updated backfill's match is streamed as proposed, like upstream.
	}
	s.tickets.markPending(tids, nowNs)
	s.metrics.accepted.Inc()
	fc.results = append(fc.results, m)
	return fc
}

// take returns and clears fc's pending results.
func (c *cycle) take(fc *fetchCall) []*proposal {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := fc.results
	fc.results = nil
	return r
}
