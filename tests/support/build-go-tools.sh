#!/usr/bin/env bash
# Builds the Go programs the tests run, from pinned Go modules, and caches the binaries by version.
#
#   build-go-tools.sh GROUP...        prints NAME=PATH for every binary of the groups, one per line
#
# Each group is a Go module under tests/support/go/GROUP (only go.mod and go.sum are committed; the
# programs are its `tool` lines). Its binaries land in
#   ${RW_CACHE_DIR:-~/.cache/restart-watcher}/go-tools/GROUP-KEY/bin
# where KEY hashes go.mod, go.sum, this script and the Go version: any change to the pins, the
# flags or the toolchain builds into a new folder, so a stale binary is never used. A lock makes
# concurrent callers (several test binaries) wait for one build.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${RW_CACHE_DIR:-$HOME/.cache/restart-watcher}
min_go_minor=25   # the kube group's go.mod says go 1.25; kwok's says 1.26 (checked per group below)
need_disk_mib=6000

log() { echo "build-go-tools: $*" >&2; }
die() { log "$*"; exit 1; }

groups_dir=$here/go
[ $# -gt 0 ] || die "usage: build-go-tools.sh GROUP... (groups: $(ls "$groups_dir" | paste -sd' '))"

# --- The toolchain: Go from PATH, never a download (GOTOOLCHAIN=local).
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
command -v go >/dev/null || die "Go is not on PATH. The tests build Kubernetes and other test tools from Go modules: install Go >= 1.$min_go_minor (e.g. /usr/local/go/bin) and put it first on PATH. The agent itself needs only Rust."
go_version=$(go env GOVERSION)

# The binaries a group's go.mod lists on its `tool` lines.
tools_of() { sed -n '/^tool (/,/^)/{/^tool (/d;/^)/d;s/^\t//p};s/^tool \([^ (][^ ]*\)$/\1/p' "$groups_dir/$1/go.mod"; }
# The name of a tool's binary: the last path element, skipping a major-version suffix (/v3).
bin_name() {
  local p=$1 b
  b=$(basename "$p")
  if [[ $b =~ ^v[0-9]+$ ]]; then b=$(basename "$(dirname "$p")"); fi
  case "$p" in
    go.etcd.io/etcd/server/*) b=etcd ;;
  esac
  echo "$b"
}
# A group's own build settings, from comment lines of its go.mod (hashed into the key with it):
#   // build-env: CGO_ENABLED=1        // build-tags: seccomp
build_env_of() { sed -n 's|^// build-env: ||p' "$groups_dir/$1/go.mod"; }
build_tags_of() { sed -n 's|^// build-tags: ||p' "$groups_dir/$1/go.mod" | paste -sd, -; }
# Version stamps Kubernetes binaries report (kubectl version, /version), from the pinned module.
ldflags_of() {
  local flags="-s -w"
  local kv
  # The pin is `k8s.io/kubernetes vX.Y.Z` alone on a line of a require block, or after `require `.
  kv=$(sed -n 's/^\(require\)\{0,1\}\s*k8s.io\/kubernetes \(v[0-9.]*\).*/\2/p' "$groups_dir/$1/go.mod" | head -n1)
  if [ -n "$kv" ]; then
    local major minor pkg
    major=${kv#v}; major=${major%%.*}
    minor=${kv#v*.}; minor=${minor%%.*}
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      flags+=" -X $pkg.gitVersion=$kv -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
      flags+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
  fi
  echo "$flags"
}

build_group() {
  local g=$1 dir=$groups_dir/$1
  [ -f "$dir/go.mod" ] || die "unknown group '$g' (groups: $(ls "$groups_dir" | paste -sd' '))"
  local want
  want=$(sed -n 's/^go 1\.\([0-9]*\).*/\1/p' "$dir/go.mod")
  local have=${go_version#go1.}; have=${have%%.*}
  if [ "${have:-0}" -lt "${want:-$min_go_minor}" ]; then
    die "group $g needs Go >= 1.$want (its go.mod), but PATH has $go_version: put a newer Go first on PATH."
  fi
  local key
  key=$( { cat "$dir/go.mod" "$dir/go.sum" "$0"; echo "$go_version"; } | sha256sum | cut -c1-16)
  local out=$cache/go-tools/$g-$key
  local tools
  mapfile -t tools < <(tools_of "$g")
  [ ${#tools[@]} -gt 0 ] || die "group $g lists no tool in its go.mod"

  mkdir -p "$cache/go-tools"
  exec 9>"$cache/go-tools/$g.lock"
  flock 9
  if [ ! -f "$out/.complete" ]; then
    local free_mib
    free_mib=$(df -Pm "$cache" | awk 'NR==2 {print $4}')
    if [ "${free_mib:-0}" -lt $need_disk_mib ]; then
      die "only ${free_mib} MiB free under $cache; building $g needs about $need_disk_mib MiB (module and build caches): free some disk or set RW_CACHE_DIR."
    fi
    log "building $g (${tools[*]}) with $go_version into $out; cold, this takes minutes"
    local tmp=$out.tmp.$$
    rm -rf "$tmp"; mkdir -p "$tmp/bin"
    local t start=$SECONDS
    for t in "${tools[@]}"; do
      local env_settings tags
      read -r -a env_settings <<<"$(build_env_of "$g")"
      tags=$(build_tags_of "$g")
      if ! (cd "$dir" && env "${env_settings[@]}" go build -trimpath ${tags:+-tags "$tags"} -ldflags "$(ldflags_of "$g")" \
        -o "$tmp/bin/$(bin_name "$t")" "$t") >"$tmp/build.log" 2>&1; then
        cat "$tmp/build.log" >&2
        if grep -qE 'proxy.golang.org|dial tcp|no such host|410 Gone|404 Not Found' "$tmp/build.log"; then
          die "building $t failed fetching a module: the Go module proxy must be reachable (GOPROXY=$(go env GOPROXY)) and serve every module in tests/support/go/$g/go.sum."
        elif grep -qE 'no space left' "$tmp/build.log"; then
          die "building $t failed: no space left on device (cache: $cache, GOCACHE: $(go env GOCACHE))."
        elif grep -qE 'requires go >=|go.mod requires go' "$tmp/build.log"; then
          die "building $t failed: a module needs a newer Go than $go_version."
        fi
        die "building $t failed (log above)."
      fi
      log "built $(bin_name "$t") in $((SECONDS - start)) s"
    done
    rm -f "$tmp/build.log"
    rm -rf "$out"
    mv "$tmp" "$out"
    touch "$out/.complete"
  fi
  exec 9>&-
  for t in "${tools[@]}"; do
    echo "$(bin_name "$t")=$out/bin/$(bin_name "$t")"
  done
}

for g in "$@"; do build_group "$g"; done
