package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// KeygenConfig is `kumi token keygen`: a key pair written as PEM files and a JWKS.
type KeygenConfig struct {
	Alg    string `flag:"alg" help:"key algorithm: EdDSA (Ed25519), ES256 (ECDSA P-256) or RS256 (RSA 2048)"`
	Dir    string `flag:"dir" help:"directory to write token.key (private, mode 0600), token.pub and jwks.json into"`
	KID    string `flag:"kid" help:"key id; empty uses the key's RFC 7638 thumbprint"`
	Force  bool   `flag:"force" help:"overwrite existing files"`
	Issuer string `flag:"issuer" help:"issuer the key will sign as (only printed, as a reminder for the verifier config)"`
}

// DefaultKeygenConfig writes an Ed25519 key into the current directory.
func DefaultKeygenConfig() KeygenConfig {
	return KeygenConfig{Alg: AlgEdDSA, Dir: ".", Issuer: DefaultIssuer}
}

// Key file names inside KeygenConfig.Dir.
const (
	PrivateKeyFile = "token.key"
	PublicKeyFile  = "token.pub"
	JWKSFile       = "jwks.json"
)

// GenerateKey makes a fresh private key for alg.
func GenerateKey(alg string) (crypto.Signer, error) {
	switch alg {
	case AlgEdDSA:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	case AlgES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case AlgRS256:
		return rsa.GenerateKey(rand.Reader, minRSABits)
	}
	return nil, fmt.Errorf("token: alg %q not supported; use EdDSA, ES256 or RS256", alg)
}

// Keygen generates a key and writes the private key, public key and JWKS files; it refuses to
// overwrite unless cfg.Force. It returns the signer of the new key.
func Keygen(cfg KeygenConfig) (*Signer, []string, error) {
	key, err := GenerateKey(cfg.Alg)
	if err != nil {
		return nil, nil, err
	}
	s, err := NewSigner(key, cfg.KID, cfg.Issuer)
	if err != nil {
		return nil, nil, err
	}
	priv, err := MarshalPrivateKeyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	pub, err := MarshalPublicKeyPEM(key.Public())
	if err != nil {
		return nil, nil, err
	}
	jwks, err := s.JWKS()
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("token: %w", err)
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{{PrivateKeyFile, priv, 0o600}, {PublicKeyFile, pub, 0o644}, {JWKSFile, append(jwks, '\n'), 0o644}}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if cfg.Force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	var written []string
	for _, f := range files {
		p := filepath.Join(cfg.Dir, f.name)
		fh, err := os.OpenFile(p, flags, f.mode)
		if errors.Is(err, os.ErrExist) {
			return nil, written, fmt.Errorf("token: %s exists; pass --force to replace it", p)
		}
		if err != nil {
			return nil, written, fmt.Errorf("token: %w", err)
		}
		_, werr := fh.Write(f.data)
		if cerr := fh.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, written, fmt.Errorf("token: write %s: %w", p, werr)
		}
		written = append(written, p)
	}
	return s, written, nil
}

// IssueConfig is `kumi token issue`: a dev player token, or a server token when Server is set.
type IssueConfig struct {
	Key     string        `flag:"key" help:"PEM private key file (from kumi token keygen)"`
	KID     string        `flag:"kid" help:"key id; empty uses the key's RFC 7638 thumbprint (what keygen's JWKS holds)"`
	Issuer  string        `flag:"issuer" help:"token issuer (iss)"`
	Player  string        `flag:"player" help:"player id (sub)"`
	TTL     time.Duration `flag:"ttl" help:"token lifetime"`
	Server  string        `flag:"server" help:"issue a server token for this game server (aud) instead of a player token"`
	Session string        `flag:"session" help:"session id (sid) of a server token"`
	// Instance is what the game server logs as "instance" at start (a new one at every start).
	Instance string   `flag:"instance" help:"game-server instance (ins) of a server token: the \"instance\" a kumi gameserver logs at start, which clients seal their JOIN to; omit for a wrapped dedicated server (kumi gameserver wrap)"`
	Groups   []string `flag:"groups" help:"player token claim \"groups\": the chat groups the player may join (the frontend's chat_group attribute comes from it)"`
	Claims   string   `flag:"claims" help:"more player token claims as one JSON object, e.g. {\"party\":\"p-7\",\"skill\":1450}"`
}

// DefaultIssueConfig issues a one-hour player token with ./token.key.
func DefaultIssueConfig() IssueConfig {
	return IssueConfig{Key: PrivateKeyFile, Issuer: DefaultIssuer, TTL: time.Hour}
}

// Issue signs the token IssueConfig describes.
func Issue(cfg IssueConfig) (string, error) {
	if cfg.Player == "" {
		return "", errors.New("token: --player is required")
	}
	if cfg.TTL <= 0 {
		return "", fmt.Errorf("token: --ttl %s must be positive", cfg.TTL)
	}
	if _, err := os.Stat(cfg.Key); errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("token: key file %s not found; run `kumi token keygen` first or pass --key", cfg.Key)
	}
	s, err := LoadSigner(cfg.Key, cfg.KID, cfg.Issuer)
	if err != nil {
		return "", err
	}
	if cfg.Server != "" {
		// No --instance is a token for a wrapped dedicated server (kumi gameserver wrap), which
		// does not use it; kumi's Go client refuses such a token for a relay game server, naming
		// the missing claim (token.UnverifiedServerInstance).
		if cfg.Session == "" {
			return "", errors.New("token: a server token needs --session")
		}
		return s.ServerToken(ServerClaims{PlayerID: cfg.Player, SessionID: cfg.Session, Server: cfg.Server,
			Instance: cfg.Instance, ExpiresAt: time.Now().Add(cfg.TTL)})
	}
	claims := map[string]any{}
	if cfg.Claims != "" {
		if err := json.Unmarshal([]byte(cfg.Claims), &claims); err != nil {
			return "", fmt.Errorf("token: --claims must be one JSON object: %w", err)
		}
	}
	if len(cfg.Groups) > 0 {
		claims["groups"] = cfg.Groups
	}
	return s.PlayerToken(cfg.Player, cfg.TTL, claims)
}
