# staticcheck from the Go module proxy, built once per version into the user cache and put on PATH
# (scripts/test.sh runs it after go vet). v0.8.x understands Go 1.26 syntax and the standard library.
staticcheck_version=v0.8.2
staticcheck_dir="${XDG_CACHE_HOME:-$HOME/.cache}/kumi-tools/staticcheck-$staticcheck_version"
if [ ! -x "$staticcheck_dir/staticcheck" ]; then
  GOBIN="$staticcheck_dir" go install "honnef.co/go/tools/cmd/staticcheck@$staticcheck_version"
fi
export PATH="$staticcheck_dir:$PATH"
staticcheck -version
