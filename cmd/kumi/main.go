// Command kumi runs every kumi component; each is a subcommand. main only parses flags and wires:
// the components live in their own packages.
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
	"sort"
	"syscall"
	"time"

	"github.com/kumi-dev/kumi/internal/tracing"
)

// command is one subcommand: it parses its own flags from args and runs until ctx ends.
type command struct {
	summary string
	run     func(ctx context.Context, log *slog.Logger, args []string) error
}

func commands() map[string]command {
	return map[string]command{
		"openmatch":     {"serve the embedded Open Match v1-compatible core (frontend, backend, query)", runOpenMatch},
		"frontend":      {"serve the player-facing ticket API (JWT-checked)", runFrontend},
		"matchfunction": {"serve the match function (openmatch.MatchFunction/Run)", runMatchFunction},
		"director":      {"fetch matches, place sessions on pooled game servers, drain and move", runDirector},
		"gameserver":    {"run one shared multi-session UDP game server", runGameServer},
		"token":         {"generate keys and issue development tokens", runToken},
		"local":         {"run the whole product on this machine with a demo crowd", runLocal},
		"bench":         {"load generators and benchmarks", runBench},
		"version":       {"print the version this binary was built from", runVersion},
		"nodeoperator":  {"keep on-prem workers serving, with GCE fallback VMs", runNodeOperator},
		"builds":        {"serve the builds API for uploaded dedicated-server builds", runBuilds},
	}
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stderr))
}

func realMain(args []string, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "kumi: unknown command %q\n\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	// Log lines written with a context that holds a span carry its trace_id and span_id.
	log := slog.New(tracing.LogHandler(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: logLevel()}))).With("cmd", args[0])
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Tracing is off unless OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set (internal/tracing).
	shutdown, err := tracing.Setup(ctx, log, "kumi-"+args[0])
	if err != nil {
		fmt.Fprintf(stderr, "kumi %s: %v\n", args[0], err)
		return 1
	}
	defer func() {
		// Flush the spans still batched; bounded so an unreachable collector cannot hold the exit.
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(fctx); err != nil {
			log.Warn("tracing: spans lost at exit", "err", err)
		}
	}()
	if err := cmd.run(ctx, log, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "kumi %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// logLevel reads KUMI_LOG_LEVEL (debug, info, warn, error); info when unset or unknown.
func logLevel() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(os.Getenv("KUMI_LOG_LEVEL"))); err != nil {
		return slog.LevelInfo
	}
	return l
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: kumi <command> [flags]   (kumi <command> -h lists a command's flags)")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-14s %s\n", n, cmds[n].summary)
	}
}
