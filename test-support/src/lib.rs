//! The shared test support of restart-watcher (dev-only): what the integration tests and benches
//! use, in one crate, with no `#[path]` includes.
//!
//! - [`pods`]: Pod JSON as the API server writes it, built in one way (`pod(uid).app(c(..))`);
//! - [`fixture`]: records built from the committed recordings;
//! - [`cluster`]: the v1.35 control plane on loopback (`tests/support/cluster.sh`), kubectl, the
//!   agent as a subprocess;
//! - [`bench_cluster`]: the same for the benches, with many pods and process measures;
//! - [`backends`]: the built collector, Jaeger and VictoriaLogs;
//! - [`fake_collector`], [`fake_http_receiver`], [`rotel`]: OTLP receivers that record what they
//!   get (gRPC, HTTP) and a real one;
//! - [`stand_in_apiserver`], [`proxy`]: a stand-in API server that records requests, a TCP proxy
//!   that cuts connections;
//! - [`recorder`]: a namespace's pods and kube events as the API server streams them, and their
//!   replay;
//! - [`process`]: waiting for child processes;
//! - [`samples`]: one record of every kind, for the tests of the mapping.
//!
//! Scripts and pinned Go modules stay in `tests/support/` (cluster.sh, build-go-tools.sh,
//! install-test-deps.sh, go/).

pub mod backends;
pub mod bench_cluster;
pub mod cluster;
pub mod fake_collector;
pub mod fake_http_receiver;
pub mod fixture;
pub mod pods;
pub mod process;
pub mod proxy;
pub mod recorder;
pub mod rotel;
pub mod samples;
pub mod stand_in_apiserver;

/// The agent's binary of the test or bench that runs (cargo puts it beside their `deps/`
/// folder): `target/<profile>/restart-watcher`.
pub fn agent_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps/<test>");
    profile_dir.join(format!("restart-watcher{}", std::env::consts::EXE_SUFFIX))
}
