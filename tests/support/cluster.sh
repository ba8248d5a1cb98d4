#!/usr/bin/env bash
# A whole Kubernetes v1.35 control plane on loopback, for tests, benches and the docs' walkthrough:
# etcd, kube-apiserver (TLS, token and ServiceAccount auth, RBAC), kube-controller-manager,
# kube-scheduler, and kwok simulating the kubelets of N nodes. Built by build-go-tools.sh.
#
#   cluster.sh start DIR [--nodes NAME,NAME...] [--real-node NAME] [EXTRA_KUBE_APISERVER_FLAGS...]
#                                   prints KEY=VALUE lines (below) once every node is Ready
#   cluster.sh stop DIR             stops everything it started; nothing is left running
#
# Default nodes: node-a,node-b. DIR receives the PKI, tokens, kubeconfigs, data and logs.
# Printed on success: APISERVER_URL, ETCD_ENDPOINT, ADMIN_KUBECONFIG, WATCHER_KUBECONFIG (user
# `watcher`, no RBAC), PODREADER_KUBECONFIG (user `podreader`, no RBAC until a test grants it),
# BADTOKEN_KUBECONFIG (a token the server does not know), ADMIN_TOKEN, WATCHER_TOKEN, KUBECTL,
# ETCDCTL, KUBE_APISERVER, BIN_DIR.
# With --real-node NAME, a real node joins them: containerd, runc and a kubelet (real-node.sh, whose
# KEY=VALUE lines are printed too); the API server then runs in a private mount namespace whose
# /etc/hosts names the node 127.0.0.1, so it reaches the kubelet on loopback. Both then run with
# the alpha gates of real-node.sh's REAL_NODE_FEATURE_GATES (restart-all, stop signals), which the
# v1.35 API server must serve for the kubelet to act on them.
# With RW_OWNER_PID set, a watchdog stops the cluster and removes DIR when that process exits.
set -euo pipefail

cmd=${1:?usage: cluster.sh start|stop DIR [--nodes a,b] [kube-apiserver flags]}
dir=${2:?usage: cluster.sh start|stop DIR}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
components="kwok scheduler controller-manager apiserver etcd"

if [ "$cmd" = stop ]; then
  # A real node first: its kubelet would otherwise keep restarting what is being stopped.
  for node in "$dir"/real-node-*/; do
    [ -d "$node" ] && "$here/real-node.sh" stop "$node"
  done
  for p in $components; do
    if [ -f "$dir/$p.pid" ]; then kill "$(cat "$dir/$p.pid")" 2>/dev/null || true; fi
  done
  for _ in $(seq 1 20); do
    alive=0
    for p in $components; do
      if [ -f "$dir/$p.pid" ] && kill -0 "$(cat "$dir/$p.pid")" 2>/dev/null; then alive=1; fi
    done
    [ $alive -eq 0 ] && break
    sleep 0.25
  done
  for p in $components; do
    if [ -f "$dir/$p.pid" ]; then kill -9 "$(cat "$dir/$p.pid")" 2>/dev/null || true; rm -f "$dir/$p.pid"; fi
  done
  exit 0
fi
[ "$cmd" = start ] || { echo "unknown command $cmd" >&2; exit 2; }

nodes=node-a,node-b
real_node=
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) nodes=${2:?--nodes needs a comma-separated list}; shift 2 ;;
    --real-node) real_node=${2:?--real-node needs a node name}; shift 2 ;;
    *) break ;;
  esac
done
if [ -n "$real_node" ]; then "$here/real-node.sh" check; fi

declare -A bin
while IFS='=' read -r k v; do bin[$k]=$v; done < <("$here/build-go-tools.sh" kube kwok)
for b in etcd etcdctl kube-apiserver kube-controller-manager kube-scheduler kubectl kwok; do
  [ -x "${bin[$b]:-}" ] || { echo "cluster.sh: build-go-tools.sh gave no $b" >&2; exit 1; }
done
kubectl=${bin[kubectl]}

command -v openssl >/dev/null || { echo "cluster.sh: openssl is needed (apt-get install openssl)" >&2; exit 1; }
# A free port below the kernel's ephemeral range: a port the kernel handed out for port 0 and that
# was closed again can be handed to the next process binding port 0 (a backend of a test running
# beside this one) before the server here binds it. Below the range, no port-0 bind takes it.
free_port() {
  python3 - <<'PY'
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(1000):
    port = random.randint(10000, max(10001, low - 1))
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
else:
    raise SystemExit("no free port below the ephemeral range")
PY
}

mkdir -p "$dir"
cd "$dir"

# PKI: a CA and a serving certificate for 127.0.0.1; a service-account signing key.
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=rw-test-ca" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=kube-apiserver" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > san.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile san.ext 2>/dev/null
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null

token() { openssl rand -hex 16; }
admin_token=$(token); watcher_token=$(token); podreader_token=$(token)
kcm_token=$(token); scheduler_token=$(token); kwok_token=$(token); kubelet_token=$(token)
# The control-plane components authenticate as the users the bootstrap RBAC policy names.
cat > tokens.csv <<CSV
$admin_token,admin,admin-uid,system:masters
$watcher_token,watcher,watcher-uid
$podreader_token,podreader,podreader-uid
$kcm_token,system:kube-controller-manager,kcm-uid
$scheduler_token,system:kube-scheduler,scheduler-uid
$kwok_token,kwok,kwok-uid,system:masters
$kubelet_token,system:node:${real_node:-none},kubelet-uid,"system:nodes,system:masters"
CSV
# The real node's name resolves to loopback for the API server and the kubelet (their namespaces).
printf '127.0.0.1 localhost %s\n::1 localhost\n' "$real_node" > hosts

etcd_client=$(free_port); etcd_peer=$(free_port); secure_port=$(free_port)
url="https://127.0.0.1:$secure_port"
kubeconfig() { # name token
  cat > "$1.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: "$url", certificate-authority: "$dir/ca.crt"}
users:
- name: $1
  user: {token: "$2"}
contexts:
- name: $1
  context: {cluster: test, user: $1, namespace: default}
current-context: $1
KC
}
kubeconfig admin "$admin_token"
kubeconfig watcher "$watcher_token"
kubeconfig podreader "$podreader_token"
kubeconfig badtoken "$(token)"
kubeconfig controller-manager "$kcm_token"
kubeconfig scheduler "$scheduler_token"
kubeconfig kwok "$kwok_token"

# On any failure from here on, stop what was started.
trap '"$here/cluster.sh" stop "$dir"' ERR
fail() {
  echo "cluster.sh: $1; last lines of $2.log:" >&2
  tail -20 "$dir/$2.log" >&2
  "$here/cluster.sh" stop "$dir"
  exit 1
}
started() { # name: fails when the process already exited
  kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null || fail "$1 exited" "$1"
}

# etcd's default 2 GiB backend quota fills at 100,000 pods with 8 Events of 1 KB each (the Event
# storm bench); past it every write fails with "mvcc: database space exceeded". 8 GiB, etcd's
# suggested maximum, leaves the storm room; the database only takes the disk it uses.
etcd_quota_bytes=$((8 * 1024 * 1024 * 1024))
"${bin[etcd]}" --name rw-test --data-dir "$dir/etcd-data" \
  --listen-client-urls "http://127.0.0.1:$etcd_client" --advertise-client-urls "http://127.0.0.1:$etcd_client" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-cluster "rw-test=http://127.0.0.1:$etcd_peer" --listen-metrics-urls "" \
  --quota-backend-bytes "$etcd_quota_bytes" --unsafe-no-fsync --log-level error > etcd.log 2>&1 &
echo $! > etcd.pid

apiserver_ns=()
gates=()
if [ -n "$real_node" ]; then
  gates=(--feature-gates "$("$here/real-node.sh" feature-gates)")
  # Its own /etc/hosts, in a private mount namespace (exec keeps the pid: unshare does not fork).
  apiserver_ns=(unshare -m --propagation private bash -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$dir/hosts")
fi
"${apiserver_ns[@]}" "${bin[kube-apiserver]}" \
  --etcd-servers "http://127.0.0.1:$etcd_client" \
  --bind-address 127.0.0.1 --secure-port "$secure_port" \
  --tls-cert-file server.crt --tls-private-key-file server.key --client-ca-file ca.crt \
  --token-auth-file tokens.csv --authorization-mode RBAC \
  --service-account-issuer https://kubernetes.default.svc --service-account-key-file sa.pub \
  --service-account-signing-key-file sa.key --service-cluster-ip-range 10.96.0.0/16 \
  --endpoint-reconciler-type none --profiling=false --v=0 "${gates[@]}" "$@" > apiserver.log 2>&1 &
echo $! > apiserver.pid
if [ -n "${RW_OWNER_PID:-}" ]; then
  # Stop the cluster when the process that started it (a test binary) is gone.
  nohup bash -c "while kill -0 $RW_OWNER_PID 2>/dev/null; do sleep 1; done; '$here/cluster.sh' stop '$dir'; rm -rf '$dir'" >/dev/null 2>&1 &
fi

for i in $(seq 1 240); do
  if "$kubectl" --kubeconfig admin.kubeconfig get --raw /readyz >/dev/null 2>&1; then break; fi
  started apiserver; started etcd
  [ "$i" -lt 240 ] || fail "kube-apiserver not ready after 120 s" apiserver
  sleep 0.5
done

"${bin[kube-controller-manager]}" --kubeconfig controller-manager.kubeconfig \
  --authentication-kubeconfig controller-manager.kubeconfig --authorization-kubeconfig controller-manager.kubeconfig \
  --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false \
  --use-service-account-credentials --service-account-private-key-file sa.key --root-ca-file ca.crt \
  --cluster-name rw-test --v=0 > controller-manager.log 2>&1 &
echo $! > controller-manager.pid
"${bin[kube-scheduler]}" --kubeconfig scheduler.kubeconfig \
  --authentication-kubeconfig scheduler.kubeconfig --authorization-kubeconfig scheduler.kubeconfig \
  --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false --v=0 > scheduler.log 2>&1 &
echo $! > scheduler.pid
"${bin[kwok]}" --kubeconfig kwok.kubeconfig --config "$here/kwok-stages.yaml" \
  --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake --node-lease-duration-seconds 40 \
  --cidr 10.244.0.0/16 --node-ip 127.0.0.1 > kwok.log 2>&1 &
echo $! > kwok.pid

# The simulated nodes: kwok runs their kubelets (status, Lease heartbeats, pod lifecycle).
for n in ${nodes//,/ }; do
  cat <<NODE
apiVersion: v1
kind: Node
metadata:
  name: $n
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {kubernetes.io/hostname: $n, kubernetes.io/os: linux, kubernetes.io/arch: amd64, type: kwok}
---
NODE
done > nodes.yaml
"$kubectl" --kubeconfig admin.kubeconfig apply -f nodes.yaml >/dev/null

for i in $(seq 1 240); do
  not_ready=$("$kubectl" --kubeconfig admin.kubeconfig get nodes \
    -o jsonpath='{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -vc '=True$' || true)
  sa=$("$kubectl" --kubeconfig admin.kubeconfig -n default get serviceaccount default -o name 2>/dev/null || true)
  if [ "$not_ready" = 0 ] && [ -n "$sa" ]; then break; fi
  started kwok; started controller-manager; started scheduler; started apiserver
  [ "$i" -lt 240 ] || fail "nodes not Ready or no default ServiceAccount after 120 s" kwok
  sleep 0.5
done

if [ -n "$real_node" ]; then
  "$here/real-node.sh" start "$dir/real-node-$real_node" "$real_node" "$url" "$dir/ca.crt" "$kubelet_token" "$dir/hosts" \
    > real-node.env || fail "the real node $real_node did not start" "real-node-$real_node/kubelet"
  cat real-node.env
fi

echo "APISERVER_URL=$url"
echo "ETCD_ENDPOINT=http://127.0.0.1:$etcd_client"
echo "ADMIN_KUBECONFIG=$dir/admin.kubeconfig"
echo "WATCHER_KUBECONFIG=$dir/watcher.kubeconfig"
echo "BADTOKEN_KUBECONFIG=$dir/badtoken.kubeconfig"
echo "PODREADER_KUBECONFIG=$dir/podreader.kubeconfig"
echo "ADMIN_TOKEN=$admin_token"
echo "WATCHER_TOKEN=$watcher_token"
echo "KUBECTL=$kubectl"
echo "ETCDCTL=${bin[etcdctl]}"
echo "KUBE_APISERVER=${bin[kube-apiserver]}"
echo "BIN_DIR=$(dirname "$kubectl")"
