#!/usr/bin/env bash
# The test command README.md gives. Installs what the suites need (idempotent: a real kube-apiserver
# built once per machine from Debian's source package and cached, etcd, rotel, kubernetes-validate),
# then runs every test suite. The real-API-server tests start kube-apiserver + etcd on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/support/install-test-deps.sh
exec cargo test --locked --lib --bins --tests "$@"
