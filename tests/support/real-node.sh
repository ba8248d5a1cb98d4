#!/usr/bin/env bash
# A real Kubernetes node for the test cluster: containerd, runc, the CNI bridge and a kubelet
# registered with the loopback control plane of cluster.sh. Started by `cluster.sh start DIR
# --real-node NAME`; stopped by `cluster.sh stop DIR`.
#
#   real-node.sh start NODE_DIR NAME APISERVER_URL CA_FILE TOKEN HOSTS_FILE
#                                  prints KEY=VALUE lines (below) once the node is Ready
#   real-node.sh stop NODE_DIR     stops the kubelet, every container, containerd; removes the
#                                  node's cgroups and bridge
#   real-node.sh restart-kubelet NODE_DIR   stops the kubelet and starts it again (containers run on)
#   real-node.sh check             says what this machine lacks to run a node (exit 1), or nothing
#   real-node.sh feature-gates     prints the gates the node's kubelet runs with beyond v1.35's
#                                  defaults (the API server needs them too): the alpha
#                                  RestartAllContainersOnContainerExits (with NodeDeclaredFeatures,
#                                  which it depends on) and ContainerStopSignals
#
# Printed on success: REAL_NODE (its name), CONTAINERD_ADDRESS, CTR, TEST_IMAGE (the test
# program's image, imported), NODE_DIR (where a test may declare a registry host in
# certs.d/<host:port>/hosts.toml, containerd's registry configuration).
#
# The machine's own settings are never changed. containerd and the kubelet run in a private mount
# namespace (unshare -m), where:
# - the kernel settings the kubelet checks (vm/overcommit_memory, kernel/panic,
#   kernel/panic_on_oops) and the forwarding the bridge plugin turns on (net/ipv4/ip_forward) are
#   files of NODE_DIR bind-mounted over /proc/sys, so what they read and write is not the kernel's;
# - /run and /var/lib are tmpfs, hiding the paths they hard-code (/run/containerd,
#   /var/lib/kubelet/device-plugins, /var/lib/cni); the kubelet's root is NODE_DIR/kubelet;
# - /etc/hosts names the node 127.0.0.1 (the API server's own namespace has the same file), so the
#   kubelet's server listens on loopback and the API server reaches it by the node's name.
# What lives outside the namespace is removed on stop: the cgroups under the kubelet's cgroupRoot
# (in every v1 hierarchy) and the bridge with its veths.
set -euo pipefail

cmd=${1:?usage: real-node.sh start|stop|check|feature-gates ...}
# The alpha gates of the behaviours the tests check beyond v1.35's defaults.
gates=RestartAllContainersOnContainerExits=true,NodeDeclaredFeatures=true,ContainerStopSignals=true
if [ "$cmd" = feature-gates ]; then echo "$gates"; exit 0; fi
here=$(cd "$(dirname "$0")" && pwd)

# What this machine lacks to run a node, one line each.
missing() {
  [ "$(id -u)" = 0 ] || echo "root (the kubelet, containerd and runc run as root; id -u is $(id -u))"
  grep -qw overlay /proc/filesystems || echo "overlayfs in the kernel (/proc/filesystems has no overlay; modprobe overlay)"
  [ -d /sys/fs/cgroup/memory ] || grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null ||
    echo "the memory cgroup controller (no /sys/fs/cgroup/memory and no memory in cgroup.controllers)"
  command -v unshare >/dev/null || echo "unshare (util-linux)"
  command -v nsenter >/dev/null || echo "nsenter (util-linux)"
  command -v ip >/dev/null || echo "ip (iproute2), to remove the node's bridge"
  if [ "$(id -u)" = 0 ] && ! unshare -m --propagation private true 2>/dev/null; then
    echo "a private mount namespace (unshare -m --propagation private true failed)"
  fi
}

if [ "$cmd" = check ]; then
  lacks=$(missing)
  [ -z "$lacks" ] && exit 0
  echo "real-node.sh: this machine cannot run the test cluster's real node; it lacks:" >&2
  echo "$lacks" | sed 's/^/  - /' >&2
  exit 1
fi

dir=${2:?usage: real-node.sh start|stop NODE_DIR ...}
dir=${dir%/}

# The cgroup paths of the node's cgroupRoot, in every hierarchy.
cgroup_dirs() {
  local root
  root=$(cat "$dir/cgroup-root" 2>/dev/null) || return 0
  for h in /sys/fs/cgroup/*/; do
    [ -d "$h$root" ] && echo "$h$root"
  done
  [ -f /sys/fs/cgroup/cgroup.controllers ] && [ -d "/sys/fs/cgroup$root" ] && echo "/sys/fs/cgroup$root"
  return 0
}

if [ "$cmd" = restart-kubelet ]; then
  # The kubelet stopped and started again in the node's namespace, its containers left running.
  old=$(cat "$dir/kubelet.pid")
  kill "$old"
  for _ in $(seq 1 100); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
  nsenter --mount="/proc/$(cat "$dir/holder.pid")/ns/mnt" "$dir/kubelet.sh"
  exit 0
fi

if [ "$cmd" = stop ]; then
  # The kubelet first (it would restart what is stopped under it), then every process in the
  # node's cgroups (containers, shims), then containerd and the namespace's holder.
  for p in kubelet; do
    if [ -f "$dir/$p.pid" ]; then kill "$(cat "$dir/$p.pid")" 2>/dev/null || true; fi
  done
  sleep 0.5
  for _ in 1 2 3 4 5; do
    pids=$(for c in $(cgroup_dirs); do find "$c" -name cgroup.procs -exec cat {} + 2>/dev/null; done | sort -u)
    # Shims live outside the cgroups: they are containerd's children, named by its socket.
    shims=$(pgrep -f "containerd-shim-runc-v2 .*-address $dir/" 2>/dev/null || true)
    [ -z "$pids$shims" ] && break
    kill -9 $pids $shims 2>/dev/null || true
    sleep 0.3
  done
  for p in kubelet containerd holder; do
    if [ -f "$dir/$p.pid" ]; then kill -9 "$(cat "$dir/$p.pid")" 2>/dev/null || true; rm -f "$dir/$p.pid"; fi
  done
  # Deepest first: a cgroup can be removed once its children are.
  for c in $(cgroup_dirs); do
    find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  if [ -f "$dir/bridge" ]; then
    ip link del "$(cat "$dir/bridge")" 2>/dev/null || true
    rmdir "/tmp/rw-real-node-claims/$(cat "$dir/bridge")" 2>/dev/null || true
  fi
  # The veths go with their pods' network namespaces; any left (a pod not torn down) go here.
  for v in $(ip -o link show master "$(cat "$dir/bridge" 2>/dev/null || echo none)" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link del "$v" 2>/dev/null || true
  done
  exit 0
fi
[ "$cmd" = start ] || { echo "real-node.sh: unknown command $cmd" >&2; exit 2; }

name=${3:?node name}; apiserver=${4:?API server URL}; ca=${5:?CA file}; token=${6:?token}; hosts=${7:?hosts file}

lacks=$(missing)
if [ -n "$lacks" ]; then
  echo "real-node.sh: this machine cannot run the test cluster's real node; it lacks:" >&2
  echo "$lacks" | sed 's/^/  - /' >&2
  exit 1
fi

declare -A bin
while IFS='=' read -r k v; do bin[$k]=$v; done < <("$here/build-go-tools.sh" kube containerd runc cni)
for b in kubelet kubectl containerd containerd-shim-runc-v2 ctr runc bridge host-local loopback portmap; do
  [ -x "${bin[$b]:-}" ] || { echo "real-node.sh: build-go-tools.sh gave no $b" >&2; exit 1; }
done

mkdir -p "$dir"/{containerd/root,containerd/state,cni/bin,cni/net.d,cni/data,kubelet,pod-logs,sys,bin,certs.d}
dir=$(cd "$dir" && pwd)
# containerd finds its shim and runc on PATH; the CNI plugins in one directory.
for b in containerd-shim-runc-v2 runc ctr; do ln -sf "${bin[$b]}" "$dir/bin/$b"; done
for b in bridge host-local loopback portmap; do ln -sf "${bin[$b]}" "$dir/cni/bin/$b"; done

# A bridge and a /24 of its own: the first rwbrN (N < 200) that no link and no other node's claim
# (a directory, made atomically) holds names both.
mkdir -p /tmp/rw-real-node-claims
n=0
until ! ip link show "rwbr$n" >/dev/null 2>&1 && mkdir /tmp/rw-real-node-claims/rwbr$n 2>/dev/null; do
  n=$((n + 1)); [ $n -lt 200 ] || { echo "real-node.sh: no free bridge name rwbr0..199" >&2; exit 1; }
done
bridge=rwbr$n
echo "$bridge" > "$dir/bridge"
subnet="10.$((200 + n / 250)).$((n % 250)).0/24"
cgroup_root="/rw-node-$$-$n"
echo "$cgroup_root" > "$dir/cgroup-root"

cat > "$dir/cni/net.d/10-rw-bridge.conflist" <<CNI
{
  "cniVersion": "1.0.0",
  "name": "rw-node",
  "plugins": [
    {"type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$dir/cni/data", "ranges": [[{"subnet": "$subnet"}]]}}
  ]
}
CNI

cat > "$dir/containerd/config.toml" <<TOML
version = 3
root = "$dir/containerd/root"
state = "$dir/containerd/state"
[grpc]
  address = "$dir/containerd/containerd.sock"
[ttrpc]
  address = "$dir/containerd/containerd.sock.ttrpc"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = 'registry.test/rw-test:1'
  # Registry hosts (a test's registry on loopback: NODE_DIR/certs.d/<host:port>/hosts.toml), read
  # at each pull.
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = '$dir/certs.d'
[plugins.'io.containerd.cri.v1.runtime']
  # root here lacks CAP_SYS_RESOURCE, so runc cannot lower oom_score_adj: Guaranteed pods keep the
  # kubelet's lowest allowed score instead of -997.
  restrict_oom_score_adj = true
  enable_unprivileged_ports = false
  enable_unprivileged_icmp = false
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = 'io.containerd.runc.v2'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = '$dir/bin/runc'
      SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['$dir/cni/bin']
    conf_dir = '$dir/cni/net.d'
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
TOML

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'nameserver 127.0.0.1\n' > "$dir/resolv.conf"
cat > "$dir/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine's cgroups are v1 controllers plus a cgroup2 mount.
failCgroupV1: false
featureGates: {$(echo "$gates" | sed 's/=/: /g; s/,/, /g')}
cgroupDriver: cgroupfs
cgroupRoot: $cgroup_root
containerRuntimeEndpoint: unix://$dir/containerd/containerd.sock
address: 127.0.0.1
port: $port
readOnlyPort: 0
healthzPort: 0
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
podLogsDir: $dir/pod-logs
resolvConf: $dir/resolv.conf
failSwapOn: false
protectKernelDefaults: false
makeIPTablesUtilChains: false
localStorageCapacityIsolation: true
# The machine's disk is shared and often near full: only a pod's own limits evict here.
evictionHard: {memory.available: "64Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
evictionPressureTransitionPeriod: 10s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
nodeStatusUpdateFrequency: 5s
syncFrequency: 10s
serializeImagePulls: false
rotateCertificates: false
YAML

cat > "$dir/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: "$apiserver", certificate-authority: "$ca"}
users:
- name: kubelet
  user: {token: "$token"}
contexts:
- name: kubelet
  context: {cluster: test, user: kubelet}
current-context: kubelet
KC

# The kubelet's cgroupRoot, made beforehand in every v1 hierarchy (name=systemd included).
for h in /sys/fs/cgroup/*/; do
  [ -f "${h}cgroup.procs" ] && [ "$(basename "$h")" != unified ] && mkdir -p "$h${cgroup_root#/}"
done

# The values the kubelet expects, as files; ip_forward as the machine has it.
printf '1\n' > "$dir/sys/overcommit_memory"; printf '10\n' > "$dir/sys/panic"; printf '1\n' > "$dir/sys/panic_on_oops"
cat /proc/sys/net/ipv4/ip_forward > "$dir/sys/ip_forward"

# The kubelet, started in the node's namespace (at start, and by restart-kubelet).
cat > "$dir/kubelet.sh" <<KUBELET
#!/usr/bin/env bash
"${bin[kubelet]}" --config "$dir/kubelet.yaml" --kubeconfig "$dir/kubeconfig" --root-dir /var/lib/kubelet \\
  --hostname-override "$name" --v=2 >> "$dir/kubelet.log" 2>&1 &
echo \$! > "$dir/kubelet.pid"
KUBELET
chmod +x "$dir/kubelet.sh"

cat > "$dir/inside.sh" <<INSIDE
#!/usr/bin/env bash
set -euo pipefail
mount --bind "$dir/sys/overcommit_memory" /proc/sys/vm/overcommit_memory
mount --bind "$dir/sys/panic" /proc/sys/kernel/panic
mount --bind "$dir/sys/panic_on_oops" /proc/sys/kernel/panic_on_oops
mount --bind "$dir/sys/ip_forward" /proc/sys/net/ipv4/ip_forward
mount --bind "$hosts" /etc/hosts
mount -t tmpfs -o mode=755 rw-node-run /run
mount -t tmpfs -o mode=755 rw-node-var-lib /var/lib
mkdir -p /var/lib/kubelet
mount --bind "$dir/kubelet" /var/lib/kubelet
export PATH="$dir/bin:\$PATH"
"${bin[containerd]}" --config "$dir/containerd/config.toml" > "$dir/containerd.log" 2>&1 &
echo \$! > "$dir/containerd.pid"
for i in \$(seq 1 100); do [ -S "$dir/containerd/containerd.sock" ] && break; sleep 0.1; done
"${bin[ctr]}" --address "$dir/containerd/containerd.sock" -n k8s.io images import --all-platforms "$dir/test-image.tar" > "$dir/import.log" 2>&1
"$dir/kubelet.sh"
# Holds the namespace (and its mounts) while the node runs.
exec sleep infinity
INSIDE
chmod +x "$dir/inside.sh"

# The test program's image (the sandbox image too).
"$here/test-image.sh" "$dir/test-image.tar" >/dev/null

nohup unshare -m --propagation private "$dir/inside.sh" > "$dir/inside.log" 2>&1 &
echo $! > "$dir/holder.pid"

fail() {
  echo "real-node.sh: $1; last lines of $2:" >&2
  tail -20 "$dir/$2" >&2 || true
  "$0" stop "$dir"
  exit 1
}
for i in $(seq 1 240); do
  kill -0 "$(cat "$dir/holder.pid")" 2>/dev/null || fail "the node's namespace exited" inside.log
  if [ -f "$dir/kubelet.pid" ]; then break; fi
  sleep 0.25
done
[ -f "$dir/kubelet.pid" ] || fail "containerd did not start within 60 s" containerd.log
for i in $(seq 1 240); do
  ready=$("${bin[kubectl]}" --kubeconfig "$dir/kubeconfig" get node "$name" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
  [ "$ready" = True ] && break
  kill -0 "$(cat "$dir/kubelet.pid")" 2>/dev/null || fail "the kubelet exited" kubelet.log
  [ "$i" -lt 240 ] || fail "node $name not Ready after 120 s" kubelet.log
  sleep 0.5
done
echo "REAL_NODE=$name"
echo "CONTAINERD_ADDRESS=$dir/containerd/containerd.sock"
echo "CTR=${bin[ctr]}"
echo "TEST_IMAGE=registry.test/rw-test:1"
echo "NODE_DIR=$dir"
