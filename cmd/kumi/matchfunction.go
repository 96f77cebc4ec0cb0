package main

import (
	"context"
	"errors"
	"log/slog"
)

// runMatchFunction is replaced by the component's wiring when the component lands.
func runMatchFunction(ctx context.Context, log *slog.Logger, args []string) error {
	return errors.New("matchfunction: not built yet")
}
