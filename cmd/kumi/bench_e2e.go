package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/kumi-dev/kumi/bench/e2e"
	"github.com/kumi-dev/kumi/internal/config"
)

// benchE2E is `kumi bench e2e`: simulated players at a fixed ticket rate through the whole stack
// (in process, or a running one), printing a markdown row for BENCHMARKS.md.
func benchE2E(ctx context.Context, log *slog.Logger, args []string) error {
	cfg := e2e.Default()
	fs := flag.NewFlagSet("bench e2e", flag.ContinueOnError)
	if err := config.Bind(fs, "", &cfg); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	config.Log(ctx, log, "bench e2e", &cfg)
	res, err := e2e.Run(ctx, log, cfg)
	if err != nil {
		return err
	}
	e2e.Header(os.Stdout)
	res.Row(os.Stdout)
	if res.Failed > 0 {
		for i, f := range res.Failures {
			if i == 5 {
				break
			}
			fmt.Fprintln(os.Stderr, "failed:", f)
		}
		return fmt.Errorf("%d of %d players failed", res.Failed, res.Tickets)
	}
	return nil
}
