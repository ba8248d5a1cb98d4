//! Rollout regressions (`docs/detection.md`, "Rollout regressions"): one case per row, the pods of
//! a Deployment's revisions as the detector sees them, and the records expected.

use std::time::Duration;

use restart_watcher::detector::{Detection, Detector};
use restart_watcher::record::{Record, RecordKind};
use restart_watcher_test_support::pods::{PodB, c, pod};
use serde_json::json;

/// A pod of revision `hash` of Deployment `web`, created at `created` (`HH:MM`), with `web`'s
/// container at `restarts`, the last one ended at `ended`.
fn web(i: u32, hash: &str, created: &str, restarts: u32, ended: Option<&str>) -> PodB {
    let name = format!("web-{hash}-{i}");
    let p = pod(&format!("00000000-0000-0000-0000-{:012}", i)).named("shop", &name).meta(json!({
        "creationTimestamp": format!("2026-11-20T{created}:00Z"),
        "labels": {"app": "web", "pod-template-hash": hash},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("web-{hash}"),
            "uid": format!("rs-{hash}"), "controller": true}],
    }));
    match ended {
        Some(t) => p.app(c("web", restarts).died("Error", 1, &format!("2026-11-20T{t}:00Z"))),
        None => p.app(c("web", restarts)),
    }
}

/// The same pod as first seen when created: Pending, nothing started.
fn created(i: u32, hash: &str, at: &str) -> PodB {
    web(i, hash, at, 0, None).status(json!({"phase": "Pending"})).app(c("web", 0).waiting("ContainerCreating"))
}

fn run(steps: Vec<PodB>) -> Vec<Record> {
    let mut d = Detector::with(&Detection { rollout_window: Duration::from_secs(15 * 60), ..Detection::default() });
    let now = "2026-11-20T12:00:00Z".parse().unwrap();
    steps.into_iter().flat_map(|p| d.apply(&p.slim(), now)).collect()
}

/// (kind, pod, restart count or the regression's failures, its failing pods, the previous revision's)
fn summary(records: &[Record]) -> Vec<(RecordKind, String, u32, u32, u32)> {
    records
        .iter()
        .map(|r| match &r.rollout {
            Some(o) => (r.kind, r.pod.name.clone(), o.failures, o.failing_pods, o.previous_failing_pods),
            None => (r.kind, r.pod.name.clone(), r.restart_count, 0, 0),
        })
        .collect()
}

fn restart(pod: &str, n: u32) -> (RecordKind, String, u32, u32, u32) {
    (RecordKind::Restart, pod.to_owned(), n, 0, 0)
}

fn regression(pod: &str, failures: u32, pods: u32, previous: u32) -> (RecordKind, String, u32, u32, u32) {
    (RecordKind::RolloutRegression, pod.to_owned(), failures, pods, previous)
}

#[test]
fn rollout_regression_table() {
    let old = |restarts: u32, ended: Option<&str>| web(1, "aaa", "09:00", restarts, ended);
    let new = |i: u32, restarts: u32, ended: Option<&str>| web(i, "bbb", "10:00", restarts, ended);
    let crash_loop = |i: u32, times: &[&str]| -> Vec<PodB> {
        let mut v = vec![created(i, "bbb", "10:00"), new(i, 0, None)];
        v.extend(times.iter().enumerate().map(|(n, t)| new(i, n as u32 + 1, Some(t))));
        v
    };
    type Case = (&'static str, Vec<PodB>, Vec<(RecordKind, String, u32, u32, u32)>);
    let cases: Vec<Case> = vec![
        (
            "a rollout to a revision that crashes: its third failure within the window makes one regression",
            [vec![old(0, None)], crash_loop(2, &["10:01", "10:02", "10:04", "10:08"])].concat(),
            vec![
                restart("web-bbb-2", 1),
                restart("web-bbb-2", 2),
                restart("web-bbb-2", 3),
                regression("web-bbb-2", 3, 1, 0),
                restart("web-bbb-2", 4),
            ],
        ),
        (
            "a rollout to a revision that works: nothing",
            vec![old(0, None), created(2, "bbb", "10:00"), new(2, 0, None)],
            vec![],
        ),
        (
            "a rollout of a workload that was failing as much: quiet",
            [
                vec![old(0, None), old(1, Some("09:50")), old(2, Some("09:55"))],
                crash_loop(2, &["10:01", "10:02", "10:04"]),
            ]
            .concat(),
            vec![
                restart("web-aaa-1", 1),
                restart("web-aaa-1", 2),
                restart("web-bbb-2", 1),
                restart("web-bbb-2", 2),
                restart("web-bbb-2", 3),
            ],
        ),
        (
            "more of the new revision's pods failing than the previous's: a regression",
            [vec![old(0, None), old(1, Some("09:50"))], crash_loop(2, &["10:01"]), crash_loop(3, &["10:02", "10:03"])]
                .concat(),
            vec![
                restart("web-aaa-1", 1),
                restart("web-bbb-2", 1),
                restart("web-bbb-3", 1),
                restart("web-bbb-3", 2),
                regression("web-bbb-3", 3, 2, 1),
            ],
        ),
        (
            "failures of the previous revision before the window do not count",
            [vec![old(0, None), old(1, Some("09:30"))], crash_loop(2, &["10:01", "10:02", "10:04"])].concat(),
            vec![
                restart("web-aaa-1", 1),
                restart("web-bbb-2", 1),
                restart("web-bbb-2", 2),
                restart("web-bbb-2", 3),
                regression("web-bbb-2", 3, 1, 0),
            ],
        ),
        (
            "failures past the window do not count",
            [vec![old(0, None)], crash_loop(2, &["10:01", "10:02", "10:16"])].concat(),
            vec![restart("web-bbb-2", 1), restart("web-bbb-2", 2), restart("web-bbb-2", 3)],
        ),
        (
            "a rollout the agent did not see begin (its pod first seen running): quiet",
            [vec![old(0, None), new(2, 0, None)], (1..=3).map(|n| new(2, n, Some(&format!("10:0{n}")))).collect()]
                .concat(),
            vec![restart("web-bbb-2", 1), restart("web-bbb-2", 2), restart("web-bbb-2", 3)],
        ),
        (
            "a new workload's first revision is no rollout: quiet",
            crash_loop(2, &["10:01", "10:02", "10:04"]),
            vec![restart("web-bbb-2", 1), restart("web-bbb-2", 2), restart("web-bbb-2", 3)],
        ),
    ];
    for (name, steps, want) in cases {
        assert_eq!(summary(&run(steps)), want, "case: {name}");
    }
}

#[test]
fn the_regression_record_names_the_workload_the_revision_and_the_rollout() {
    let steps = [
        vec![web(1, "aaa", "09:00", 0, None), created(2, "bbb", "10:00"), web(2, "bbb", "10:00", 0, None)],
        (1..=3).map(|n| web(2, "bbb", "10:00", n, Some(&format!("10:0{n}")))).collect(),
    ]
    .concat();
    let records = run(steps);
    let r = records.iter().find(|r| r.kind == RecordKind::RolloutRegression).expect("a regression");
    assert_eq!(
        restart_watcher::export::convert::body(r),
        "deployment shop/web regressed at revision bbb (rolled out at 2026-11-20T10:00:00Z): 3 failures from 1 pod \
         within 900s of the rollout, where the previous revision had 0 failing pods in the 900s before it; the \
         latest: app_error in pod shop/web-bbb-2"
    );
    assert_eq!(r.time().to_string(), "2026-11-20T10:03:00Z");
    assert!(r.container.name.is_empty());
    // The first failure of the revision is marked on its record, as before.
    assert!(records.iter().find(|r| r.kind == RecordKind::Restart).unwrap().first_of_revision);
}
