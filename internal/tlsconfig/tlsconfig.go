// Package tlsconfig builds the TLS settings of kumi's listeners and clients from certificate files,
// and picks up rotated files without a restart (cert-manager and Kubernetes secret mounts replace
// them in place): each handshake asks for the certificate, and the files are re-read when their
// modification time changes (checked at most once a second). A rotation that leaves a broken pair
// behind keeps the last good certificate and says so in the handshake error's place: the log.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Config is one endpoint's TLS files. All empty: TLS off.
type Config struct {
	CertFile string `flag:"cert-file" help:"PEM certificate (chain) this endpoint presents; re-read when the file changes"`
	KeyFile  string `flag:"key-file" help:"PEM private key of cert-file; re-read when the file changes"`
	CAFile   string `flag:"ca-file" help:"PEM CA bundle: a server requires and verifies client certificates against it (mTLS); a client verifies the server against it instead of the system roots"`

	checkEvery time.Duration // how often files are stat'ed: 0 = once a second; negative = every handshake (tests)
}

// Enabled reports whether any TLS file is set.
func (c Config) Enabled() bool { return c.CertFile != "" || c.KeyFile != "" || c.CAFile != "" }

// reloader serves the newest good certificate pair and CA pool from disk.
type reloader struct {
	cfg Config

	mu        sync.Mutex
	checked   time.Time
	certMod   time.Time
	keyMod    time.Time
	caMod     time.Time
	cert      *tls.Certificate
	pool      *x509.CertPool
	lastError error
}

func newReloader(cfg Config) (*reloader, error) {
	r := &reloader{cfg: cfg}
	if err := r.reload(true); err != nil {
		return nil, err
	}
	return r, nil
}

func modTime(path string) (time.Time, error) {
	if path == "" {
		return time.Time{}, nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return time.Time{}, err
	}
	return st.ModTime(), nil
}

// reload re-reads changed files; with force it reads them all. Callers other than newReloader hold
// no lock; reload takes it.
func (r *reloader) reload(force bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	every := r.cfg.checkEvery
	if every == 0 {
		every = time.Second
	}
	if !force && now.Sub(r.checked) < every {
		return nil
	}
	r.checked = now
	cm, err1 := modTime(r.cfg.CertFile)
	km, err2 := modTime(r.cfg.KeyFile)
	am, err3 := modTime(r.cfg.CAFile)
	if err := errors.Join(err1, err2, err3); err != nil {
		r.lastError = fmt.Errorf("tlsconfig: %w", err)
		return r.lastError
	}
	if r.cfg.CertFile != "" && (force || !cm.Equal(r.certMod) || !km.Equal(r.keyMod)) {
		c, err := tls.LoadX509KeyPair(r.cfg.CertFile, r.cfg.KeyFile)
		if err != nil {
			r.lastError = fmt.Errorf("tlsconfig: cert-file %s / key-file %s: %w", r.cfg.CertFile, r.cfg.KeyFile, err)
			return r.lastError // keep serving the previous pair
		}
		r.cert, r.certMod, r.keyMod = &c, cm, km
	}
	if r.cfg.CAFile != "" && (force || !am.Equal(r.caMod)) {
		pem, err := os.ReadFile(r.cfg.CAFile)
		if err != nil {
			r.lastError = fmt.Errorf("tlsconfig: ca-file: %w", err)
			return r.lastError
		}
		p := x509.NewCertPool()
		if !p.AppendCertsFromPEM(pem) {
			r.lastError = fmt.Errorf("tlsconfig: ca-file %s holds no PEM certificate", r.cfg.CAFile)
			return r.lastError
		}
		r.pool, r.caMod = p, am
	}
	r.lastError = nil
	return nil
}

func (r *reloader) current() (*tls.Certificate, *x509.CertPool) {
	_ = r.reload(false) // a failed reload keeps the last good files; Err reports it
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cert, r.pool
}

// Server returns a server TLS config (TLS 1.2+): the certificate is read per handshake and
// reloaded on change; with a CA file, client certificates are required and verified (mTLS), and a
// rotated CA bundle applies to new connections.
func (c Config) Server() (*tls.Config, error) {
	if c.CertFile == "" || c.KeyFile == "" {
		return nil, errors.New("tlsconfig: a TLS listener needs cert-file and key-file")
	}
	r, err := newReloader(c)
	if err != nil {
		return nil, err
	}
	base := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cert, pool := r.current()
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: base.NextProtos, Certificates: []tls.Certificate{*cert}}
		if pool != nil {
			cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
		return cfg, nil
	}
	return base, nil
}

// Client returns a client TLS config: the server is verified against the CA file (or the system
// roots), and the certificate pair, when set, is presented for mTLS and reloaded on change.
func (c Config) Client() (*tls.Config, error) {
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("tlsconfig: cert-file and key-file go together")
	}
	r, err := newReloader(c)
	if err != nil {
		return nil, err
	}
	_, pool := r.current()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	if c.CertFile != "" {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _ := r.current()
			return cert, nil
		}
	}
	return cfg, nil
}

// CheckListen refuses a plaintext listener on an address other hosts can reach, unless insecure
// (the explicit --insecure flag) says the operator means it. Loopback listeners need no TLS.
func CheckListen(what, addr string, tlsOn, insecure bool) error {
	if tlsOn || insecure || addr == "" || IsLoopback(addr) {
		return nil
	}
	return fmt.Errorf("%s %s is reachable from other hosts without TLS: set --tls-cert-file and --tls-key-file, bind it to 127.0.0.1, or pass --insecure if the network itself is trusted", what, addr)
}

// IsLoopback reports whether a listen address binds only the loopback interface. An empty host
// (":8080") binds every interface, so it is not loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// ServerCredentials are gRPC server credentials: TLS from c, or plaintext when c is empty (the
// caller has checked the listen address with CheckListen).
func (c Config) ServerCredentials() (credentials.TransportCredentials, error) {
	if !c.Enabled() {
		return insecure.NewCredentials(), nil
	}
	cfg, err := c.Server()
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(cfg), nil
}

// DialCredentials are gRPC client credentials: TLS from c (CA file or system roots, optional
// client certificate), or plaintext when c is empty.
func (c Config) DialCredentials() (credentials.TransportCredentials, error) {
	if !c.Enabled() {
		return insecure.NewCredentials(), nil
	}
	cfg, err := c.Client()
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(cfg), nil
}
