#!/usr/bin/env bash
# Builds kube-apiserver v1.20.2 from Debian's `kubernetes` source package, offline (vendored modules),
# and installs Debian's etcd. The binary is cached outside the clone, keyed by version, so only the
# first run on a machine pays the build (about 9 minutes on 2 cores).
#
# Prints the path of the binary on its last line of stdout.
# Env: RW_CACHE_DIR (default ~/.cache/restart-watcher).
set -euo pipefail

KUBE_VERSION=v1.20.2
DEB_VERSION=1.20.5+really1.20.2-1.1+deb12u1
cache=${RW_CACHE_DIR:-$HOME/.cache/restart-watcher}
out_dir=$cache/kube-apiserver-$KUBE_VERSION
bin=$out_dir/kube-apiserver

log() { echo "build-apiserver: $*" >&2; }

need_pkgs=()
command -v etcd >/dev/null || need_pkgs+=(etcd-server)
command -v etcdctl >/dev/null || need_pkgs+=(etcd-client)
command -v openssl >/dev/null || need_pkgs+=(openssl)

if [ -x "$bin" ] && [ ${#need_pkgs[@]} -eq 0 ]; then
  echo "$bin"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_update() { if [ $apt_updated -eq 0 ]; then apt-get update -qq >&2; apt_updated=1; fi; }

if [ ${#need_pkgs[@]} -gt 0 ]; then
  apt_update
  log "installing ${need_pkgs[*]}"
  apt-get install -y -qq "${need_pkgs[@]}" >&2
fi

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

apt_update
log "installing build dependencies"
apt-get install -y -qq golang-go rsync jq dpkg-dev golang-github-modern-go-reflect2-dev >&2

# deb-src entry derived from the machine's own Debian source (same URIs and suites).
src_list=/etc/apt/sources.list.d/restart-watcher-deb-src.sources
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$src_list"
  elif [ -f /etc/apt/sources.list ]; then
    grep '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' > /etc/apt/sources.list.d/restart-watcher-deb-src.list
  else
    log "no Debian apt source found to derive a deb-src entry from"; exit 1
  fi
  apt_updated=0
  apt_update
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/rw-apiserver-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
log "fetching source package kubernetes=$DEB_VERSION"
apt-get source -qq --download-only "kubernetes=$DEB_VERSION" >&2
dpkg-source --no-check -x kubernetes_*.dsc src >&2
cd src

# The vendored reflect2 v1.0.1 panics on JSON request bodies under Go >= 1.18: use Debian's 1.0.2.
r2=/usr/share/gocode/src/github.com/modern-go/reflect2
rm -rf vendor/github.com/modern-go/reflect2
cp -r "$r2" vendor/github.com/modern-go/reflect2
rm -rf vendor/github.com/modern-go/reflect2/.git* vendor/github.com/modern-go/reflect2/*_test.go
sed -i 's#github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 v1.0.2#g' go.mod vendor/modules.txt
for m in staging/src/k8s.io/*/go.mod; do sed -i 's#github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 v1.0.2#g' "$m"; done
[ -f go.sum ] && sed -i '/github.com\/modern-go\/reflect2 v1.0.1/d' go.sum

log "building kube-apiserver (several minutes)"
unset OUT_DIR
export CGO_ENABLED=0 GOPROXY=off GOFLAGS=-mod=vendor GO111MODULE=on
export KUBE_GIT_VERSION=$KUBE_VERSION KUBE_GIT_TREE_STATE=clean KUBE_GIT_COMMIT=faecb196815e248d3ecfb03c680a4507229c2a56
export GOCACHE=$cache/go-build
make WHAT=cmd/kube-apiserver >&2

built=$(find _output -type f -name kube-apiserver -perm -u+x | head -n1)
[ -n "$built" ] || { log "build produced no kube-apiserver binary"; exit 1; }
mkdir -p "$out_dir"
cp "$built" "$bin.tmp"
mv "$bin.tmp" "$bin"
log "built $bin"
echo "$bin"
