package nodeoperator

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Labels on objects the operator creates.
const (
	LabelManagedBy   = "app.kubernetes.io/managed-by" // = "kumi" on bootstrap-token Secrets
	LabelVM          = "kumi.dev/vm"                  // the fallback VM a Secret was issued for
	LabelFallback    = "kumi.dev/fallback"            // "true" on fallback Nodes
	LabelFallbackFor = "kumi.dev/fallback-for"        // the on-prem node a fallback Node replaces
)

const tokenAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

func randomToken(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		b[i] = tokenAlphabet[int(b[i])%len(tokenAlphabet)]
	}
	return string(b), nil
}

// BootstrapToken is a kubeadm bootstrap token ("id.secret") stored as a Secret in kube-system.
type BootstrapToken struct{ ID, Secret string }

func (t BootstrapToken) String() string { return t.ID + "." + t.Secret }

// createBootstrapToken writes bootstrap-token-<id> (type bootstrap.kubernetes.io/token) with an
// expiry, labelled with the VM it is for; the token cleaner deletes it at expiry even if the
// operator never gets to revoke it.
func createBootstrapToken(ctx context.Context, c client.Client, vm, node string, expires time.Time) (BootstrapToken, error) {
	id, err := randomToken(6)
	if err != nil {
		return BootstrapToken{}, err
	}
	sec, err := randomToken(16)
	if err != nil {
		return BootstrapToken{}, err
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-" + id, Namespace: metav1.NamespaceSystem,
			Labels: map[string]string{LabelManagedBy: "kumi", LabelVM: vm}},
		Type: corev1.SecretTypeBootstrapToken,
		StringData: map[string]string{
			"token-id":                       id,
			"token-secret":                   sec,
			"expiration":                     expires.UTC().Format(time.RFC3339),
			"usage-bootstrap-authentication": "true",
			"usage-bootstrap-signing":        "true",
			"auth-extra-groups":              "system:bootstrappers:kubeadm:default-node-token",
			"description":                    "kumi fallback VM " + vm + " for " + node,
		},
	}
	if err := c.Create(ctx, s); err != nil {
		return BootstrapToken{}, fmt.Errorf("bootstrap token: %w", err)
	}
	return BootstrapToken{ID: id, Secret: sec}, nil
}

// revokeBootstrapTokens deletes every bootstrap-token Secret issued for vm (a deletecollection by
// label: the operator never needs to read Secrets in kube-system); none left is fine.
func revokeBootstrapTokens(ctx context.Context, c client.Client, vm string) error {
	err := c.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(metav1.NamespaceSystem),
		client.MatchingLabels{LabelManagedBy: "kumi", LabelVM: vm})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("revoke bootstrap tokens of %s: %w", vm, err)
	}
	return nil
}

// caCertHash computes kubeadm's discovery hash ("sha256:" + hex of the CA's SubjectPublicKeyInfo)
// from the kube-public/cluster-info ConfigMap that kubeadm publishes.
func caCertHash(ctx context.Context, c client.Client) (string, error) {
	var cm corev1.ConfigMap
	if err := c.Get(ctx, client.ObjectKey{Namespace: metav1.NamespacePublic, Name: "cluster-info"}, &cm); err != nil {
		return "", fmt.Errorf("kube-public/cluster-info (set -join-ca-hash instead): %w", err)
	}
	kc, err := clientcmd.Load([]byte(cm.Data["kubeconfig"]))
	if err != nil {
		return "", fmt.Errorf("cluster-info kubeconfig: %w", err)
	}
	for _, cl := range kc.Clusters {
		blk, _ := pem.Decode(cl.CertificateAuthorityData)
		if blk == nil {
			continue
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return "", fmt.Errorf("cluster-info CA: %w", err)
		}
		sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
		return "sha256:" + hex.EncodeToString(sum[:]), nil
	}
	return "", errors.New("cluster-info holds no CA certificate")
}

// AuthKeys mints and revokes the single-use tailnet auth keys fallback VMs join with.
type AuthKeys interface {
	Create(ctx context.Context, description string, ttl time.Duration) (id, key string, err error)
	Revoke(ctx context.Context, id string) error
}

// TailscaleAPI is AuthKeys over the Tailscale v2 API (POST/DELETE /api/v2/tailnet/{tailnet}/keys):
// keys are single-use, pre-authorised, tagged, non-ephemeral (the VM must survive a tailscaled
// restart) and expire after the TTL.
type TailscaleAPI struct {
	BaseURL string
	Tailnet string
	KeyFile string // API access token, re-read on every call so a rotated Secret takes effect
	Tags    []string
	HTTP    *http.Client
}

func (a *TailscaleAPI) do(ctx context.Context, method, path string, body any, out any) error {
	tok, err := os.ReadFile(a.KeyFile)
	if err != nil {
		return fmt.Errorf("tailscale api: -tailnet-api-key-file: %w", err)
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(a.BaseURL, "/")+path, rd)
	if err != nil {
		return fmt.Errorf("tailscale api: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	req.Header.Set("Content-Type", "application/json")
	hc := a.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("tailscale api %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if method == http.MethodDelete && resp.StatusCode == http.StatusNotFound {
		return nil
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("tailscale api %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("tailscale api %s %s: %w", method, path, err)
		}
	}
	return nil
}

// Create mints one key.
func (a *TailscaleAPI) Create(ctx context.Context, description string, ttl time.Duration) (string, string, error) {
	body := map[string]any{
		"capabilities": map[string]any{"devices": map[string]any{"create": map[string]any{
			"reusable": false, "ephemeral": false, "preauthorized": true, "tags": a.Tags}}},
		"expirySeconds": int64(ttl / time.Second),
		"description":   description,
	}
	var out struct{ ID, Key string }
	if err := a.do(ctx, http.MethodPost, "/api/v2/tailnet/"+url.PathEscape(a.Tailnet)+"/keys", body, &out); err != nil {
		return "", "", err
	}
	if out.ID == "" || out.Key == "" {
		return "", "", errors.New("tailscale api: key response without id or key")
	}
	return out.ID, out.Key, nil
}

// Revoke deletes a key; an unknown key is already revoked.
func (a *TailscaleAPI) Revoke(ctx context.Context, id string) error {
	return a.do(ctx, http.MethodDelete, "/api/v2/tailnet/"+url.PathEscape(a.Tailnet)+"/keys/"+url.PathEscape(id), nil, nil)
}

// startupScript is the fallback VM's first boot: join the tailnet with the single-use key, then
// join Kubernetes over the tailnet with the bootstrap token. The image must carry tailscaled,
// kubeadm and kubelet (install/onprem-join.sh does the same steps on an on-prem machine). The
// secrets in it are readable from the instance metadata, which is why both are single-use, expire
// within -join-ttl and are revoked as soon as the Node is Ready.
var startupScript = template.Must(template.New("startup").Parse(`#!/bin/sh
# kumi fallback VM {{.VM}} for on-prem node {{.Node}} (written by kumi nodeoperator)
set -eu
export TS_NO_LOGS_NO_SUPPORT=true
systemctl enable --now tailscaled
tailscale up --auth-key='{{.AuthKey}}' --hostname='{{.VM}}' --advertise-tags='{{.Tags}}'
cat >/etc/default/kubelet <<'KUBELET'
KUBELET_EXTRA_ARGS=--node-labels={{.Labels}} --node-ip=$(tailscale ip -4)
KUBELET
sed -i "s/\$(tailscale ip -4)/$(tailscale ip -4)/" /etc/default/kubelet
kubeadm join '{{.APIServer}}' --token '{{.Token}}' --discovery-token-ca-cert-hash '{{.CAHash}}' --node-name '{{.VM}}'
`))

type scriptData struct {
	VM, Node, AuthKey, Tags, Labels, APIServer, Token, CAHash string
}

func renderStartupScript(d scriptData) (string, error) {
	var b strings.Builder
	if err := startupScript.Execute(&b, d); err != nil {
		return "", err
	}
	return b.String(), nil
}
