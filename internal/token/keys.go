package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"

	"github.com/golang-jwt/jwt/v5"
)

// Algorithms kumi signs and accepts; each key type allows exactly one.
const (
	AlgEdDSA = "EdDSA"
	AlgES256 = "ES256"
	AlgRS256 = "RS256"
)

// minRSABits refuses RSA keys too short to be safe (NIST SP 800-131A).
const minRSABits = 2048

// PublicKey is one verification key: its id, its key and the one algorithm it may verify.
type PublicKey struct {
	KID string
	Key crypto.PublicKey // ed25519.PublicKey, *ecdsa.PublicKey (P-256) or *rsa.PublicKey
	Alg string           // AlgEdDSA, AlgES256 or AlgRS256; must fit Key's type
}

// algFor returns the single algorithm allowed for a public key, or an error naming what is
// unsupported about it.
func algFor(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return "", fmt.Errorf("token: Ed25519 public key has %d bytes, want %d", len(k), ed25519.PublicKeySize)
		}
		return AlgEdDSA, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("token: ECDSA curve %s not supported; use P-256 (ES256)", k.Curve.Params().Name)
		}
		return AlgES256, nil
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return "", fmt.Errorf("token: RSA key has %d bits, want at least %d", k.N.BitLen(), minRSABits)
		}
		return AlgRS256, nil
	default:
		return "", fmt.Errorf("token: key type %T not supported; use Ed25519, ECDSA P-256 or RSA", pub)
	}
}

func methodFor(alg string) jwt.SigningMethod {
	switch alg {
	case AlgEdDSA:
		return jwt.SigningMethodEdDSA
	case AlgES256:
		return jwt.SigningMethodES256
	case AlgRS256:
		return jwt.SigningMethodRS256
	}
	return nil
}

// NewPublicKey checks pub and returns it with its algorithm. An empty kid becomes the key's
// RFC 7638 thumbprint, the same kid `kumi token keygen` writes.
func NewPublicKey(kid string, pub crypto.PublicKey) (PublicKey, error) {
	alg, err := algFor(pub)
	if err != nil {
		return PublicKey{}, err
	}
	if kid == "" {
		if kid, err = Thumbprint(pub); err != nil {
			return PublicKey{}, err
		}
	}
	return PublicKey{KID: kid, Key: pub, Alg: alg}, nil
}

// LoadPrivateKeyPEM reads a PKCS#8, SEC 1 ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY") PEM file.
func LoadPrivateKeyPEM(file string) (crypto.Signer, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("token: read private key: %w", err)
	}
	k, err := ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, file)
	}
	return k, nil
}

// ParsePrivateKeyPEM parses the first PEM block of data as a private key.
func ParsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("token: no PEM block found; want a PEM private key (-----BEGIN PRIVATE KEY-----)")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("token: PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("token: parse %s: %w", block.Type, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("token: private key type %T cannot sign", key)
	}
	return s, nil
}

// MarshalPrivateKeyPEM encodes key as a PKCS#8 PEM block.
func MarshalPrivateKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("token: marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePublicKeyPEM parses a PKIX ("PUBLIC KEY") or PKCS#1 ("RSA PUBLIC KEY") PEM block; a
// certificate's key is accepted too.
func ParsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("token: no PEM block found; want a PEM public key (-----BEGIN PUBLIC KEY-----)")
	}
	switch block.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("token: parse PUBLIC KEY: %w", err)
		}
		return k, nil
	case "RSA PUBLIC KEY":
		k, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("token: parse RSA PUBLIC KEY: %w", err)
		}
		return k, nil
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("token: parse CERTIFICATE: %w", err)
		}
		return c.PublicKey, nil
	}
	return nil, fmt.Errorf("token: PEM block %q is not a public key", block.Type)
}

// MarshalPublicKeyPEM encodes pub as a PKIX PEM block.
func MarshalPublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("token: marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// JWK is one JSON Web Key (RFC 7517) of the kinds kumi uses.
type JWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid,omitempty"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
}

// JWKSet is a JWKS document.
type JWKSet struct {
	Keys []JWK `json:"keys"`
}

var b64 = base64.RawURLEncoding

func b64Int(i *big.Int) string { return b64.EncodeToString(i.Bytes()) }

// fixed encodes an EC coordinate at the curve's full width, as RFC 7518 §6.2.1.2 requires.
func fixed(i *big.Int, size int) string {
	buf := make([]byte, size)
	return b64.EncodeToString(i.FillBytes(buf))
}

// ToJWK returns k as a JWK with "use": "sig" and its algorithm.
func ToJWK(k PublicKey) (JWK, error) {
	j, err := jwkOf(k.Key)
	if err != nil {
		return JWK{}, err
	}
	j.Kid, j.Use, j.Alg = k.KID, "sig", k.Alg
	return j, nil
}

// jwkOf holds only the members RFC 7638 hashes for the thumbprint.
func jwkOf(pub crypto.PublicKey) (JWK, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return JWK{Kty: "OKP", Crv: "Ed25519", X: b64.EncodeToString(k)}, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return JWK{}, fmt.Errorf("token: ECDSA curve %s not supported; use P-256", k.Curve.Params().Name)
		}
		ecdh, err := k.ECDH()
		if err != nil {
			return JWK{}, fmt.Errorf("token: ECDSA key: %w", err)
		}
		raw := ecdh.Bytes() // 0x04 || X || Y
		x, y := new(big.Int).SetBytes(raw[1:33]), new(big.Int).SetBytes(raw[33:])
		return JWK{Kty: "EC", Crv: "P-256", X: fixed(x, 32), Y: fixed(y, 32)}, nil
	case *rsa.PublicKey:
		return JWK{Kty: "RSA", N: b64Int(k.N), E: b64Int(big.NewInt(int64(k.E)))}, nil
	}
	return JWK{}, fmt.Errorf("token: key type %T not supported", pub)
}

// Thumbprint is the RFC 7638 SHA-256 JWK thumbprint of pub, base64url: kumi's default kid.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	j, err := jwkOf(pub)
	if err != nil {
		return "", err
	}
	// RFC 7638 §3.2: required members only, lexicographic order, no whitespace.
	var canon string
	switch j.Kty {
	case "OKP":
		canon = fmt.Sprintf(`{"crv":%q,"kty":"OKP","x":%q}`, j.Crv, j.X)
	case "EC":
		canon = fmt.Sprintf(`{"crv":%q,"kty":"EC","x":%q,"y":%q}`, j.Crv, j.X, j.Y)
	case "RSA":
		canon = fmt.Sprintf(`{"e":%q,"kty":"RSA","n":%q}`, j.E, j.N)
	}
	sum := sha256.Sum256([]byte(canon))
	return b64.EncodeToString(sum[:]), nil
}

// MarshalJWKS encodes keys as a JWKS document.
func MarshalJWKS(keys ...PublicKey) ([]byte, error) {
	set := JWKSet{Keys: make([]JWK, 0, len(keys))}
	for _, k := range keys {
		j, err := ToJWK(k)
		if err != nil {
			return nil, err
		}
		set.Keys = append(set.Keys, j)
	}
	return json.MarshalIndent(set, "", "  ")
}

// ParseJWKS decodes a JWKS document into the verification keys kumi can use. Keys with "use" other
// than "sig" are left out silently; every other key kumi cannot use (an RSA-PSS or HMAC key, a curve
// it does not support, a broken point, a kid that appears twice) is left out too and reported in
// skipped, one error naming its position and kid: identity providers publish mixed sets, and one
// odd key must not disable the others. err is set only when data is not a JWKS document at all.
func ParseJWKS(data []byte) (keys []PublicKey, skipped []error, err error) {
	var set JWKSet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, nil, fmt.Errorf("token: JWKS is not valid JSON: %w", err)
	}
	keys = make([]PublicKey, 0, len(set.Keys))
	count := make(map[string]int, len(set.Keys))
	for i, j := range set.Keys {
		if j.Use != "" && j.Use != "sig" {
			continue
		}
		k, err := fromJWK(j)
		if err != nil {
			skipped = append(skipped, fmt.Errorf("token: JWKS key %d (kid %q): %w", i, j.Kid, err))
			continue
		}
		count[k.KID]++
		keys = append(keys, k)
	}
	// A kid named twice is ambiguous (which key signed?): neither copy is trusted.
	out := keys[:0]
	for _, k := range keys {
		if count[k.KID] > 1 {
			skipped = append(skipped, fmt.Errorf("token: JWKS kid %q appears %d times; no copy is used", k.KID, count[k.KID]))
			continue
		}
		out = append(out, k)
	}
	return out, skipped, nil
}

func decodeB64(field, s string) ([]byte, error) {
	b, err := b64.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("member %q is not base64url: %w", field, err)
	}
	return b, nil
}

func fromJWK(j JWK) (PublicKey, error) {
	var pub crypto.PublicKey
	switch j.Kty {
	case "OKP":
		if j.Crv != "Ed25519" {
			return PublicKey{}, fmt.Errorf("OKP curve %q not supported; use Ed25519", j.Crv)
		}
		x, err := decodeB64("x", j.X)
		if err != nil {
			return PublicKey{}, err
		}
		if len(x) != ed25519.PublicKeySize {
			return PublicKey{}, fmt.Errorf("Ed25519 x has %d bytes, want %d", len(x), ed25519.PublicKeySize)
		}
		pub = ed25519.PublicKey(x)
	case "EC":
		if j.Crv != "P-256" {
			return PublicKey{}, fmt.Errorf("EC curve %q not supported; use P-256", j.Crv)
		}
		x, err := decodeB64("x", j.X)
		if err != nil {
			return PublicKey{}, err
		}
		y, err := decodeB64("y", j.Y)
		if err != nil {
			return PublicKey{}, err
		}
		if len(x) != 32 || len(y) != 32 {
			return PublicKey{}, errors.New("P-256 x and y must be 32 bytes each")
		}
		// ecdsa.ParseUncompressedPublicKey checks the point is on the curve.
		k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return PublicKey{}, fmt.Errorf("P-256 point invalid: %w", err)
		}
		pub = k
	case "RSA":
		n, err := decodeB64("n", j.N)
		if err != nil {
			return PublicKey{}, err
		}
		e, err := decodeB64("e", j.E)
		if err != nil {
			return PublicKey{}, err
		}
		eInt := new(big.Int).SetBytes(e)
		if len(n) == 0 || !eInt.IsInt64() || eInt.Int64() < 3 || eInt.Int64() > 1<<31-1 {
			return PublicKey{}, errors.New("RSA n or e invalid")
		}
		pub = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(eInt.Int64())}
	default:
		return PublicKey{}, fmt.Errorf("kty %q not supported; use OKP (Ed25519), EC (P-256) or RSA", j.Kty)
	}
	k, err := NewPublicKey(j.Kid, pub)
	if err != nil {
		return PublicKey{}, err
	}
	// The JWKS may pin the algorithm; it must be the one the key type allows.
	if j.Alg != "" && j.Alg != k.Alg {
		return PublicKey{}, fmt.Errorf("alg %q not allowed for a %s key; kumi allows only %s", j.Alg, j.Kty, k.Alg)
	}
	return k, nil
}
