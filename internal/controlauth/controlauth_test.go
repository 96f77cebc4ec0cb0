package controlauth

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kumi-dev/kumi/api/control"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

type director struct {
	control.UnimplementedDirectorServer
}

func (director) Report(context.Context, *control.LoadReport) (*control.ReportReply, error) {
	return &control.ReportReply{}, nil
}

func TestSecretGuardsControlAPI(t *testing.T) {
	const secret = "0123456789abcdef0123"
	srv := grpc.NewServer(grpc.UnaryInterceptor(UnaryServerInterceptor(secret)))
	control.RegisterDirectorServer(srv, director{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	tests := []struct {
		name   string
		secret string
		want   codes.Code
	}{
		{"right secret", secret, codes.OK},
		{"wrong secret", "0123456789abcdef0124", codes.Unauthenticated},
		{"prefix of the secret", secret[:16], codes.Unauthenticated},
		{"no secret", "", codes.Unauthenticated},
	}
	for _, tc := range tests {
		opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
		if c := Credentials(tc.secret); c != nil {
			opts = append(opts, grpc.WithPerRPCCredentials(c))
		}
		conn, err := grpc.NewClient(l.Addr().String(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		_, err = control.NewDirectorClient(conn).Report(context.Background(), &control.LoadReport{Server: "gs"})
		conn.Close()
		if got := status.Code(err); got != tc.want {
			t.Errorf("%s: code %v (%v), want %v", tc.name, got, err, tc.want)
		}
		if tc.want == codes.Unauthenticated && !strings.Contains(err.Error(), "-director-secret-file") {
			t.Errorf("%s: error %q does not say what to set", tc.name, err)
		}
	}
}

func TestOpenWithoutSecret(t *testing.T) {
	called := false
	_, err := UnaryServerInterceptor("")(context.Background(), nil, &grpc.UnaryServerInfo{}, func(context.Context, any) (any, error) {
		called = true
		return nil, nil
	})
	if err != nil || !called {
		t.Fatalf("empty secret must accept: %v %v", err, called)
	}
}

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, path, want, err string
	}{
		{"none", "", "", ""},
		{"trimmed", write("ok", "  0123456789abcdef0123\n"), "0123456789abcdef0123", ""},
		{"short", write("short", "abc\n"), "", "want at least 16"},
		{"missing", filepath.Join(dir, "nope"), "", "no such file"},
	}
	for _, tc := range tests {
		got, err := ReadSecret(tc.path)
		if got != tc.want || (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: %q, %v", tc.name, got, err)
		}
	}
}

func TestWriteSecret(t *testing.T) {
	p := filepath.Join(t.TempDir(), "control.secret")
	if err := WriteSecret(p, false); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	s, err := ReadSecret(p)
	if err != nil || len(s) != 64 {
		t.Fatalf("read back %q, %v: want 64 hex characters", s, err)
	}
	if err := WriteSecret(p, false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("second write: %v, want a refusal naming --force", err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteSecret(p, true); err != nil {
		t.Fatal(err)
	}
	if s2, _ := ReadSecret(p); s2 == s {
		t.Error("--force kept the old secret")
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after --force %v, want 0600", fi.Mode().Perm())
	}
}
