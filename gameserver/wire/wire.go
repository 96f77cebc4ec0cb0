package wire

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// Version is the protocol version in byte 0 of every datagram.
const Version = 1

// Type is byte 1 of every datagram.
type Type uint8

// Packet types. JOIN, ACCEPT and REFUSE travel before a member has a key and are not
// authenticated; every other type is authenticated with the member's key.
const (
	TypeJoin      Type = 0x01 // client → server: token
	TypeAccept    Type = 0x02 // server → client: member id and key
	TypeRefuse    Type = 0x03 // server → client: reason
	TypeData      Type = 0x10 // both ways: opaque payload relayed to the other members
	TypeKeepalive Type = 0x11 // both ways: empty; the server answers each one
	TypeLeave     Type = 0x12 // client → server: the member leaves (also acknowledges MOVE/RECONNECT)
	TypeMove      Type = 0x13 // server → client: rejoin elsewhere with a new token
	TypeReconnect Type = 0x14 // server → client: the session ends here; get a new assignment
)

func (t Type) String() string {
	switch t {
	case TypeJoin:
		return "JOIN"
	case TypeAccept:
		return "ACCEPT"
	case TypeRefuse:
		return "REFUSE"
	case TypeData:
		return "DATA"
	case TypeKeepalive:
		return "KEEPALIVE"
	case TypeLeave:
		return "LEAVE"
	case TypeMove:
		return "MOVE"
	case TypeReconnect:
		return "RECONNECT"
	}
	return fmt.Sprintf("Type(0x%02x)", uint8(t))
}

// Authenticated reports whether packets of type t carry a member header and tag.
func (t Type) Authenticated() bool { return t >= TypeData && t <= TypeReconnect }

// Sizes of the fixed parts.
const (
	NonceLen  = 8 // JOIN nonce echoed in ACCEPT/REFUSE
	KeyLen    = chacha20poly1305.KeySize
	HeaderLen = 14 // version, type, member id (4), sequence (8)
	TagLen    = chacha20poly1305.Overhead
	// Overhead is what an authenticated packet adds to its body.
	Overhead = HeaderLen + TagLen
	// MaxToken bounds the token in a JOIN; server tokens are a few hundred bytes.
	MaxToken = 2048
	// MaxJoinLen is the largest valid JOIN datagram.
	MaxJoinLen = 2 + NonceLen + 2 + MaxToken
	// MaxText bounds the reason text of REFUSE and RECONNECT.
	MaxText = 200
	// MaxAddr bounds the address in MOVE.
	MaxAddr = 255
)

// Errors of the parsers; each names why a datagram was dropped.
var (
	ErrShort    = errors.New("wire: packet truncated")
	ErrVersion  = errors.New("wire: unsupported protocol version")
	ErrType     = errors.New("wire: unknown packet type")
	ErrTooLarge = errors.New("wire: field too large")
	ErrTrailing = errors.New("wire: trailing bytes")
	ErrAuth     = errors.New("wire: authentication failed")
	ErrReplay   = errors.New("wire: replayed or too old sequence number")
)

// PeekType returns the version and type of a datagram without further checks.
func PeekType(p []byte) (Type, error) {
	if len(p) < 2 {
		return 0, ErrShort
	}
	if p[0] != Version {
		return 0, ErrVersion
	}
	return Type(p[1]), nil
}

// Join asks to enter a session. Nonce is random per JOIN attempt series and echoed back so the
// client can tell the answer to its own JOIN; Token is the server token (JWT).
type Join struct {
	Nonce [NonceLen]byte
	Token []byte
}

// AppendJoin appends j's encoding: version, type, nonce, token length (u16), token.
func AppendJoin(dst []byte, j Join) ([]byte, error) {
	if len(j.Token) == 0 || len(j.Token) > MaxToken {
		return dst, fmt.Errorf("wire: JOIN token is %d bytes, want 1..%d", len(j.Token), MaxToken)
	}
	dst = append(dst, Version, byte(TypeJoin))
	dst = append(dst, j.Nonce[:]...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(j.Token)))
	return append(dst, j.Token...), nil
}

// ParseJoin decodes a JOIN. The returned Token aliases p.
func ParseJoin(p []byte) (Join, error) {
	var j Join
	if err := expect(p, TypeJoin, 2+NonceLen+2); err != nil {
		return j, err
	}
	copy(j.Nonce[:], p[2:])
	n := int(binary.BigEndian.Uint16(p[2+NonceLen:]))
	rest := p[2+NonceLen+2:]
	switch {
	case n == 0 || n > MaxToken:
		return j, ErrTooLarge
	case len(rest) < n:
		return j, ErrShort
	case len(rest) > n:
		return j, ErrTrailing
	}
	j.Token = rest
	return j, nil
}

// Accept admits a member. Key authenticates every later packet both ways; Keepalive is how often
// the client should send KEEPALIVE when it has nothing else to send; Timeout is the silence after
// which the server drops the member; MaxPayload bounds DATA payloads.
type Accept struct {
	Nonce      [NonceLen]byte
	MemberID   uint32
	Key        [KeyLen]byte
	Keepalive  time.Duration
	Timeout    time.Duration
	MaxPayload uint16
}

const acceptLen = 2 + NonceLen + 4 + KeyLen + 4 + 4 + 2

// AppendAccept appends a's encoding: version, type, nonce, member id (u32), key (32), keepalive ms
// (u32), timeout ms (u32), max payload (u16).
func AppendAccept(dst []byte, a Accept) []byte {
	dst = append(dst, Version, byte(TypeAccept))
	dst = append(dst, a.Nonce[:]...)
	dst = binary.BigEndian.AppendUint32(dst, a.MemberID)
	dst = append(dst, a.Key[:]...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(a.Keepalive/time.Millisecond))
	dst = binary.BigEndian.AppendUint32(dst, uint32(a.Timeout/time.Millisecond))
	return binary.BigEndian.AppendUint16(dst, a.MaxPayload)
}

// ParseAccept decodes an ACCEPT.
func ParseAccept(p []byte) (Accept, error) {
	var a Accept
	if err := expect(p, TypeAccept, acceptLen); err != nil {
		return a, err
	}
	if len(p) != acceptLen {
		return a, ErrTrailing
	}
	p = p[2:]
	copy(a.Nonce[:], p)
	p = p[NonceLen:]
	a.MemberID = binary.BigEndian.Uint32(p)
	copy(a.Key[:], p[4:])
	p = p[4+KeyLen:]
	a.Keepalive = time.Duration(binary.BigEndian.Uint32(p)) * time.Millisecond
	a.Timeout = time.Duration(binary.BigEndian.Uint32(p[4:])) * time.Millisecond
	a.MaxPayload = binary.BigEndian.Uint16(p[8:])
	return a, nil
}

// RefuseCode says why a JOIN was refused.
type RefuseCode uint8

// Refuse codes. Clients may retry Busy and Full later with a fresh token; the others need a new
// assignment (or, for Version, a newer client).
const (
	RefuseBadToken    RefuseCode = 1  // signature, issuer, claims or format wrong
	RefuseExpired     RefuseCode = 2  // exp passed or nbf not reached
	RefuseWrongServer RefuseCode = 3  // token's audience is another server
	RefuseReplayed    RefuseCode = 4  // token already used
	RefuseFull        RefuseCode = 5  // server at its session capacity
	RefuseSessionFull RefuseCode = 6  // session at its member limit
	RefuseDraining    RefuseCode = 7  // server draining: admits nobody
	RefuseBusy        RefuseCode = 8  // admission rate limit or backlog
	RefuseVersion     RefuseCode = 9  // protocol version not supported
	RefuseMalformed   RefuseCode = 10 // JOIN could not be parsed
)

func (c RefuseCode) String() string {
	switch c {
	case RefuseBadToken:
		return "bad_token"
	case RefuseExpired:
		return "expired"
	case RefuseWrongServer:
		return "wrong_server"
	case RefuseReplayed:
		return "replayed"
	case RefuseFull:
		return "full"
	case RefuseSessionFull:
		return "session_full"
	case RefuseDraining:
		return "draining"
	case RefuseBusy:
		return "busy"
	case RefuseVersion:
		return "version"
	case RefuseMalformed:
		return "malformed"
	}
	return fmt.Sprintf("refuse_%d", uint8(c))
}

// Refuse answers a JOIN that was not admitted.
type Refuse struct {
	Nonce [NonceLen]byte
	Code  RefuseCode
	Text  string
}

// AppendRefuse appends r's encoding: version, type, nonce, code (u8), text length (u8), text
// (truncated to MaxText bytes).
func AppendRefuse(dst []byte, r Refuse) []byte {
	text := clip(r.Text)
	dst = append(dst, Version, byte(TypeRefuse))
	dst = append(dst, r.Nonce[:]...)
	dst = append(dst, byte(r.Code), byte(len(text)))
	return append(dst, text...)
}

// ParseRefuse decodes a REFUSE.
func ParseRefuse(p []byte) (Refuse, error) {
	var r Refuse
	if err := expect(p, TypeRefuse, 2+NonceLen+2); err != nil {
		return r, err
	}
	copy(r.Nonce[:], p[2:])
	r.Code = RefuseCode(p[2+NonceLen])
	text, err := lenPrefixed8(p[2+NonceLen+1:], MaxText)
	if err != nil {
		return r, err
	}
	r.Text = string(text)
	return r, nil
}

// Direction separates the two directions' nonce spaces under one member key.
type Direction uint8

const (
	ToServer Direction = 0
	ToClient Direction = 1
)

// Header is the clear header of an authenticated packet. Member is the sender's member id on
// packets to the server and the originating member on DATA to a client (0 for server messages).
type Header struct {
	Type   Type
	Member uint32
	Seq    uint64
}

// ParseHeader decodes the header of an authenticated packet without checking its tag, so the
// receiver can find the member's key.
func ParseHeader(p []byte) (Header, error) {
	if len(p) < 2 {
		return Header{}, ErrShort
	}
	if p[0] != Version {
		return Header{}, ErrVersion
	}
	t := Type(p[1])
	if !t.Authenticated() {
		return Header{}, ErrType
	}
	if len(p) < Overhead {
		return Header{}, ErrShort
	}
	return Header{Type: t, Member: binary.BigEndian.Uint32(p[2:]), Seq: binary.BigEndian.Uint64(p[6:])}, nil
}

// Key authenticates packets of one member with ChaCha20-Poly1305 used as a MAC: the header and
// body are the additional data, the plaintext is empty, the nonce is direction ‖ sequence number.
// Bodies are authenticated, not encrypted (see PROTOCOL.md, threat model). A Key is safe for
// concurrent use.
type Key struct {
	aead cipher.AEAD
}

// NewKey returns the authenticator for raw.
func NewKey(raw [KeyLen]byte) *Key {
	aead, err := chacha20poly1305.New(raw[:])
	if err != nil {
		// Only a wrong key length fails, and raw has the right length by type.
		panic(err)
	}
	return &Key{aead: aead}
}

// Scratch is per-goroutine space for a nonce. The AEAD is behind an interface, so a nonce on the
// stack would escape and cost an allocation per packet; hot paths pass a Scratch they own, other
// callers pass nil.
type Scratch [chacha20poly1305.NonceSize]byte

func nonce(s *Scratch, dir Direction, seq uint64) []byte {
	if s == nil {
		s = new(Scratch)
	}
	*s = Scratch{}
	s[0] = byte(dir)
	binary.BigEndian.PutUint64(s[4:], seq)
	return s[:]
}

// Seal appends an authenticated packet (header, body, tag) to dst. dst must not overlap body.
func (k *Key) Seal(dst []byte, dir Direction, h Header, body []byte) []byte {
	return k.SealWith(nil, dst, dir, h, body)
}

// SealWith is Seal using s for the nonce.
func (k *Key) SealWith(s *Scratch, dst []byte, dir Direction, h Header, body []byte) []byte {
	start := len(dst)
	dst = append(dst, Version, byte(h.Type))
	dst = binary.BigEndian.AppendUint32(dst, h.Member)
	dst = binary.BigEndian.AppendUint64(dst, h.Seq)
	dst = append(dst, body...)
	return k.aead.Seal(dst, nonce(s, dir, h.Seq), nil, dst[start:])
}

// SealInPlace authenticates p[:len(p)-TagLen], whose header is already written, writing the tag into
// the last TagLen bytes of p. It avoids copying the body when relaying.
func (k *Key) SealInPlace(s *Scratch, dir Direction, p []byte) {
	body := p[:len(p)-TagLen]
	k.aead.Seal(body[len(body):len(body)], nonce(s, dir, binary.BigEndian.Uint64(p[6:])), nil, body)
}

// Open checks p's tag and returns its header and body (aliasing p). It does not check the
// sequence number against replays: use a Window.
func (k *Key) Open(s *Scratch, dir Direction, p []byte) (Header, []byte, error) {
	h, err := ParseHeader(p)
	if err != nil {
		return h, nil, err
	}
	ad := p[:len(p)-TagLen]
	// With an empty ciphertext Open only verifies the tag; it writes nothing to dst.
	if _, err := k.aead.Open(nil, nonce(s, dir, h.Seq), p[len(p)-TagLen:], ad); err != nil {
		return h, nil, ErrAuth
	}
	return h, p[HeaderLen : len(p)-TagLen], nil
}

// Move tells a member to rejoin its session at Addr with Token.
type Move struct {
	Addr  string
	Token string
}

// AppendMove appends a MOVE body: address length (u8), address, token length (u16), token.
func AppendMove(dst []byte, m Move) ([]byte, error) {
	if len(m.Addr) == 0 || len(m.Addr) > MaxAddr {
		return dst, fmt.Errorf("wire: MOVE address is %d bytes, want 1..%d", len(m.Addr), MaxAddr)
	}
	if len(m.Token) == 0 || len(m.Token) > MaxToken {
		return dst, fmt.Errorf("wire: MOVE token is %d bytes, want 1..%d", len(m.Token), MaxToken)
	}
	dst = append(dst, byte(len(m.Addr)))
	dst = append(dst, m.Addr...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(m.Token)))
	return append(dst, m.Token...), nil
}

// ParseMove decodes a MOVE body.
func ParseMove(b []byte) (Move, error) {
	if len(b) < 1 {
		return Move{}, ErrShort
	}
	n := int(b[0])
	if n == 0 {
		return Move{}, ErrShort
	}
	if len(b) < 1+n+2 {
		return Move{}, ErrShort
	}
	addr := b[1 : 1+n]
	b = b[1+n:]
	tn := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	switch {
	case tn == 0 || tn > MaxToken:
		return Move{}, ErrTooLarge
	case len(b) < tn:
		return Move{}, ErrShort
	case len(b) > tn:
		return Move{}, ErrTrailing
	}
	return Move{Addr: string(addr), Token: string(b)}, nil
}

// ReconnectCode says why the server ended a member's stay.
type ReconnectCode uint8

const (
	ReconnectDrain    ReconnectCode = 1 // server draining and no other server could take the session
	ReconnectTimeout  ReconnectCode = 2 // the member was silent too long
	ReconnectShutdown ReconnectCode = 3 // server stopping
	ReconnectReplaced ReconnectCode = 4 // the same player joined the session again
)

func (c ReconnectCode) String() string {
	switch c {
	case ReconnectDrain:
		return "drain"
	case ReconnectTimeout:
		return "timeout"
	case ReconnectShutdown:
		return "shutdown"
	case ReconnectReplaced:
		return "replaced"
	}
	return fmt.Sprintf("reconnect_%d", uint8(c))
}

// Reconnect tells a member its session ended here and it should ask for a new assignment.
type Reconnect struct {
	Code ReconnectCode
	Text string
}

// AppendReconnect appends a RECONNECT body: code (u8), text length (u8), text (≤ MaxText).
func AppendReconnect(dst []byte, r Reconnect) []byte {
	text := clip(r.Text)
	dst = append(dst, byte(r.Code), byte(len(text)))
	return append(dst, text...)
}

// ParseReconnect decodes a RECONNECT body.
func ParseReconnect(b []byte) (Reconnect, error) {
	if len(b) < 2 {
		return Reconnect{}, ErrShort
	}
	text, err := lenPrefixed8(b[1:], MaxText)
	if err != nil {
		return Reconnect{}, err
	}
	return Reconnect{Code: ReconnectCode(b[0]), Text: string(text)}, nil
}

// Window rejects replayed sequence numbers: it accepts a number once, and only if it is newer than
// the highest seen or among the 64 before it (reordering tolerance), like IPsec/WireGuard.
// The zero Window accepts any sequence number ≥ 1.
type Window struct {
	max  uint64
	bits uint64 // bit i set: max-i seen
}

// Check reports whether seq would be accepted, without recording it (call after authentication
// succeeds: Accept).
func (w *Window) Check(seq uint64) bool {
	if seq == 0 {
		return false
	}
	if seq > w.max {
		return true
	}
	d := w.max - seq
	return d < 64 && w.bits&(1<<d) == 0
}

// Accept records seq and reports whether it was fresh.
func (w *Window) Accept(seq uint64) bool {
	if !w.Check(seq) {
		return false
	}
	if seq > w.max {
		shift := seq - w.max
		if shift >= 64 {
			w.bits = 0
		} else {
			w.bits <<= shift
		}
		w.bits |= 1
		w.max = seq
		return true
	}
	w.bits |= 1 << (w.max - seq)
	return true
}

func expect(p []byte, t Type, min int) error {
	if len(p) < 2 {
		return ErrShort
	}
	if p[0] != Version {
		return ErrVersion
	}
	if Type(p[1]) != t {
		return ErrType
	}
	if len(p) < min {
		return ErrShort
	}
	return nil
}

func lenPrefixed8(b []byte, max int) ([]byte, error) {
	if len(b) < 1 {
		return nil, ErrShort
	}
	n := int(b[0])
	switch {
	case n > max:
		return nil, ErrTooLarge
	case len(b)-1 < n:
		return nil, ErrShort
	case len(b)-1 > n:
		return nil, ErrTrailing
	}
	return b[1 : 1+n], nil
}

func clip(s string) string {
	if len(s) > MaxText {
		return s[:MaxText]
	}
	return s
}
