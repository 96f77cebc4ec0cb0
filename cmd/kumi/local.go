package main

import (
	"context"
	"errors"
	"log/slog"
)

// runLocal is replaced by the component's wiring when the component lands.
func runLocal(ctx context.Context, log *slog.Logger, args []string) error {
	return errors.New("local: not built yet")
}
