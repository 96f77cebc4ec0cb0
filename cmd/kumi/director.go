package main

import (
	"context"
	"errors"
	"log/slog"
)

// runDirector is replaced by the component's wiring when the component lands.
func runDirector(ctx context.Context, log *slog.Logger, args []string) error {
	return errors.New("director: not built yet")
}
