// Command client is kumi's example game client: it gets a dev player token (or takes one), files a
// ticket through the frontend, waits for the assignment, joins the game server over UDP with the
// server token, exchanges voice-like frames, follows MOVE and RECONNECT, and prints its timings.
// The flow itself is the importable product package client (github.com/kumi-dev/kumi/client).
//
//	go run ./examples/client -frontend 127.0.0.1:50600 -key token.key -attrs mode=voice,chat_group=guild-42
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/kumi-dev/kumi/client"
	"github.com/kumi-dev/kumi/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// cliConfig is every setting of the command: one player's settings plus how many to run.
type cliConfig struct {
	Player  client.Config
	Players int  `flag:"players" help:"run this many players at once (ids <player>-1..N, or random), all with the same attributes"`
	Verbose bool `flag:"v" help:"log every step"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg := cliConfig{Player: client.Default(), Players: 1}
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := config.Bind(fs, "", &cfg); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if cfg.Players < 1 {
		fmt.Fprintf(stderr, "client: -players %d must be at least 1\n", cfg.Players)
		return 2
	}
	level := slog.LevelInfo
	if cfg.Verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	config.Log(ctx, log, "client", &cfg)

	reps := make([]*client.Report, cfg.Players)
	errs := make([]error, cfg.Players)
	var wg sync.WaitGroup
	for i := range cfg.Players {
		pc := cfg.Player
		if cfg.Players > 1 && pc.Player != "" {
			pc.Player = fmt.Sprintf("%s-%d", pc.Player, i+1)
		}
		wg.Go(func() { reps[i], errs[i] = client.Run(ctx, log, pc) })
	}
	wg.Wait()
	code := 0
	for i, r := range reps {
		printReport(stdout, r)
		if err := errs[i]; err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintf(stderr, "client: player %s: %v\n", r.Player, err)
			code = 1
		}
	}
	if cfg.Players > 1 {
		failed := 0
		for _, err := range errs {
			if err != nil && !errors.Is(err, context.Canceled) {
				failed++
			}
		}
		printSummary(stdout, client.Summarize(reps), failed)
	}
	return code
}

// short rounds a duration to three significant figures or so (1.23s, 45.6ms, 789µs): timings are
// read by people, and the nanoseconds are noise.
func short(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

func printSummary(w io.Writer, s client.Summary, failed int) {
	q := func(name string, v client.Quantiles) {
		if v.N > 0 {
			fmt.Fprintf(w, "  %-20s p50 %v p99 %v max %v (n=%d)\n", name, short(v.P50), short(v.P99), short(v.Max), v.N)
		}
	}
	fmt.Fprintf(w, "summary of %d players (%d failed): %d moves, %d reconnects, frames sent %d received %d\n",
		s.Players+failed, failed, s.Moves, s.Reconnects, s.FramesSent, s.FramesReceived)
	q("ticket -> assignment", s.TicketToAssignment)
	q("assignment -> ACCEPT", s.AssignmentToAccept)
	q("ACCEPT -> 1st frame", s.AcceptToFirstFrame)
	q("frame latency", s.FrameLatency)
}

func printReport(w io.Writer, r *client.Report) {
	fmt.Fprintf(w, "player %s\n", r.Player)
	for i, l := range r.Legs {
		fmt.Fprintf(w, "leg %d (%s): session %s on %s member %d\n", i+1, l.Cause, l.SessionID, l.Address, l.MemberID)
		if l.Cause != "move" {
			fmt.Fprintf(w, "  ticket %s -> assignment  %v\n", l.TicketID, short(l.TicketToAssignment))
		}
		fmt.Fprintf(w, "  assignment -> ACCEPT      %v\n", short(l.AssignmentToAccept))
		if l.FramesReceived > 0 {
			fmt.Fprintf(w, "  ACCEPT -> first frame     %v\n", short(l.AcceptToFirstFrame))
		} else {
			fmt.Fprintf(w, "  ACCEPT -> first frame     none received (alone in the session?)\n")
		}
		fmt.Fprintf(w, "  frames sent %d received %d; ended: %s\n", l.FramesSent, l.FramesReceived, l.Ended)
	}
	sent, recv := r.Totals()
	fmt.Fprintf(w, "total: %d legs, %d moves, %d reconnects, frames sent %d received %d\n", len(r.Legs), r.Moves(), r.Reconnects(), sent, recv)
	if len(r.FrameLatency) > 0 {
		fmt.Fprintf(w, "frame latency (one way, same host): p50 %v p99 %v max %v over %d samples\n",
			short(r.LatencyQuantile(0.5)), short(r.LatencyQuantile(0.99)), short(r.LatencyQuantile(1)), len(r.FrameLatency))
	}
}
