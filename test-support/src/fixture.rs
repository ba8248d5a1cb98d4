//! Restart events from the recording of a real API server (tests/fixtures), for tests and benches
//! that need realistic records without a cluster.

use restart_watcher::detector::Detector;
use restart_watcher::record::Record;

/// The four restarts of `tests/fixtures/real-apiserver-watch.json`, observed at a fixed time.
pub fn fixture_restarts() -> Vec<Record> {
    let data = std::fs::read("tests/fixtures/real-apiserver-watch.json").expect("run from the crate root");
    let mut detector = Detector::default();
    let mut out = Vec::new();
    let observed: jiff::Timestamp = "2026-11-26T06:30:00Z".parse().unwrap();
    restart_watcher::replay::replay(
        &data[..],
        "fixture",
        &mut detector,
        || observed,
        |e| {
            out.push(e);
            true
        },
        &mut Default::default(),
    )
    .unwrap();
    out
}

/// `n` distinct restarts (counts 1..=n) of the fixture's first container.
pub fn many_restarts(n: u32) -> Vec<Record> {
    let template = fixture_restarts().remove(0);
    (1..=n)
        .map(|i| {
            // Each restart is its own termination: its own container id and end time.
            let mut terminated = template.terminated.clone().unwrap_or_default();
            terminated.container_id = Some(format!("containerd://{i:064x}"));
            terminated.finished_at = terminated.finished_at.map(|t| t + jiff::SignedDuration::from_secs(i64::from(i)));
            Record { restart_count: i, terminated: Some(terminated), ..template.clone() }
        })
        .collect()
}
