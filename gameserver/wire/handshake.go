package wire

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
)

// The handshake is Noise's NK pattern built from X25519, HKDF-SHA256 and ChaCha20-Poly1305
// (PROTOCOL.md, "Handshake"): the client knows the server instance's static public key from its
// server token (delivered over the frontend's TLS channel), so
//
//	JOIN:   e_c, and the token sealed under k_join = HKDF(DH(e_c, S))
//	ACCEPT: e_s, and the member id sealed under the session keys = HKDF(DH(e_c, S) ‖ DH(e_c, e_s))
//
// Only the holder of the instance's private key can read a JOIN or answer it; a passive observer
// learns neither the token nor the keys; the server's ephemeral key gives forward secrecy.

const (
	labelJoin    = "kumi/2 join"
	labelSession = "kumi/2 session"
)

// ErrInstance means the JOIN was sealed to another server instance (its tag does not match).
var ErrInstance = errors.New("wire: JOIN sealed to another server instance")

// Instance is a game-server process's X25519 key pair, made at start. Its public key is the
// instance id the director puts in server tokens (claim "ins"), so a restarted process — a new
// key — can neither read nor accept JOINs made from tokens of its previous life.
type Instance struct {
	priv *ecdh.PrivateKey
	pub  [PublicLen]byte
	id   string
}

// NewInstance makes a fresh instance key pair.
func NewInstance() (*Instance, error) {
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("wire: instance key: %w", err)
	}
	in := &Instance{priv: priv}
	copy(in.pub[:], priv.PublicKey().Bytes())
	in.id = base64.RawURLEncoding.EncodeToString(in.pub[:])
	return in, nil
}

// ID is the instance id: the public key, unpadded base64url (43 characters).
func (in *Instance) ID() string { return in.id }

// Tag is the JOIN's instance tag for this instance.
func (in *Instance) Tag() [InstanceLen]byte { return [InstanceLen]byte(in.pub[:InstanceLen]) }

// ParseInstanceID decodes an instance id (a token's "ins" claim) into the server's public key.
func ParseInstanceID(id string) ([PublicLen]byte, error) {
	var pub [PublicLen]byte
	b, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil || len(b) != PublicLen {
		return pub, fmt.Errorf("wire: instance id %q is not a base64url X25519 public key", id)
	}
	copy(pub[:], b)
	return pub, nil
}

func joinKey(es []byte, server, eph []byte) []byte {
	info := labelJoin + string(server) + string(eph)
	k, err := hkdf.Key(sha256.New, es, nil, info, KeyLen)
	if err != nil {
		panic(err) // only for lengths beyond 255 hash blocks
	}
	return k
}

func sessionKeys(es, ee []byte, server, ec, eS []byte) SessionKeys {
	secret := append(append([]byte(nil), es...), ee...)
	info := labelSession + string(server) + string(ec) + string(eS)
	k, err := hkdf.Key(sha256.New, secret, nil, info, 2*KeyLen)
	if err != nil {
		panic(err)
	}
	return SessionKeys(k)
}

// zeroNonce seals the JOIN's token and the ACCEPT's body: each of those keys seals one plaintext
// only (a resent JOIN or ACCEPT is the same bytes), and sealed packets start at sequence 1.
func zeroNonce() []byte { return make([]byte, 12) }

// Initiator is the client's side of one join.
type Initiator struct {
	server [PublicLen]byte
	eph    *ecdh.PrivateKey
	ephPub [PublicLen]byte
	es     []byte
	nonce  [NonceLen]byte
}

// NewInitiator starts a join to the server instance whose id (token claim "ins") is instanceID.
func NewInitiator(instanceID string) (*Initiator, error) {
	pub, err := ParseInstanceID(instanceID)
	if err != nil {
		return nil, err
	}
	spub, err := ecdh.X25519().NewPublicKey(pub[:])
	if err != nil {
		return nil, fmt.Errorf("wire: instance key: %w", err)
	}
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("wire: ephemeral key: %w", err)
	}
	es, err := eph.ECDH(spub)
	if err != nil {
		return nil, fmt.Errorf("wire: X25519: %w", err)
	}
	in := &Initiator{server: pub, eph: eph, es: es}
	copy(in.ephPub[:], eph.PublicKey().Bytes())
	_, _ = rand.Read(in.nonce[:])
	return in, nil
}

// Nonce is the JOIN nonce answers echo.
func (in *Initiator) Nonce() [NonceLen]byte { return in.nonce }

// Join returns the JOIN carrying token, sealed to the server (cookie zero).
func (in *Initiator) Join(token []byte) ([]byte, error) {
	if len(token) < 1 || len(token) > MaxToken {
		return nil, fmt.Errorf("wire: JOIN token is %d bytes, want 1..%d", len(token), MaxToken)
	}
	j := Join{Nonce: in.nonce, Instance: [InstanceLen]byte(in.server[:InstanceLen]), Ephemeral: in.ephPub}
	ad := appendJoinAD(make([]byte, 0, joinFixed+len(token)), j, len(token))
	p := newAEAD(joinKey(in.es, in.server[:], in.ephPub[:])).Seal(ad, zeroNonce(), token, ad)
	var zero [CookieLen]byte
	return append(p, zero[:]...), nil
}

// Accept opens the server's ACCEPT for this join and returns its contents and the member's
// session keys.
func (in *Initiator) Accept(p []byte) (Accept, SessionKeys, error) {
	h, err := ParseAcceptHeader(p)
	if err != nil {
		return Accept{}, SessionKeys{}, err
	}
	if h.Nonce != in.nonce {
		return Accept{}, SessionKeys{}, ErrAuth
	}
	epub, err := ecdh.X25519().NewPublicKey(h.Ephemeral[:])
	if err != nil {
		return Accept{}, SessionKeys{}, ErrAuth
	}
	ee, err := in.eph.ECDH(epub)
	if err != nil {
		return Accept{}, SessionKeys{}, ErrAuth
	}
	keys := sessionKeys(in.es, ee, in.server[:], in.ephPub[:], h.Ephemeral[:])
	ad := p[:len(p)-len(h.Sealed)]
	body, err := newAEAD(keys[KeyLen:]).Open(nil, zeroNonce(), h.Sealed, ad)
	if err != nil {
		return Accept{}, SessionKeys{}, ErrAuth
	}
	a, err := parseAcceptBody(body)
	return a, keys, err
}

// Responder is the server's side of one join, after the JOIN opened.
type Responder struct {
	in   *Instance
	j    Join
	es   []byte
	epub []byte      // the server's ephemeral public key, once Prepare ran
	keys SessionKeys // once Prepare ran
}

// Open checks that j was sealed to this instance and opens its token.
func (in *Instance) Open(j Join) (*Responder, []byte, error) {
	if j.Instance != in.Tag() {
		return nil, nil, ErrInstance
	}
	cpub, err := ecdh.X25519().NewPublicKey(j.Ephemeral[:])
	if err != nil {
		return nil, nil, ErrAuth
	}
	es, err := in.priv.ECDH(cpub)
	if err != nil {
		return nil, nil, ErrAuth // a low-order point
	}
	ad := appendJoinAD(make([]byte, 0, joinAD), j, len(j.Sealed)-TagLen)
	token, err := newAEAD(joinKey(es, in.pub[:], j.Ephemeral[:])).Open(nil, zeroNonce(), j.Sealed, ad)
	if err != nil {
		return nil, nil, ErrAuth
	}
	return &Responder{in: in, j: j, es: es}, token, nil
}

// Prepare does the join's remaining public-key work (the server's ephemeral key and the second
// DH), so that Accept, which needs the member id, only seals; the server calls it before taking
// its membership lock.
func (r *Responder) Prepare() error {
	if r.epub != nil {
		return nil
	}
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("wire: ephemeral key: %w", err)
	}
	cpub, err := ecdh.X25519().NewPublicKey(r.j.Ephemeral[:])
	if err != nil {
		return ErrAuth
	}
	ee, err := eph.ECDH(cpub)
	if err != nil {
		return ErrAuth
	}
	r.epub = eph.PublicKey().Bytes()
	r.keys = sessionKeys(r.es, ee, r.in.pub[:], r.j.Ephemeral[:], r.epub)
	return nil
}

// Accept makes the ACCEPT packet for a and the member's session keys (calling Prepare first if
// the caller did not).
func (r *Responder) Accept(a Accept) ([]byte, SessionKeys, error) {
	if err := r.Prepare(); err != nil {
		return nil, SessionKeys{}, err
	}
	p := make([]byte, 0, AcceptLen)
	p = append(p, Version, byte(TypeAccept))
	p = append(p, r.j.Nonce[:]...)
	p = append(p, r.epub...)
	p = newAEAD(r.keys[KeyLen:]).Seal(p, zeroNonce(), appendAcceptBody(nil, a), p)
	return p, r.keys, nil
}
