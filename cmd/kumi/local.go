package main

import (
	"context"
	"flag"
	"log/slog"

	"github.com/kumi-dev/kumi/internal/config"
	"github.com/kumi-dev/kumi/local"
)

// runLocal is `kumi local`: the whole product on this machine, with a demo crowd by default.
func runLocal(ctx context.Context, log *slog.Logger, args []string) error {
	cfg := local.Default()
	fs := flag.NewFlagSet("local", flag.ContinueOnError)
	if err := config.Bind(fs, "", &cfg); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	return local.Run(ctx, log, cfg)
}
