#!/usr/bin/env bash
# The test command README.md gives. Installs what the suites need (idempotent: Kubernetes v1.35,
# etcd and kwok built once per machine from pinned Go modules and cached, rotel,
# kubernetes-validate), then runs every test suite. The live tests start a whole cluster on
# loopback (tests/support/cluster.sh) and stop it when they end.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/support/install-test-deps.sh
exec cargo test --locked --lib --bins --tests "$@"
