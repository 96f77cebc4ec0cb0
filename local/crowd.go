package local

import (
	"context"
	"fmt"
	"github.com/kumi-dev/kumi/internal/stats"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	player "github.com/kumi-dev/kumi/client"
	"github.com/kumi-dev/kumi/director/pool"
)

// Summary is what the demo crowd measured.
type Summary struct {
	Players, OK, Failed int
	Moves, Reconnects   int
	LateJoinedGroup     int // late voice players who landed in their group's existing session
	LateTotal           int
	Drained             []string
	ServersUsed         int
	Player              player.Summary
	Failures            []string
}

// crowdPlayer is one simulated player's plan.
type crowdPlayer struct {
	id    string
	attrs player.Attributes
	delay time.Duration // late arrivals start after this
	talk  time.Duration
	group string
	late  bool
}

// plan lays out the crowd: voice groups of GroupSize (LateShare of each arriving later), duel
// players, and LeaveShare of everyone talking for a short while only.
func plan(cfg Config, rng *rand.Rand) []crowdPlayer {
	var out []crowdPlayer
	duels := int(float64(cfg.Players)*cfg.DuelShare+0.5) &^ 1 // duels need pairs: an odd one out would wait forever
	voice := cfg.Players - duels
	for i := range voice {
		g := "g" + strconv.Itoa(i/cfg.GroupSize)
		p := crowdPlayer{id: "voice-" + strconv.Itoa(i), group: g, talk: cfg.Duration,
			attrs: player.Attributes{"mode": "voice", "chat_group": g, "region": "local"}}
		// The first member of a group is never late, so a late member always has a session to find.
		if i%cfg.GroupSize != 0 && rng.Float64() < cfg.LateShare {
			p.late, p.delay = true, cfg.Duration/3+time.Duration(rng.Int64N(int64(time.Second)))
			p.talk = cfg.Duration - p.delay
		}
		out = append(out, p)
	}
	for i := range duels {
		// Skills lie within the duel profile's initial window, so pairs form at once.
		out = append(out, crowdPlayer{id: "duel-" + strconv.Itoa(i), talk: cfg.Duration,
			attrs: player.Attributes{"mode": "duel", "region": "local", "skill": float64(1000 + rng.IntN(80))}})
	}
	for i := range out {
		// A group's first member stays, so its late members always have a live session to find.
		anchor := out[i].group != "" && i%cfg.GroupSize == 0
		if !anchor && rng.Float64() < cfg.LeaveShare {
			out[i].talk = max(out[i].talk/4, 500*time.Millisecond)
		}
	}
	return out
}

// RunCrowd runs the demo crowd against s, printing a progress line every second, and returns the
// summary. It returns when every player has finished (or ctx ends).
func RunCrowd(ctx context.Context, log *slog.Logger, cfg Config, s *Stack) (*Summary, error) {
	out := cfg.Out
	if out == nil {
		out = os.Stdout
	}
	conn, err := grpc.NewClient(s.Frontend.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial frontend: %w", err)
	}
	defer conn.Close()

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	players := plan(cfg, rng)
	// Each player's state, read by the progress line: 0 not started, 1 waiting for an assignment,
	// 2 assigned (joining), 3 connected, 4 done, 5 failed.
	const (
		stIdle = iota
		stWaiting
		stAssigned
		stConnected
		stDone
		stFailed
	)
	var (
		mu        sync.Mutex
		assignLat []time.Duration
		firstSess = make([]string, len(players)) // session of each player's first assignment
		states    = make([]atomic.Int32, len(players))
	)
	reports := make([]*player.Report, len(players))
	errs := make([]error, len(players))
	var wg sync.WaitGroup
	for i, cp := range players {
		pc := player.Default()
		pc.FrontendConn = conn
		pc.Signer = s.PlayerSigner
		pc.Player = cp.id
		pc.Attributes = cp.attrs
		pc.Talk = cp.talk
		pc.FrameInterval = cfg.FrameEvery
		pc.OnAssigned = func(_ string, leg player.Leg) {
			states[i].Store(stAssigned)
			mu.Lock()
			assignLat = append(assignLat, leg.TicketToAssignment)
			mu.Unlock()
		}
		pc.OnJoined = func(_ string, leg player.Leg) {
			states[i].Store(stConnected)
			// A late member whose first JOIN met its session already moving off a draining server
			// is refused and files a new ticket; it still lands in its group's session, so the
			// first session it actually joined (first ticket or that one) is what counts.
			if leg.Cause != "move" {
				mu.Lock()
				if firstSess[i] == "" {
					firstSess[i] = leg.SessionID
				}
				mu.Unlock()
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if cp.delay > 0 {
				select {
				case <-time.After(cp.delay):
				case <-ctx.Done():
					errs[i] = ctx.Err()
					states[i].Store(stFailed)
					return
				}
			}
			states[i].Store(stWaiting)
			reports[i], errs[i] = player.Run(ctx, log.With("player", cp.id), pc)
			if errs[i] != nil {
				states[i].Store(stFailed)
			} else {
				states[i].Store(stDone)
			}
		}()
	}

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	// The drain is checked more often than the progress line is printed: waiting for a whole
	// second tick could put it so late that the sessions end within the drain grace, not moving.
	var drainTick <-chan time.Time
	if cfg.ScaleIn {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		drainTick = t.C
	}
	var drained []string
	// Drain once every on-time player has joined (or halfway through at the latest), so the
	// moves happen while they talk. Early leavers may be done by then; they count as joined.
	allJoined := func() bool {
		for i, cp := range players {
			if !cp.late && states[i].Load() < stConnected {
				return false
			}
		}
		return true
	}
	drainBy := start.Add(cfg.Duration / 2)
	// used is every game server (by address) that has hosted a session so far: the progress line
	// and the summary both count it, so they agree (servers merely kept ready are counted apart).
	used := map[string]bool{}
	progress := func(now time.Time) {
		snap := s.Director.Pool().Snapshot(now)
		for _, srv := range snap.Servers {
			if srv.Sessions > 0 {
				used[srv.Address] = true
			}
		}
		if !cfg.ProgressTTY {
			return
		}
		mu.Lock()
		p99 := stats.Quantile(stats.Sorted(assignLat), 0.99)
		mu.Unlock()
		var n [stFailed + 1]int
		for i := range states {
			n[states[i].Load()]++
		}
		fmt.Fprintf(out, "[%3.0fs] players: waiting %d, assigned %d, connected %d, done %d, failed %d | servers used %d (%d up), sessions %d | p99 ticket→assignment %v\n",
			now.Sub(start).Seconds(), n[stWaiting], n[stAssigned], n[stConnected], n[stDone], n[stFailed], len(used), len(snap.Servers), snap.Sessions, p99.Round(100*time.Microsecond))
	}
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-ctx.Done():
			<-done
			running = false
		case now := <-drainTick:
			if len(drained) > 0 || (!allJoined() && now.Before(drainBy)) {
				continue
			}
			if name := busiestLeastLoaded(s.Director.Pool().Snapshot(now)); name != "" && s.Director.Pool().Drain(name) {
				drained = append(drained, name)
				drainTick = nil
				fmt.Fprintf(out, "scale-in: draining %s; its sessions move to another server while players talk\n", name)
			}
		case now := <-tick.C:
			progress(now)
		}
	}

	sum := &Summary{Players: len(players), Drained: drained}
	var ok []*player.Report
	for i, rep := range reports {
		if errs[i] != nil {
			sum.Failed++
			sum.Failures = append(sum.Failures, fmt.Sprintf("%s: %v", players[i].id, errs[i]))
			continue
		}
		sum.OK++
		ok = append(ok, rep)
		sum.Moves += rep.Moves()
		sum.Reconnects += rep.Reconnects()
	}
	// A late voice player counts as rendezvoused when it landed in the session its group's on-time
	// members were assigned to (whatever order the assignments arrived in).
	onTimeSess := map[string]map[string]bool{}
	for i, cp := range players {
		if cp.group != "" && !cp.late && firstSess[i] != "" {
			if onTimeSess[cp.group] == nil {
				onTimeSess[cp.group] = map[string]bool{}
			}
			onTimeSess[cp.group][firstSess[i]] = true
		}
	}
	for i, cp := range players {
		if cp.late {
			sum.LateTotal++
			if onTimeSess[cp.group][firstSess[i]] {
				sum.LateJoinedGroup++
			}
		}
	}
	sum.Player = player.Summarize(ok)
	for _, rep := range ok {
		for _, leg := range rep.Legs {
			used[leg.Address] = true
		}
	}
	// A last progress line, with the servers the players' legs add, so it matches the summary.
	progress(time.Now())
	sum.ServersUsed = len(used)
	return sum, nil
}

// busiestLeastLoaded picks the accepting server with the fewest sessions among those that have
// any, so the drain moves live sessions (and leaves the fuller servers to take them). When it is
// the only server, the director's refill allocates another for the moves within the drain grace.
func busiestLeastLoaded(st pool.Stats) string {
	cands := slices.DeleteFunc(slices.Clone(st.Servers), func(s pool.ServerStats) bool {
		return s.State != "accepting" || s.Sessions == 0
	})
	if len(cands) == 0 {
		return ""
	}
	slices.SortFunc(cands, func(a, b pool.ServerStats) int { return a.Sessions - b.Sessions })
	return cands[0].Name
}

// Print writes the summary.
func (s *Summary) Print(w io.Writer) {
	fmt.Fprintf(w, "\nkumi local summary\n")
	fmt.Fprintf(w, "  players: %d ok, %d failed (of %d)\n", s.OK, s.Failed, s.Players)
	fmt.Fprintf(w, "  late group members in their group's session: %d of %d\n", s.LateJoinedGroup, s.LateTotal)
	fmt.Fprintf(w, "  scale-in: drained %v; session moves followed: %d; reconnects: %d\n", s.Drained, s.Moves, s.Reconnects)
	fmt.Fprintf(w, "  game servers used: %d (that hosted a session)\n", s.ServersUsed)
	q := func(name string, v player.Quantiles) {
		fmt.Fprintf(w, "  %-26s p50 %-10v p99 %-10v max %v (n=%d)\n", name, v.P50.Round(10*time.Microsecond), v.P99.Round(10*time.Microsecond), v.Max.Round(10*time.Microsecond), v.N)
	}
	q("ticket → assignment", s.Player.TicketToAssignment)
	q("assignment → ACCEPT", s.Player.AssignmentToAccept)
	q("ACCEPT → first frame", s.Player.AcceptToFirstFrame)
	q("frame one-way latency", s.Player.FrameLatency)
	fmt.Fprintf(w, "  frames: %d sent, %d received (relayed to the other members)\n", s.Player.FramesSent, s.Player.FramesReceived)
	for i, f := range s.Failures {
		if i == 10 {
			fmt.Fprintf(w, "  … %d more failures\n", len(s.Failures)-10)
			break
		}
		fmt.Fprintf(w, "  failed: %s\n", f)
	}
}
