#!/usr/bin/env bash
# Installs what the test suites need and this machine may lack. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Real kube-apiserver + etcd for the watch tests (cached build; ~9 min the first time on a machine).
tests/support/build-apiserver.sh >/dev/null
