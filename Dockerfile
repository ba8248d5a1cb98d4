# restart-watcher container image: a static-enough Rust binary on a minimal, non-root runtime.
#
#   docker build -t restart-watcher:0.1.0 .
#
# The build step is exactly what CI runs (`cargo build --release --locked`, target
# x86_64-unknown-linux-gnu, see .ci/run), so a green CI means this stage compiles.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && for b in detect watch_apiserver export; do echo 'fn main() {}' > benches/$b.rs; done \
 && cargo build --release --locked --bin restart-watcher || true
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin restart-watcher

# glibc, CA certificates and a nonroot user (65532), nothing else: no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/restart-watcher /usr/local/bin/restart-watcher
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/restart-watcher"]
CMD ["run"]
