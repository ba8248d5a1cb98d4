# restart-watcher container image: a static-enough Rust binary on a minimal, non-root runtime.
#
#   docker build -t restart-watcher:0.1.0 .
#
# CI runs this build stage's steps on a scratch copy laid out as its COPY lines lay it out, then
# packs the runtime stage's files into an OCI image without a Docker engine
# (tests/support/dockerfile.py, tests/image.rs): a green CI means this file builds.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them: the manifests of every workspace member,
# and a stub for every target Cargo.toml declares (cargo reads them all, benches included).
COPY Cargo.toml Cargo.lock ./
COPY test-support/Cargo.toml test-support/
COPY test-program/Cargo.toml test-program/
RUN mkdir -p src benches test-support/src test-program/src \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs test-support/src/lib.rs \
 && echo 'fn main() {}' > test-program/src/main.rs \
 && for b in $(sed -n '/^\[\[bench\]\]/{n;s/^name = "\(.*\)"$/\1/p}' Cargo.toml); do echo 'fn main() {}' > "benches/$b.rs"; done \
 && cargo build --release --locked --bin restart-watcher
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin restart-watcher

# glibc, CA certificates and a nonroot user (65532), nothing else: no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/restart-watcher /usr/local/bin/restart-watcher
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/restart-watcher"]
CMD ["run"]
