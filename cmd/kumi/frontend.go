package main

import (
	"context"
	"flag"
	"log/slog"

	"github.com/kumi-dev/kumi/frontend"
	"github.com/kumi-dev/kumi/internal/config"
	"github.com/kumi-dev/kumi/internal/telemetry"
)

// runFrontend is `kumi frontend`: the player-facing ticket API in front of an Open Match core.
func runFrontend(ctx context.Context, log *slog.Logger, args []string) error {
	cfg := frontend.Default()
	fs := flag.NewFlagSet("frontend", flag.ContinueOnError)
	if err := config.Bind(fs, "", &cfg); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	return frontend.Run(ctx, log, cfg, telemetry.NewRegistry())
}
