package serverid

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/kumi-dev/kumi/api/control"
)

// writeTokens writes the director's file and moves its modification time forward by step, so a
// rewrite within one file-system timestamp tick is still seen as a change.
func writeTokens(t *testing.T, path string, step int, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mod := time.Now().Add(time.Duration(step) * time.Second)
	if err := os.Chtimes(path, mod, mod); err != nil {
		t.Fatal(err)
	}
}

func TestTokenFile(t *testing.T) {
	tokA, tokB := rand.Text(), rand.Text()
	path := filepath.Join(t.TempDir(), "bootstrap-tokens")
	writeTokens(t, path, 0, "# hand-started servers", "", TokenDigestLine("vm-a", tokA), "  "+TokenDigestLine("vm-b", tokB)+"  ")
	tf, err := NewTokenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name, server, proof string
		ok                  bool
	}{
		{"its own token", "vm-a", tokA, true},
		{"the other's own token", "vm-b", tokB, true},
		{"another server's token", "vm-a", tokB, false},
		{"an unlisted server", "vm-c", tokA, false},
		{"empty proof", "vm-a", "", false},
		{"the digest itself", "vm-a", strings.Fields(TokenDigestLine("vm-a", tokA))[1], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tf.VerifyBootstrap(ctx, tc.server, tc.proof)
			if tc.ok != (err == nil) {
				t.Fatalf("VerifyBootstrap(%s): %v, want ok %v", tc.server, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrNotProven) {
				t.Fatalf("refusal does not wrap ErrNotProven: %v", err)
			}
		})
	}

	// Revoking vm-a and adding vm-c take effect without a restart.
	tokC := rand.Text()
	writeTokens(t, path, 1, TokenDigestLine("vm-b", tokB), TokenDigestLine("vm-c", tokC))
	if err := tf.VerifyBootstrap(ctx, "vm-a", tokA); err == nil {
		t.Fatal("revoked vm-a still registers")
	}
	if err := tf.VerifyBootstrap(ctx, "vm-c", tokC); err != nil {
		t.Fatalf("added vm-c: %v", err)
	}
	// A broken edit keeps the last good list, and refusals say the change was not applied.
	writeTokens(t, path, 2, TokenDigestLine("vm-b", tokB), "vm-d "+tokC)
	if err := tf.VerifyBootstrap(ctx, "vm-c", tokC); err != nil {
		t.Fatalf("vm-c refused after a broken edit: %v", err)
	}
	err = tf.VerifyBootstrap(ctx, "vm-d", tokC)
	if err == nil || !strings.Contains(err.Error(), "not applied") || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("refusal after a broken edit: %v, want one naming the unapplied change and line 2", err)
	}
	// A deleted file keeps the last good list too (an editor replacing it), and says so.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := tf.VerifyBootstrap(ctx, "vm-b", tokB); err != nil {
		t.Fatalf("vm-b refused while the file is away: %v", err)
	}
}

func TestParseTokenDigests(t *testing.T) {
	good := TokenDigestLine("vm-a", "t")
	for _, tc := range []struct {
		name, file, want string
	}{
		{"token instead of digest", "vm-a t0ps3cret", "line 1: server \"vm-a\": digest must be sha256:"},
		{"short digest", "# c\nvm-a sha256:abcd", "line 2: server \"vm-a\": digest must be sha256:"},
		{"no digest", "vm-a", "line 1: want \"<server> sha256:<hex>\", got 1 fields"},
		{"three fields", "vm-a sha256:00 extra", "got 3 fields"},
		{"listed twice", good + "\n" + good, "line 2: server \"vm-a\" listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTokenDigests([]byte(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseTokenDigests: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := NewTokenFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("a missing file was accepted")
	}
}

// TestTokenFileOverGRPC: a hand-started game server registers on a real gRPC control API with the
// token file its operator gave it (FileProof, as -director-bootstrap-file reads it) and reports as
// itself; the same token does not make it another server, and once its line is deleted it cannot
// register again.
func TestTokenFileOverGRPC(t *testing.T) {
	dir := t.TempDir()
	tok := rand.Text()
	serverTok := filepath.Join(dir, "vm-a.token")
	if err := os.WriteFile(serverTok, []byte(tok+"\n"), 0o600); err != nil { // a trailing newline, as echo writes it
		t.Fatal(err)
	}
	list := filepath.Join(dir, "bootstrap-tokens")
	writeTokens(t, list, 0, TokenDigestLine("vm-a", tok))
	tf, err := NewTokenFile(list)
	if err != nil {
		t.Fatal(err)
	}
	is, err := NewIssuer(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	reg := &Registrar{Issuer: is, Verifier: Verifiers{&Secrets{}, tf}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	rec := &recorder{seen: make(chan Identity, 8)}
	srv := grpc.NewServer(grpc.UnaryInterceptor(reg.UnaryServerInterceptor()))
	control.RegisterDirectorServer(srv, rec)
	control.RegisterIdentityServer(srv, reg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx := context.Background()

	c := NewClient(conn, FileProof(serverTok))
	if _, err := c.Report(ctx, &control.LoadReport{Server: "vm-a", Instance: "ins-1"}); err != nil {
		t.Fatalf("report with the operator's token: %v", err)
	}
	if got := <-rec.seen; got != (Identity{Server: "vm-a", Instance: "ins-1"}) {
		t.Fatalf("handler saw %+v", got)
	}
	if _, err := c.Report(ctx, &control.LoadReport{Server: "vm-b", Instance: "ins-1"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("report as vm-b with vm-a's token: %v, want Unauthenticated", err)
	}
	// Revoked: a new instance (a restarted process) must register again and cannot.
	writeTokens(t, list, 1, "# vm-a revoked")
	if _, err := c.Report(ctx, &control.LoadReport{Server: "vm-a", Instance: "ins-2"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("report after revocation: %v, want Unauthenticated", err)
	}
	select {
	case id := <-rec.seen:
		t.Fatalf("a refused call reached the handler as %+v", id)
	default:
	}
}
