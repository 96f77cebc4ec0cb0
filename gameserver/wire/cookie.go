package wire

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"net/netip"
	"time"
)

// CookieBucket is how long one cookie epoch lasts; a cookie is valid in its epoch and the next.
const CookieBucket = time.Minute

// Cookies makes and checks the stateless address cookies of the JOIN round trip: HMAC-SHA256,
// under a secret made at start, over the time epoch and the source address and port (as DTLS's
// HelloVerifyRequest). A source that never sees replies — a forged address — never holds a valid
// cookie, so the server keeps no state and does no work for it. A Cookies is not safe for
// concurrent use: each goroutine has its own (NewCookies with the same secret).
type Cookies struct {
	mac hash.Hash
	buf [8 + 16 + 2]byte
	sum [sha256.Size]byte
}

// NewCookieSecret returns a fresh random secret.
func NewCookieSecret() [32]byte {
	var s [32]byte
	_, _ = rand.Read(s[:])
	return s
}

// NewCookies returns a cookie maker for secret.
func NewCookies(secret [32]byte) *Cookies {
	return &Cookies{mac: hmac.New(sha256.New, secret[:])}
}

func (c *Cookies) at(epoch int64, from netip.AddrPort) [CookieLen]byte {
	binary.BigEndian.PutUint64(c.buf[:], uint64(epoch))
	a := from.Addr().As16()
	copy(c.buf[8:], a[:])
	binary.BigEndian.PutUint16(c.buf[24:], from.Port())
	c.mac.Reset()
	c.mac.Write(c.buf[:])
	return [CookieLen]byte(c.mac.Sum(c.sum[:0])[:CookieLen])
}

func epoch(now time.Time) int64 { return now.UnixNano() / int64(CookieBucket) }

// Make returns the cookie for from now.
func (c *Cookies) Make(from netip.AddrPort, now time.Time) [CookieLen]byte {
	return c.at(epoch(now), unmap(from))
}

// Check reports whether cookie is valid for from now (this epoch or the one before).
func (c *Cookies) Check(from netip.AddrPort, cookie [CookieLen]byte, now time.Time) bool {
	from = unmap(from)
	e := epoch(now)
	want := c.at(e, from)
	if hmac.Equal(want[:], cookie[:]) {
		return true
	}
	want = c.at(e-1, from)
	return hmac.Equal(want[:], cookie[:])
}

func unmap(ap netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) }
