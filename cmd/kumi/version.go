package main

import (
	"context"
	"errors"
	"log/slog"
)

// runVersion is a placeholder until the version subcommand lands.
func runVersion(_ context.Context, _ *slog.Logger, _ []string) error {
	return errors.New("version: not built yet")
}
