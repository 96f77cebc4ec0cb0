package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"slices"

	"github.com/kumi-dev/kumi/allocation"
	"github.com/kumi-dev/kumi/director"
	"github.com/kumi-dev/kumi/director/agones"
	"github.com/kumi-dev/kumi/gameserver/localfleet"
	"github.com/kumi-dev/kumi/internal/config"
	"github.com/kumi-dev/kumi/internal/telemetry"
	"github.com/prometheus/client_golang/prometheus"
)

// directorFlags is `kumi director`'s command line: the director's config plus its backends'.
type directorFlags struct {
	Director    director.Config
	Backends    []string          `flag:"backends" help:"allocation backends: local (a fleet of kumi gameserver processes on this machine) and/or agones (GameServerAllocation through the Kubernetes API)"`
	MetricsAddr string            `flag:"metrics-addr" help:"serve Prometheus /metrics here (host:port; empty: off)"`
	Fleet       localfleet.Config `prefix:"fleet-"`
	Agones      agones.Config     `prefix:"agones-"`
}

func runDirector(ctx context.Context, log *slog.Logger, args []string) error {
	fl := directorFlags{Director: director.Default(), Backends: []string{"local"}, Fleet: localfleet.Default(), Agones: agones.DefaultConfig()}
	fs := flag.NewFlagSet("director", flag.ContinueOnError)
	if err := config.Bind(fs, "", &fl); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	reg := telemetry.NewRegistry()
	ms, err := telemetry.Serve(ctx, log, fl.MetricsAddr, reg)
	if err != nil {
		return err
	}
	defer func() { _ = ms.Wait() }()

	var backends []allocation.Backend
	var kube *agones.Backend
	for _, b := range fl.Backends {
		switch b {
		case "local":
			f, err := localfleet.Start(ctx, log.With("backend", "local"), fl.Fleet, prometheus.WrapRegistererWith(prometheus.Labels{"fleet": fl.Fleet.Name}, reg))
			if err != nil {
				return fmt.Errorf("local fleet: %w", err)
			}
			defer func() { _ = f.Wait() }()
			backends = append(backends, f)
		case "agones":
			k, err := agones.New(fl.Agones, log)
			if err != nil {
				return err
			}
			kube = k
			backends = append(backends, k)
		default:
			return fmt.Errorf("-backends: unknown backend %q (want local and/or agones)", b)
		}
	}
	if len(backends) == 0 || len(slices.Compact(slices.Sorted(slices.Values(fl.Backends)))) != len(fl.Backends) {
		return fmt.Errorf("-backends %v: name local and/or agones, each once", fl.Backends)
	}
	run := func(ctx context.Context) error {
		d, err := director.Start(ctx, log, fl.Director, reg, backends...)
		if err != nil {
			return err
		}
		return d.Wait()
	}
	if kube != nil && fl.Agones.LeaseName != "" {
		// On Kubernetes only the Lease holder places sessions; followers wait their turn.
		return kube.LeadWith(ctx, log, run)
	}
	return run(ctx)
}
