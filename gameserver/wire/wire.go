package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// Version is the protocol version in byte 0 of every datagram.
const Version = 2

// VersionV1 is the previous version. Servers answer its JOIN with a REFUSE version in v1's own
// layout (identical to v2's REFUSE but for byte 0) so a v1 client can tell the user why.
const VersionV1 = 1

// Type is byte 1 of every datagram.
type Type uint8

// Packet types. JOIN, ACCEPT, REFUSE and COOKIE are the handshake; every other type is sealed
// (encrypted and authenticated) with the member's session keys.
const (
	TypeJoin      Type = 0x01 // client → server: ephemeral key, sealed token, cookie
	TypeAccept    Type = 0x02 // server → client: ephemeral key, sealed member id and limits
	TypeRefuse    Type = 0x03 // server → client: reason (clear)
	TypeCookie    Type = 0x04 // server → client: the cookie to put in the JOIN (address check)
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
	case TypeCookie:
		return "COOKIE"
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

// Authenticated reports whether packets of type t carry a member header and are sealed with
// the member's session keys.
func (t Type) Authenticated() bool { return t >= TypeData && t <= TypeReconnect }

// Sizes of the fixed parts.
const (
	NonceLen    = 8 // JOIN nonce echoed in ACCEPT/REFUSE/COOKIE
	KeyLen      = chacha20poly1305.KeySize
	PublicLen   = 32 // X25519 public key
	InstanceLen = 4  // instance tag in JOIN: the first bytes of the server's public key
	CookieLen   = 16
	HeaderLen   = 14 // version, type, member id (4), sequence (8)
	TagLen      = chacha20poly1305.Overhead
	// Overhead is what a sealed packet adds to its body.
	Overhead = HeaderLen + TagLen
	// MaxToken bounds the token in a JOIN; server tokens are a few hundred bytes.
	MaxToken = 2048
	// joinFixed is a JOIN without its token: header, nonce, instance, ephemeral, length, tag, cookie.
	joinFixed = 2 + NonceLen + InstanceLen + PublicLen + 2 + TagLen + CookieLen
	// MinJoinLen is the smallest valid JOIN (one-byte token).
	MinJoinLen = joinFixed + 1
	// MaxJoinLen is the largest valid JOIN datagram.
	MaxJoinLen = joinFixed + MaxToken
	// CookieReplyLen is the size of a COOKIE: less than any JOIN, so it amplifies nothing.
	CookieReplyLen = 2 + NonceLen + CookieLen
	// AcceptLen is the size of an ACCEPT.
	AcceptLen = 2 + NonceLen + PublicLen + acceptBodyLen + TagLen
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

// PeekType returns the type of a datagram of this version without further checks.
func PeekType(p []byte) (Type, error) {
	if len(p) < 2 {
		return 0, ErrShort
	}
	if p[0] != Version {
		return 0, ErrVersion
	}
	return Type(p[1]), nil
}

// Join asks to enter a session. Nonce is random per JOIN series and echoed back so the client can
// tell the answers to its own JOIN; Instance tags the server key the client sealed to (the server
// tells a token for its previous life apart from garbage); Ephemeral is the client's X25519 key
// for this join; Sealed is the server token encrypted to the server (see Initiator); Cookie is
// the server's address check (zero until a COOKIE arrives).
type Join struct {
	Nonce     [NonceLen]byte
	Instance  [InstanceLen]byte
	Ephemeral [PublicLen]byte
	Sealed    []byte
	Cookie    [CookieLen]byte
}

// joinAD is the length of the JOIN prefix the token's seal authenticates.
const joinAD = 2 + NonceLen + InstanceLen + PublicLen + 2

// AppendJoin appends j's encoding: version, type, nonce, instance, ephemeral, sealed token length
// (u16, without tag), sealed token, cookie.
func AppendJoin(dst []byte, j Join) ([]byte, error) {
	n := len(j.Sealed) - TagLen
	if n < 1 || n > MaxToken {
		return dst, fmt.Errorf("wire: JOIN token is %d bytes, want 1..%d", n, MaxToken)
	}
	dst = appendJoinAD(dst, j, n)
	dst = append(dst, j.Sealed...)
	return append(dst, j.Cookie[:]...), nil
}

func appendJoinAD(dst []byte, j Join, tokenLen int) []byte {
	dst = append(dst, Version, byte(TypeJoin))
	dst = append(dst, j.Nonce[:]...)
	dst = append(dst, j.Instance[:]...)
	dst = append(dst, j.Ephemeral[:]...)
	return binary.BigEndian.AppendUint16(dst, uint16(tokenLen))
}

// ParseJoin decodes a JOIN (its structure: the token is opened by the server's Responder). The
// returned Sealed aliases p.
func ParseJoin(p []byte) (Join, error) {
	var j Join
	if err := expect(p, TypeJoin, MinJoinLen); err != nil {
		return j, err
	}
	if len(p) > MaxJoinLen {
		return j, ErrTooLarge
	}
	q := p[2:]
	copy(j.Nonce[:], q)
	q = q[NonceLen:]
	copy(j.Instance[:], q)
	q = q[InstanceLen:]
	copy(j.Ephemeral[:], q)
	q = q[PublicLen:]
	n := int(binary.BigEndian.Uint16(q))
	q = q[2:]
	switch {
	case n == 0 || n > MaxToken:
		return j, ErrTooLarge
	case len(q) < n+TagLen+CookieLen:
		return j, ErrShort
	case len(q) > n+TagLen+CookieLen:
		return j, ErrTrailing
	}
	j.Sealed = q[:n+TagLen]
	copy(j.Cookie[:], q[n+TagLen:])
	return j, nil
}

// SetJoinCookie writes cookie into an encoded JOIN p in place (the client's resend after COOKIE).
func SetJoinCookie(p []byte, cookie [CookieLen]byte) { copy(p[len(p)-CookieLen:], cookie[:]) }

// Cookie is the server's answer to a JOIN whose cookie is not valid for its source address.
type Cookie struct {
	Nonce  [NonceLen]byte
	Cookie [CookieLen]byte
}

// AppendCookie appends c's encoding: version, type, nonce, cookie.
func AppendCookie(dst []byte, c Cookie) []byte {
	dst = append(dst, Version, byte(TypeCookie))
	dst = append(dst, c.Nonce[:]...)
	return append(dst, c.Cookie[:]...)
}

// ParseCookie decodes a COOKIE.
func ParseCookie(p []byte) (Cookie, error) {
	var c Cookie
	if err := expect(p, TypeCookie, CookieReplyLen); err != nil {
		return c, err
	}
	if len(p) != CookieReplyLen {
		return c, ErrTrailing
	}
	copy(c.Nonce[:], p[2:])
	copy(c.Cookie[:], p[2+NonceLen:])
	return c, nil
}

// Accept admits a member: its id, how often the client should send KEEPALIVE when it has nothing
// else to send, the silence after which the server drops it, and the largest DATA payload. On the
// wire it is sealed under the new session keys (see Responder.Accept).
type Accept struct {
	MemberID   uint32
	Keepalive  time.Duration
	Timeout    time.Duration
	MaxPayload uint16
}

const acceptBodyLen = 4 + 4 + 4 + 2

func appendAcceptBody(dst []byte, a Accept) []byte {
	dst = binary.BigEndian.AppendUint32(dst, a.MemberID)
	dst = binary.BigEndian.AppendUint32(dst, uint32(a.Keepalive/time.Millisecond))
	dst = binary.BigEndian.AppendUint32(dst, uint32(a.Timeout/time.Millisecond))
	return binary.BigEndian.AppendUint16(dst, a.MaxPayload)
}

func parseAcceptBody(b []byte) (Accept, error) {
	if len(b) != acceptBodyLen {
		return Accept{}, ErrShort
	}
	return Accept{
		MemberID:   binary.BigEndian.Uint32(b),
		Keepalive:  time.Duration(binary.BigEndian.Uint32(b[4:])) * time.Millisecond,
		Timeout:    time.Duration(binary.BigEndian.Uint32(b[8:])) * time.Millisecond,
		MaxPayload: binary.BigEndian.Uint16(b[12:]),
	}, nil
}

// AcceptHeader is the clear part of an ACCEPT: the JOIN's nonce and the server's ephemeral key.
type AcceptHeader struct {
	Nonce     [NonceLen]byte
	Ephemeral [PublicLen]byte
	Sealed    []byte // the sealed body, aliasing the packet
}

// ParseAcceptHeader decodes the clear part of an ACCEPT.
func ParseAcceptHeader(p []byte) (AcceptHeader, error) {
	var a AcceptHeader
	if err := expect(p, TypeAccept, AcceptLen); err != nil {
		return a, err
	}
	if len(p) != AcceptLen {
		return a, ErrTrailing
	}
	copy(a.Nonce[:], p[2:])
	copy(a.Ephemeral[:], p[2+NonceLen:])
	a.Sealed = p[2+NonceLen+PublicLen:]
	return a, nil
}

// RefuseCode says why a JOIN was refused.
type RefuseCode uint8

// Refuse codes. Clients may retry Busy and Full later with a fresh token; the others need a new
// assignment (or, for Version, a newer client).
const (
	RefuseBadToken      RefuseCode = 1  // signature, issuer, claims or format wrong, or the JOIN does not decrypt
	RefuseExpired       RefuseCode = 2  // exp passed or nbf not reached
	RefuseWrongServer   RefuseCode = 3  // token's audience is another server
	RefuseReplayed      RefuseCode = 4  // token already used
	RefuseFull          RefuseCode = 5  // server at its session capacity
	RefuseSessionFull   RefuseCode = 6  // session at its member limit
	RefuseDraining      RefuseCode = 7  // server draining: admits nobody
	RefuseBusy          RefuseCode = 8  // admission rate limit (per source or overall) or backlog
	RefuseVersion       RefuseCode = 9  // protocol version not supported
	RefuseMalformed     RefuseCode = 10 // JOIN could not be parsed
	RefuseWrongInstance RefuseCode = 11 // token minted for another life of this server (it restarted)
)

// NumRefuseCodes is one more than the largest refuse code.
const NumRefuseCodes = int(RefuseWrongInstance) + 1

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
	case RefuseWrongInstance:
		return "wrong_instance"
	}
	return fmt.Sprintf("refuse_%d", uint8(c))
}

// Refuse answers a JOIN that was not admitted. It is not sealed: a forger off the path must
// guess the 64-bit nonce, and one on the path can drop packets anyway.
type Refuse struct {
	Nonce [NonceLen]byte
	Code  RefuseCode
	Text  string
}

// RefuseLen is the size of r's encoding.
func RefuseLen(text string) int { return 2 + NonceLen + 2 + len(clip(text)) }

// AppendRefuse appends r's encoding: version, type, nonce, code (u8), text length (u8), text
// (truncated to MaxText bytes).
func AppendRefuse(dst []byte, r Refuse) []byte { return AppendRefuseVersion(dst, Version, r) }

// AppendRefuseVersion is AppendRefuse with another version byte: REFUSE has the same layout in
// v1 and v2, so a v1 client reads the version refusal in its own format.
func AppendRefuseVersion(dst []byte, version byte, r Refuse) []byte {
	text := clip(r.Text)
	dst = append(dst, version, byte(TypeRefuse))
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

// Direction picks which of a member's two session keys seals a packet.
type Direction uint8

const (
	ToServer Direction = 0
	ToClient Direction = 1
)

// Header is the clear header of a sealed packet. Member is the sender's member id on packets to
// the server and the originating member on DATA to a client (0 for server messages).
type Header struct {
	Type   Type
	Member uint32
	Seq    uint64
}

// ParseHeader decodes the header of a sealed packet without opening it, so the receiver can find
// the member's key.
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
