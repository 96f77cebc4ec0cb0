#!/bin/sh
# Join an on-prem machine to kumi's cluster over Tailscale, as a worker the node operator guards.
#
#   sudo TS_AUTHKEY=tskey-auth-... APISERVER=kube-apiserver.example-tailnet.ts.net:6443 \
#        JOIN_TOKEN=abcdef.0123456789abcdef CA_HASH=sha256:... NODE_CLASS=default \
#        sh install/onprem-join.sh
#
# Needs: tailscaled + tailscale, kubeadm, kubelet and a container runtime already installed
# (Debian/Ubuntu: the tailscale and kubernetes apt repositories). Create JOIN_TOKEN with
# `kubeadm token create --ttl 1h` and CA_HASH from `kubeadm token create --print-join-command`.
# TS_AUTHKEY: a single-use, pre-authorised key tagged e.g. tag:kumi-onprem (ACLs let the tag reach
# the API server's tailnet name on 6443 and let the operator's tag reach this node).
#
# The node registers with its tailnet address as its node IP, so the kubelet and the API server talk
# over the tailnet only, and with the labels the operator selects (kumi.dev/onprem=true) and its
# class. Its Kubernetes node name must equal its tailnet hostname: the operator matches the two.
set -eu

: "${TS_AUTHKEY:?set TS_AUTHKEY (single-use tailnet auth key)}"
: "${APISERVER:?set APISERVER (API server tailnet name:port)}"
: "${JOIN_TOKEN:?set JOIN_TOKEN (kubeadm bootstrap token id.secret)}"
: "${CA_HASH:?set CA_HASH (sha256:... discovery hash)}"
NODE_NAME="${NODE_NAME:-$(hostname -s | tr 'A-Z' 'a-z')}"
NODE_CLASS="${NODE_CLASS:-default}"
TS_TAGS="${TS_TAGS:-tag:kumi-onprem}"

for cmd in tailscale tailscaled kubeadm kubelet; do
	command -v "$cmd" >/dev/null 2>&1 || { echo "onprem-join: $cmd is not installed" >&2; exit 1; }
done

# No log upload to Tailscale and no port mapping on the site's router (the operator only needs the
# tailnet; peers reach this node through DERP or direct UDP).
mkdir -p /etc/default
cat >/etc/default/tailscaled <<CONF
TS_NO_LOGS_NO_SUPPORT=true
TS_DISABLE_PORTMAPPER=true
CONF
systemctl enable --now tailscaled
tailscale up --auth-key="$TS_AUTHKEY" --hostname="$NODE_NAME" --advertise-tags="$TS_TAGS"
TS_IP="$(tailscale ip -4)"

cat >/etc/default/kubelet <<CONF
KUBELET_EXTRA_ARGS=--node-ip=$TS_IP --node-labels=kumi.dev/onprem=true,kumi.dev/node-class=$NODE_CLASS
CONF
kubeadm join "$APISERVER" --token "$JOIN_TOKEN" --discovery-token-ca-cert-hash "$CA_HASH" --node-name "$NODE_NAME"
echo "onprem-join: $NODE_NAME joined $APISERVER over the tailnet ($TS_IP)"
