package builds

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/kumi-dev/kumi/internal/token"
)

// DeveloperAudience is the audience of developer tokens. Player tokens carry another audience
// ("kumi"), so they are refused here before any claim is read.
const DeveloperAudience = "kumi-builds"

// Scopes a developer token may carry (claim "scope", space separated, as in RFC 8693 §4.2).
const (
	ScopeRead  = "builds:read"
	ScopeWrite = "builds:write" // implies read
)

// Developer is an authenticated developer: who, for which studio, allowed to do what.
type Developer struct {
	Subject string
	Tenant  string
	Write   bool
}

// devClaims are the claims beyond internal/token's that a developer token carries.
type devClaims struct {
	jwt.RegisteredClaims
	Scope  string `json:"scope"`
	Tenant string `json:"tenant"`
}

// Authenticate checks a developer token: signature, issuer, times and audience through
// internal/token (the same verifier the frontend uses for players), then the scope and tenant
// claims. Server tokens and player tokens are refused.
func Authenticate(v *token.Verifier, raw string) (Developer, error) {
	pc, err := v.VerifyPlayerToken(raw)
	if err != nil {
		return Developer{}, err
	}
	if !slices.Contains(pc.Audience, DeveloperAudience) {
		return Developer{}, fmt.Errorf("%w: audience %q, want %q (a developer token)", token.ErrAudience, pc.Audience, DeveloperAudience)
	}
	// The signature was verified above; this second decode only reads the extra claims.
	var c devClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &c); err != nil {
		return Developer{}, fmt.Errorf("%w: %v", token.ErrMissingClaim, err)
	}
	if !ValidTenant(c.Tenant) {
		return Developer{}, fmt.Errorf("%w: developer token has no valid tenant claim (studio id, [a-z0-9-])", token.ErrMissingClaim)
	}
	d := Developer{Subject: pc.PlayerID, Tenant: c.Tenant}
	scopes := strings.Fields(c.Scope)
	d.Write = slices.Contains(scopes, ScopeWrite)
	if !d.Write && !slices.Contains(scopes, ScopeRead) {
		return Developer{}, fmt.Errorf("%w: scope %q has neither %s nor %s", ErrForbidden, c.Scope, ScopeRead, ScopeWrite)
	}
	return d, nil
}

// ErrForbidden is a valid token without the right scope.
var ErrForbidden = errors.New("forbidden")

// DeveloperToken signs a developer token for tenant (the studio id) with the given scopes, for
// `kumi builds token` and tests; in production the studio's identity provider issues them.
func DeveloperToken(s *token.Signer, subject, tenant string, scopes []string, ttl time.Duration) (string, error) {
	if !ValidTenant(tenant) {
		return "", fmt.Errorf("builds: tenant %q: want [a-z0-9][a-z0-9-]*", tenant)
	}
	now := time.Now()
	c := devClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: s.Issuer(), Subject: subject, Audience: jwt.ClaimStrings{DeveloperAudience},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Scope: strings.Join(scopes, " "), Tenant: tenant,
	}
	t := jwt.NewWithClaims(jwt.GetSigningMethod(s.Alg()), c)
	t.Header["kid"] = s.KID()
	return t.SignedString(s.PrivateKey())
}
