#!/usr/bin/env bash
# Builds hack/localkube (the real kube-apiserver, etcd, kube-scheduler and kube-controller-manager
# as one multi-call binary, from the Go module proxy) once, into a directory of the Go build cache
# keyed by its sources and the Go version, and prints that directory. The directory holds the binary
# and the symlinks envtest looks for, so it is what KUBEBUILDER_ASSETS should be:
#
#   export KUBEBUILDER_ASSETS=$(./scripts/localkube.sh)
#
# Cold: about 10 minutes and 3 GB of RAM on 2 cores. Warm: the hash matches and it prints at once.
# Progress goes to stderr; only the directory goes to stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src=$root/hack/localkube
key=$( { go version; cd "$src" && cat go.mod go.sum $(ls *.go | LC_ALL=C sort); } | sha256sum | cut -c1-16)
dir=$(go env GOCACHE)/kumi-localkube/$key
names="kube-apiserver etcd kube-scheduler kube-controller-manager"

ready() {
  [ -x "$dir/localkube" ] || return 1
  for n in $names; do [ -L "$dir/$n" ] || return 1; done
}

if ! ready; then
  mkdir -p "$dir"
  # One builder at a time: parallel test packages may all call this on a cold machine.
  exec 9>"$dir/.lock"
  flock 9
  if ! ready; then
    echo "localkube: building the local Kubernetes control plane into $dir (cold build takes ~10 min)" >&2
    start=$(date +%s)
    (cd "$src" && GOFLAGS=-mod=readonly CGO_ENABLED=0 go build -trimpath -o "$dir/localkube.tmp" .)
    mv -f "$dir/localkube.tmp" "$dir/localkube"
    for n in $names; do ln -sfn localkube "$dir/$n"; done
    echo "localkube: built in $(( $(date +%s) - start ))s" >&2
  fi
  flock -u 9
fi
echo "$dir"
