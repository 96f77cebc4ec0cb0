package main

import (
	"context"
	"errors"
	"log/slog"
)

// runGameServer is replaced by the component's wiring when the component lands.
func runGameServer(ctx context.Context, log *slog.Logger, args []string) error {
	return errors.New("gameserver: not built yet")
}
