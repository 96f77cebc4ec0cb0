package builds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"

	"gocloud.dev/blob"

	"github.com/kumi-dev/kumi/internal/config"
	"github.com/kumi-dev/kumi/internal/token"
)

// Config is every setting of the builds API.
type Config struct {
	HTTPAddr  string        `flag:"http-addr" help:"HTTP address of the builds API (host:port); put TLS in front of it (ingress) in production"`
	BucketURL string        `flag:"bucket" help:"gocloud.dev/blob bucket URL holding builds: file:///dir (default), gs://bucket, s3://bucket?region=..."`
	TmpDir    string        `flag:"tmp-dir" help:"directory for zip spools and entrypoint checks (empty: the system temp dir); needs max-archive-bytes free"`
	ReadIdle  time.Duration `flag:"read-idle" help:"an upload that sends nothing for this long is dropped"`
	Limits    Limits        `prefix:""`
	// JWT verifies developer tokens; its audience defaults to DeveloperAudience.
	JWT token.VerifierConfig `prefix:"jwt-"`
}

// Default returns the defaults: 127.0.0.1:8090, builds under ./kumi-builds.
func Default() Config {
	jwt := token.DefaultVerifierConfig()
	jwt.Audience = DeveloperAudience
	return Config{
		HTTPAddr:  "127.0.0.1:8090",
		BucketURL: "file://./kumi-builds?create_dir=1",
		ReadIdle:  30 * time.Second,
		Limits:    DefaultLimits(),
		JWT:       jwt,
	}
}

// Server is a running builds API.
type Server struct {
	log   *slog.Logger
	cfg   Config
	v     *token.Verifier
	store *Store
	ln    net.Listener
	srv   *http.Server
	done  chan error
}

// Start opens the bucket, listens and serves until ctx ends. Callers must import the blob drivers
// the URL needs (cmd/kumi imports file, gs and s3).
func Start(ctx context.Context, log *slog.Logger, cfg Config) (*Server, error) {
	config.Log(ctx, log, "builds", cfg)
	v, err := token.NewVerifier(ctx, cfg.JWT)
	if err != nil {
		return nil, fmt.Errorf("builds: %w", err)
	}
	b, err := blob.OpenBucket(ctx, cfg.BucketURL)
	if err != nil {
		return nil, fmt.Errorf("builds: bucket %s: %w", cfg.BucketURL, err)
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("builds: %w", err)
	}
	s := &Server{log: log, cfg: cfg, v: v, store: NewStore(b, cfg.Limits, cfg.TmpDir), ln: ln, done: make(chan error, 1)}
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		b.Close()
		s.done <- err
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
	}()
	log.Info("builds API serving", "addr", ln.Addr().String(), "bucket", cfg.BucketURL)
	return s, nil
}

// Addr is the listening address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Store is the server's store.
func (s *Server) Store() *Store { return s.store }

// Wait blocks until the server stops.
func (s *Server) Wait() error { return <-s.done }

// Run starts the API and blocks until ctx ends.
func Run(ctx context.Context, log *slog.Logger, cfg Config) error {
	s, err := Start(ctx, log, cfg)
	if err != nil {
		return err
	}
	return s.Wait()
}

// apiError is the JSON error body: {"error":{"code":400,"message":"..."}}.
type apiError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]apiError{"error": {Code: code, Message: msg}})
}

// statusOf maps a store error to an HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrInvalid):
		return http.StatusUnprocessableEntity
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrConflict), errors.Is(err, ErrInUse):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// Handler is the HTTP API:
//
//	POST   /v1/builds?version=&entrypoint=&format=   body: the archive (Content-Type application/gzip or application/zip)
//	GET    /v1/builds                                 the tenant's builds
//	GET    /v1/builds/{sha256}                        one manifest
//	DELETE /v1/builds/{sha256}
//	GET    /v1/projects/{project}/traffic
//	PUT    /v1/projects/{project}/traffic             body: {"weights":{"1.0":90,"1.1":10}}
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/builds", s.auth(true, s.upload))
	mux.HandleFunc("GET /v1/builds", s.auth(false, s.list))
	mux.HandleFunc("GET /v1/builds/{sha}", s.auth(false, s.get))
	mux.HandleFunc("DELETE /v1/builds/{sha}", s.auth(true, s.del))
	mux.HandleFunc("GET /v1/projects/{project}/traffic", s.auth(false, s.getTraffic))
	mux.HandleFunc("PUT /v1/projects/{project}/traffic", s.auth(true, s.putTraffic))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return mux
}

type handler func(w http.ResponseWriter, r *http.Request, d Developer)

// auth admits developer tokens only; write endpoints need the write scope.
func (s *Server) auth(write bool, h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		scheme, raw, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			writeErr(w, http.StatusUnauthorized, "missing developer token: send \"Authorization: Bearer <developer JWT>\"")
			return
		}
		d, err := Authenticate(s.v, strings.TrimSpace(raw))
		if errors.Is(err, ErrForbidden) {
			writeErr(w, http.StatusForbidden, err.Error())
			return
		}
		if err != nil {
			writeErr(w, http.StatusUnauthorized, "invalid developer token: "+err.Error())
			return
		}
		if write && !d.Write {
			writeErr(w, http.StatusForbidden, "this token has scope "+ScopeRead+"; "+ScopeWrite+" is needed")
			return
		}
		h(w, r, d)
	}
}

// formatOf picks the archive format from ?format= or the Content-Type.
func formatOf(r *http.Request) (string, error) {
	if f := r.URL.Query().Get("format"); f != "" {
		return f, nil
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/gzip", "application/x-gzip", "application/x-tar+gzip", "application/x-compressed-tar":
		return FormatTarGz, nil
	case "application/zip", "application/x-zip-compressed":
		return FormatZip, nil
	}
	return "", fmt.Errorf("Content-Type %q: send application/gzip (a .tar.gz) or application/zip, or ?format=tar.gz|zip", mt)
}

func (s *Server) upload(w http.ResponseWriter, r *http.Request, d Developer) {
	format, err := formatOf(r)
	if err != nil {
		writeErr(w, http.StatusUnsupportedMediaType, err.Error())
		return
	}
	if r.ContentLength > s.cfg.Limits.MaxArchiveBytes {
		writeErr(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("upload of %d bytes exceeds the limit of %d (max-archive-bytes)", r.ContentLength, s.cfg.Limits.MaxArchiveBytes))
		return
	}
	q := r.URL.Query()
	body := &idleReader{r: r.Body, rc: http.NewResponseController(w), idle: s.cfg.ReadIdle}
	start := time.Now()
	m, created, err := s.store.Upload(r.Context(), d.Tenant, body, UploadOptions{Format: format, Version: q.Get("version"), Entrypoint: q.Get("entrypoint")})
	if err != nil {
		s.log.Info("build refused", "tenant", d.Tenant, "developer", d.Subject, "err", err)
		writeErr(w, statusOf(err), err.Error())
		return
	}
	s.log.Info("build stored", "tenant", d.Tenant, "developer", d.Subject, "project", m.Project, "version", m.Version,
		"sha256", m.SHA256, "bytes", m.Size, "created", created, "took", time.Since(start))
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	writeJSON(w, code, m)
}

// idleReader extends the read deadline before every read, so a slow but steady upload of
// gigabytes is fine while a stalled one is dropped.
type idleReader struct {
	r    interface{ Read([]byte) (int, error) }
	rc   *http.ResponseController
	idle time.Duration
}

func (i *idleReader) Read(p []byte) (int, error) {
	if i.idle > 0 {
		_ = i.rc.SetReadDeadline(time.Now().Add(i.idle))
	}
	return i.r.Read(p)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, d Developer) {
	ms, err := s.store.List(r.Context(), d.Tenant)
	if err != nil {
		writeErr(w, statusOf(err), err.Error())
		return
	}
	if ms == nil {
		ms = []Manifest{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"builds": ms})
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, d Developer) {
	m, err := s.store.Get(r.Context(), d.Tenant, r.PathValue("sha"))
	if err != nil {
		writeErr(w, statusOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) del(w http.ResponseWriter, r *http.Request, d Developer) {
	if err := s.store.Delete(r.Context(), d.Tenant, r.PathValue("sha")); err != nil {
		writeErr(w, statusOf(err), err.Error())
		return
	}
	s.log.Info("build deleted", "tenant", d.Tenant, "developer", d.Subject, "sha256", r.PathValue("sha"))
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) getTraffic(w http.ResponseWriter, r *http.Request, d Developer) {
	t, err := s.store.Traffic(r.Context(), d.Tenant, r.PathValue("project"))
	if err != nil {
		writeErr(w, statusOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) putTraffic(w http.ResponseWriter, r *http.Request, d Developer) {
	var body struct {
		Weights map[string]int `json:"weights"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeErr(w, http.StatusBadRequest, "body: want {\"weights\":{\"<version>\":<percent>,...}}: "+err.Error())
		return
	}
	t, err := s.store.SetTraffic(r.Context(), d.Tenant, r.PathValue("project"), body.Weights)
	if err != nil {
		writeErr(w, statusOf(err), err.Error())
		return
	}
	s.log.Info("traffic set", "tenant", d.Tenant, "developer", d.Subject, "project", t.Project, "weights", t.Weights)
	writeJSON(w, http.StatusOK, t)
}
