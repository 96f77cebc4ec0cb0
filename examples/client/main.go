// Command client is kumi's example game client: it gets a dev player token (or takes one), files a
// ticket through the frontend, waits for the assignment, joins the game server over UDP with the
// server token, exchanges voice-like frames, follows MOVE and RECONNECT, and prints its timings.
// The flow itself is the importable package examples/client/player.
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
	"syscall"

	"github.com/kumi-dev/kumi/examples/client/player"
	"github.com/kumi-dev/kumi/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg := player.Default()
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	verbose := fs.Bool("v", false, "log every step")
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
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	config.Log(ctx, log, "client", &cfg)
	rep, err := player.Run(ctx, log, cfg)
	printReport(stdout, rep)
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "client:", err)
		return 1
	}
	return 0
}

func printReport(w io.Writer, r *player.Report) {
	fmt.Fprintf(w, "player %s\n", r.Player)
	for i, l := range r.Legs {
		fmt.Fprintf(w, "leg %d (%s): session %s on %s member %d\n", i+1, l.Cause, l.SessionID, l.Address, l.MemberID)
		if l.Cause != "move" {
			fmt.Fprintf(w, "  ticket %s -> assignment  %v\n", l.TicketID, l.TicketToAssignment)
		}
		fmt.Fprintf(w, "  assignment -> ACCEPT      %v\n", l.AssignmentToAccept)
		if l.FramesReceived > 0 {
			fmt.Fprintf(w, "  ACCEPT -> first frame     %v\n", l.AcceptToFirstFrame)
		} else {
			fmt.Fprintf(w, "  ACCEPT -> first frame     none received (alone in the session?)\n")
		}
		fmt.Fprintf(w, "  frames sent %d received %d; ended: %s\n", l.FramesSent, l.FramesReceived, l.Ended)
	}
	sent, recv := r.Totals()
	fmt.Fprintf(w, "total: %d legs, %d moves, %d reconnects, frames sent %d received %d\n", len(r.Legs), r.Moves(), r.Reconnects(), sent, recv)
	if len(r.FrameLatency) > 0 {
		fmt.Fprintf(w, "frame latency (one way, same host): p50 %v p99 %v max %v over %d samples\n",
			r.LatencyQuantile(0.5), r.LatencyQuantile(0.99), r.LatencyQuantile(1), len(r.FrameLatency))
	}
}
