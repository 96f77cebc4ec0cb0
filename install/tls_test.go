package install_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kumi-dev/kumi/internal/tlsconfig"
	om "github.com/kumi-dev/kumi/openmatch"
)

// tlsCertManager and tlsSecrets are the two ways of turning TLS on (values.yaml tls.*).
var (
	tlsCertManager = []string{"tls.enabled=true", "tls.certManager.issuerRef.name=kumi-ca"}
	tlsSecrets     = []string{"tls.enabled=true", "tls.source=secrets", "tls.secrets.frontend=fe-tls", "tls.secrets.director=dir-tls",
		"tls.secrets.openmatch=om-tls", "tls.secrets.openmatchClient=om-client-tls"}
)

// kumiComponents are the Deployments (and the Fleet) running kumi commands, by their subcommand.
var kumiComponents = map[string]string{"kumi-frontend": "frontend", "kumi-director": "director", "kumi-openmatch": "openmatch",
	"kumi-matchfunction": "matchfunction", "kumi-gameserver": "gameserver"}

// TestChartTLS renders TLS off, on through cert-manager, on through supplied Secrets, and with a
// core the chart does not run, and checks each component's flags, mounts and probes; invalid
// combinations are refused by values.schema.json with the path of the value to fix.
func TestChartTLS(t *testing.T) {
	// tlsArgs: what each component must (and must not) be given. Listeners: frontend -tls-cert/key
	// (no client certificates: players have tokens), core -tls-* with a CA (mTLS), director
	// -tls-cert/key; clients: -om-tls-*/-query-tls-* towards the core, -director-tls-ca-file.
	type want struct {
		args, noArgs map[string][]string // component → flags present / absent (prefix match)
		secrets      map[string][]string // component → Secret names its pod mounts for TLS
		certs        []string            // Certificate objects rendered
	}
	off := want{
		args: map[string][]string{"kumi-frontend": {"-insecure"}, "kumi-director": {"-insecure"}, "kumi-openmatch": {"-insecure"},
			"kumi-matchfunction": {"-insecure"}},
		noArgs: map[string][]string{"kumi-frontend": {"-tls-", "-om-tls-"}, "kumi-director": {"-tls-", "-om-tls-"}, "kumi-openmatch": {"-tls-"},
			"kumi-matchfunction": {"-tls-", "-query-tls-"}, "kumi-gameserver": {"-director-tls-"}},
	}
	on := func(secret func(string) string, certs []string) want {
		return want{
			args: map[string][]string{
				"kumi-frontend":      {"-tls-cert-file=/etc/kumi/tls/frontend/tls.crt", "-tls-key-file=", "-om-tls-cert-file=", "-om-tls-key-file=", "-om-tls-ca-file="},
				"kumi-openmatch":     {"-tls-cert-file=", "-tls-key-file=", "-tls-ca-file="},
				"kumi-director":      {"-tls-cert-file=", "-tls-key-file=", "-om-tls-cert-file=", "-om-tls-key-file=", "-om-tls-ca-file="},
				"kumi-matchfunction": {"-query-tls-cert-file=", "-query-tls-key-file=", "-query-tls-ca-file=", "-insecure"},
				"kumi-gameserver":    {"-director-tls-ca-file="},
			},
			noArgs: map[string][]string{"kumi-frontend": {"-insecure", "-tls-ca-file"}, "kumi-director": {"-insecure", "-tls-ca-file"},
				"kumi-openmatch": {"-insecure"}, "kumi-matchfunction": {"-tls-cert-file"}, "kumi-gameserver": {"-director-tls-cert-file"}},
			secrets: map[string][]string{
				"kumi-frontend":      {secret("frontend"), secret("openmatchClient")},
				"kumi-openmatch":     {secret("openmatch")},
				"kumi-director":      {secret("director"), secret("openmatchClient")},
				"kumi-matchfunction": {secret("openmatchClient")},
				"kumi-gameserver":    {secret("director")},
			},
			certs: certs,
		}
	}
	cmSecret := func(who string) string {
		return map[string]string{"frontend": "kumi-frontend-tls", "director": "kumi-director-tls", "openmatch": "kumi-openmatch-tls",
			"openmatchClient": "kumi-openmatch-client-tls"}[who]
	}
	userSecret := func(who string) string {
		return map[string]string{"frontend": "fe-tls", "director": "dir-tls", "openmatch": "om-tls", "openmatchClient": "om-client-tls"}[who]
	}
	allCerts := []string{"kumi-director-tls", "kumi-frontend-tls", "kumi-openmatch-client-tls", "kumi-openmatch-tls"}
	// A core the chart does not run keeps its own TLS settings: only the frontend and director
	// listeners and the game servers' client change.
	external := want{
		args: map[string][]string{"kumi-frontend": {"-tls-cert-file="}, "kumi-director": {"-tls-cert-file="}, "kumi-gameserver": {"-director-tls-ca-file="}},
		noArgs: map[string][]string{"kumi-frontend": {"-insecure", "-om-tls-"}, "kumi-director": {"-insecure", "-om-tls-"},
			"kumi-matchfunction": {"-query-tls-"}},
		secrets: map[string][]string{"kumi-frontend": {"kumi-frontend-tls"}, "kumi-director": {"kumi-director-tls"}, "kumi-matchfunction": nil},
		certs:   []string{"kumi-director-tls", "kumi-frontend-tls"},
	}
	externalOM := []string{"openmatch.embedded=false", "openmatch.external.frontend=om-fe:50504", "openmatch.external.backend=om-be:50505", "openmatch.external.query=om-q:50503"}

	for _, tc := range []struct {
		name    string
		set     []string
		want    want
		wantErr string // a schema error naming this value path
	}{
		{name: "off", want: off},
		{name: "off ignores an empty issuer and secrets", set: []string{"tls.source=secrets"}, want: off},
		{name: "cert-manager", set: tlsCertManager, want: on(cmSecret, allCerts)},
		{name: "supplied secrets", set: tlsSecrets, want: on(userSecret, nil)},
		{name: "cert-manager, external core", set: append(slices.Clone(tlsCertManager), externalOM...), want: external},
		{name: "supplied secrets, external core, no core secrets needed", set: append([]string{"tls.enabled=true", "tls.source=secrets",
			"tls.secrets.frontend=fe-tls", "tls.secrets.director=dir-tls"}, externalOM...),
			want: want{args: external.args, noArgs: external.noArgs, secrets: map[string][]string{"kumi-frontend": {"fe-tls"}, "kumi-director": {"dir-tls"}}}},
		{name: "cert-manager without an issuer", set: []string{"tls.enabled=true"}, wantErr: "/tls/certManager/issuerRef/name"},
		{name: "secrets without the frontend's", set: []string{"tls.enabled=true", "tls.source=secrets", "tls.secrets.director=d",
			"tls.secrets.openmatch=o", "tls.secrets.openmatchClient=c"}, wantErr: "/tls/secrets/frontend"},
		{name: "secrets without the core's", set: []string{"tls.enabled=true", "tls.source=secrets", "tls.secrets.frontend=f", "tls.secrets.director=d"},
			wantErr: "/tls/secrets/openmatchClient"},
		{name: "unknown source", set: []string{"tls.enabled=true", "tls.source=vault"}, wantErr: "/tls/source"},
		{name: "issuer kind", set: append(slices.Clone(tlsCertManager), "tls.certManager.issuerRef.kind=Vault"), wantErr: "/tls/certManager/issuerRef/kind"},
		{name: "frontend issuer without public names", set: append(slices.Clone(tlsCertManager), "tls.certManager.frontendIssuerRef.name=letsencrypt"),
			wantErr: "/tls/frontendDnsNames"},
		{name: "frontend issuer without a name", set: append(slices.Clone(tlsCertManager), "tls.certManager.frontendIssuerRef.kind=ClusterIssuer"),
			wantErr: "/tls/certManager/frontendIssuerRef"},
		{name: "secret name not a Kubernetes name", set: append(slices.Clone(tlsSecrets), "tls.secrets.director=Dir_TLS"), wantErr: "/tls/secrets/director"},
		{name: "duration", set: append(slices.Clone(tlsCertManager), "tls.certManager.duration=90d"), wantErr: "/tls/certManager/duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.wantErr != "" {
				out, err := renderErr(t, tc.set)
				if err == nil {
					t.Fatalf("helm template accepted %v:\n%.300s", tc.set, out)
				}
				if !strings.Contains(err.Error(), "at '"+tc.wantErr) {
					t.Errorf("error does not name %s:\n%v", tc.wantErr, err)
				}
				return
			}
			objs, _ := render(t, tc.set)
			checkWorkloads(t, objs)
			checkFlagsDocumented(t, objs)
			for name, flags := range tc.want.args {
				args := componentArgs(t, objs, name)
				for _, f := range flags {
					if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, f) }) {
						t.Errorf("%s args lack %s: %v", name, f, args)
					}
				}
			}
			for name, flags := range tc.want.noArgs {
				args := componentArgs(t, objs, name)
				for _, f := range flags {
					if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, f) }) {
						t.Errorf("%s args have %s: %v", name, f, args)
					}
				}
			}
			for name, secrets := range tc.want.secrets {
				got := tlsSecretsOf(t, objs, name)
				if slices.Sort(secrets); !slices.Equal(got, secrets) {
					t.Errorf("%s mounts TLS Secrets %v, want %v", name, got, secrets)
				}
			}
			var certs []string
			for _, o := range objs {
				if o.GetKind() == "Certificate" {
					certs = append(certs, o.GetName())
					if s, _, _ := unstructured.NestedString(o.Object, "spec", "secretName"); s != o.GetName() {
						t.Errorf("Certificate %s writes Secret %q", o.GetName(), s)
					}
				}
			}
			if slices.Sort(certs); !slices.Equal(certs, tc.want.certs) {
				t.Errorf("Certificates %v, want %v", certs, tc.want.certs)
			}
			// Every TLS file flag names a file of a mounted Secret.
			for name := range kumiComponents {
				if has(objs, "Deployment", name) || has(objs, "Fleet", name) {
					for _, a := range componentArgs(t, objs, name) {
						if k, v, ok := strings.Cut(a, "="); ok && strings.Contains(k, "tls-") && strings.HasSuffix(k, "-file") {
							secretFile(t, objs, name, v)
						}
					}
				}
			}
			tlsOn := slices.Contains(tc.set, "tls.enabled=true")
			checkProbes(t, objs, tlsOn)
		})
	}
}

// TestChartTLSCertificates checks what cert-manager is asked for: the issuer, key usages that fit
// each side, and the names the components dial (taken from the rendered flags, so a renamed
// Service or address breaks the test, not a handshake in production).
func TestChartTLSCertificates(t *testing.T) {
	objs, _ := render(t, append(slices.Clone(tlsCertManager), "tls.frontendDnsNames={play.example.com}",
		"tls.certManager.frontendIssuerRef.name=letsencrypt", "tls.certManager.frontendIssuerRef.kind=ClusterIssuer"))
	host := func(component, flag string) string {
		for _, a := range componentArgs(t, objs, component) {
			if v, ok := strings.CutPrefix(a, flag+"="); ok {
				h, _, err := net.SplitHostPort(v)
				if err != nil {
					t.Fatalf("%s %s=%s: %v", component, flag, v, err)
				}
				return h
			}
		}
		t.Fatalf("%s has no %s", component, flag)
		return ""
	}
	for _, tc := range []struct {
		cert, issuer, kind string
		usage              string
		names              []string
	}{
		{"kumi-frontend-tls", "letsencrypt", "ClusterIssuer", "server auth", []string{"play.example.com"}},
		{"kumi-director-tls", "kumi-ca", "Issuer", "server auth", []string{host("kumi-gameserver", "-director")}},
		{"kumi-openmatch-tls", "kumi-ca", "Issuer", "server auth", []string{host("kumi-frontend", "-om-frontend-addr"),
			host("kumi-frontend", "-om-query-addr"), host("kumi-director", "-backend-addr"), host("kumi-matchfunction", "-query-addr")}},
		{"kumi-openmatch-client-tls", "kumi-ca", "Issuer", "client auth", nil},
	} {
		c := find(t, objs, "Certificate", tc.cert)
		ref, _, _ := unstructured.NestedStringMap(c.Object, "spec", "issuerRef")
		if ref["name"] != tc.issuer || ref["kind"] != tc.kind || ref["group"] != "cert-manager.io" {
			t.Errorf("%s issuerRef %v, want %s %s", tc.cert, ref, tc.kind, tc.issuer)
		}
		usages, _, _ := unstructured.NestedStringSlice(c.Object, "spec", "usages")
		if !slices.Equal(usages, []string{"digital signature", tc.usage}) {
			t.Errorf("%s usages %v, want digital signature and %s only", tc.cert, usages, tc.usage)
		}
		names, _, _ := unstructured.NestedStringSlice(c.Object, "spec", "dnsNames")
		for _, n := range tc.names {
			if !slices.Contains(names, n) {
				t.Errorf("%s dnsNames %v lack %s", tc.cert, names, n)
			}
		}
		if tc.names == nil && len(names) != 0 {
			t.Errorf("client certificate %s names hosts %v", tc.cert, names)
		}
		if tc.issuer == "letsencrypt" && !slices.Equal(names, tc.names) {
			t.Errorf("%s from a public issuer names %v, want only tls.frontendDnsNames %v (a public CA issues no cluster names)", tc.cert, names, tc.names)
		}
		if r, _, _ := unstructured.NestedString(c.Object, "spec", "privateKey", "rotationPolicy"); r != "Always" {
			t.Errorf("%s privateKey.rotationPolicy %q, want Always (a renewal replaces the key)", tc.cert, r)
		}
	}
}

// TestChartTLSHandshake plays cert-manager's part (its controllers cannot run here: a test CA signs
// what each rendered Certificate asks for and the files land where the pods mount the Secret), then
// starts the real embedded Open Match core with the flags the chart gives it and dials it as the
// frontend, the director and the match function do, by the names they dial: each gets through,
// while a caller without the client certificate, or in plaintext, does not. The director's and the
// frontend's listeners are served with the same tlsconfig settings their commands build from the
// rendered flags, and verified the way game servers and players verify them.
func TestChartTLSHandshake(t *testing.T) {
	objs, _ := render(t, append(slices.Clone(tlsCertManager), "tls.frontendDnsNames={play.example.com}"))
	root := t.TempDir()
	issueForCertificates(t, objs, root)
	files := func(component, prefix string) tlsconfig.Config {
		var c tlsconfig.Config
		for _, a := range componentArgs(t, objs, component) {
			k, v, _ := strings.Cut(a, "=")
			switch k {
			case "-" + prefix + "cert-file":
				c.CertFile = filepath.Join(root, secretFile(t, objs, component, v))
			case "-" + prefix + "key-file":
				c.KeyFile = filepath.Join(root, secretFile(t, objs, component, v))
			case "-" + prefix + "ca-file":
				c.CAFile = filepath.Join(root, secretFile(t, objs, component, v))
			}
		}
		if !c.Enabled() {
			t.Fatalf("%s has no -%s* flags", component, prefix)
		}
		return c
	}
	arg := func(component, flag string) string {
		for _, a := range componentArgs(t, objs, component) {
			if v, ok := strings.CutPrefix(a, flag+"="); ok {
				return v
			}
		}
		t.Fatalf("%s has no %s", component, flag)
		return ""
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := om.Default()
	cfg.FrontendAddr, cfg.BackendAddr, cfg.QueryAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.TLS = files("kumi-openmatch", "tls-")
	coreCtx, stopCore := context.WithCancel(ctx)
	core, err := om.Start(coreCtx, slog.New(slog.DiscardHandler), cfg, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopCore(); _ = core.Wait() })

	director := serveHealth(t, files("kumi-director", "tls-"))
	frontend := serveHealth(t, files("kumi-frontend", "tls-"))
	coreClient := files("kumi-frontend", "om-tls-")
	noClientCert := tlsconfig.Config{CAFile: coreClient.CAFile}

	for _, tc := range []struct {
		name     string
		target   string // the address the chart gives the caller
		real     string // where that service listens in this test
		client   tlsconfig.Config
		plain    bool
		wantFail bool
	}{
		{"frontend to core frontend", arg("kumi-frontend", "-om-frontend-addr"), core.FrontendAddr(), coreClient, false, false},
		{"frontend to core query", arg("kumi-frontend", "-om-query-addr"), core.QueryAddr(), coreClient, false, false},
		{"director to core backend", arg("kumi-director", "-backend-addr"), core.BackendAddr(), files("kumi-director", "om-tls-"), false, false},
		{"match function to core query", arg("kumi-matchfunction", "-query-addr"), core.QueryAddr(), files("kumi-matchfunction", "query-tls-"), false, false},
		{"game server to director", arg("kumi-gameserver", "-director"), director, files("kumi-gameserver", "director-tls-"), false, false},
		{"player to frontend", "play.example.com:50600", frontend, tlsconfig.Config{CAFile: coreClient.CAFile}, false, false},
		{"core refuses a caller without the client certificate", arg("kumi-director", "-backend-addr"), core.BackendAddr(), noClientCert, false, true},
		{"core refuses plaintext", arg("kumi-director", "-backend-addr"), core.BackendAddr(), tlsconfig.Config{}, true, true},
		{"director's certificate is not the core's", arg("kumi-director", "-backend-addr"), director, files("kumi-director", "om-tls-"), false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			creds, err := tc.client.DialCredentials()
			if err != nil {
				t.Fatal(err)
			}
			if tc.plain {
				creds = insecure.NewCredentials()
			}
			real := tc.real
			conn, err := grpc.NewClient("passthrough:///"+tc.target, grpc.WithTransportCredentials(creds),
				grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, "tcp", real)
				}))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
			defer ccancel()
			resp, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{})
			if tc.wantFail {
				if err == nil {
					t.Fatalf("health check through %s succeeded", tc.target)
				}
				return
			}
			if err != nil {
				t.Fatalf("health check through %s: %v", tc.target, err)
			}
			if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("status %v", resp.GetStatus())
			}
		})
	}
}

// serveHealth serves the gRPC health service on 127.0.0.1 with the server side of c (what the
// director's control API and the frontend's gRPC API build from their -tls-* flags) and returns its
// address; the server stops with the test.
func serveHealth(t *testing.T, c tlsconfig.Config) string {
	t.Helper()
	creds, err := c.ServerCredentials()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(creds))
	healthpb.RegisterHealthServer(s, health.NewServer())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return ln.Addr().String()
}

// issueForCertificates stands in for cert-manager with a CA issuer: one test CA signs every
// rendered Certificate's request (names, common name, extended key usages) and writes tls.crt,
// tls.key and ca.crt into root/<secretName>/, the Secret layout cert-manager writes.
func issueForCertificates(t *testing.T, objs []*unstructured.Unstructured, root string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kumi test CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	ext := map[string]x509.ExtKeyUsage{"server auth": x509.ExtKeyUsageServerAuth, "client auth": x509.ExtKeyUsageClientAuth}
	n := int64(2)
	for _, o := range objs {
		if o.GetKind() != "Certificate" {
			continue
		}
		names, _, _ := unstructured.NestedStringSlice(o.Object, "spec", "dnsNames")
		cn, _, _ := unstructured.NestedString(o.Object, "spec", "commonName")
		usages, _, _ := unstructured.NestedStringSlice(o.Object, "spec", "usages")
		secret, _, _ := unstructured.NestedString(o.Object, "spec", "secretName")
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(n), Subject: pkix.Name{CommonName: cn}, DNSNames: names,
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
		n++
		for _, u := range usages {
			if u == "digital signature" {
				tmpl.KeyUsage |= x509.KeyUsageDigitalSignature
			} else if e, ok := ext[u]; ok {
				tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, e)
			} else {
				t.Fatalf("Certificate %s: usage %q not handled by this stand-in", o.GetName(), u)
			}
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(root, secret)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for name, data := range map[string][]byte{
			"tls.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			"tls.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
			"ca.crt":  caPEM,
		} {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// podSpec returns the pod template of a kumi Deployment or of the Fleet.
func podSpec(t *testing.T, objs []*unstructured.Unstructured, name string) map[string]any {
	t.Helper()
	for _, o := range objs {
		if o.GetName() != name {
			continue
		}
		var p []string
		switch o.GetKind() {
		case "Deployment":
			p = []string{"spec", "template", "spec"}
		case "Fleet":
			p = []string{"spec", "template", "spec", "template", "spec"}
		default:
			continue
		}
		pod, _, _ := unstructured.NestedMap(o.Object, p...)
		return pod
	}
	t.Fatalf("no Deployment or Fleet %s", name)
	return nil
}

func componentArgs(t *testing.T, objs []*unstructured.Unstructured, name string) []string {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(podSpec(t, objs, name), "containers")
	args, _, _ := unstructured.NestedStringSlice(cs[0].(map[string]any), "args")
	return args
}

// secretFile resolves a file path in component name's container to "<secret>/<key>" through its
// volume mounts and Secret volumes, failing when no mounted Secret key provides it.
func secretFile(t *testing.T, objs []*unstructured.Unstructured, name, file string) string {
	t.Helper()
	pod := podSpec(t, objs, name)
	cs, _, _ := unstructured.NestedSlice(pod, "containers")
	mounts, _, _ := unstructured.NestedSlice(cs[0].(map[string]any), "volumeMounts")
	vols, _, _ := unstructured.NestedSlice(pod, "volumes")
	for _, m := range mounts {
		m := m.(map[string]any)
		rel, ok := strings.CutPrefix(file, m["mountPath"].(string)+"/")
		if !ok {
			continue
		}
		for _, v := range vols {
			v := v.(map[string]any)
			if v["name"] != m["name"] {
				continue
			}
			s, _ := v["secret"].(map[string]any)
			if s == nil {
				t.Fatalf("%s: %s is on volume %s, not a Secret", name, file, v["name"])
			}
			items, _ := s["items"].([]any)
			for _, it := range items {
				it := it.(map[string]any)
				if it["path"] == rel {
					return path.Join(s["secretName"].(string), it["key"].(string))
				}
			}
			t.Fatalf("%s: Secret volume %s has no item for %s", name, v["name"], rel)
		}
	}
	t.Fatalf("%s: no volume mounted for %s", name, file)
	return ""
}

// tlsSecretsOf lists (sorted) the Secrets a component's pod mounts from TLS volumes (those mounted
// under /etc/kumi/tls).
func tlsSecretsOf(t *testing.T, objs []*unstructured.Unstructured, name string) []string {
	t.Helper()
	pod := podSpec(t, objs, name)
	cs, _, _ := unstructured.NestedSlice(pod, "containers")
	mounts, _, _ := unstructured.NestedSlice(cs[0].(map[string]any), "volumeMounts")
	vols, _, _ := unstructured.NestedSlice(pod, "volumes")
	var out []string
	for _, m := range mounts {
		m := m.(map[string]any)
		if !strings.HasPrefix(m["mountPath"].(string), "/etc/kumi/tls/") {
			continue
		}
		for _, v := range vols {
			v := v.(map[string]any)
			if s, ok := v["secret"].(map[string]any); ok && v["name"] == m["name"] {
				out = append(out, s["secretName"].(string))
			}
		}
	}
	slices.Sort(out)
	return out
}

// checkProbes: the kubelet's gRPC probe speaks no TLS, so with TLS on no pod may use one on a
// TLS port, and the frontend's HTTP probes must say HTTPS.
func checkProbes(t *testing.T, objs []*unstructured.Unstructured, tlsOn bool) {
	t.Helper()
	for _, name := range []string{"kumi-frontend", "kumi-openmatch"} {
		if !has(objs, "Deployment", name) {
			continue
		}
		c := container(t, find(t, objs, "Deployment", name))
		for _, p := range []string{"readinessProbe", "livenessProbe"} {
			probe, _, _ := unstructured.NestedMap(c, p)
			if tlsOn && probe["grpc"] != nil {
				t.Errorf("%s %s is a gRPC probe on a TLS port: %v", name, p, probe)
			}
			if name == "kumi-frontend" {
				scheme, _, _ := unstructured.NestedString(probe, "httpGet", "scheme")
				if tlsOn != (scheme == "HTTPS") && probe["httpGet"] != nil {
					t.Errorf("%s %s scheme %q with TLS %v", name, p, scheme, tlsOn)
				}
			}
		}
	}
}

// checkFlagsDocumented: every flag the chart passes a kumi command is one of that command's flags
// in docs/CONFIG.md (generated from the config structs), so a misspelt flag fails here, not when
// the pod starts.
func checkFlagsDocumented(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	doc, err := os.Open("../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	defer doc.Close()
	flags := map[string]map[string]bool{}
	var section map[string]bool
	row := regexp.MustCompile("^\\| `-([a-z0-9-]+)`")
	sc := bufio.NewScanner(doc)
	for sc.Scan() {
		line := sc.Text()
		if cmd, ok := strings.CutPrefix(line, "## kumi "); ok {
			section = map[string]bool{}
			flags[cmd] = section
		} else if m := row.FindStringSubmatch(line); m != nil && section != nil {
			section[m[1]] = true
		}
	}
	for name, cmd := range kumiComponents {
		if !has(objs, "Deployment", name) && !has(objs, "Fleet", name) {
			continue
		}
		args := componentArgs(t, objs, name)
		if len(args) == 0 || args[0] != cmd {
			t.Errorf("%s runs %v, want subcommand %s", name, args, cmd)
			continue
		}
		for _, a := range args[1:] {
			f, _, _ := strings.Cut(strings.TrimPrefix(a, "-"), "=")
			if !flags[cmd][f] {
				t.Errorf("%s passes -%s, not a flag of kumi %s (docs/CONFIG.md)", name, f, cmd)
			}
		}
	}
}
