// Package console is kumi's live operator console: one server-rendered HTML page with a small
// embedded script (no build step) showing the director's pool — the game servers as cards with
// their sessions and fill, each backend's free slots against its target, sessions moving off
// draining servers, the ticket→assignment histogram and the traffic weights, with a control that
// changes them — updated live over Server-Sent Events.
//
// The page itself holds no data; the script reads it from the console's own endpoints, relative to
// where the console is mounted:
//
//	GET  /          the page
//	GET  /state     the current State as JSON
//	GET  /events    the State as a Server-Sent Events stream ("state" events), pushed on change
//	PUT  /weights   {"weights": {"<backend>": <percent>}} → the new weights; 400 naming the problem
//	POST /login     {"token": "<admin token>"} → a session cookie (consoles with a token only)
//	POST /logout    clears the session cookie
//
// Who can reach it, and what stops others, depends on Config.AdminToken:
//
//   - With a token (the director's console, served under /console/ on the admin listener, see
//     director/admin.go): whoever reaches the admin listener can load the page, which holds no data.
//     Everything else needs a session cookie that POST /login sets in exchange for the admin token
//     in a JSON body. The token never goes into a URL (where it would end up in history, logs and
//     Referer headers); a browser's EventSource cannot send an Authorization header, hence the
//     cookie: HttpOnly (the page's script never sees it), SameSite=Strict (no cross-site request
//     carries it), Secure when the listener has TLS, scoped to Config.Path, and an HMAC over its
//     expiry under a key made at start, so it dies with the process and cannot be forged.
//   - Without a token (`kumi local`, whose listener is on 127.0.0.1 only): no login. The machine's
//     user is the only one who can connect to a loopback port, and kumi local is a single-user
//     development stack whose admin token sits in a file that user can read anyway. Requests must
//     name a loopback host (Host header), so a web page on another site cannot reach it through
//     DNS rebinding.
//
// In both modes every state change (PUT, POST) must be same-origin — net/http's
// CrossOriginProtection refuses cross-site requests by their Sec-Fetch-Site or Origin header — and
// carry the header "X-Kumi-Console: 1", which no HTML form can send and a cross-origin script cannot
// send without a CORS preflight the console never grants. Responses forbid framing (no
// clickjacking of the weight control) and the Content-Security-Policy allows only the console's own
// script and style.
package console

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// State is what the console shows at one moment.
type State struct {
	Servers     []Server  `json:"servers"`
	Backends    []Backend `json:"backends"`
	Sessions    int       `json:"sessions"`
	Groups      int       `json:"groups"`
	SessionRate float64   `json:"session_rate"`
	// Assignment is the director's ticket→assignment latency histogram.
	Assignment Histogram `json:"assignment"`
	// Events are the latest drains, session moves and weight changes, oldest first.
	Events []Event `json:"events"`
}

// Server is one game server in the pool.
type Server struct {
	Name     string `json:"name"`
	Backend  string `json:"backend"`
	Address  string `json:"address"`
	State    string `json:"state"`
	Capacity int    `json:"capacity"`
	Used     int    `json:"used"`
	Free     int    `json:"free"`
	Sessions int    `json:"sessions"`
	Adopted  bool   `json:"adopted"`
}

// Backend is one allocation backend's share of the pool.
type Backend struct {
	Name   string `json:"name"`
	Free   int    `json:"free"`
	Target int    `json:"target"`
	// Weight is its traffic weight in percent (0.01 resolution).
	Weight float64 `json:"weight"`
}

// Histogram is a latency histogram with per-bucket (not cumulative) counts.
type Histogram struct {
	Count uint64 `json:"count"`
	// Sum is in seconds.
	Sum     float64  `json:"sum"`
	Buckets []Bucket `json:"buckets"`
	// Over counts observations above the last bucket's bound.
	Over uint64 `json:"over"`
}

// Bucket counts the observations in (previous bound, LE] seconds.
type Bucket struct {
	LE float64 `json:"le"`
	N  uint64  `json:"n"`
}

// Event is one thing the director did that an operator watches.
type Event struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// Kind is "drain", "move", "move_failed" or "weights".
	Kind    string `json:"kind"`
	Server  string `json:"server,omitempty"`
	To      string `json:"to,omitempty"`
	Session string `json:"session,omitempty"`
	Detail  string `json:"detail,omitempty"`
}

// Source is what the console reads and changes: a running director.
type Source interface {
	// State is the pool's current state.
	State() State
	// SetWeights replaces the traffic weights (backend → percent) and returns the weights now in
	// force; an error names what is wrong with the request and nothing changed.
	SetWeights(percent map[string]float64) (map[string]float64, error)
	// Changed is closed the next time something happens that the periodic push could miss for a
	// while (an event); nil when the source has no such signal.
	Changed() <-chan struct{}
}

// Config is the console's settings.
type Config struct {
	// AdminToken is what POST /login takes; empty serves an open console to loopback hosts only.
	AdminToken string
	// Path is where the console is mounted ("/console/" on the director); the cookie is scoped to it.
	Path string
	// Interval is how often the state is checked and pushed when it changed.
	Interval time.Duration
	// SessionTTL is how long a login lasts.
	SessionTTL time.Duration
	// Title names the console on its page (e.g. "kumi local" or "director").
	Title string
}

// Default returns the console's default settings (an open console at /).
func Default() Config {
	return Config{Path: "/", Interval: 500 * time.Millisecond, SessionTTL: 8 * time.Hour, Title: "kumi"}
}

// Validate names the first bad setting.
func (c Config) Validate() error {
	switch {
	case !strings.HasPrefix(c.Path, "/") || !strings.HasSuffix(c.Path, "/"):
		return fmt.Errorf("console: path %q: want one starting and ending with /", c.Path)
	case c.Interval <= 0:
		return fmt.Errorf("console: interval %v: want > 0", c.Interval)
	case c.SessionTTL <= 0:
		return fmt.Errorf("console: session TTL %v: want > 0", c.SessionTTL)
	}
	return nil
}

// CookieName is the console's session cookie.
const CookieName = "kumi_console"

// HeaderName is the header every state-changing request must carry with the value "1".
const HeaderName = "X-Kumi-Console"

// maxBody bounds every request body.
const maxBody = 1 << 16

//go:embed static
var static embed.FS

var page = template.Must(template.ParseFS(static, "static/index.html"))

// Console serves the console; it is an http.Handler for paths relative to Config.Path (strip the
// prefix when mounting it elsewhere than /).
type Console struct {
	cfg   Config
	log   *slog.Logger
	src   Source
	key   []byte // signs session cookies; made at start
	mux   *http.ServeMux
	cop   *http.CrossOriginProtection
	done  chan struct{}
	close sync.Once
}

// New returns a console over src.
func New(log *slog.Logger, src Source, cfg Config) (*Console, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, log: log, src: src, key: make([]byte, 32), mux: http.NewServeMux(),
		cop: http.NewCrossOriginProtection(), done: make(chan struct{})}
	_, _ = rand.Read(c.key) // crypto/rand.Read never fails
	c.mux.HandleFunc("GET /{$}", c.page)
	for _, f := range []string{"static/app.js", "static/app.css"} {
		c.mux.HandleFunc("GET /"+f, func(w http.ResponseWriter, r *http.Request) { http.ServeFileFS(w, r, static, f) })
	}
	c.mux.HandleFunc("GET /state", c.authed(c.state))
	c.mux.HandleFunc("GET /events", c.authed(c.events))
	c.mux.HandleFunc("PUT /weights", c.changing(c.authed(c.weights)))
	c.mux.HandleFunc("POST /login", c.changing(c.login))
	c.mux.HandleFunc("POST /logout", c.changing(c.logout))
	return c, nil
}

// Close ends every open event stream (call it when the server shuts down, e.g. from
// http.Server.RegisterOnShutdown, since Shutdown waits for handlers to return).
func (c *Console) Close() { c.close.Do(func() { close(c.done) }) }

// Open reports whether the console needs no login.
func (c *Console) Open() bool { return c.cfg.AdminToken == "" }

func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
	if c.Open() && !loopbackHost(r.Host) {
		httpError(w, http.StatusForbidden, fmt.Sprintf("console: this console has no login and answers only to a loopback host name, not %q (reach it as 127.0.0.1 or localhost)", r.Host))
		return
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		httpError(w, http.StatusForbidden, "console: cross-site request refused")
		return
	}
	c.mux.ServeHTTP(w, r)
}

// loopbackHost reports whether a Host header names this machine's loopback interface.
func loopbackHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// changing guards a state-changing request: same-origin and carrying the console's header.
func (c *Console) changing(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := c.cop.Check(r); err != nil {
			httpError(w, http.StatusForbidden, "console: "+err.Error())
			return
		}
		if r.Header.Get(HeaderName) != "1" {
			httpError(w, http.StatusForbidden, fmt.Sprintf("console: request lacks the header %q: 1 (sent by the console's own page)", HeaderName))
			return
		}
		next(w, r)
	}
}

// authed requires a valid session cookie on a console with a token.
func (c *Console) authed(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !c.loggedIn(r, time.Now()) {
			httpError(w, http.StatusUnauthorized, "console: log in first (POST login with the admin token)")
			return
		}
		next(w, r)
	}
}

func (c *Console) loggedIn(r *http.Request, now time.Time) bool {
	if c.Open() {
		return true
	}
	ck, err := r.Cookie(CookieName)
	return err == nil && c.verify(ck.Value, now)
}

// sign returns a session value: its expiry and an HMAC over it.
func (c *Console) sign(exp time.Time) string {
	e := strconv.FormatInt(exp.Unix(), 10)
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(e))
	return e + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (c *Console) verify(v string, now time.Time) bool {
	e, _, ok := strings.Cut(v, ".")
	if !ok {
		return false
	}
	exp, err := strconv.ParseInt(e, 10, 64)
	if err != nil || now.Unix() >= exp {
		return false
	}
	return hmac.Equal([]byte(v), []byte(c.sign(time.Unix(exp, 0))))
}

func (c *Console) page(w http.ResponseWriter, r *http.Request) {
	auth := "open"
	switch {
	case c.Open():
	case c.loggedIn(r, time.Now()):
		auth = "session"
	default:
		auth = "login"
	}
	var buf bytes.Buffer
	if err := page.Execute(&buf, map[string]string{"Title": c.cfg.Title, "Auth": auth}); err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

func (c *Console) state(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, c.src.State())
}

// events streams the state whenever it changed, at most every Interval (at once after an event),
// with a comment line now and then so proxies keep the connection.
func (c *Console) events(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	// A listener's ReadTimeout would otherwise end the stream: net/http cancels a request whose
	// connection's read deadline passes while the handler runs.
	if err := rc.SetReadDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	var last []byte
	lastWrite := time.Now()
	write := func(s string) error {
		// The listener's WriteTimeout would cut a long stream; each write gets its own deadline.
		if err := rc.SetWriteDeadline(time.Now().Add(10 * time.Second)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		if _, err := io.WriteString(w, s); err != nil {
			return err
		}
		lastWrite = time.Now()
		return rc.Flush()
	}
	push := func() error {
		b, err := json.Marshal(c.src.State())
		if err != nil {
			return err
		}
		if bytes.Equal(b, last) {
			if time.Since(lastWrite) > 15*time.Second {
				return write(": keep-alive\n\n")
			}
			return nil
		}
		last = b
		return write("event: state\ndata: " + string(b) + "\n\n")
	}
	if err := write("retry: 2000\n\n"); err != nil {
		return
	}
	tick := time.NewTicker(c.cfg.Interval)
	defer tick.Stop()
	for {
		if err := push(); err != nil {
			c.log.Debug("console event stream ended", "from", r.RemoteAddr, "err", err)
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-c.done:
			return
		case <-tick.C:
		case <-c.src.Changed():
		}
	}
}

type weightsBody struct {
	Weights map[string]float64 `json:"weights"`
}

func (c *Console) weights(w http.ResponseWriter, r *http.Request) {
	var body weightsBody
	if !decodeBody(w, r, &body, `{"weights": {"<backend>": <percent>}}`) {
		return
	}
	got, err := c.src.SetWeights(body.Weights)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	c.log.Info("traffic weights set through the console", "weights", got, "from", r.RemoteAddr)
	writeJSON(w, http.StatusOK, weightsBody{Weights: got})
}

type loginBody struct {
	Token string `json:"token"`
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if c.Open() {
		httpError(w, http.StatusNotFound, "console: this console needs no login")
		return
	}
	var body loginBody
	if !decodeBody(w, r, &body, `{"token": "<admin token>"}`) {
		return
	}
	if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(body.Token)), []byte(c.cfg.AdminToken)) != 1 {
		c.log.Warn("console login refused: wrong admin token", "from", r.RemoteAddr)
		httpError(w, http.StatusUnauthorized, "console: wrong admin token")
		return
	}
	exp := time.Now().Add(c.cfg.SessionTTL)
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: c.sign(exp), Path: c.cfg.Path, Expires: exp,
		MaxAge: int(c.cfg.SessionTTL / time.Second), HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	c.log.Info("console login", "from", r.RemoteAddr)
	w.WriteHeader(http.StatusNoContent)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: c.cfg.Path, MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
}

// decodeBody reads a JSON body into v, answering 415/400 itself when it cannot.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, shape string) bool {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		httpError(w, http.StatusUnsupportedMediaType, "body must be Content-Type: application/json: "+shape)
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("body: want %s: %v", shape, err))
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
