// Package token issues and verifies kumi's JWTs.
//
// Two kinds of token exist. A player token (issued by the game's identity provider, or by
// `kumi token issue` for local use) proves who the player is to the frontend; its subject is the
// player id. A server token (minted by the director for one player and one session) lets that player
// into one game server once: its audience is the server's name, "sid" the session, "jti" a unique id
// the game server remembers so it admits the token only once, and it expires quickly (60 s).
//
// Verification is strict by construction: every key carries exactly one allowed algorithm derived
// from its type (Ed25519 → EdDSA, ECDSA P-256 → ES256, RSA → RS256), so "alg: none" and algorithm
// confusion (HS256 keyed with a public key) are refused before any signature check; tokens are size
// capped before parsing; every failure wraps one exported sentinel (ErrExpired, ErrUnknownKey, ...)
// for errors.Is and says in words what to fix.
package token
