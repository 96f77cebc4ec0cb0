#!/usr/bin/env bash
# Smoke run: the README's first command with a crowd of 50, which must end with exit 0.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/kumi" ./cmd/kumi
# Free ports so a CI machine's services never collide with the standard ones.
KUMI_LOG_LEVEL=warn timeout 300 "$bin/kumi" local -players 50 -duration 6s \
  -om-frontend-addr 127.0.0.1:0 -om-backend-addr 127.0.0.1:0 -om-query-addr 127.0.0.1:0 \
  -mmf-addr 127.0.0.1:0 -frontend-addr 127.0.0.1:0 -frontend-http-addr 127.0.0.1:0 \
  -director-addr 127.0.0.1:0 -admin-addr 127.0.0.1:0 -metrics-addr 127.0.0.1:0 -key-dir "$bin"
