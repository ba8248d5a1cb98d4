#!/usr/bin/env bash
# Starts or stops a real kube-apiserver (v1.20.2, built by build-apiserver.sh) with Debian's etcd, on
# loopback only, for the watch tests.
#
#   apiserver.sh start DIR [--watch-cache=false]   prints KEY=VALUE lines (see below) and returns when ready
#   apiserver.sh stop DIR
#
# DIR receives the CA, serving cert, tokens, kubeconfigs and logs. Printed on success:
#   APISERVER_URL, ETCD_ENDPOINT, ADMIN_KUBECONFIG, WATCHER_KUBECONFIG (user `watcher`, no RBAC),
#   PODREADER_KUBECONFIG (user `podreader`, no RBAC until a test grants it), BADTOKEN_KUBECONFIG (a
#   token the server does not know), ADMIN_TOKEN, WATCHER_TOKEN.
# With RW_OWNER_PID set, a watchdog stops the servers and removes DIR when that process exits.
set -euo pipefail

cmd=${1:?usage: apiserver.sh start|stop DIR [extra kube-apiserver flags]}
dir=${2:?usage: apiserver.sh start|stop DIR}
shift 2
here=$(cd "$(dirname "$0")" && pwd)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

if [ "$cmd" = stop ]; then
  for p in apiserver etcd; do
    if [ -f "$dir/$p.pid" ]; then kill "$(cat "$dir/$p.pid")" 2>/dev/null || true; fi
  done
  sleep 0.5
  for p in apiserver etcd; do
    if [ -f "$dir/$p.pid" ]; then kill -9 "$(cat "$dir/$p.pid")" 2>/dev/null || true; rm -f "$dir/$p.pid"; fi
  done
  exit 0
fi

[ "$cmd" = start ] || { echo "unknown command $cmd" >&2; exit 2; }
apiserver_bin=$("$here/build-apiserver.sh" | tail -n1)
mkdir -p "$dir"
cd "$dir"

# PKI: a CA and a serving certificate for 127.0.0.1; a service-account signing key.
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=rw-test-ca" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=kube-apiserver" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > san.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile san.ext 2>/dev/null
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null

admin_token=$(openssl rand -hex 16)
watcher_token=$(openssl rand -hex 16)
podreader_token=$(openssl rand -hex 16)
cat > tokens.csv <<CSV
$admin_token,admin,admin-uid,system:masters
$watcher_token,watcher,watcher-uid
$podreader_token,podreader,podreader-uid
CSV

etcd_client=$(free_port); etcd_peer=$(free_port); secure_port=$(free_port)
# On any failure from here on, stop what was started.
trap '"$here/apiserver.sh" stop "$dir"' ERR
etcd --name rw-test --data-dir "$dir/etcd-data" \
  --listen-client-urls "http://127.0.0.1:$etcd_client" --advertise-client-urls "http://127.0.0.1:$etcd_client" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-cluster "rw-test=http://127.0.0.1:$etcd_peer" --log-level error > etcd.log 2>&1 &
echo $! > etcd.pid

"$apiserver_bin" \
  --etcd-servers "http://127.0.0.1:$etcd_client" \
  --bind-address 127.0.0.1 --secure-port "$secure_port" \
  --tls-cert-file server.crt --tls-private-key-file server.key --client-ca-file ca.crt \
  --token-auth-file tokens.csv --authorization-mode RBAC \
  --service-account-issuer https://kubernetes.default.svc --service-account-key-file sa.pub \
  --service-account-signing-key-file sa.key --service-cluster-ip-range 10.96.0.0/16 \
  --disable-admission-plugins ServiceAccount --endpoint-reconciler-type none \
  --enable-priority-and-fairness=false --profiling=false --v=0 "$@" > apiserver.log 2>&1 &
echo $! > apiserver.pid
if [ -n "${RW_OWNER_PID:-}" ]; then
  # Stop the servers when the process that started them (a test binary) is gone.
  nohup bash -c "while kill -0 $RW_OWNER_PID 2>/dev/null; do sleep 1; done; '$here/apiserver.sh' stop '$dir'; rm -rf '$dir'" >/dev/null 2>&1 &
fi

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
kubeconfig badtoken "$(openssl rand -hex 16)"

for _ in $(seq 1 120); do
  if kubectl --kubeconfig admin.kubeconfig get --raw /readyz >/dev/null 2>&1; then
    echo "APISERVER_URL=$url"
    echo "ETCD_ENDPOINT=http://127.0.0.1:$etcd_client"
    echo "ADMIN_KUBECONFIG=$dir/admin.kubeconfig"
    echo "WATCHER_KUBECONFIG=$dir/watcher.kubeconfig"
    echo "BADTOKEN_KUBECONFIG=$dir/badtoken.kubeconfig"
    echo "PODREADER_KUBECONFIG=$dir/podreader.kubeconfig"
    echo "ADMIN_TOKEN=$admin_token"
    echo "WATCHER_TOKEN=$watcher_token"
    exit 0
  fi
  if ! kill -0 "$(cat apiserver.pid)" 2>/dev/null; then
    echo "kube-apiserver exited; last log lines:" >&2; tail -20 apiserver.log >&2; "$here/apiserver.sh" stop "$dir"; exit 1
  fi
  sleep 0.5
done
echo "kube-apiserver not ready after 60 s; last log lines:" >&2
tail -20 apiserver.log >&2
"$here/apiserver.sh" stop "$dir"
exit 1
