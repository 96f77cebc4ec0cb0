package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kumi-dev/kumi/bench/e2e"
	"github.com/kumi-dev/kumi/internal/config"
)

// e2eLocalFlags are the in-process stack's flags `kumi bench e2e -h` shows: the ones that shape
// the measured path. Every other -local-* flag (addresses, crowd settings) is accepted but not
// listed, since the bench sets it itself.
var e2eLocalFlags = map[string]bool{
	"local-capacity": true, "local-allocation-latency": true, "local-servers": true,
	"local-max-servers": true, "local-max-members": true,
}

// e2eUsage prints the flags that matter for the e2e bench.
func e2eUsage(fs *flag.FlagSet) func() {
	return func() {
		w := fs.Output()
		fmt.Fprintln(w, "usage: kumi bench e2e [flags]\n\nSimulated players at a fixed ticket rate through the whole stack; see kumi bench -h.\n\nflags:")
		fs.VisitAll(func(f *flag.Flag) {
			if strings.HasPrefix(f.Name, "local-") && !e2eLocalFlags[f.Name] {
				return
			}
			def := ""
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "0s" && f.DefValue != "false" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(w, "  -%s\n    \t%s%s\n", f.Name, f.Usage, def)
		})
	}
}

// benchE2E is `kumi bench e2e`: simulated players at a fixed ticket rate through the whole stack
// (in process, or a running one), printing a markdown row for BENCHMARKS.md.
func benchE2E(ctx context.Context, term *slog.Logger, args []string) error {
	cfg := e2e.Default()
	fs := flag.NewFlagSet("bench e2e", flag.ContinueOnError)
	if err := config.Bind(fs, "", &cfg); err != nil {
		return err
	}
	out := fs.String("out", "", "directory for e2e.md, the latency histogram e2e.svg and bench.log (empty: a new temporary directory)")
	fs.Usage = e2eUsage(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	dir, log, closeLog, err := benchOutput("e2e", *out, term)
	if err != nil {
		return err
	}
	defer closeLog()
	config.Log(ctx, log, "bench e2e", &cfg)
	cfg.Progress = func(p e2e.Progress) {
		fmt.Fprintf(os.Stderr, "\re2e: %s filed %d, assigned %d, done %d, failed %d   ", p.Elapsed.Round(time.Second), p.Filed, p.Assigned, p.Done, p.Failed)
	}
	res, err := e2e.Run(ctx, log, cfg)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return err
	}
	e2e.Header(os.Stdout)
	res.Row(os.Stdout)
	if err := res.WriteFiles(dir); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "table %s, histogram %s, log %s\n",
		filepath.Join(dir, "e2e.md"), filepath.Join(dir, "e2e.svg"), filepath.Join(dir, "bench.log"))
	if res.Failed > 0 {
		for i, f := range res.Failures {
			if i == 5 {
				break
			}
			fmt.Fprintln(os.Stderr, "failed:", f)
		}
		return fmt.Errorf("%d of %d players failed", res.Failed, res.Tickets)
	}
	return nil
}
