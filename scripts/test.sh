#!/usr/bin/env bash
# The test command (README: `make test`). Installs what the tests need on a fresh Debian machine,
# then checks generated code, formatting and vet, runs every test with the race detector and ends
# with a short end-to-end `kumi local` run.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n== %s\n' "$*"; }

step "tools"
# apt_install CMD PKG...: installs Debian packages when CMD is missing (apt-get update once per run).
apt_updated=""
apt_install() {
  local cmd=$1; shift
  command -v "$cmd" >/dev/null && return 0
  local sudo=""
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then sudo=sudo; fi
  if [ -z "$apt_updated" ]; then $sudo apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}
apt_install protoc protobuf-compiler
protoc --version
go version
# Each scripts/tools.d/*.sh installs or builds what one part of the suite needs (sourced, in order,
# with apt_install available); it may export variables the tests read.
for f in scripts/tools.d/*.sh; do
  [ -e "$f" ] || continue
  step "tools: $(basename "$f" .sh)"
  # shellcheck source=/dev/null
  . "$f"
done

step "generated code is fresh"
./scripts/gen.sh
if ! git diff --quiet -- api || [ -n "$(git ls-files --others --exclude-standard -- api)" ]; then
  git status --short -- api
  echo "generated code under api/ is stale: run ./scripts/gen.sh and commit the result" >&2
  exit 1
fi

step "gofmt"
bad=$(gofmt -l $(git ls-files '*.go' | grep -v '\.pb\.go$') || true)
if [ -n "$bad" ]; then echo "gofmt needed on: $bad" >&2; exit 1; fi

step "go vet"
go vet ./...

step "go mod tidy"
if ! go mod tidy -diff; then
  echo "go.mod/go.sum are not tidy: run go mod tidy and commit the result" >&2
  exit 1
fi

step "staticcheck"
staticcheck ./...   # installed by scripts/tools.d/10-staticcheck.sh

step "go test -race"
go test -race -count=1 -timeout 30m ./...

# Every benchmark once, so none rots unnoticed (their figures are BENCHMARKS.md's business,
# not a pass/fail criterion here).
step "benchmarks run once"
bench_log=$(mktemp)
go test -run '^$' -bench . -benchtime 1x -timeout 20m ./... >"$bench_log" 2>&1 || {
  cat "$bench_log"; echo "a benchmark failed (output above)" >&2; exit 1; }
echo "$(grep -c '^Benchmark' "$bench_log") benchmark results, every package ok"
rm -f "$bench_log"

if [ -f scripts/smoke.sh ]; then
  step "smoke: kumi local"
  ./scripts/smoke.sh
fi
echo "all checks passed"
