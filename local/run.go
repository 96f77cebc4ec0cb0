package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/kumi-dev/kumi/internal/tracing"
)

// Run starts the stack, prints where everything listens, runs the demo crowd (unless Players is 0)
// and prints its summary. It returns an error when any player failed, so `kumi local` exits
// non-zero. With Players 0 or ServeOnly it serves until ctx ends.
//
// Without KeyDir the keys (and, by default, the log) go to a new temporary directory that is removed
// on exit, so repeated runs leave nothing behind; a failed run keeps it when the log is in it, so
// the log named in the output can still be read.
func Run(ctx context.Context, log *slog.Logger, cfg Config) (err error) {
	out := cfg.Out
	if out == nil {
		out = os.Stdout
		cfg.Out = out
	}
	if err := cfg.Validate(); err != nil {
		return err // before any directory is made
	}
	if cfg.KeyDir == "" {
		dir, mkErr := os.MkdirTemp("", "kumi-local-")
		if mkErr != nil {
			return fmt.Errorf("local: key dir: %w", mkErr)
		}
		cfg.KeyDir = dir
		defer func() {
			if err != nil && (cfg.LogFile == "" || filepath.Dir(cfg.LogFile) == dir) {
				fmt.Fprintf(out, "kept %s for its log\n", dir)
				return
			}
			if rerr := os.RemoveAll(dir); rerr != nil {
				err = errors.Join(err, fmt.Errorf("local: remove key dir: %w", rerr))
			}
		}()
	}
	if err := os.MkdirAll(cfg.KeyDir, 0o700); err != nil {
		return fmt.Errorf("local: key dir: %w", err)
	}
	if cfg.LogFile == "" {
		cfg.LogFile = filepath.Join(cfg.KeyDir, "kumi.log")
	}
	f, err := os.OpenFile(cfg.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("local: log file: %w", err)
	}
	defer f.Close()
	// Everything at info goes to the file; the terminal keeps the progress lines and warnings.
	// Lines logged with a span's context carry its trace_id (internal/tracing).
	log = slog.New(tracing.LogHandler(slog.NewMultiHandler(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo}), atLeast{log.Handler(), slog.LevelWarn})))
	cfg.GameServerOutput = f
	if cfg.Dedicated.Build != "" {
		return runBuild(ctx, log, cfg, out)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := Start(ctx, log, cfg)
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%w (is another kumi local running? every address is a flag, and 127.0.0.1:0 picks a free port)", err)
	}
	if err != nil {
		return err
	}
	defer func() { cancel(); _ = s.Wait() }()
	s.PrintEndpoints(out)
	fmt.Fprintf(out, "  logs              %s\n", cfg.LogFile)

	if cfg.Players > 0 {
		sum, err := RunCrowd(ctx, log, cfg, s)
		if err != nil {
			return err
		}
		sum.Print(out)
		if sum.Failed > 0 {
			return fmt.Errorf("%d of %d players failed", sum.Failed, sum.Players)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted: %w", ctx.Err())
		}
	}
	if cfg.Players == 0 || cfg.ServeOnly {
		fmt.Fprintln(out, "serving; Ctrl-C stops everything")
		<-ctx.Done()
	}
	return nil
}

// PrintEndpoints says where every component listens and which dev keys it uses.
func (s *Stack) PrintEndpoints(w io.Writer) {
	fmt.Fprintf(w, "kumi local is up (all on this machine):\n")
	core := "open match core "
	if s.OpenMatch == nil {
		core = "open match (ext.)"
	}
	fmt.Fprintf(w, "  %s  frontend %s  backend %s  query %s\n", core, s.OMFrontend, s.OMBackend, s.OMQuery)
	fmt.Fprintf(w, "  match function    %s\n", s.MMF.Addr())
	fmt.Fprintf(w, "  player frontend   gRPC %s  HTTP %s\n", s.Frontend.GRPCAddr(), s.Frontend.HTTPAddr())
	fmt.Fprintf(w, "  director          control %s  admin http://%s/pool (Authorization: Bearer $(cat %s))\n", s.Director.ControlAddr(), s.Director.AdminAddr(), filepath.Join(s.KeyDir, "admin.token"))
	if s.Metrics != nil {
		fmt.Fprintf(w, "  metrics           http://%s/metrics\n", s.Metrics.Addr())
	}
	if s.ConsoleURL != "" {
		fmt.Fprintf(w, "  console: %s (live pool and weights; open to this machine only)\n", s.ConsoleURL)
	}
	fmt.Fprintf(w, "  game servers      local fleet %q of `kumi gameserver` processes (UDP on 127.0.0.1)\n", s.Fleet.Name())
	fmt.Fprintf(w, "  dev keys          %s (player.key.pem signs player tokens: go run ./examples/client -key %s/player.key.pem -frontend %s)\n",
		s.KeyDir, s.KeyDir, s.Frontend.GRPCAddr())
}

// atLeast passes on only records at or above min.
type atLeast struct {
	slog.Handler
	min slog.Level
}

func (h atLeast) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h atLeast) WithAttrs(as []slog.Attr) slog.Handler {
	return atLeast{h.Handler.WithAttrs(as), h.min}
}

func (h atLeast) WithGroup(name string) slog.Handler {
	return atLeast{h.Handler.WithGroup(name), h.min}
}
