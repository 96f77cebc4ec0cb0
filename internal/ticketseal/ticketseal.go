// Package ticketseal proves that an Open Match ticket came through a kumi frontend.
//
// Open Match's FrontendService has no authentication: anyone who can reach the core can create a
// ticket naming any player and any chat group, and the director would mint that player a server
// token. So the frontend seals each ticket it creates: an HMAC-SHA256, under a secret only the
// frontends and the director hold, over the player id, the search fields the match function reads
// and the frontend's creation time, stored as Ticket.extensions[omext.Seal]. The director checks the
// seal before placing a match and never assigns a ticket without a valid one.
//
// The seal cannot cover the ticket id (the core assigns it after the frontend sends the ticket), so
// whoever can read tickets off the core can create a copy of a sealed ticket; the copy is still
// bound to the same player, attributes and lifetime, and the core's listeners are loopback-only or
// behind TLS and network policy to keep readers out (SECURITY.md).
package ticketseal

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/internal/omext"
	"google.golang.org/protobuf/types/known/anypb"
)

// version prefixes every seal so the format can change without ambiguity.
const version = "v1"

// Errors a check can return (errors.Is), one per way a ticket can fail.
var (
	ErrMissing = errors.New("ticket has no kumi frontend seal")
	ErrInvalid = errors.New("ticket seal does not verify")
	ErrExpired = errors.New("ticket seal expired")
)

// Sealer seals tickets (frontend) and checks seals (director). It is safe for concurrent use.
type Sealer struct {
	key    []byte
	maxAge time.Duration
}

// New returns a sealer keyed by secret (at least 16 bytes; e.g. `openssl rand -hex 32`). A seal
// older than maxAge (the frontend's ticket lifetime plus slack) is refused; 0 disables that check.
func New(secret string, maxAge time.Duration) (*Sealer, error) {
	if len(secret) < 16 {
		return nil, fmt.Errorf("ticketseal: secret has %d bytes, want at least 16", len(secret))
	}
	return &Sealer{key: []byte(secret), maxAge: maxAge}, nil
}

// Seal writes the seal of a ticket for player with these search fields, created at now, into ext
// (allocated when nil) and returns ext.
func (s *Sealer) Seal(ext map[string]*anypb.Any, player string, sf *openmatch.SearchFields, now time.Time) map[string]*anypb.Any {
	ms := now.UnixMilli()
	return omext.PutString(ext, omext.Seal, version+"."+strconv.FormatInt(ms, 10)+"."+s.mac(player, ms, sf))
}

// Check verifies t's seal for player (the ticket's omext player extension) at now.
func (s *Sealer) Check(t *openmatch.Ticket, player string, now time.Time) error {
	raw, ok, err := omext.String(t.GetExtensions(), omext.Seal)
	switch {
	case err != nil:
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	case !ok:
		return ErrMissing
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 || parts[0] != version {
		return fmt.Errorf("%w: not a %s seal", ErrInvalid, version)
	}
	ms, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return fmt.Errorf("%w: bad time", ErrInvalid)
	}
	if !hmac.Equal([]byte(parts[2]), []byte(s.mac(player, ms, t.GetSearchFields()))) {
		return ErrInvalid
	}
	if age := now.Sub(time.UnixMilli(ms)); s.maxAge > 0 && age > s.maxAge {
		return fmt.Errorf("%w: sealed %s ago, longer than %s", ErrExpired, age.Round(time.Second), s.maxAge)
	}
	return nil
}

// mac is the base64url HMAC over a canonical encoding: every variable-length part is
// length-prefixed, maps are sorted by key, numbers use the shortest exact decimal form.
func (s *Sealer) mac(player string, ms int64, sf *openmatch.SearchFields) string {
	var b strings.Builder
	field := func(v string) {
		b.WriteString(strconv.Itoa(len(v)))
		b.WriteByte(':')
		b.WriteString(v)
	}
	field("kumi-ticket-" + version)
	field(player)
	field(strconv.FormatInt(ms, 10))
	keys := func(n int, each func(func(string))) []string {
		out := make([]string, 0, n)
		each(func(k string) { out = append(out, k) })
		slices.Sort(out)
		return out
	}
	sa := sf.GetStringArgs()
	ks := keys(len(sa), func(add func(string)) {
		for k := range sa {
			add(k)
		}
	})
	field("s" + strconv.Itoa(len(ks)))
	for _, k := range ks {
		field(k)
		field(sa[k])
	}
	da := sf.GetDoubleArgs()
	kd := keys(len(da), func(add func(string)) {
		for k := range da {
			add(k)
		}
	})
	field("d" + strconv.Itoa(len(kd)))
	for _, k := range kd {
		field(k)
		field(strconv.FormatFloat(da[k], 'g', -1, 64))
	}
	tags := slices.Sorted(slices.Values(sf.GetTags()))
	field("t" + strconv.Itoa(len(tags)))
	for _, t := range tags {
		field(t)
	}
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(b.String()))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
