#!/usr/bin/env bash
# The test command README.md gives. Runs every test suite; the real-API-server tests start
# kube-apiserver + etcd on loopback themselves (built once per machine by
# tests/support/build-apiserver.sh, cached in ~/.cache/restart-watcher).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --locked --lib --bins --tests "$@"
