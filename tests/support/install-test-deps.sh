#!/usr/bin/env bash
# Installs what the test suites need and this machine may lack. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."

# openssl makes the test cluster's PKI; flock (util-linux) serialises the Go builds; curl reads /readyz
# in the docs' walkthrough.
missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v flock >/dev/null || missing+=(util-linux)
command -v curl >/dev/null || missing+=(curl)
# The real node: runc is built with cgo against libseccomp.
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
[ -f /usr/include/seccomp.h ] || missing+=(libseccomp-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi

# The test cluster (Kubernetes v1.35 + etcd 3.6 + kwok), the backends of the end-to-end tests
# (Jaeger v2, VictoriaLogs), promtool (the alerting rules), helm (the chart) and the real node's
# runtime (containerd, runc, the CNI plugins; the kubelet is in the kube group), built from pinned
# Go modules and cached by version in ~/.cache/restart-watcher (cold: about 20 minutes on 2
# cores: promtool about 4 of them, helm about 1); then the collector distribution
# the project ships (otel-collector/build.sh, cold: about 3 minutes).
tests/support/build-go-tools.sh kube kwok jaeger victorialogs prometheus helm containerd runc cni >/dev/null
otel-collector/build.sh >/dev/null

# A real OTLP collector for the export tests: rotel (its wheel ships the rotel-agent binary), and
# kubernetes-validate for the manifest checks. Pinned so CI is reproducible.
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  rotel==0.0.1a15 kubernetes-validate==1.35.0 PyYAML==6.0.2
python3 -c 'import os, rotel; p = os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"); assert os.access(p, os.X_OK), p'
