// Package controlauth guards kumi's control API (game servers → director) with a shared secret:
// whoever can call MoveSession gets server tokens minted for a session's players, so only the
// game servers may. The secret travels as gRPC metadata "authorization: Bearer <secret>"; on an
// untrusted network put TLS in front as well, since the control API itself is plaintext gRPC.
package controlauth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// MinSecretBytes is the shortest secret accepted: a guessable secret is no guard.
const MinSecretBytes = 16

// ReadSecret reads a secret file (surrounding white space ignored); "" means no file and no secret.
func ReadSecret(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("control secret: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if len(s) < MinSecretBytes {
		return "", fmt.Errorf("control secret %s: %d bytes, want at least %d (kumi token secret --out %s writes one)", path, len(s), MinSecretBytes, path)
	}
	return s, nil
}

// WriteSecret writes a new random secret (32 bytes, hex) to path with mode 0600, so only its
// owner can read it; it refuses to replace an existing file unless force.
func WriteSecret(path string, force bool) error {
	if path == "" {
		return errors.New("control secret: no file given (--out)")
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it crashes the program instead)
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("control secret: %s exists; pass --force to replace it", path)
	}
	if err != nil {
		return fmt.Errorf("control secret: %w", err)
	}
	// An existing file replaced with --force keeps its mode on open, so narrow it explicitly.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("control secret: %w", err)
	}
	_, err = fmt.Fprintln(f, hex.EncodeToString(b))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("control secret: write %s: %w", path, err)
	}
	return nil
}

// UnaryServerInterceptor refuses calls without the secret with Unauthenticated. An empty secret
// accepts every caller.
func UnaryServerInterceptor(secret string) grpc.UnaryServerInterceptor {
	want := []byte("Bearer " + secret)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if secret == "" {
			return handler(ctx, req)
		}
		md, _ := metadata.FromIncomingContext(ctx)
		got := md.Get("authorization")
		if len(got) != 1 || subtle.ConstantTimeCompare([]byte(got[0]), want) != 1 {
			return nil, status.Error(codes.Unauthenticated, "control API: missing or wrong secret; give the game server the director's control secret (-director-secret-file)")
		}
		return handler(ctx, req)
	}
}

// Credentials attach the secret to every call; nil for an empty secret.
func Credentials(secret string) credentials.PerRPCCredentials {
	if secret == "" {
		return nil
	}
	return bearer(secret)
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false: the control API runs inside the cluster network without TLS
// by default; the secret keeps other workloads and players from calling it.
func (bearer) RequireTransportSecurity() bool { return false }
