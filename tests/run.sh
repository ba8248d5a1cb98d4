#!/usr/bin/env bash
# The test command README.md gives. Installs what the suites need (idempotent: Kubernetes v1.35,
# etcd and kwok built once per machine from pinned Go modules and cached, rotel,
# kubernetes-validate), then runs every test suite, the ignored ones included: those need the
# loopback cluster or the installed tools (plain `cargo test` runs the rest, without Go). The
# live tests start a whole cluster on loopback (tests/support/cluster.sh) and stop it when they end.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/support/install-test-deps.sh
# The ignored tests run too: `--include-ignored` goes after the caller's own `--` when there is one.
args=("$@")
for i in "${!args[@]}"; do
    if [[ "${args[$i]}" == "--" ]]; then
        exec cargo test --locked --lib --bins --tests "${args[@]:0:$i}" -- --include-ignored "${args[@]:$((i + 1))}"
    fi
done
exec cargo test --locked --lib --bins --tests "$@" -- --include-ignored
