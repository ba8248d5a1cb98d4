#!/usr/bin/env bash
# Builds otelcol-restart-watcher, the OpenTelemetry Collector distribution of
# otel-collector/builder-config.yaml, from the Go module proxy, and caches it by version.
#
#   otel-collector/build.sh            prints the binary's path (builds it on first use)
#   otel-collector/build.sh --update   re-resolves otel-collector/dist/go.mod and go.sum from the
#                                      manifest (after changing a version in it), then builds
#
# The OpenTelemetry Collector Builder (`ocb`) of the manifest's release generates the sources; the
# module versions come from the committed dist/go.mod and go.sum, so every build is the same
# collector. (ocb's own module resolution runs `go mod tidy`, which also fetches the test-only
# dependencies of the components, and the proxy does not serve one of k8sattributes'.)
# The binary lands in ${RW_CACHE_DIR:-~/.cache/restart-watcher}/otelcol-RELEASE-KEY/, where KEY
# hashes the manifest, dist/go.mod, dist/go.sum, this script and the Go version: a change to any of
# them builds into a new folder, so a stale binary is never used. A lock makes concurrent callers
# wait for one build. Users build the same collector with this script, or with ocb and the manifest.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
manifest=$here/builder-config.yaml
cache=${RW_CACHE_DIR:-$HOME/.cache/restart-watcher}
name=otelcol-restart-watcher
need_disk_mib=3000

log() { echo "otel-collector/build.sh: $*" >&2; }
die() { log "$*"; exit 1; }

update=false
case "${1:-}" in
  "") ;;
  --update) update=true ;;
  *) die "usage: build.sh [--update]" ;;
esac

export GOTOOLCHAIN=local CGO_ENABLED=0
command -v go >/dev/null || die "Go is not on PATH: building the collector needs Go >= 1.25 (the agent itself needs only Rust)."
go_version=$(go env GOVERSION)

release=$(sed -n 's/^  version: \([0-9.]*\)$/\1/p' "$manifest")
[ -n "$release" ] || die "$manifest has no dist.version"
# The modules the manifest names, as module@version.
modules() { sed -n 's/^ *- gomod: \([^ ]*\) \(v[^ ]*\)$/\1@\2/p' "$manifest"; }

mkdir -p "$cache"
exec 9>"$cache/$name.lock"
flock 9

# ocb of the same release, cached by release and Go version.
ocb=$cache/ocb-v$release-$go_version/builder
if [ ! -x "$ocb" ]; then
  log "installing ocb v$release"
  GOBIN=$(dirname "$ocb") GOFLAGS=-mod=mod go install "go.opentelemetry.io/collector/cmd/builder@v$release" >&2 \
    || die "installing ocb failed: the Go module proxy must be reachable (GOPROXY=$(go env GOPROXY))."
fi

# Generates the distribution's sources (no go.mod) into $1.
generate() {
  sed "s#^  output_path: .*#  output_path: $1#" "$manifest" >"$1.manifest.yaml"
  # ocb makes a temporary folder of its own at start: keep it beside ours, removed with it.
  mkdir -p "$1.tmp"
  TMPDIR=$1.tmp "$ocb" --config "$1.manifest.yaml" --skip-get-modules --skip-compilation >"$1.ocb.log" 2>&1 \
    || { cat "$1.ocb.log" >&2; die "ocb could not generate the sources from $manifest (log above)"; }
}

if $update; then
  src=$(mktemp -d)
  trap 'rm -rf "$src" "$src".*' EXIT
  generate "$src"
  mapfile -t mods < <(modules)
  (
    cd "$src"
    go mod init restart-watcher.dev/otelcol >/dev/null 2>&1
    # The components and the collector core at the manifest's release; then whatever else their
    # packages import (not their tests), at the versions those modules ask for.
    go get "${mods[@]}" "go.opentelemetry.io/collector/otelcol@v$release" "go.opentelemetry.io/collector/service@v$release"
    go get .
  ) >&2 || die "resolving the manifest's modules failed (log above)"
  mkdir -p "$here/dist"
  cp "$src/go.mod" "$src/go.sum" "$here/dist/"
  log "updated $here/dist/go.mod and go.sum"
fi

[ -f "$here/dist/go.mod" ] && [ -f "$here/dist/go.sum" ] || die "$here/dist/go.mod or go.sum is missing: run build.sh --update"
# The pins must be the manifest's: each module it names is required at its version.
while read -r m; do
  grep -qE "^\s*(require )?${m%@*} ${m#*@}( |$)" "$here/dist/go.mod" \
    || die "dist/go.mod does not require ${m%@*} ${m#*@} as the manifest says: run build.sh --update"
done < <(modules)

key=$( { cat "$manifest" "$here/dist/go.mod" "$here/dist/go.sum" "$0"; echo "$go_version"; } | sha256sum | cut -c1-16)
out=$cache/$name-$release-$key
if [ ! -f "$out/.complete" ]; then
  free_mib=$(df -Pm "$cache" | awk 'NR==2 {print $4}')
  [ "${free_mib:-0}" -ge $need_disk_mib ] \
    || die "only ${free_mib} MiB free under $cache; building the collector needs about $need_disk_mib MiB: free some disk or set RW_CACHE_DIR."
  log "building $name $release with $go_version into $out; cold, this takes minutes"
  start=$SECONDS
  tmp=$out.tmp.$$
  rm -rf "$tmp" "$tmp".*
  mkdir -p "$tmp"
  generate "$tmp/src"
  cp "$here/dist/go.mod" "$here/dist/go.sum" "$tmp/src/"
  (cd "$tmp/src" && GOFLAGS=-mod=readonly go build -trimpath -ldflags "-s -w" -o "$tmp/$name" .) >"$tmp/build.log" 2>&1 || {
    cat "$tmp/build.log" >&2
    grep -qE 'proxy.golang.org|dial tcp|no such host|403 Forbidden|404 Not Found' "$tmp/build.log" \
      && die "building the collector failed fetching a module: the Go module proxy must serve every module of otel-collector/dist/go.sum."
    die "building the collector failed (log above)"
  }
  rm -rf "$tmp/src" "$tmp"/src.* "$tmp/build.log"
  rm -rf "$out"
  mv "$tmp" "$out"
  touch "$out/.complete"
  log "built $name in $((SECONDS - start)) s"
fi
exec 9>&-
echo "$out/$name"
