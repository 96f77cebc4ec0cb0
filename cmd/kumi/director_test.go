package main

import (
	"context"
	"flag"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/director"
	"github.com/kumi-dev/kumi/internal/config"
	"github.com/kumi-dev/kumi/internal/serverid"
)

// A director that cannot start returns its error at once: the local fleet and the metrics server
// it started first stop with it instead of keeping the command waiting on them.
func TestDirectorStartErrorReturns(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no token key", nil, "token-key"},
		{"unknown backend", []string{"-backends=local,bogus"}, "unknown backend"},
		{"bootstrap tokens, not digests", []string{"-bootstrap-tokens-file=" + writeFile(t, dir, "tokens", "vm-a t0ps3cret\n")}, "-bootstrap-tokens-file"},
		{"bootstrap tokens file missing", []string{"-bootstrap-tokens-file=" + filepath.Join(dir, "missing")}, "-bootstrap-tokens-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{
				"-metrics-addr=127.0.0.1:0", "-control-addr=127.0.0.1:0", "-admin-addr=",
				"-lock-file=" + filepath.Join(dir, tc.name+".lock"),
				"-fleet-buffer-size=0", "-fleet-command=/bin/true",
			}, tc.args...)
			errc := make(chan error, 1)
			go func() { errc <- runDirector(context.Background(), slog.New(slog.DiscardHandler), args) }()
			select {
			case err := <-errc:
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("kumi director %v: %v, want an error containing %q", args, err, tc.want)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("kumi director %v did not return its start error within 20 s", args)
			}
		})
	}
}

// -control-addr with port 0 and the local backend: the port is fixed before the fleet's game
// servers are told where to report, and the director is handed the listener bound on it.
func TestWireFleetFixesControlPort(t *testing.T) {
	fl := directorFlags{Director: director.Default()}
	fl.Director.ControlAddr = "127.0.0.1:0"
	if err := wireFleet(&fl); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fl.Director.ControlListener.Close(); os.Remove(fl.secretFile) })
	if got := fl.Director.ControlListener.Addr().String(); got != fl.Director.ControlAddr {
		t.Fatalf("listener on %s, control address %s", got, fl.Director.ControlAddr)
	}
	_, port, err := net.SplitHostPort(fl.Director.ControlAddr)
	if err != nil || port == "0" {
		t.Fatalf("control address %q: port still 0 (%v)", fl.Director.ControlAddr, err)
	}
	if want := "-director=" + fl.Director.ControlAddr; !slices.Contains(fl.Fleet.Args, want) {
		t.Fatalf("fleet args %v, want %s", fl.Fleet.Args, want)
	}
}

// -fleet-args that already set a flag are respected, and a flag is recognised by its whole name:
// -director-secret-file does not count as -director.
func TestWireFleetRespectsFleetArgs(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantDir  bool // wireFleet adds -director
		wantSecr bool // wireFleet adds -director-secret-file
	}{
		{"nothing set", nil, true, true},
		{"secret set", []string{"-director-secret-file=/s"}, true, false},
		{"director set", []string{"--director=10.0.0.1:1"}, false, true},
	}
	for _, tc := range tests {
		fl := directorFlags{Director: director.Default()}
		fl.Director.ControlAddr = "127.0.0.1:0"
		fl.Fleet.Args = slices.Clone(tc.args)
		if err := wireFleet(&fl); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if l := fl.Director.ControlListener; l != nil {
				l.Close()
			}
			os.Remove(fl.secretFile)
		})
		count := func(prefix string) int {
			n := 0
			for _, a := range fl.Fleet.Args {
				if strings.HasPrefix(strings.TrimLeft(a, "-"), prefix) {
					n++
				}
			}
			return n
		}
		if got := slices.Contains(fl.Fleet.Args, "-director="+fl.Director.ControlAddr); got != tc.wantDir {
			t.Errorf("%s: -director added = %v, want %v (args %v)", tc.name, got, tc.wantDir, fl.Fleet.Args)
		}
		if got := count("director-secret-file=") == 1 && (tc.wantSecr || slices.Contains(tc.args, "-director-secret-file=/s")); !got {
			t.Errorf("%s: want exactly one -director-secret-file (args %v)", tc.name, fl.Fleet.Args)
		}
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// -bootstrap-tokens-file puts a verifier of the operator's tokens next to the backends': a
// hand-started server registers with its own token, under its own name only.
func TestBootstrapTokensFlag(t *testing.T) {
	dir := t.TempDir()
	fl := directorFlags{Director: director.Default()}
	fs := flag.NewFlagSet("director", flag.ContinueOnError)
	if err := config.Bind(fs, "", &fl); err != nil {
		t.Fatal(err)
	}
	list := writeFile(t, dir, "tokens", serverid.TokenDigestLine("vm-a", "token-of-vm-a")+"\n")
	if err := fs.Parse([]string{"-bootstrap-tokens-file=" + list}); err != nil {
		t.Fatal(err)
	}
	if err := addBootstrapTokens(&fl); err != nil {
		t.Fatal(err)
	}
	v := serverid.Verifiers(fl.Director.Bootstrap)
	if err := v.VerifyBootstrap(context.Background(), "vm-a", "token-of-vm-a"); err != nil {
		t.Fatalf("vm-a with its token: %v", err)
	}
	if err := v.VerifyBootstrap(context.Background(), "vm-b", "token-of-vm-a"); err == nil {
		t.Fatal("vm-a's token registered vm-b")
	}
}
