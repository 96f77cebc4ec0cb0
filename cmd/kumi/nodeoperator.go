package main

import (
	"context"
	"errors"
	"log/slog"
)

// runNodeOperator is a placeholder until the nodeoperator subcommand lands.
func runNodeOperator(_ context.Context, _ *slog.Logger, _ []string) error {
	return errors.New("nodeoperator: not built yet")
}
