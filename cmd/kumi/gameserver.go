package main

import (
	"context"
	"flag"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kumi-dev/kumi/gameserver"
	"github.com/kumi-dev/kumi/gameserver/sdk"
	"github.com/kumi-dev/kumi/internal/config"
)

// runGameServer is `kumi gameserver`: one shared multi-session UDP game server. Under Agones (or
// the local fleet) AGONES_SDK_GRPC_PORT is set, which turns the SDK on by default; the sidecar
// address comes from AGONES_SDK_GRPC_HOST/AGONES_SDK_GRPC_PORT unless -sdk-addr is given.
func runGameServer(ctx context.Context, log *slog.Logger, args []string) error {
	if len(args) > 0 && args[0] == "wrap" {
		return runWrap(ctx, log, args[1:])
	}
	cfg := gameserver.Default()
	if os.Getenv(sdk.EnvGRPCPort) != "" {
		cfg.SDK = true
	}
	fs := flag.NewFlagSet("gameserver", flag.ContinueOnError)
	if err := config.Bind(fs, "", &cfg); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	s, err := gameserver.Start(ctx, log, cfg, reg)
	if err != nil {
		return err
	}
	return s.Wait()
}
