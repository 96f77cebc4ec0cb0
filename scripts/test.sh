#!/usr/bin/env bash
# The test command (README: `make test`). Installs what the tests need on a fresh Debian machine,
# then checks generated code, formatting and vet, runs every test with the race detector and ends
# with a short end-to-end `kumi local` run.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n== %s\n' "$*"; }

step "tools"
if ! command -v protoc >/dev/null; then
  sudo=""
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then sudo=sudo; fi
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq protobuf-compiler >/dev/null
fi
protoc --version
go version

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

step "go test -race"
go test -race -count=1 -timeout 20m ./...

if [ -f scripts/smoke.sh ]; then
  step "smoke: kumi local"
  ./scripts/smoke.sh
fi
echo "all checks passed"
