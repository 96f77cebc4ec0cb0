package tlsconfig

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA is a real CA that issues real certificates for the tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kumi test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a leaf certificate and key (serial, for 127.0.0.1, server and client use) to dir.
func (ca *testCA) issue(t *testing.T, dir, name string, serial int64) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	write(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	write(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
	return certFile, keyFile
}

// write replaces a file and moves its mtime forward, so a rotation is seen even on a coarse clock.
func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Duration(len(data)) * time.Millisecond)
	if st, err := os.Stat(path); err == nil && !st.ModTime().Before(later) {
		later = st.ModTime().Add(time.Second)
	}
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
}

// serve accepts TLS connections on 127.0.0.1 and writes one byte to each, until the test ends.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				c.Write([]byte{1})
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// peerSerial dials addr and returns the serial of the server's certificate.
func peerSerial(t *testing.T, addr string, cfg *tls.Config) (int64, error) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != nil {
		return 0, err
	}
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
}

// TestReloadRotatedCertificate: a running listener serves a rotated certificate to new connections
// without a restart; a broken rotation keeps the last good one.
func TestReloadRotatedCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	caFile := filepath.Join(dir, "ca.crt")
	write(t, caFile, ca.pem)
	certFile, keyFile := ca.issue(t, dir, "server", 100)
	srvCfg, err := Config{CertFile: certFile, KeyFile: keyFile, checkEvery: -1}.Server()
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, srvCfg)
	cli, err := Config{CAFile: caFile}.Client()
	if err != nil {
		t.Fatal(err)
	}
	if s, err := peerSerial(t, addr, cli); err != nil || s != 100 {
		t.Fatalf("first certificate: serial %d, %v", s, err)
	}
	// Rotate in place, as cert-manager does.
	newCert, newKey := ca.issue(t, t.TempDir(), "server", 101)
	write(t, certFile, must(os.ReadFile(newCert)))
	write(t, keyFile, must(os.ReadFile(newKey)))
	if s, err := peerSerial(t, addr, cli); err != nil || s != 101 {
		t.Fatalf("after rotation: serial %d, %v", s, err)
	}
	// A half-written rotation (key missing its pair) keeps serving the last good certificate.
	write(t, keyFile, []byte("not a key"))
	if s, err := peerSerial(t, addr, cli); err != nil || s != 101 {
		t.Fatalf("after a broken rotation: serial %d, %v", s, err)
	}
	// A client that does not trust the CA is refused.
	if _, err := peerSerial(t, addr, &tls.Config{MinVersion: tls.VersionTLS12}); err == nil {
		t.Fatal("client without the CA accepted the server")
	}
}

// TestMutualTLS: with a CA file the server requires a client certificate from that CA.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	caFile := filepath.Join(dir, "ca.crt")
	write(t, caFile, ca.pem)
	sc, sk := ca.issue(t, dir, "server", 1)
	cc, ck := ca.issue(t, dir, "client", 2)
	srvCfg, err := Config{CertFile: sc, KeyFile: sk, CAFile: caFile}.Server()
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, srvCfg)
	withCert, err := Config{CertFile: cc, KeyFile: ck, CAFile: caFile}.Client()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := peerSerial(t, addr, withCert); err != nil {
		t.Fatalf("client with a certificate: %v", err)
	}
	without, _ := Config{CAFile: caFile}.Client()
	if _, err := peerSerial(t, addr, without); err == nil {
		t.Fatal("client without a certificate accepted")
	}
	otherCA := newCA(t)
	oc, ok := otherCA.issue(t, dir, "stranger", 3)
	stranger, _ := Config{CertFile: oc, KeyFile: ok, CAFile: caFile}.Client()
	if _, err := peerSerial(t, addr, stranger); err == nil {
		t.Fatal("client certificate from another CA accepted")
	}
}

func TestCheckListen(t *testing.T) {
	for _, tc := range []struct {
		addr            string
		tlsOn, insecure bool
		ok              bool
	}{
		{"127.0.0.1:50600", false, false, true},
		{"[::1]:50600", false, false, true},
		{"localhost:1", false, false, true},
		{":50600", false, false, false},
		{"0.0.0.0:50600", false, false, false},
		{"10.0.0.5:50600", false, false, false},
		{":50600", true, false, true},
		{":50600", false, true, true},
		{"", false, false, true},
	} {
		err := CheckListen("frontend grpc-addr", tc.addr, tc.tlsOn, tc.insecure)
		if (err == nil) != tc.ok || (err != nil && !strings.Contains(err.Error(), "--insecure")) {
			t.Errorf("%+v: %v", tc, err)
		}
	}
	if _, err := (Config{CertFile: "x"}).Server(); err == nil {
		t.Fatal("server without key accepted")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
