package wire

import (
	"crypto/cipher"
	"encoding/binary"

	"golang.org/x/crypto/chacha20poly1305"
)

// SessionKeys is a member's key material from the handshake: the client→server key, then the
// server→client key.
type SessionKeys [2 * KeyLen]byte

// Key seals and opens one member's packets with ChaCha20-Poly1305: one key per direction, the
// nonce is the packet's sequence number, the clear header is the additional data, the body is
// encrypted. A Key is safe for concurrent use.
type Key struct {
	aead [2]cipher.AEAD // by Direction
	// macOnly leaves bodies in clear and authenticates header and body (protocol v1's DATA
	// sealing). Only NewV1Key sets it: see there.
	macOnly bool
}

// NewKey returns the sealer for a member's session keys.
func NewKey(raw SessionKeys) *Key {
	return &Key{aead: [2]cipher.AEAD{newAEAD(raw[:KeyLen]), newAEAD(raw[KeyLen:])}}
}

// NewV1Key returns a sealer that does what protocol v1 did to DATA: authenticate, not encrypt.
// No server or client speaks v1; it exists so the relay benchmark (gameserver/bench_test.go) can
// measure what v2's encryption costs against v1 in the same run.
func NewV1Key(raw SessionKeys) *Key {
	k := NewKey(raw)
	k.macOnly = true
	return k
}

func newAEAD(k []byte) cipher.AEAD {
	aead, err := chacha20poly1305.New(k)
	if err != nil {
		// Only a wrong key length fails, and k has the right length by construction.
		panic(err)
	}
	return aead
}

// Scratch is per-goroutine space for a nonce. The AEAD is behind an interface, so a nonce on the
// stack would escape and cost an allocation per packet; hot paths pass a Scratch they own, other
// callers pass nil.
type Scratch [chacha20poly1305.NonceSize]byte

func nonce(s *Scratch, seq uint64) []byte {
	if s == nil {
		s = new(Scratch)
	}
	*s = Scratch{}
	binary.BigEndian.PutUint64(s[4:], seq)
	return s[:]
}

// Seal appends a sealed packet (header, encrypted body, tag) to dst. dst must not overlap body.
func (k *Key) Seal(dst []byte, dir Direction, h Header, body []byte) []byte {
	return k.SealWith(nil, dst, dir, h, body)
}

// SealWith is Seal using s for the nonce.
func (k *Key) SealWith(s *Scratch, dst []byte, dir Direction, h Header, body []byte) []byte {
	start := len(dst)
	dst = append(dst, Version, byte(h.Type))
	dst = binary.BigEndian.AppendUint32(dst, h.Member)
	dst = binary.BigEndian.AppendUint64(dst, h.Seq)
	if k.macOnly {
		dst = append(dst, body...)
		return k.aead[dir].Seal(dst, nonce(s, h.Seq), nil, dst[start:])
	}
	return k.aead[dir].Seal(dst, nonce(s, h.Seq), body, dst[start:])
}

// Open checks p's tag, decrypts its body in place and returns its header and body (aliasing p).
// It does not check the sequence number against replays: use a Window. A packet that fails to
// open may have had its body overwritten.
func (k *Key) Open(s *Scratch, dir Direction, p []byte) (Header, []byte, error) {
	h, err := ParseHeader(p)
	if err != nil {
		return h, nil, err
	}
	body, err := k.OpenParsed(s, dir, h, p)
	return h, body, err
}

// OpenParsed is Open for a caller that already has p's header from ParseHeader(p) (the relay
// parses it to find the member's key): it saves parsing it twice per datagram.
func (k *Key) OpenParsed(s *Scratch, dir Direction, h Header, p []byte) ([]byte, error) {
	if len(p) < Overhead {
		return nil, ErrShort
	}
	if k.macOnly {
		ad := p[:len(p)-TagLen]
		if _, err := k.aead[dir].Open(nil, nonce(s, h.Seq), p[len(p)-TagLen:], ad); err != nil {
			return nil, ErrAuth
		}
		return p[HeaderLen : len(p)-TagLen], nil
	}
	body, err := k.aead[dir].Open(p[HeaderLen:HeaderLen], nonce(s, h.Seq), p[HeaderLen:], p[:HeaderLen])
	if err != nil {
		return nil, ErrAuth
	}
	return body, nil
}
