package token

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// VerifierConfig says which keys a Verifier trusts and what it checks. Keys come from any mix of
// PEM public key files, a JWKS file, a JWKS URL and Keys; at least one key is required.
type VerifierConfig struct {
	PublicKeys     []string      `flag:"public-keys" help:"PEM public key files, each 'path' (kid = the key's RFC 7638 thumbprint) or 'kid=path'"`
	JWKSFile       string        `flag:"jwks-file" help:"JWKS file of verification keys (re-read in the background every jwks-refresh and on an unknown kid)"`
	JWKSURL        string        `flag:"jwks-url" help:"JWKS URL of verification keys: https (plain http only to a loopback host); re-fetched in the background every jwks-refresh and on an unknown kid"`
	Issuer         string        `flag:"issuer" help:"required token issuer (iss); empty needs any-issuer"`
	AnyIssuer      bool          `flag:"any-issuer" help:"accept tokens of any issuer (explicit opt-out; issuer must then be empty)"`
	Audience       string        `flag:"audience" help:"required audience (aud) of player tokens; empty needs any-audience"`
	AnyAudience    bool          `flag:"any-audience" help:"accept player tokens of any audience (explicit opt-out; audience must then be empty)"`
	Leeway         time.Duration `flag:"leeway" help:"clock skew tolerated on exp, nbf and iat"`
	MaxTokenBytes  int           `flag:"max-token-bytes" help:"longer tokens are refused before parsing"`
	JWKSRefresh    time.Duration `flag:"jwks-refresh" help:"re-fetch the JWKS when the cached copy is older than this"`
	JWKSMinRefresh time.Duration `flag:"jwks-min-refresh" help:"at most one JWKS re-fetch per this interval when tokens name an unknown kid"`
	JWKSTimeout    time.Duration `flag:"jwks-timeout" help:"timeout of one JWKS fetch"`

	// Claims names the extra player-token claims VerifyPlayerToken returns in PlayerClaims.Claims
	// (the frontend asks for the claims its attributes come from); others are not decoded.
	Claims []string
	// Keys are trusted in addition to the files (programmatic use, tests).
	Keys []PublicKey
	// HTTPClient fetches JWKSURL; nil uses a client without extra settings. Its CheckRedirect is
	// replaced by one refusing redirects to another host or from https to http.
	HTTPClient *http.Client
	// Log receives JWKS refresh failures; nil discards them.
	Log *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// DefaultVerifierConfig holds the defaults: issuer and audience "kumi" (what `kumi token issue`
// writes), 5 s leeway, 8 KiB token cap, JWKS refreshed every 10 min and at most every 30 s on an
// unknown kid.
func DefaultVerifierConfig() VerifierConfig {
	return VerifierConfig{
		Issuer:         DefaultIssuer,
		Audience:       PlayerAudience,
		Leeway:         5 * time.Second,
		MaxTokenBytes:  8 << 10,
		JWKSRefresh:    10 * time.Minute,
		JWKSMinRefresh: 30 * time.Second,
		JWKSTimeout:    5 * time.Second,
	}
}

// DefaultIssuer is the issuer `kumi token` and `kumi local` sign with.
const DefaultIssuer = "kumi"

// maxJWKSBytes caps a JWKS download; real ones are a few KiB.
const maxJWKSBytes = 1 << 20

// keySet is an immutable snapshot of trusted keys, swapped atomically on refresh.
type keySet struct {
	static  map[string]PublicKey // from PEM files and cfg.Keys; never change
	dynamic map[string]PublicKey // from the JWKS; replaced on refresh
	fetched time.Time
}

func (s *keySet) get(kid string) (PublicKey, bool) {
	if k, ok := s.static[kid]; ok {
		return k, true
	}
	k, ok := s.dynamic[kid]
	return k, ok
}

func (s *keySet) kids() []string {
	out := make([]string, 0, len(s.static)+len(s.dynamic))
	for k := range s.static {
		out = append(out, k)
	}
	for k := range s.dynamic {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (s *keySet) len() int { return len(s.static) + len(s.dynamic) }

// Verifier checks player and server tokens. It is safe for concurrent use.
//
// A JWKS (file or URL) is only ever read by one background goroutine, never inside a verification:
// a request naming an unknown kid fails at once and asks that goroutine for a re-fetch (at most one
// per JWKSMinRefresh), so a flood of tokens with made-up kids costs the JWKS host nothing and no
// request waits on it.
type Verifier struct {
	cfg    VerifierConfig
	ctx    context.Context // parent of JWKS fetches
	parser *jwt.Parser
	keys   atomic.Pointer[keySet]
	kick   chan struct{} // unknown kid seen: re-fetch soon (buffered 1)

	fetchMu     sync.Mutex   // one JWKS fetch at a time
	lastAttempt time.Time    // guarded by fetchMu
	fetches     atomic.Int64 // JWKS fetch attempts (tests)
	kicks       atomic.Int64 // unknown-kid re-fetch requests handled by refreshLoop (tests)
}

// NewVerifier loads every configured key (fetching the JWKS once, and failing when it yields no
// usable key) and returns a verifier. With a JWKS it starts a background refresher that runs until
// ctx ends; afterwards the verifier keeps its cached keys.
func NewVerifier(ctx context.Context, cfg VerifierConfig) (*Verifier, error) {
	if cfg.PublicKeys == nil && cfg.JWKSFile == "" && cfg.JWKSURL == "" && len(cfg.Keys) == 0 {
		return nil, errors.New("token: verifier has no keys; set public-keys, jwks-file or jwks-url")
	}
	// cfg is a copy but Keys still shares the caller's array: appending into its spare capacity
	// would write into the caller's slice (a race when one config builds two verifiers).
	cfg.Keys = slices.Clip(cfg.Keys)
	for _, spec := range cfg.PublicKeys {
		kid, file, ok := strings.Cut(spec, "=")
		if !ok {
			kid, file = "", spec
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("token: public key: %w", err)
		}
		pub, err := ParsePublicKeyPEM(data)
		if err != nil {
			return nil, fmt.Errorf("%w (file %s)", err, file)
		}
		k, err := NewPublicKey(kid, pub)
		if err != nil {
			return nil, fmt.Errorf("%w (file %s)", err, file)
		}
		cfg.Keys = append(cfg.Keys, k)
	}
	v, err := newStatic(cfg)
	if err != nil {
		return nil, err
	}
	v.ctx = ctx
	if v.hasJWKS() {
		if err := v.Refresh(); err != nil {
			return nil, err
		}
		v.kick = make(chan struct{}, 1)
		go v.refreshLoop(ctx)
	}
	if v.keys.Load().len() == 0 {
		return nil, errors.New("token: verifier has no keys: the configured JWKS is empty")
	}
	return v, nil
}

func newStatic(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.Issuer == "" && !cfg.AnyIssuer:
		return nil, errors.New("token: issuer is empty; set issuer, or any-issuer to accept tokens of every issuer")
	case cfg.Issuer != "" && cfg.AnyIssuer:
		return nil, fmt.Errorf("token: issuer %q and any-issuer both set; choose one", cfg.Issuer)
	case cfg.Audience != "" && cfg.AnyAudience:
		return nil, fmt.Errorf("token: audience %q and any-audience both set; choose one", cfg.Audience)
	}
	if cfg.MaxTokenBytes <= 0 {
		return nil, fmt.Errorf("token: max-token-bytes %d must be positive", cfg.MaxTokenBytes)
	}
	if cfg.Leeway < 0 {
		return nil, fmt.Errorf("token: leeway %s must not be negative", cfg.Leeway)
	}
	if cfg.JWKSURL != "" {
		if err := checkJWKSURL(cfg.JWKSURL); err != nil {
			return nil, err
		}
		if cfg.JWKSTimeout <= 0 {
			// Every fetch would fail at once with a bare "context deadline exceeded".
			return nil, fmt.Errorf("token: jwks-timeout %s must be positive when jwks-url is set", cfg.JWKSTimeout)
		}
	}
	if cfg.JWKSMinRefresh < 0 || cfg.JWKSRefresh < 0 {
		return nil, fmt.Errorf("token: jwks-min-refresh (%s) and jwks-refresh (%s) must not be negative", cfg.JWKSMinRefresh, cfg.JWKSRefresh)
	}
	hc := &http.Client{}
	if cfg.HTTPClient != nil {
		c := *cfg.HTTPClient
		hc = &c
	}
	hc.CheckRedirect = sameHostRedirect
	cfg.HTTPClient = hc
	static := make(map[string]PublicKey, len(cfg.Keys))
	for _, k := range cfg.Keys {
		if k.KID == "" {
			return nil, errors.New("token: a verification key has no kid")
		}
		if alg, err := algFor(k.Key); err != nil {
			return nil, fmt.Errorf("%w (kid %q)", err, k.KID)
		} else if k.Alg != alg {
			return nil, fmt.Errorf("token: key %q: alg %q not allowed for its key type; want %s", k.KID, k.Alg, alg)
		}
		if _, dup := static[k.KID]; dup {
			return nil, fmt.Errorf("token: kid %q configured twice", k.KID)
		}
		static[k.KID] = k
	}
	v := &Verifier{
		cfg: cfg, ctx: context.Background(),
		// Claims are checked by verify itself so that errors can say exactly what is wrong.
		parser: jwt.NewParser(jwt.WithoutClaimsValidation()),
	}
	v.keys.Store(&keySet{static: static})
	return v, nil
}

// checkJWKSURL allows https, and plain http only to a loopback host: keys fetched in clear from
// another machine could be swapped by anyone on the path, and with them every player's identity.
func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("token: jwks-url: %w", err)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("token: jwks-url %s is plain http to a non-loopback host; use https (keys fetched in clear can be replaced on the path)", raw)
	}
	return fmt.Errorf("token: jwks-url %s: scheme %q not supported; use https", raw, u.Scheme)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// sameHostRedirect follows a JWKS redirect only within the same scheme and host, so a redirect
// cannot hand key selection to another server or downgrade the fetch to plain http.
func sameHostRedirect(req *http.Request, via []*http.Request) error {
	first := via[0].URL
	switch {
	case len(via) >= 5:
		return errors.New("JWKS: more than 5 redirects")
	case req.URL.Host != first.Host:
		return fmt.Errorf("JWKS: redirect from host %s to another host %s refused", first.Host, req.URL.Host)
	case req.URL.Scheme != first.Scheme:
		return fmt.Errorf("JWKS: redirect from %s to %s refused", first.Scheme, req.URL.Scheme)
	}
	return nil
}

// refreshLoop re-reads the JWKS every JWKSRefresh and soon after a request names an unknown kid
// (at most once per JWKSMinRefresh), until ctx ends.
func (v *Verifier) refreshLoop(ctx context.Context) {
	var tick <-chan time.Time
	if v.cfg.JWKSRefresh > 0 {
		t := time.NewTicker(v.cfg.JWKSRefresh)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case <-v.kick:
			v.fetchMu.Lock()
			since := v.cfg.Now().Sub(v.lastAttempt)
			v.fetchMu.Unlock()
			v.kicks.Add(1)
			if since < v.cfg.JWKSMinRefresh {
				continue
			}
		}
		if err := v.Refresh(); err != nil {
			v.cfg.Log.Warn("JWKS refresh failed; keeping the cached keys", "err", err, "kids", v.KIDs())
		}
	}
}

// Refresh re-reads the JWKS now (the background refresher calls it; operators and tests may too).
// The new set replaces the cached one only if it holds at least one usable key; otherwise, or on
// any fetch error, the cached keys stay and the error says why.
func (v *Verifier) Refresh() error {
	if !v.hasJWKS() {
		return nil
	}
	v.fetchMu.Lock()
	defer v.fetchMu.Unlock()
	return v.fetchLocked()
}

// fetchLocked loads the JWKS (file and/or URL) and swaps in the new dynamic keys. Keys kumi cannot
// use are skipped and logged; a failure or a set without a usable key keeps the previous keys. The
// caller holds fetchMu.
func (v *Verifier) fetchLocked() error {
	v.lastAttempt = v.cfg.Now()
	v.fetches.Add(1)
	dynamic := make(map[string]PublicKey)
	var skipped []error
	for _, src := range []struct{ name, file, url string }{
		{"jwks-file " + v.cfg.JWKSFile, v.cfg.JWKSFile, ""},
		{"jwks-url " + v.cfg.JWKSURL, "", v.cfg.JWKSURL},
	} {
		var data []byte
		var err error
		switch {
		case src.file != "":
			data, err = os.ReadFile(src.file)
		case src.url != "":
			data, err = v.download(src.url)
		default:
			continue
		}
		if err != nil {
			return fmt.Errorf("token: %s: %w", src.name, err)
		}
		keys, skip, err := ParseJWKS(data)
		if err != nil {
			return fmt.Errorf("%w (%s)", err, src.name)
		}
		for _, e := range skip {
			v.cfg.Log.Warn("JWKS key skipped", "source", src.name, "reason", e)
			skipped = append(skipped, fmt.Errorf("%w (%s)", e, src.name))
		}
		for _, k := range keys {
			dynamic[k.KID] = k
		}
	}
	old := v.keys.Load()
	for kid := range dynamic {
		if _, clash := old.static[kid]; clash {
			return fmt.Errorf("token: JWKS kid %q clashes with a configured PEM key", kid)
		}
	}
	if len(dynamic) == 0 {
		return fmt.Errorf("token: the JWKS holds no usable key; keeping %d cached JWKS keys: %w",
			len(old.dynamic), errors.Join(append([]error{errors.New("JWKS empty")}, skipped...)...))
	}
	v.keys.Store(&keySet{static: old.static, dynamic: dynamic, fetched: v.lastAttempt})
	return nil
}

func (v *Verifier) download(url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(v.ctx, v.cfg.JWKSTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET: status %s", resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxJWKSBytes {
		return nil, fmt.Errorf("JWKS larger than %d bytes", maxJWKSBytes)
	}
	return data, nil
}

func (v *Verifier) hasJWKS() bool { return v.cfg.JWKSFile != "" || v.cfg.JWKSURL != "" }

// lookup finds kid in the cached keys. An unknown kid never waits for the JWKS: it asks the
// background refresher for a re-fetch (the way a rotated-in key becomes usable without a restart)
// and fails now. Errors never list the trusted kids: they reach unauthenticated callers.
func (v *Verifier) lookup(kid string) (PublicKey, error) {
	set := v.keys.Load()
	if kid == "" {
		if set.len() == 1 {
			for _, k := range set.static {
				return k, nil
			}
			for _, k := range set.dynamic {
				return k, nil
			}
		}
		return PublicKey{}, fail(ErrUnknownKey, "no kid header and the verifier holds %d keys; sign with a kid header", set.len())
	}
	if k, ok := set.get(kid); ok {
		return k, nil
	}
	if !v.hasJWKS() {
		return PublicKey{}, fail(ErrUnknownKey, "unknown kid %q", kid)
	}
	select {
	case v.kick <- struct{}{}:
	default: // a re-fetch is already asked for
	}
	return PublicKey{}, fail(ErrUnknownKey, "unknown kid %q; the JWKS is re-fetched in the background (at most every %s), retry shortly if the key is new", kid, v.cfg.JWKSMinRefresh)
}

// parse checks size, key, algorithm and signature, and returns the unvalidated claims.
func (v *Verifier) parse(raw string) (*jwtClaims, *jwt.Token, error) {
	if len(raw) > v.cfg.MaxTokenBytes {
		return nil, nil, fail(ErrTooLarge, "%d bytes exceeds the limit of %d (max-token-bytes)", len(raw), v.cfg.MaxTokenBytes)
	}
	if raw == "" {
		return nil, nil, fail(ErrMalformed, "empty token")
	}
	claims := &jwtClaims{want: v.cfg.Claims}
	var keyErr error
	var key PublicKey
	tok, err := v.parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		key, keyErr = v.lookup(kid)
		if keyErr != nil {
			return nil, keyErr
		}
		if alg := t.Method.Alg(); alg != key.Alg {
			keyErr = fail(ErrAlgorithm, "algorithm %q not allowed for key %q (allowed: %s)", alg, key.KID, key.Alg)
			return nil, keyErr
		}
		return key.Key, nil
	})
	switch {
	case keyErr != nil:
		return nil, nil, keyErr
	case err == nil:
		return claims, tok, nil
	case errors.Is(err, jwt.ErrTokenMalformed):
		return nil, nil, fail(ErrMalformed, "%v", err)
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		alg := "<unset>"
		if tok != nil {
			alg = fmt.Sprint(tok.Header["alg"])
		}
		return nil, nil, fail(ErrAlgorithm, "algorithm %q not supported (kumi accepts EdDSA, ES256, RS256)", alg)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return nil, nil, fail(ErrSignature, "signature does not verify with key %q (%s): the token was altered or signed by another key", key.KID, key.Alg)
	}
	return nil, nil, fail(ErrMalformed, "%v", err)
}

// checkTimes validates exp (required), nbf and iat with the configured leeway.
func (v *Verifier) checkTimes(c *jwtClaims) error {
	now, lw := v.cfg.Now(), v.cfg.Leeway
	if c.ExpiresAt == nil {
		return fail(ErrMissingClaim, "no exp claim; kumi refuses tokens that never expire")
	}
	if exp := c.ExpiresAt.Time; now.After(exp.Add(lw)) {
		return fail(ErrExpired, "expired at %s (now %s, leeway %s)", stamp(exp), stamp(now), lw)
	}
	if c.NotBefore != nil && now.Add(lw).Before(c.NotBefore.Time) {
		return fail(ErrNotYetValid, "not valid before %s (now %s, leeway %s); check the issuer's clock", stamp(c.NotBefore.Time), stamp(now), lw)
	}
	if c.IssuedAt != nil && now.Add(lw).Before(c.IssuedAt.Time) {
		return fail(ErrNotYetValid, "issued in the future at %s (now %s, leeway %s); check the issuer's clock", stamp(c.IssuedAt.Time), stamp(now), lw)
	}
	return nil
}

func (v *Verifier) checkIssuer(c *jwtClaims) error {
	if v.cfg.Issuer != "" && c.Issuer != v.cfg.Issuer {
		return fail(ErrIssuer, "issuer %q, want %q", c.Issuer, v.cfg.Issuer)
	}
	return nil
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// VerifyServerToken checks a server token presented to the game server named server: signature,
// type, issuer, aud == server, exp/nbf/iat, and that sub, sid and jti are present. Single use (jti)
// is the caller's to enforce.
func (v *Verifier) VerifyServerToken(raw, server string) (ServerClaims, error) {
	c, tok, err := v.parse(raw)
	if err != nil {
		return ServerClaims{}, err
	}
	if typ, _ := tok.Header["typ"].(string); typ != ServerTokenType {
		return ServerClaims{}, fail(ErrTokenType, "typ %q is not a server token (want %q); clients must present the server token from their assignment", typ, ServerTokenType)
	}
	if err := v.checkIssuer(c); err != nil {
		return ServerClaims{}, err
	}
	if !slices.Contains(c.Audience, server) {
		return ServerClaims{}, fail(ErrAudience, "audience %q, want %q (this game server): the token was issued for another server", []string(c.Audience), server)
	}
	if err := v.checkTimes(c); err != nil {
		return ServerClaims{}, err
	}
	switch {
	case c.Subject == "":
		return ServerClaims{}, fail(ErrMissingClaim, "server token has no sub (player id)")
	case c.SID == "":
		return ServerClaims{}, fail(ErrMissingClaim, "server token has no sid (session id)")
	case c.ID == "":
		return ServerClaims{}, fail(ErrMissingClaim, "server token has no jti (needed for single use)")
	}
	return ServerClaims{
		PlayerID: c.Subject, SessionID: c.SID, Server: server, ID: c.ID, Instance: c.Ins, TraceParent: c.Tp,
		IssuedAt: timeOf(c.IssuedAt), NotBefore: timeOf(c.NotBefore), ExpiresAt: timeOf(c.ExpiresAt),
	}, nil
}

// VerifyPlayerToken checks a player token: signature, issuer, audience (if configured),
// exp/nbf/iat, and sub present. A server token is refused.
func (v *Verifier) VerifyPlayerToken(raw string) (PlayerClaims, error) {
	c, tok, err := v.parse(raw)
	if err != nil {
		return PlayerClaims{}, err
	}
	if typ, _ := tok.Header["typ"].(string); typ == ServerTokenType {
		return PlayerClaims{}, fail(ErrTokenType, "a server token is not a player token")
	}
	if err := v.checkIssuer(c); err != nil {
		return PlayerClaims{}, err
	}
	if v.cfg.Audience == "" && !v.cfg.AnyAudience {
		return PlayerClaims{}, fail(ErrAudience, "this verifier has no player audience configured; set audience, or any-audience to accept every audience")
	}
	if v.cfg.Audience != "" && !slices.Contains(c.Audience, v.cfg.Audience) {
		return PlayerClaims{}, fail(ErrAudience, "audience %q, want %q", []string(c.Audience), v.cfg.Audience)
	}
	if err := v.checkTimes(c); err != nil {
		return PlayerClaims{}, err
	}
	if c.Subject == "" {
		return PlayerClaims{}, fail(ErrMissingClaim, "player token has no sub (player id)")
	}
	return PlayerClaims{
		PlayerID: c.Subject, Issuer: c.Issuer, Audience: c.Audience, ID: c.ID,
		IssuedAt: timeOf(c.IssuedAt), NotBefore: timeOf(c.NotBefore), ExpiresAt: timeOf(c.ExpiresAt),
		Claims: c.Extra,
	}, nil
}

// KIDs lists the key ids the verifier currently trusts.
func (v *Verifier) KIDs() []string { return v.keys.Load().kids() }

func timeOf(d *jwt.NumericDate) time.Time {
	if d == nil {
		return time.Time{}
	}
	return d.Time.UTC()
}
