package main

import (
	"context"
	"flag"
	"log/slog"

	"github.com/kumi-dev/kumi/internal/config"
	"github.com/kumi-dev/kumi/internal/telemetry"
	"github.com/kumi-dev/kumi/matchfunction"
)

// runMatchFunction serves the match function until ctx ends. With -metrics-addr its /metrics also
// carries the Go runtime and process collectors, like every other component's.
func runMatchFunction(ctx context.Context, log *slog.Logger, args []string) error {
	cfg := matchfunction.Default()
	fs := flag.NewFlagSet("matchfunction", flag.ContinueOnError)
	if err := config.Bind(fs, "", &cfg); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	return matchfunction.Run(ctx, log, cfg, telemetry.NewRegistry())
}
