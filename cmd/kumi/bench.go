package main

import (
	"context"
	"errors"
	"log/slog"
)

// runBench is replaced by the component's wiring when the component lands.
func runBench(ctx context.Context, log *slog.Logger, args []string) error {
	return errors.New("bench: not built yet")
}
