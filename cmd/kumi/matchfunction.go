package main

import (
	"context"
	"flag"
	"log/slog"

	"github.com/kumi-dev/kumi/internal/config"
	"github.com/kumi-dev/kumi/matchfunction"
	"github.com/prometheus/client_golang/prometheus"
)

// runMatchFunction serves the match function until ctx ends.
func runMatchFunction(ctx context.Context, log *slog.Logger, args []string) error {
	cfg := matchfunction.Default()
	fs := flag.NewFlagSet("kumi matchfunction", flag.ContinueOnError)
	if err := config.Bind(fs, "", &cfg); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	return matchfunction.Run(ctx, log, cfg, prometheus.NewRegistry())
}
