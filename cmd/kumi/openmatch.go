package main

import (
	"context"
	"errors"
	"log/slog"
)

// runOpenMatch is replaced by the component's wiring when the component lands.
func runOpenMatch(ctx context.Context, log *slog.Logger, args []string) error {
	return errors.New("openmatch: not built yet")
}
