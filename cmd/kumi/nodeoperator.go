package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"

	"github.com/kumi-dev/kumi/internal/config"
	"github.com/kumi-dev/kumi/nodeoperator"
)

// runNodeOperator runs the hybrid node operator (nodeoperator/README.md) until ctx ends.
func runNodeOperator(ctx context.Context, log *slog.Logger, args []string) error {
	cfg := nodeoperator.Default()
	fs := flag.NewFlagSet("nodeoperator", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: kumi nodeoperator [flags]

Guards on-prem Kubernetes workers joined over Tailscale: a node whose kubelet AND tailnet peer stay
down past -flap-grace gets a Compute Engine fallback VM (breaker, startup timeout, bounded
attempts); once the node is back the fallback is cordoned, its sessions moved by the director and
the VM deleted only when no Allocated game server is left. State: kubectl get nodefailovers.
Docs: nodeoperator/README.md. Flags:`)
		fs.PrintDefaults()
	}
	if err := config.Bind(fs, "", &cfg); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return nodeoperator.Run(ctx, log.With("component", "nodeoperator"), cfg)
}
