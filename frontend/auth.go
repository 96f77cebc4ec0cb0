package frontend

import (
	"errors"
	"strings"
	"time"

	"github.com/kumi-dev/kumi/internal/token"
	"google.golang.org/grpc/codes"
)

// gate authenticates and rate limits one request.
type gate struct {
	v     *token.Verifier
	cache *tokenCache // nil when disabled
	lim   *limiter
	m     *metrics
	now   func() time.Time
}

// caller is who made a request: the verified player id and the token claims attributes come from.
type caller struct {
	player string
	claims map[string]any // only the claims named by the attribute allow-list; read-only
}

// admit checks the limits of the request's source, then the bearer token in the Authorization
// value, then the player's limit, and returns the caller.
func (g *gate) admit(authorization, source string) (caller, *apiError) {
	if err := g.lim.allowSource(source); err != nil {
		g.m.limited.WithLabelValues("source").Inc()
		return caller{}, err
	}
	scheme, raw, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(raw) == "" {
		g.m.authFail.WithLabelValues("missing").Inc()
		return caller{}, errorf(codes.Unauthenticated, "missing player token: send the header \"Authorization: Bearer <player JWT>\"")
	}
	raw = strings.TrimSpace(raw)
	now := g.now()
	who, ok := g.cache.get(raw, now)
	if !ok {
		c, err := g.v.VerifyPlayerToken(raw)
		if err != nil {
			g.m.authFail.WithLabelValues(reason(err)).Inc()
			return caller{}, errorf(codes.Unauthenticated, "invalid player token: %v", err)
		}
		who = caller{player: c.PlayerID, claims: c.Claims}
		g.cache.put(raw, who, c.ExpiresAt, now)
	}
	if err := g.lim.allowPlayer(who.player); err != nil {
		g.m.limited.WithLabelValues("player").Inc()
		return caller{}, err
	}
	return who, nil
}

// reason is a low-cardinality label for a verification failure.
func reason(err error) string {
	for _, r := range []struct {
		err  error
		name string
	}{
		{token.ErrExpired, "expired"}, {token.ErrNotYetValid, "not_yet_valid"}, {token.ErrSignature, "signature"},
		{token.ErrUnknownKey, "unknown_key"}, {token.ErrAlgorithm, "algorithm"}, {token.ErrAudience, "audience"},
		{token.ErrIssuer, "issuer"}, {token.ErrMalformed, "malformed"}, {token.ErrTooLarge, "too_large"},
		{token.ErrTokenType, "token_type"}, {token.ErrMissingClaim, "missing_claim"},
	} {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return "other"
}
