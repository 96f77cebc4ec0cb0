package main

import (
	"context"
	"errors"
	"log/slog"
)

// runFrontend is replaced by the component's wiring when the component lands.
func runFrontend(ctx context.Context, log *slog.Logger, args []string) error {
	return errors.New("frontend: not built yet")
}
