//! Live and replay give the same records for the same stream.
//!
//! A replay reads a recording with its own decoder and fast paths (a probe of each value, the full
//! object only where something may have changed); a live watch gets each object decoded whole by
//! kube-runtime and stepped through `ScopeWatch`. Each committed recording goes through both, dated
//! by the same recording clock, and must give exactly the same records.

use jiff::Timestamp;
use kube::runtime::watcher;
use restart_watcher::detector::{Detection, Detector};
use restart_watcher::pod::SlimPod;
use restart_watcher::record::Record;
use restart_watcher::replay::{RecordingClock, ReplayStats};
use restart_watcher::watch_step::ScopeWatch;
use restart_watcher_test_support::pods;
use serde_json::Value;

/// Every committed recording that an API server (or kubectl) wrote. The adversarial fixtures are
/// malformed on purpose: a live watch never decodes them.
const RECORDINGS: &[&str] = &[
    "examples/shop-cluster.watch.json",
    "tests/fixtures/failures-v1.35-watch.json",
    "tests/fixtures/pending-v1.35-watch.json",
    "tests/fixtures/rollout-v1.35-watch.json",
    "tests/fixtures/real-apiserver-watch.json",
];

/// A time that no recording holds: a record dated by it was dated by the wall clock.
fn wall_clock() -> Timestamp {
    "2099-01-01T00:00:00Z".parse().unwrap()
}

/// The detection of both: short pending threshold, so that the recording of a pod no node fits
/// gives its records (a live run's tick is played at each time the recording gives).
fn detection() -> Detection {
    Detection { pending_threshold: std::time::Duration::from_secs(3), ..Detection::default() }
}

fn replayed(stream: &str) -> Vec<Record> {
    let mut detector = Detector::with(&detection());
    let mut got = Vec::new();
    let mut stats = ReplayStats::default();
    restart_watcher::replay::replay(
        stream.as_bytes(),
        "recording",
        &mut detector,
        wall_clock,
        |e| {
            got.push(e);
            true
        },
        &mut stats,
    )
    .unwrap();
    got
}

/// The stream as kube-runtime hands a live watch its events: each object decoded whole, a list as
/// `Init`, `InitApply`..., `InitDone`.
fn live(stream: &str) -> Vec<Record> {
    let mut scope = ScopeWatch::new(&detection(), None);
    let mut clock = RecordingClock::default();
    let mut got = Vec::new();
    let mut step = |event: watcher::Event<SlimPod>, clock: &mut RecordingClock| {
        let now = match &event {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) | watcher::Event::Delete(p) => clock.observe(p),
            _ => None,
        };
        if let Some(now) = now {
            got.extend(scope.tick(now));
        }
        got.extend(scope.on_watch_event(event, now.unwrap_or_else(wall_clock)).restarts);
    };
    for value in serde_json::Deserializer::from_str(stream).into_iter::<Value>() {
        let value = value.unwrap();
        let pod = |v: &Value| serde_json::from_value::<SlimPod>(v.clone()).unwrap();
        match (value["type"].as_str(), value["kind"].as_str()) {
            // A live pod watch is given Pods alone; a recording holds the kube events too.
            (Some(_), _) if value["object"]["kind"].as_str().is_some_and(|k| k != "Pod") => {}
            (Some("ADDED" | "MODIFIED"), _) => step(watcher::Event::Apply(pod(&value["object"])), &mut clock),
            (Some("DELETED"), _) => step(watcher::Event::Delete(pod(&value["object"])), &mut clock),
            (Some(_), _) => {}
            (None, Some("PodList" | "List")) => {
                step(watcher::Event::Init, &mut clock);
                for item in value["items"].as_array().unwrap() {
                    step(watcher::Event::InitApply(pod(item)), &mut clock);
                }
                step(watcher::Event::InitDone, &mut clock);
            }
            (None, _) => step(watcher::Event::Apply(pod(&value)), &mut clock),
        }
    }
    got
}

fn same_records(name: &str, stream: &str) -> usize {
    let (replayed, live) = (replayed(stream), live(stream));
    assert_eq!(replayed, live, "{name}: replay and live differ");
    assert!(replayed.iter().all(|r| r.observed_at != wall_clock()), "{name}: dated by the wall clock");
    replayed.len()
}

#[test]
fn every_committed_recording_gives_the_same_records_live_and_replayed() {
    for path in RECORDINGS {
        let stream = std::fs::read_to_string(path).unwrap();
        let n = same_records(path, &stream);
        assert!(n > 0, "{path} yields records");
    }
}

#[test]
fn an_update_that_only_adds_a_disruption_condition_is_a_preemption_live_and_replayed() {
    let pod = |conditions: Value| {
        let pod = pods::pod("ffffffff-0000-0000-0000-000000000001").named("shop", "web-1").bare().on_node("node-a");
        let pod = pod.meta(serde_json::json!({"creationTimestamp": "2026-11-20T10:00:00Z"}));
        let pod = pod.status(serde_json::json!({"phase": "Running", "conditions": conditions}));
        pod.app(pods::c("web", 0).running_since("2026-11-20T10:00:05Z")).event("MODIFIED").to_string()
    };
    let ready = serde_json::json!([{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-20T10:00:06Z"}]);
    let preempted = serde_json::json!([{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-20T10:00:06Z"},
        {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
         "message": "default-scheduler: preempting to accommodate a higher priority pod",
         "lastTransitionTime": "2026-11-20T10:05:00Z"}]);
    let stream = [pod(ready), pod(preempted)].join("\n");
    assert_eq!(same_records("preemption", &stream), 1);
    let records = replayed(&stream);
    assert_eq!((records[0].kind.as_str(), records[0].cause.as_str()), ("eviction", "preempted"));
}

#[test]
fn a_recording_without_managed_fields_dates_an_episode_by_its_own_times() {
    // As `kubectl get pods -w -o json` prints it (no managedFields since 1.21): the pull fails
    // (the Ready condition moves at 10:00:02), then the container runs from 10:00:23.
    let pod = |state: Value, ready_at: &str| {
        let pod = pods::pod("ffffffff-0000-0000-0000-000000000002").named("shop", "search-1").bare().on_node("node-a");
        let pod = pod.meta(serde_json::json!({"creationTimestamp": "2026-11-20T10:00:00Z"}));
        let pod = pod.status(serde_json::json!({"phase": "Pending",
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": ready_at}]}));
        pod.app(pods::c("search", 0).state(state)).event("MODIFIED").to_string()
    };
    let stream = [
        pod(serde_json::json!({"waiting": {"reason": "ContainerCreating"}}), "2026-11-20T10:00:00Z"),
        pod(serde_json::json!({"waiting": {"reason": "ErrImagePull", "message": "not found"}}), "2026-11-20T10:00:02Z"),
        pod(
            serde_json::json!({"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}),
            "2026-11-20T10:00:02Z",
        ),
        pod(serde_json::json!({"running": {"startedAt": "2026-11-20T10:00:23Z"}}), "2026-11-20T10:00:24Z"),
    ]
    .join("\n");
    assert_eq!(same_records("episode", &stream), 2);
    let records = replayed(&stream);
    let e = records[1].episode.as_ref().unwrap();
    let t = |s: &str| -> Timestamp { s.parse().unwrap() };
    assert_eq!((e.started_at, e.ended_at), (t("2026-11-20T10:00:02Z"), t("2026-11-20T10:00:23Z")));
    assert_eq!(records[0].observed_at, t("2026-11-20T10:00:02Z"), "the opening is dated by the recording");
}
