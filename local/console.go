package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/kumi-dev/kumi/console"
)

// startConsole serves the live console (console/) over the director's state on cfg.ConsoleAddr,
// which must be a loopback address: this console has no login. Reaching a loopback port takes a
// process on this machine, kumi local is a single-user development stack, and its admin token is
// in a file the same user reads anyway; the console also answers only to loopback Host names, so a
// web page elsewhere cannot reach it by DNS rebinding, and its weight control refuses cross-origin
// requests (console/console.go). The director's own console, behind its admin token, is on the
// admin listener under /console/ as everywhere else.
func (s *Stack) startConsole(ctx context.Context, log *slog.Logger, addr string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("local: console-addr %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("local: console-addr %q: want a loopback address (127.0.0.1:PORT): kumi local's console has no login", addr)
	}
	cfg := console.Default()
	cfg.Title = "kumi local"
	c, err := console.New(log, s.Director.ConsoleSource(), cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("local: console-addr %s: %w", addr, err)
	}
	s.ConsoleURL = "http://" + ln.Addr().String() + "/"
	srv := &http.Server{Handler: c, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	srv.RegisterOnShutdown(c.Close)
	served := make(chan error, 1)
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			served <- fmt.Errorf("local: console: %w", err)
			return
		}
		served <- nil
	}()
	stopped := make(chan struct{})
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
		close(stopped)
	}()
	s.waits = append(s.waits, func() error { <-stopped; return <-served })
	log.Info("console serving", "url", s.ConsoleURL)
	return nil
}
