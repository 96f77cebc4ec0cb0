package main

import (
	"context"
	"errors"
	"log/slog"
)

// runToken is replaced by the component's wiring when the component lands.
func runToken(ctx context.Context, log *slog.Logger, args []string) error {
	return errors.New("token: not built yet")
}
