#!/usr/bin/env bash
# Installs what the test suites need and this machine may lack. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."

# Real kube-apiserver + etcd for the watch tests (cached build; ~9 min the first time on a machine).
tests/support/build-apiserver.sh >/dev/null

# A real OTLP collector for the export tests: rotel (its wheel ships the rotel-agent binary), and
# kubernetes-validate for the manifest checks. Pinned so CI is reproducible.
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  rotel==0.0.1a15 kubernetes-validate==1.31.0 PyYAML==6.0.2
python3 -c 'import os, rotel; p = os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"); assert os.access(p, os.X_OK), p'
