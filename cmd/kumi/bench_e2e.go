package main

import (
	"context"
	"errors"
	"log/slog"
)

// benchE2E is replaced by the end-to-end load generator once `kumi local`'s stack lands.
func benchE2E(ctx context.Context, log *slog.Logger, args []string) error {
	return errors.New("bench e2e: not built yet")
}
