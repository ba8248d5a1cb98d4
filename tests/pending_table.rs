//! Pods that never start (`docs/detection.md`, "Pods that never start"): one case per row, a
//! sequence of observations and ticks at given times, and the records expected.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use jiff::Timestamp;
use restart_watcher::accounting::BudgetUsage;
use restart_watcher::detector::{Detection, Detector};
use restart_watcher::record::{Cause, Record, RecordKind};
use restart_watcher_test_support::pods::{PodB, c, pod};
use serde_json::json;

const CREATED: &str = "2026-11-20T10:00:00Z";
const NO_FIT: &str = "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.";

enum Step {
    /// An observation at `CREATED` + seconds.
    Apply(u64, PodB),
    Delete(u64, PodB),
    /// The live run's tick at `CREATED` + seconds.
    Tick(u64),
}
use Step::*;

/// (kind, reason, cause, message, outcome, seconds from creation to the record's time)
type Want = (RecordKind, String, Cause, Option<String>, Option<&'static str>, i64);

fn at(seconds: u64) -> Timestamp {
    CREATED.parse::<Timestamp>().unwrap() + Duration::from_secs(seconds)
}

fn detector(usage: Arc<BudgetUsage>) -> Detector {
    Detector::with(&Detection { pending_threshold: Duration::from_secs(60), pending: usage, ..Default::default() })
}

fn run(d: &mut Detector, steps: Vec<Step>) -> Vec<Record> {
    let mut out = Vec::new();
    for step in steps {
        match step {
            Apply(s, p) => out.extend(d.apply(&p.slim(), at(s))),
            Delete(s, p) => out.extend(d.delete(&p.slim(), at(s))),
            Tick(s) => out.extend(d.tick(at(s))),
        }
    }
    out
}

fn summary(records: &[Record]) -> Vec<Want> {
    records
        .iter()
        .map(|r| {
            let e = r.episode.as_deref();
            (
                r.kind,
                e.map_or(String::new(), |e| e.reason.clone()),
                r.cause,
                r.current.message.clone(),
                e.and_then(|e| e.outcome),
                r.time().duration_since(at(0)).as_secs(),
            )
        })
        .collect()
}

fn created(p: PodB) -> PodB {
    p.meta(json!({"creationTimestamp": CREATED}))
}

/// A pod the scheduler places nowhere.
fn unschedulable(uid: &str) -> PodB {
    created(pod(uid).named("shop", "big-0")).status(json!({"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": NO_FIT}]}))
}

/// A scheduled pod whose one container waits with `reason`.
fn creating(uid: &str, reason: &str) -> PodB {
    created(pod(uid).named("shop", "web-0")).app(c("web", 0).waiting(reason)).status(json!({"phase": "Pending"}))
}

fn running(uid: &str) -> PodB {
    created(pod(uid).named("shop", "web-0")).app(c("web", 0).running_since("2026-11-20T10:03:00Z"))
}

fn opened(reason: &str, cause: Cause, message: Option<&str>) -> Want {
    (RecordKind::PodStartFailure, reason.to_owned(), cause, message.map(str::to_owned), None, 0)
}

fn closed(reason: &str, cause: Cause, outcome: &'static str, after: i64) -> Want {
    (RecordKind::PodStartFailureEnded, reason.to_owned(), cause, None, Some(outcome), after)
}

#[test]
fn pods_that_never_start_table() {
    let u = "aaaaaaaa-0000-0000-0000-000000000001";
    let gated = || {
        created(pod(u)).status(json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}))
    };
    let cases: Vec<(&str, Vec<Step>, Vec<Want>)> = vec![
        (
            "a pod no node fits is reported once when the threshold passes, with the scheduler's reason and message",
            vec![Apply(5, unschedulable(u)), Tick(30), Tick(59), Tick(60), Tick(61), Apply(90, unschedulable(u))],
            vec![opened("Unschedulable", Cause::Unschedulable, Some(NO_FIT))],
        ),
        (
            "its end is reported when it starts, dated by the status write that shows it",
            vec![Apply(5, unschedulable(u)), Tick(60), Apply(200, running(u))],
            vec![
                opened("Unschedulable", Cause::Unschedulable, Some(NO_FIT)),
                closed("Unschedulable", Cause::Unschedulable, "started", 200),
            ],
        ),
        (
            "or when it is deleted, dated by the deletion",
            vec![Apply(5, unschedulable(u)), Tick(60), Delete(300, unschedulable(u))],
            vec![
                opened("Unschedulable", Cause::Unschedulable, Some(NO_FIT)),
                closed("Unschedulable", Cause::Unschedulable, "pod_deleted", 300),
            ],
        ),
        (
            "without a tick (a replay), the next observation past the threshold reports it",
            vec![Apply(5, creating(u, "ContainerCreating")), Apply(75, creating(u, "ContainerCreating"))],
            vec![opened("ContainerCreating", Cause::Unknown, None)],
        ),
        (
            "a pod that starts within the threshold, however slowly it pulls, is never reported",
            vec![Apply(5, creating(u, "ContainerCreating")), Tick(30), Apply(50, running(u)), Tick(120)],
            vec![],
        ),
        (
            "a pod whose status says nothing more waits as Pending",
            vec![Apply(1, created(pod(u)).status(json!({"phase": "Pending"}))), Tick(60)],
            vec![opened("Pending", Cause::Unknown, None)],
        ),
        (
            "a pod held by a scheduling gate is held on purpose: never reported",
            vec![Apply(5, gated()), Tick(600)],
            vec![],
        ),
        (
            "a container that cannot pull its image reports itself: no pod record",
            vec![Apply(5, creating(u, "ContainerCreating")), Apply(10, creating(u, "ErrImagePull")), Tick(120)],
            vec![(RecordKind::StartFailure, "ErrImagePull".into(), Cause::ImagePull, None, None, 10)],
        ),
        (
            "a pod first seen already past the threshold is a baseline: neither it nor its end is reported",
            vec![Apply(600, unschedulable(u)), Tick(601), Apply(700, running(u))],
            vec![],
        ),
        (
            "a pod deleted before the threshold is never reported",
            vec![Apply(5, unschedulable(u)), Delete(30, unschedulable(u)), Tick(120)],
            vec![],
        ),
    ];
    for (name, steps, want) in cases {
        let mut d = detector(Arc::new(BudgetUsage::default()));
        let got = run(&mut d, steps);
        let got: Vec<Want> = summary(&got)
            .into_iter()
            .map(|(k, r, c, m, o, t)| {
                // The container start failure's message is the builder's, not the point here.
                let m = if k == RecordKind::StartFailure { None } else { m };
                (k, r, c, m, o, t)
            })
            .collect();
        assert_eq!(got, want, "case: {name}");
    }
}

#[test]
fn the_record_names_the_pod_and_its_wait_and_the_end_how_long_it_took() {
    let u = "aaaaaaaa-0000-0000-0000-000000000002";
    let mut d = detector(Arc::new(BudgetUsage::default()));
    let got = run(&mut d, vec![Apply(5, unschedulable(u)), Tick(60), Apply(200, running(u))]);
    let body: Vec<String> = got.iter().map(restart_watcher::export::convert::body).collect();
    assert_eq!(body[0], format!("pod shop/big-0 has not started in 60s: Unschedulable: {NO_FIT}"));
    assert_eq!(body[1], "pod shop/big-0 started, after 200s waiting (Unschedulable)");
    assert!(got.iter().all(|r| r.container.name.is_empty()));
    assert_ne!(got[0].restart_id(), got[1].restart_id());
}

#[test]
fn the_pods_kept_stay_within_their_byte_budget_and_past_it_are_counted_not_reported() {
    let usage = Arc::new(BudgetUsage::default());
    usage.budget_bytes.store(8 * 1024, Ordering::Relaxed);
    let mut d = detector(usage.clone());
    let uid = |i: u32| format!("bbbbbbbb-0000-0000-0000-{i:012}");
    for i in 0..100 {
        assert!(d.apply(&unschedulable(&uid(i)).slim(), at(1)).is_empty());
        assert!(usage.bytes.load(Ordering::Relaxed) <= 8 * 1024);
    }
    let shed = usage.shed.load(Ordering::Relaxed);
    let reported = d.tick(at(60)).len() as u64;
    assert!(reported > 0 && shed > 0, "{reported} reported, {shed} over the budget");
    assert_eq!(reported + shed, 100, "every pod is reported or counted");
    assert!(8 * 1024 / reported <= 2048, "about 1.6 KiB a pod, as docs/detection.md says");
    for i in 0..100 {
        d.delete(&unschedulable(&uid(i)).slim(), at(90));
    }
    assert_eq!(usage.bytes.load(Ordering::Relaxed), 0, "the pods gone give their bytes back");
}

#[test]
fn a_pod_of_a_revision_that_never_starts_is_that_revisions_first_failure() {
    let u = "aaaaaaaa-0000-0000-0000-000000000003";
    let of_revision = |p: PodB| {
        p.meta(json!({"labels": {"pod-template-hash": "7d9f8"}, "ownerReferences": [{"apiVersion": "apps/v1",
            "kind": "ReplicaSet", "name": "big-7d9f8", "uid": "rs-uid", "controller": true}]}))
    };
    let mut d = detector(Arc::new(BudgetUsage::default()));
    let got = run(&mut d, vec![Apply(5, of_revision(unschedulable(u))), Tick(60)]);
    assert_eq!(got.len(), 1);
    assert!(got[0].first_of_revision, "the revision's first failure");
}
