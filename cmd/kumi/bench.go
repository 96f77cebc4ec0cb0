package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kumi-dev/kumi/bench/spiky"
	"github.com/kumi-dev/kumi/director"
	"github.com/kumi-dev/kumi/internal/config"
)

// benchKinds is every `kumi bench` kind with the one paragraph `kumi bench -h` prints for it.
var benchKinds = []struct {
	name, about string
	run         func(context.Context, *slog.Logger, []string) error
}{
	{"e2e", "simulated players at a fixed ticket rate through the whole stack (started in process, or a\n" +
		"running frontend with -frontend and -key): ticket→assignment and ticket→first relayed frame\n" +
		"quantiles as a markdown row, plus a latency histogram (e2e.svg). -tickets-only leaves UDP out;\n" +
		"-product-pid reports the running stack's CPU per ticket apart from the generator's.", benchE2E},
	{"spiky", "replays a spiky demand trace (seeded: the same seed gives the same report) through the\n" +
		"director's pool logic on a simulated clock, against Agones' high-density Counters pattern\n" +
		"(packed allocation, FleetAutoscaler Counter buffer, no moves) and one session per server; writes spiky.md\n" +
		"(with the pool settings used next to the director's defaults) and a plot, spiky.svg.", benchSpiky},
}

// runBench is `kumi bench <kind>`: load generators whose output is a markdown table for BENCHMARKS.md.
func runBench(ctx context.Context, log *slog.Logger, args []string) error {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		benchUsage(os.Stdout)
		return flag.ErrHelp
	}
	for _, k := range benchKinds {
		if len(args) > 0 && args[0] == k.name {
			return k.run(ctx, log, args[1:])
		}
	}
	benchUsage(os.Stderr)
	return errors.New("usage: kumi bench e2e|spiky [flags]")
}

func benchUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: kumi bench <kind> [flags]   (kumi bench <kind> -h lists its flags)")
	fmt.Fprintln(w, "\nEach bench prints a markdown table to stdout, writes its files and its log (bench.log) into")
	fmt.Fprintln(w, "-out (default: a new temporary directory, named at the end) and shows one progress line.")
	for _, k := range benchKinds {
		fmt.Fprintf(w, "\n  %s\n    %s\n", k.name, strings.ReplaceAll(k.about, "\n", "\n    "))
	}
}

// benchOutput creates the bench's output directory (a new temporary one when dir is empty) and its
// log file there; the returned logger writes to the file, and warnings also to the terminal's log.
func benchOutput(kind, dir string, term *slog.Logger) (string, *slog.Logger, func(), error) {
	if dir == "" {
		d, err := os.MkdirTemp("", "kumi-bench-"+kind+"-")
		if err != nil {
			return "", nil, nil, err
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, "bench.log"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return "", nil, nil, err
	}
	log := slog.New(teeHandler{slog.NewTextHandler(f, &slog.HandlerOptions{Level: logLevel()}), term.Handler()})
	return dir, log, func() { _ = f.Close() }, nil
}

// teeHandler sends every record to file and warnings and errors also to term.
type teeHandler struct{ file, term slog.Handler }

func (h teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.file.Enabled(ctx, l) || (l >= slog.LevelWarn && h.term.Enabled(ctx, l))
}

func (h teeHandler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if h.file.Enabled(ctx, r.Level) {
		err = h.file.Handle(ctx, r.Clone())
	}
	if r.Level >= slog.LevelWarn && h.term.Enabled(ctx, r.Level) {
		err = errors.Join(err, h.term.Handle(ctx, r))
	}
	return err
}

func (h teeHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return teeHandler{h.file.WithAttrs(a), h.term.WithAttrs(a)}
}

func (h teeHandler) WithGroup(n string) slog.Handler {
	return teeHandler{h.file.WithGroup(n), h.term.WithGroup(n)}
}

// benchSpiky replays a spiky demand trace through the director's pool logic, the Agones Counters
// pattern and the one-session-per-server baseline, prints the comparison and writes it with a plot to -out.
func benchSpiky(ctx context.Context, term *slog.Logger, args []string) error {
	cfg := spiky.Default()
	fs := flag.NewFlagSet("bench spiky", flag.ContinueOnError)
	if err := config.Bind(fs, "", &cfg); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	dir, log, closeLog, err := benchOutput("spiky", cfg.Out, term)
	if err != nil {
		return err
	}
	defer closeLog()
	config.Log(ctx, log, "bench spiky", &cfg)
	cfg.Progress = func(policy string, at time.Duration) {
		fmt.Fprintf(os.Stderr, "\rspiky: %-28s simulated %s of %s", policy, at.Round(time.Minute), cfg.Duration)
	}
	res, err := spiky.Run(ctx, cfg)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return err
	}
	log.Info("replayed", "shared_wall", res.Shared.Wall, "agones_wall", res.Agones.Wall, "baseline_wall", res.Baseline.Wall)
	defaults := director.Default().Pool
	spiky.Markdown(os.Stdout, cfg, defaults, res)
	if err := spiky.WriteFiles(dir, cfg, defaults, res); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "report %s, plot %s, log %s\n",
		filepath.Join(dir, "spiky.md"), filepath.Join(dir, "spiky.svg"), filepath.Join(dir, "bench.log"))
	return nil
}
