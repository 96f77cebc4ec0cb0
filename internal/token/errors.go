package token

import (
	"errors"
	"fmt"
)

// Sentinel errors: every verification failure wraps exactly one of them (errors.Is), and its
// message says what was wrong in terms a developer can act on.
var (
	ErrMalformed   = errors.New("token malformed")
	ErrTooLarge    = errors.New("token too large")
	ErrAlgorithm   = errors.New("token algorithm not allowed")
	ErrUnknownKey  = errors.New("token key unknown")
	ErrSignature   = errors.New("token signature invalid")
	ErrExpired     = errors.New("token expired")
	ErrNotYetValid = errors.New("token not yet valid")
	ErrIssuer      = errors.New("token issuer wrong")
	ErrAudience    = errors.New("token audience wrong")
	// ErrTokenType: a server token presented as a player token or the other way round.
	ErrTokenType = errors.New("token of the wrong type")
	// ErrMissingClaim: a required claim (sub, sid, jti, exp) is absent.
	ErrMissingClaim = errors.New("token claim missing")
)

// Error is a verification failure: Kind is one of the sentinels above, Msg the full explanation.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

func fail(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: "token: " + fmt.Sprintf(format, args...)}
}
