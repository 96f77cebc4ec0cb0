package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/kumi-dev/kumi/bench/spiky"
	"github.com/kumi-dev/kumi/internal/config"
)

// runBench is `kumi bench <kind>`: load generators whose output is a markdown table for BENCHMARKS.md.
func runBench(ctx context.Context, log *slog.Logger, args []string) error {
	kinds := map[string]func(context.Context, *slog.Logger, []string) error{
		"spiky": benchSpiky,
		"e2e":   benchE2E,
	}
	if len(args) == 0 || kinds[args[0]] == nil {
		return fmt.Errorf("usage: kumi bench spiky|e2e [flags] (kumi bench <kind> -h lists its flags)")
	}
	return kinds[args[0]](ctx, log, args[1:])
}

// benchSpiky replays a spiky demand trace through the director's pool logic and the
// one-session-per-server baseline, and prints the comparison (and writes it with a plot to -out).
func benchSpiky(ctx context.Context, log *slog.Logger, args []string) error {
	cfg := spiky.Default()
	cfg.Out = "out/spiky"
	fs := flag.NewFlagSet("bench spiky", flag.ContinueOnError)
	if err := config.Bind(fs, "", &cfg); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	config.Log(ctx, log, "bench spiky", &cfg)
	shared, baseline, err := spiky.Run(ctx, cfg)
	if err != nil {
		return err
	}
	spiky.Markdown(os.Stdout, cfg, shared, baseline)
	if cfg.Out != "" {
		if err := spiky.WriteFiles(cfg.Out, cfg, shared, baseline); err != nil {
			return err
		}
		log.Info("report written", "markdown", cfg.Out+"/spiky.md", "plot", cfg.Out+"/spiky.svg")
	}
	return nil
}
