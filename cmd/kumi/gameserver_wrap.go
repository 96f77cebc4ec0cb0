package main

import (
	"context"
	"flag"
	"log/slog"
	"os"

	"github.com/kumi-dev/kumi/gameserver/sdk"
	"github.com/kumi-dev/kumi/gameserver/wrap"
	"github.com/kumi-dev/kumi/internal/config"
)

// runWrap is `kumi gameserver wrap`: run an uploaded dedicated-server build (an unmodified Unreal
// server) sandboxed, speaking the Agones SDK and admitting players for it.
func runWrap(ctx context.Context, log *slog.Logger, args []string) error {
	cfg := wrap.Default()
	if os.Getenv(sdk.EnvGRPCPort) != "" {
		cfg.SDK = true
	}
	fs := flag.NewFlagSet("gameserver wrap", flag.ContinueOnError)
	if err := config.Bind(fs, "", &cfg); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.JWT.Log = log
	return wrap.Run(ctx, log, cfg)
}
