package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ServerTokenType is the JWT "typ" header of server tokens (RFC 8725 §3.11 explicit typing), so a
// server token is never accepted as a player token and a player token never opens a game server.
const ServerTokenType = "kumi-server+jwt"

// PlayerAudience is the audience of dev player tokens from PlayerToken and the frontend's default.
const PlayerAudience = "kumi"

// DefaultServerTokenTTL is the server token lifetime the issue asks for: long enough to connect,
// short enough that a leaked token is soon useless.
const DefaultServerTokenTTL = 60 * time.Second

// ServerClaims are the claims of a server token: one player, one session, one game server, once.
type ServerClaims struct {
	PlayerID  string // JWT sub
	SessionID string // claim "sid"
	Server    string // JWT aud: the game server's name
	// Instance is claim "ins": the id of the game-server process life the token is for (its
	// instance public key, gameserver/PROTOCOL.md). A restarted server has a new instance and
	// refuses tokens minted for its previous life; clients seal their JOIN to this key.
	Instance string
	// TraceParent is claim "tp": the W3C traceparent of the director's placement span for this
	// player (internal/tracing), so the game server's JOIN span joins the player's trace. Empty
	// when tracing is off; a game server ignores a malformed one.
	TraceParent string
	ID          string    // JWT jti: unique; game servers admit a token once
	IssuedAt    time.Time // JWT iat
	NotBefore   time.Time // JWT nbf
	ExpiresAt   time.Time // JWT exp
}

// PlayerClaims are the claims kumi reads from a player token.
type PlayerClaims struct {
	PlayerID  string    // JWT sub
	Issuer    string    // JWT iss
	Audience  []string  // JWT aud
	ID        string    // JWT jti (optional)
	IssuedAt  time.Time // JWT iat
	NotBefore time.Time // JWT nbf
	ExpiresAt time.Time // JWT exp
	// Claims are the identity provider's other claims that the verifier was asked for
	// (VerifierConfig.Claims), decoded from JSON (string, float64, bool, []any, map[string]any),
	// e.g. "groups": ["guild-7"]; SignPlayer writes every entry.
	Claims map[string]any
}

// jwtClaims is the wire form of both token kinds.
type jwtClaims struct {
	jwt.RegisteredClaims
	SID   string         `json:"sid,omitempty"`
	Ins   string         `json:"ins,omitempty"`
	Tp    string         `json:"tp,omitempty"`
	Extra map[string]any `json:"-"` // other claims: written all, read only those in want
	want  []string
}

// Signer signs tokens with one private key under one kid and issuer. It is safe for concurrent use.
type Signer struct {
	key    crypto.Signer
	pub    PublicKey
	method jwt.SigningMethod
	issuer string
	now    func() time.Time
}

// NewSigner signs with key: an ed25519.PrivateKey (EdDSA), an *ecdsa.PrivateKey on P-256 (ES256)
// or an *rsa.PrivateKey of at least 2048 bits (RS256). An empty kid becomes the key's RFC 7638
// thumbprint.
func NewSigner(key crypto.Signer, kid, issuer string) (*Signer, error) {
	if key == nil {
		return nil, errors.New("token: signer needs a private key")
	}
	switch k := key.(type) {
	case ed25519.PrivateKey, *ecdsa.PrivateKey, *rsa.PrivateKey:
	case *ed25519.PrivateKey:
		key = *k
	default:
		return nil, fmt.Errorf("token: private key type %T not supported; use Ed25519, ECDSA P-256 or RSA", key)
	}
	pub, err := NewPublicKey(kid, key.Public())
	if err != nil {
		return nil, err
	}
	return &Signer{key: key, pub: pub, method: methodFor(pub.Alg), issuer: issuer, now: time.Now}, nil
}

// LoadSigner reads a PEM private key file (as written by `kumi token keygen`).
func LoadSigner(pemFile, kid, issuer string) (*Signer, error) {
	key, err := LoadPrivateKeyPEM(pemFile)
	if err != nil {
		return nil, err
	}
	return NewSigner(key, kid, issuer)
}

// GenerateSigner makes a signer with a fresh Ed25519 key and a random kid, for local and dev use
// where nothing outlives the process.
func GenerateSigner(issuer string) (*Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("token: generate key: %w", err)
	}
	return NewSigner(priv, "dev-"+rand.Text()[:10], issuer)
}

// KID is the key id put in every token's header.
func (s *Signer) KID() string { return s.pub.KID }

// Issuer is the "iss" of every token.
func (s *Signer) Issuer() string { return s.issuer }

// Alg is the signing algorithm (EdDSA, ES256 or RS256).
func (s *Signer) Alg() string { return s.pub.Alg }

// PublicKey is the verification key of this signer, with its kid and algorithm.
func (s *Signer) PublicKey() PublicKey { return s.pub }

// PrivateKey is the signing key (for writing it out with MarshalPrivateKeyPEM).
func (s *Signer) PrivateKey() crypto.Signer { return s.key }

// JWKS is a JWKS document holding this signer's public key.
func (s *Signer) JWKS() ([]byte, error) { return MarshalJWKS(s.pub) }

// ServerToken signs a server token. ID gets a random value and IssuedAt/NotBefore the current
// time when zero; PlayerID, SessionID, Server and ExpiresAt are required. Times are carried at
// one-second precision (JWT NumericDate), rounded down.
func (s *Signer) ServerToken(c ServerClaims) (string, error) {
	raw, _, err := s.IssueServerToken(c)
	return raw, err
}

// IssueServerToken is ServerToken that also returns the claims as signed (defaults filled in,
// times truncated to the second), e.g. to put the exact expiry in an assignment.
func (s *Signer) IssueServerToken(c ServerClaims) (string, ServerClaims, error) {
	switch {
	case c.PlayerID == "":
		return "", c, errors.New("token: server token needs PlayerID")
	case c.SessionID == "":
		return "", c, errors.New("token: server token needs SessionID")
	case c.Server == "":
		return "", c, errors.New("token: server token needs Server (the audience)")
	case c.ExpiresAt.IsZero():
		return "", c, errors.New("token: server token needs ExpiresAt")
	}
	now := s.now()
	if c.ID == "" {
		c.ID = rand.Text()
	}
	if c.IssuedAt.IsZero() {
		c.IssuedAt = now
	}
	if c.NotBefore.IsZero() {
		c.NotBefore = c.IssuedAt
	}
	c.IssuedAt, c.NotBefore, c.ExpiresAt = sec(c.IssuedAt), sec(c.NotBefore), sec(c.ExpiresAt)
	claims := jwtClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.issuer,
			Subject:   c.PlayerID,
			Audience:  jwt.ClaimStrings{c.Server},
			ExpiresAt: jwt.NewNumericDate(c.ExpiresAt),
			NotBefore: jwt.NewNumericDate(c.NotBefore),
			IssuedAt:  jwt.NewNumericDate(c.IssuedAt),
			ID:        c.ID,
		},
		SID: c.SessionID,
		Ins: c.Instance,
		Tp:  c.TraceParent,
	}
	raw, err := s.sign(claims, ServerTokenType)
	return raw, c, err
}

// PlayerToken signs a dev player token for playerID, audience PlayerAudience, valid for ttl, with
// the given extra claims (e.g. "groups"; nil for none).
func (s *Signer) PlayerToken(playerID string, ttl time.Duration, claims ...map[string]any) (string, error) {
	if ttl <= 0 {
		return "", fmt.Errorf("token: player token ttl %s must be positive", ttl)
	}
	now := s.now()
	c := PlayerClaims{PlayerID: playerID, Audience: []string{PlayerAudience},
		IssuedAt: now, NotBefore: now, ExpiresAt: now.Add(ttl)}
	for _, m := range claims {
		for k, v := range m {
			if c.Claims == nil {
				c.Claims = map[string]any{}
			}
			c.Claims[k] = v
		}
	}
	return s.SignPlayer(c)
}

// SignPlayer signs a player token with exactly the given claims (Issuer defaults to the signer's);
// zero times are left out. For tests and tools standing in for an identity provider.
func (s *Signer) SignPlayer(c PlayerClaims) (string, error) {
	if c.PlayerID == "" {
		return "", errors.New("token: player token needs PlayerID")
	}
	if c.Issuer == "" {
		c.Issuer = s.issuer
	}
	if c.ID == "" {
		c.ID = rand.Text()
	}
	claims := jwtClaims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer: c.Issuer, Subject: c.PlayerID, Audience: c.Audience, ID: c.ID,
		ExpiresAt: date(c.ExpiresAt), NotBefore: date(c.NotBefore), IssuedAt: date(c.IssuedAt),
	}, Extra: c.Claims}
	return s.sign(claims, "JWT")
}

func (s *Signer) sign(claims jwtClaims, typ string) (string, error) {
	t := jwt.NewWithClaims(s.method, claims)
	t.Header["kid"] = s.pub.KID
	t.Header["typ"] = typ
	raw, err := t.SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	return raw, nil
}

// Verifier verifies tokens signed by this signer (its public key, its issuer). audience is the
// player-token audience ("" checks none); server tokens are checked against the server named at
// each VerifyServerToken call.
func (s *Signer) Verifier(audience string, leeway time.Duration) *Verifier {
	cfg := DefaultVerifierConfig()
	cfg.Issuer, cfg.Audience, cfg.AnyAudience, cfg.Leeway = s.issuer, audience, audience == "", leeway
	cfg.AnyIssuer = s.issuer == ""
	cfg.Keys = []PublicKey{s.pub}
	v, err := newStatic(cfg)
	if err != nil {
		// s.pub was checked by NewSigner, so building a static verifier from it cannot fail.
		panic(err)
	}
	return v
}

func sec(t time.Time) time.Time { return t.Truncate(time.Second).UTC() }

func date(t time.Time) *jwt.NumericDate {
	if t.IsZero() {
		return nil
	}
	return jwt.NewNumericDate(t)
}
