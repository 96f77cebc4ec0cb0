package main

import (
	"context"
	"errors"
	"log/slog"
)

// runBuilds is a placeholder until the builds subcommand lands.
func runBuilds(_ context.Context, _ *slog.Logger, _ []string) error {
	return errors.New("builds: not built yet")
}
