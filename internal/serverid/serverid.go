// Package serverid gives each game server an identity on the director's control API
// (api/control), so that one compromised game server can act only as itself.
//
// A game server calls Identity.Register with a bootstrap proof that only it holds — on Kubernetes
// a projected ServiceAccount token bound to its pod (TokenReview), in a local fleet a secret the
// fleet minted for that one process (Secrets) — and gets back a short-lived credential the
// director signs (EdDSA JWT: subject = server name, "ins" = instance id). Every Director call
// carries it as gRPC metadata "kumi-server-credential"; the director's interceptor verifies it on
// every call and the handlers take the caller's server from it, never from the request body.
//
// Why a signed bearer credential rather than an mTLS client certificate: `kumi local` serves the
// control API as plaintext gRPC on loopback with no certificates to hand out, and a credential
// checked on every call gives the same binding (server + instance, minutes of life) there and on
// a cluster; on a network, TLS on the control link (the director's -tls-* and the game server's
// -director-tls-* flags) keeps it from being read on the path. SECURITY.md has the argument.
package serverid

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MetadataKey is the gRPC metadata key carrying the credential on Director calls.
const MetadataKey = "kumi-server-credential"

// Audience of the credential: it is good for the control API only.
const audience = "kumi-control"

// DefaultTTL is the life of a credential: short, so a stolen one is soon useless; the game server
// renews at two thirds of it.
const DefaultTTL = 10 * time.Minute

// Identity is who a verified credential says the caller is.
type Identity struct {
	Server   string // GameServer name
	Instance string // the process's instance id (LoadReport.instance)
}

// Verifier checks a bootstrap proof: nil only when proof shows the caller is server.
type Verifier interface {
	VerifyBootstrap(ctx context.Context, server, proof string) error
}

// ErrNotProven wraps every refusal of a bootstrap proof.
var ErrNotProven = errors.New("bootstrap proof does not prove this server")

// Verifiers accepts a proof any one of them accepts (a director with a local fleet and Agones).
type Verifiers []Verifier

// VerifyBootstrap implements Verifier.
func (vs Verifiers) VerifyBootstrap(ctx context.Context, server, proof string) error {
	if len(vs) == 0 {
		return fmt.Errorf("%w: the director has no bootstrap verifier for any backend", ErrNotProven)
	}
	var errs []error
	for _, v := range vs {
		err := v.VerifyBootstrap(ctx, server, proof)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Issuer signs and verifies credentials with a key of its own (made at start: a restarted
// director's game servers register again when their next call is refused).
type Issuer struct {
	key    ed25519.PrivateKey
	pub    ed25519.PublicKey
	ttl    time.Duration
	issuer string
}

// NewIssuer returns an Issuer with a fresh key; ttl ≤ 0 means DefaultTTL.
func NewIssuer(ttl time.Duration) (*Issuer, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("serverid: key: %w", err)
	}
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return &Issuer{key: key, pub: pub, ttl: ttl, issuer: "kumi-director"}, nil
}

type claims struct {
	jwt.RegisteredClaims
	Instance string `json:"ins"`
}

// Issue returns a credential for server and instance valid from now for the issuer's TTL.
func (is *Issuer) Issue(id Identity, now time.Time) (string, time.Time, error) {
	if id.Server == "" || id.Instance == "" {
		return "", time.Time{}, errors.New("serverid: a credential needs a server name and an instance id")
	}
	exp := now.Add(is.ttl)
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{Issuer: is.issuer, Subject: id.Server, Audience: jwt.ClaimStrings{audience},
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)), ExpiresAt: jwt.NewNumericDate(exp)},
		Instance: id.Instance,
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SignedString(is.key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("serverid: sign: %w", err)
	}
	return s, exp, nil
}

// Verify checks a credential's signature, audience, issuer and expiry at now.
func (is *Issuer) Verify(cred string, now time.Time) (Identity, error) {
	var c claims
	_, err := jwt.ParseWithClaims(cred, &c, func(*jwt.Token) (any, error) { return is.pub, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}), jwt.WithAudience(audience), jwt.WithIssuer(is.issuer),
		jwt.WithExpirationRequired(), jwt.WithTimeFunc(func() time.Time { return now }))
	if err != nil {
		return Identity{}, fmt.Errorf("serverid: credential: %w", err)
	}
	if c.Subject == "" || c.Instance == "" {
		return Identity{}, errors.New("serverid: credential names no server or instance")
	}
	return Identity{Server: c.Subject, Instance: c.Instance}, nil
}
