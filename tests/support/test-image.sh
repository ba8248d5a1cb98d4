#!/usr/bin/env bash
# Builds the real node's test image: the test program (test-program/, a static binary) alone, as an
# OCI archive that `ctr images import` names registry.test/rw-test:1. It is the sandbox ("pause")
# image too: with no arguments the program waits for SIGTERM.
#
#   test-image.sh OUT.tar [NAME]      prints the manifest digest
set -euo pipefail
out=${1:?usage: test-image.sh OUT.tar [NAME]}
name=${2:-registry.test/rw-test:1}
root=$(cd "$(dirname "$0")/../.." && pwd)
target=$root/target/test-image
# Its own target directory: the static flags would otherwise rebuild the workspace's dependencies.
RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols -C debuginfo=0" \
  cargo build --quiet --release --locked --manifest-path "$root/Cargo.toml" -p rw-test-program \
  --target x86_64-unknown-linux-gnu --target-dir "$target" >&2
"$root/tests/support/oci-image.py" "$out" "$name" --entrypoint '["/rw-test"]' --dir /tmp:1777 \
  "$target/x86_64-unknown-linux-gnu/release/rw-test=/rw-test:755"
