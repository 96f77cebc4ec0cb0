# Helm for the chart acceptance tests (install/): built from the Go module proxy (no release
# download here), cached under the Go build cache so later runs only check the version.
# Exports KUMI_HELM: the helm binary install/'s tests run.
helm_version=v4.3.2
helm_bin_dir="$(go env GOCACHE)/kumi-tools/helm-$helm_version"
if [ ! -x "$helm_bin_dir/helm" ]; then
  echo "building helm $helm_version (first run: a few minutes, much longer on a loaded machine)"
  GOBIN="$helm_bin_dir" go install "helm.sh/helm/v4/cmd/helm@$helm_version"
fi
export KUMI_HELM="$helm_bin_dir/helm"
"$KUMI_HELM" version --short
