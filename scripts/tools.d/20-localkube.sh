# Builds (once; cached in the Go build cache) the real kube-apiserver + etcd that the Kubernetes
# tests (internal/kubetest and its users) run, and points envtest at it.
KUBEBUILDER_ASSETS=$(./scripts/localkube.sh)
export KUBEBUILDER_ASSETS
echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
