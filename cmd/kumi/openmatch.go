package main

import (
	"context"
	"flag"
	"log/slog"

	"github.com/kumi-dev/kumi/internal/config"
	"github.com/kumi-dev/kumi/internal/telemetry"
	"github.com/kumi-dev/kumi/openmatch"
)

// runOpenMatch serves the embedded Open Match v1-compatible core until ctx ends. With
// -metrics-addr its /metrics also carries the Go runtime and process collectors.
func runOpenMatch(ctx context.Context, log *slog.Logger, args []string) error {
	cfg := openmatch.Default()
	fs := flag.NewFlagSet("openmatch", flag.ContinueOnError)
	if err := config.Bind(fs, "", &cfg); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	return openmatch.Run(ctx, log, cfg, telemetry.NewRegistry())
}
