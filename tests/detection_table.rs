//! One case per row of `docs/detection.md`: a sequence of observations and the restarts expected.

use restart_watcher_test_support::pods as support;

use jiff::Timestamp;
use restart_watcher::detector::{Detector, KindFilter};
use restart_watcher::record::{Cause, ContainerKind, Record};
use serde_json::json;
use support::{PodB, c, pod};

enum Step {
    Apply(PodB),
    Delete(PodB),
    BeginRelist,
    EndRelist,
}
use Step::*;

/// (container, kind, restart_count, missed, cause, detected_late)
type Want = (&'static str, ContainerKind, u32, u32, Cause, bool);

const APP: ContainerKind = ContainerKind::App;
const T0: &str = "2026-11-20T10:00:00Z";
const T1: &str = "2026-11-20T10:05:00Z";

fn run(detector: &mut Detector, steps: Vec<Step>) -> Vec<Record> {
    let now: Timestamp = "2026-11-20T12:00:00Z".parse().unwrap();
    let mut out = Vec::new();
    for step in steps {
        match step {
            Apply(p) => out.extend(detector.apply(&p.slim(), now)),
            Delete(p) => out.extend(detector.delete(&p.slim(), now)),
            BeginRelist => detector.begin_relist(),
            EndRelist => {
                detector.end_relist();
            }
        }
    }
    out
}

fn summary(events: &[Record]) -> Vec<Want> {
    events
        .iter()
        .map(|e| {
            let name: &'static str = Box::leak(e.container.name.clone().into_boxed_str());
            (name, e.container_kind(), e.restart_count, e.missed, e.cause, e.detected_late)
        })
        .collect()
}

#[test]
fn detection_table() {
    let p = || pod("11111111-1111-1111-1111-111111111111");
    let cases: Vec<(&str, Vec<Step>, Vec<Want>)> = vec![
        (
            "a container seen for the first time sets the baseline silently",
            vec![Apply(p().app(c("web", 5).died("Error", 1, T0)))],
            vec![],
        ),
        (
            "a restartCount rise by one emits one record built from lastState.terminated",
            vec![Apply(p().app(c("web", 0))), Apply(p().app(c("web", 1).died("OOMKilled", 137, T0)))],
            vec![("web", APP, 1, 0, Cause::OomKilled, false)],
        ),
        (
            "a rise by three in one observation emits one record with two missed",
            vec![
                Apply(p().app(c("web", 1))),
                Apply(p().app(c("web", 4).died("Error", 2, T0).waiting("CrashLoopBackOff"))),
            ],
            vec![("web", APP, 4, 2, Cause::AppError, false)],
        ),
        (
            "a rise without lastState.terminated emits a record with cause unknown",
            vec![Apply(p().app(c("web", 0))), Apply(p().app(c("web", 1)))],
            vec![("web", APP, 1, 0, Cause::Unknown, false)],
        ),
        (
            "a fall of restartCount is silent and resets the baseline",
            vec![
                Apply(p().app(c("web", 7))),
                Apply(p().app(c("web", 0))),
                Apply(p().app(c("web", 1).died("Error", 1, T0))),
            ],
            vec![("web", APP, 1, 0, Cause::AppError, false)],
        ),
        (
            "the same object delivered again is silent",
            vec![
                Apply(p().app(c("web", 0))),
                Apply(p().app(c("web", 1).died("Error", 1, T0))),
                Apply(p().app(c("web", 1).died("Error", 1, T0))),
                Apply(p().app(c("web", 1).died("Error", 1, T0))),
            ],
            vec![("web", APP, 1, 0, Cause::AppError, false)],
        ),
        (
            "status changes without a count rise are silent",
            vec![
                Apply(p().app(c("web", 2)).ready(true)),
                Apply(p().app(c("web", 2)).ready(false)),
                Apply(p().app(c("web", 2).waiting("ContainerCreating"))),
            ],
            vec![],
        ),
        (
            "a restart visible only in the deleted pod's final object is reported",
            vec![Apply(p().app(c("web", 0))), Delete(p().app(c("web", 1).died("Error", 143, T0)))],
            vec![("web", APP, 1, 0, Cause::Signal, false)],
        ),
        (
            "a deleted pod's state is dropped so a later sighting is a new baseline",
            vec![
                Apply(p().app(c("web", 0))),
                Delete(p().app(c("web", 0))),
                Apply(p().app(c("web", 3).died("Error", 1, T0))),
            ],
            vec![],
        ),
        (
            "a pod missing from a completed relist is treated as deleted",
            vec![
                Apply(p().app(c("web", 0))),
                BeginRelist,
                Apply(pod("22222222-2222-2222-2222-222222222222").app(c("db", 0))),
                EndRelist,
                Apply(p().app(c("web", 4).died("Error", 1, T0))),
            ],
            vec![],
        ),
        (
            "a restart during a relist is reported once",
            vec![
                Apply(p().app(c("web", 0))),
                BeginRelist,
                Apply(p().app(c("web", 2).died("Error", 1, T0))),
                EndRelist,
                Apply(p().app(c("web", 2).died("Error", 1, T0))),
            ],
            vec![("web", APP, 2, 1, Cause::AppError, false)],
        ),
        (
            "the same pod name with a new uid is a new pod with a new baseline",
            vec![
                Apply(p().named("shop", "web-0").app(c("web", 3))),
                Apply(pod("33333333-3333-3333-3333-333333333333").named("shop", "web-0").app(c("web", 0))),
                Apply(
                    pod("33333333-3333-3333-3333-333333333333")
                        .named("shop", "web-0")
                        .app(c("web", 1).died("Error", 1, T0)),
                ),
            ],
            vec![("web", APP, 1, 0, Cause::AppError, false)],
        ),
        (
            "init containers are reported with kind init",
            vec![
                Apply(p().init(c("migrate", 0)).app(c("web", 0))),
                Apply(p().init(c("migrate", 1).died("Error", 1, T0)).app(c("web", 0))),
            ],
            vec![("migrate", ContainerKind::Init, 1, 0, Cause::AppError, false)],
        ),
        (
            "native sidecars are reported with kind sidecar",
            vec![
                Apply(p().sidecar(c("envoy", 0)).app(c("web", 0))),
                Apply(p().sidecar(c("envoy", 1).died("Error", 143, T0)).app(c("web", 0))),
            ],
            vec![("envoy", ContainerKind::Sidecar, 1, 0, Cause::Signal, false)],
        ),
        (
            "ephemeral containers are ignored",
            vec![
                Apply(p().app(c("web", 0)).ephemeral(c("debug", 0))),
                Apply(p().app(c("web", 0)).ephemeral(c("debug", 3).died("Error", 1, T0))),
            ],
            vec![],
        ),
        (
            "job pods with restartPolicy OnFailure are reported",
            vec![
                Apply(p().named("batch", "report-1").app(c("report", 0))),
                Apply(p().named("batch", "report-1").app(c("report", 1).died("Error", 1, T0))),
            ],
            vec![("report", APP, 1, 0, Cause::AppError, false)],
        ),
        (
            "a container whose status appears after the pod was first seen counts from zero",
            vec![Apply(p().without_status()), Apply(p().app(c("web", 1).died("Error", 1, T0)))],
            vec![("web", APP, 1, 0, Cause::AppError, false)],
        ),
        (
            "two containers restarting in one observation give two records",
            vec![
                Apply(p().app(c("web", 0)).app(c("envoy", 0))),
                Apply(p().app(c("web", 1).died("OOMKilled", 137, T0)).app(c("envoy", 1).died("Completed", 0, T0))),
            ],
            vec![("web", APP, 1, 0, Cause::OomKilled, false), ("envoy", APP, 1, 0, Cause::Completed, false)],
        ),
    ];
    for (name, steps, want) in cases {
        let mut d = Detector::new(KindFilter::default());
        let got = summary(&run(&mut d, steps));
        assert_eq!(got, want, "case: {name}");
    }
}

#[test]
fn bookmark_events_are_ignored_by_replay() {
    let stream = r#"{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"12"}}}"#;
    let mut d = Detector::default();
    let mut stats = Default::default();
    let mut got = 0;
    restart_watcher::replay::replay(
        stream.as_bytes(),
        "t",
        &mut d,
        Timestamp::now,
        |_| {
            got += 1;
            true
        },
        &mut stats,
    )
    .unwrap();
    assert_eq!((got, stats.bookmarks, d.pods()), (0, 1, 0));
}

#[test]
fn catch_up_reports_terminations_newer_than_the_checkpoint_once() {
    let checkpoint: Timestamp = "2026-11-20T10:02:00Z".parse().unwrap();
    let mut d = Detector::new(KindFilter::default());
    d.set_catch_up(Some(checkpoint));
    let steps = vec![
        // died before the checkpoint: already reported by the previous incarnation
        Apply(pod("44444444-4444-4444-4444-444444444444").app(c("old", 2).died("Error", 1, T0))),
        // died after the checkpoint: reported late, once
        Apply(pod("55555555-5555-5555-5555-555555555555").app(c("new", 3).died("OOMKilled", 137, T1))),
        Apply(pod("55555555-5555-5555-5555-555555555555").app(c("new", 3).died("OOMKilled", 137, T1))),
        // never restarted
        Apply(pod("66666666-6666-6666-6666-666666666666").app(c("fresh", 0))),
    ];
    assert_eq!(summary(&run(&mut d, steps)), vec![("new", APP, 3, 0, Cause::OomKilled, true)]);
}

#[test]
fn without_a_checkpoint_first_sightings_stay_silent() {
    let mut d = Detector::new(KindFilter::default());
    let steps = vec![Apply(pod("55555555-5555-5555-5555-555555555555").app(c("new", 3).died("OOMKilled", 137, T1)))];
    assert!(run(&mut d, steps).is_empty());
}

#[test]
fn container_kind_filter_limits_what_is_reported() {
    let mut d = Detector::new(KindFilter { app: true, init: false, sidecar: false });
    let p = || pod("77777777-7777-7777-7777-777777777777");
    let steps = vec![
        Apply(p().init(c("migrate", 0)).sidecar(c("envoy", 0)).app(c("web", 0))),
        Apply(
            p().init(c("migrate", 1).died("Error", 1, T0))
                .sidecar(c("envoy", 1).died("Error", 1, T0))
                .app(c("web", 1).died("Error", 1, T0)),
        ),
    ];
    assert_eq!(summary(&run(&mut d, steps)), vec![("web", APP, 1, 0, Cause::AppError, false)]);
}

#[test]
fn deleted_pods_release_their_state() {
    let mut d = Detector::new(KindFilter::default());
    for i in 0..1000u32 {
        let uid = format!("{i:08x}-0000-0000-0000-000000000000");
        let p = pod(&uid).app(c("web", 0));
        d.apply(&p.slim(), Timestamp::now());
        d.delete(&p.slim(), Timestamp::now());
    }
    assert_eq!((d.pods(), d.containers()), (0, 0));
}

#[test]
fn containers_past_the_third_of_a_pod_are_tracked_like_the_first() {
    // The state of a pod's first three containers sits in its map entry, the rest beside it.
    let mut d = Detector::new(KindFilter::default());
    let p = |counts: [u32; 6]| {
        let mut b = pod("66666666-6666-6666-6666-666666666666");
        for (i, n) in counts.into_iter().enumerate() {
            let name: &'static str = ["a", "b", "c", "d", "e", "f"][i];
            b = b.app(if n > 0 { c(name, n).died("Error", 1, T0) } else { c(name, n) });
        }
        b
    };
    let steps = vec![Apply(p([0, 0, 0, 0, 0, 0])), Apply(p([0, 0, 1, 0, 3, 0])), Apply(p([0, 0, 1, 0, 4, 1]))];
    assert_eq!(
        summary(&run(&mut d, steps)),
        vec![
            ("c", APP, 1, 0, Cause::AppError, false),
            ("e", APP, 3, 2, Cause::AppError, false),
            ("e", APP, 4, 0, Cause::AppError, false),
            ("f", APP, 1, 0, Cause::AppError, false),
        ]
    );
    assert_eq!((d.pods(), d.containers(), d.shapes()), (1, 6, 1));
}

#[test]
fn the_pods_of_a_template_share_their_container_names() {
    let mut d = Detector::new(KindFilter::default());
    let now = Timestamp::now();
    for i in 0..100u32 {
        let uid = format!("{i:08x}-0000-0000-0000-000000000000");
        d.apply(&pod(&uid).app(c("web", 0)).app(c("proxy", 0)).slim(), now);
    }
    // One pod whose second container's status appears later: its own list, then back to none.
    let late = "ffffffff-0000-0000-0000-000000000000";
    d.apply(&pod(late).app(c("web", 0)).slim(), now);
    assert_eq!(d.shapes(), 2);
    let events = d.apply(&pod(late).app(c("web", 0)).app(c("proxy", 2).died("Error", 1, T0)).slim(), now);
    assert_eq!(summary(&events), vec![("proxy", APP, 2, 1, Cause::AppError, false)]);
    assert_eq!((d.pods(), d.containers(), d.shapes()), (101, 202, 1));
}

/// (event kind, container, cause, detected late) of a record other than a restart.
type WantF = (&'static str, &'static str, Cause, bool);

fn failures_summary(events: &[Record]) -> Vec<WantF> {
    events
        .iter()
        .map(|e| {
            let name: &'static str = Box::leak(e.container.name.clone().into_boxed_str());
            (e.kind.as_str(), name, e.cause, e.detected_late)
        })
        .collect()
}

const PULL: &str = "Back-off pulling image \"registry.example.com/web:404\"";

/// One case per row of the "Beyond restarts" table of `docs/detection.md`.
/// A container's own `restartPolicy: Never`.
fn never() -> serde_json::Value {
    json!({"restartPolicy": "Never"})
}

/// `restartPolicy: Never`, with the rule: restart on exit code 42.
fn on_42() -> serde_json::Value {
    json!({"restartPolicy": "Never",
           "restartPolicyRules": [{"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}]})
}

/// `restartPolicy: Never`, with the rule: restart on any exit code but 0.
fn not_in_0() -> serde_json::Value {
    json!({"restartPolicy": "Never",
           "restartPolicyRules": [{"action": "Restart", "exitCodes": {"operator": "NotIn", "values": [0]}}]})
}

#[test]
fn failure_table() {
    let p = || pod("88888888-8888-8888-8888-888888888888");
    let evicted = json!({"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory.",
        "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet",
                        "lastTransitionTime": T1}]});
    let drained = json!({"conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
                        "message": "Eviction API: evicting", "lastTransitionTime": T1}]});
    let preempted = json!({"conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
                        "message": "default-scheduler: preempting to accommodate a higher priority pod", "lastTransitionTime": T1}]});
    let deleting = json!({"deletionTimestamp": "2026-11-20T10:00:30Z", "deletionGracePeriodSeconds": 30});
    let creating = || c("web", 0).waiting_msg("ContainerCreating", "");
    let cases: Vec<(&str, Vec<Step>, Vec<WantF>)> = vec![
        (
            "a container of a known pod waiting with a start-failure reason opens an episode: one record",
            vec![Apply(p().app(creating())), Apply(p().app(c("web", 0).waiting_msg("ErrImagePull", PULL)))],
            vec![("start_failure", "web", Cause::ImagePull, false)],
        ),
        (
            "the episode going on (ErrImagePull, ImagePullBackOff, again) adds nothing",
            vec![
                Apply(p().app(creating())),
                Apply(p().app(c("web", 0).waiting_msg("ErrImagePull", PULL))),
                Apply(p().app(c("web", 0).waiting_msg("ImagePullBackOff", PULL))),
                Apply(p().app(c("web", 0).waiting_msg("ErrImagePull", PULL))),
                Apply(p().app(c("web", 0).waiting_msg("ErrImagePull", PULL))),
            ],
            vec![("start_failure", "web", Cause::ImagePull, false)],
        ),
        (
            "the container running ends the episode: one closing record",
            vec![
                Apply(p().app(creating())),
                Apply(p().app(c("web", 0).waiting_msg("CreateContainerConfigError", "couldn't find key db-url"))),
                Apply(p().app(c("web", 0))),
                Apply(p().app(c("web", 0))),
            ],
            vec![
                ("start_failure", "web", Cause::ConfigError, false),
                ("start_failure_ended", "web", Cause::ConfigError, false),
            ],
        ),
        (
            "the pod deleted during an episode ends it: one closing record",
            vec![
                Apply(p().app(creating())),
                Apply(p().app(c("web", 0).waiting_msg("ImagePullBackOff", PULL))),
                Delete(p().app(c("web", 0).waiting_msg("ImagePullBackOff", PULL))),
            ],
            vec![
                ("start_failure", "web", Cause::ImagePull, false),
                ("start_failure_ended", "web", Cause::ImagePull, false),
            ],
        ),
        (
            "CreateContainerError and RunContainerError are runtime errors",
            vec![
                Apply(p().app(creating()).app(c("sidecar", 0))),
                Apply(
                    p().app(c("web", 0).waiting_msg("CreateContainerError", "no command specified"))
                        .app(c("sidecar", 0).waiting_msg("RunContainerError", "exec: not found")),
                ),
            ],
            vec![
                ("start_failure", "web", Cause::RuntimeError, false),
                ("start_failure", "sidecar", Cause::RuntimeError, false),
            ],
        ),
        (
            "CrashLoopBackOff is not a start failure",
            vec![
                Apply(p().app(c("web", 0))),
                Apply(p().app(c("web", 1).died("Error", 1, T0).waiting("CrashLoopBackOff"))),
            ],
            vec![("restart", "web", Cause::AppError, false)],
        ),
        (
            "ContainerCreating and PodInitializing are silent, and do not end an episode",
            vec![
                Apply(p().app(c("web", 0).waiting_msg("PodInitializing", ""))),
                Apply(p().app(creating())),
                Apply(p().app(c("web", 0).waiting_msg("ErrImagePull", PULL))),
                Apply(p().app(creating())),
                Apply(p().app(c("web", 0).waiting_msg("ErrImagePull", PULL))),
            ],
            vec![("start_failure", "web", Cause::ImagePull, false)],
        ),
        (
            "a pod first seen in an episode is a baseline: silent, and so is that episode's end",
            vec![Apply(p().app(c("web", 0).waiting_msg("ImagePullBackOff", PULL))), Apply(p().app(c("web", 0)))],
            vec![],
        ),
        (
            "a restartPolicy Never container that exits non-zero is a failure",
            vec![
                Apply(p().never().app(c("job", 0))),
                Apply(p().never().app(c("job", 0).ended("Error", 3, T0)).status(json!({"phase": "Failed"}))),
            ],
            vec![("failure", "job", Cause::AppError, false)],
        ),
        (
            "an OOM-killed restartPolicy Never container is a failure",
            vec![Apply(p().never().app(c("job", 0))), Apply(p().never().app(c("job", 0).ended("OOMKilled", 137, T0)))],
            vec![("failure", "job", Cause::OomKilled, false)],
        ),
        (
            "a restartPolicy Never container that exits 0 is silent (a Job that succeeds)",
            vec![
                Apply(p().never().app(c("job", 0))),
                Apply(p().never().app(c("job", 0).ended("Completed", 0, T0)).status(json!({"phase": "Succeeded"}))),
            ],
            vec![],
        ),
        (
            "a failed container of a pod whose phase is Failed is a failure whatever the restart policy",
            vec![
                Apply(p().app(c("web", 0))),
                Apply(
                    p().app(c("web", 0).ended("Error", 137, T0))
                        .status(json!({"phase": "Failed", "reason": "DeadlineExceeded"})),
                ),
            ],
            vec![("failure", "web", Cause::Signal, false)],
        ),
        (
            "a terminated container of a running restartPolicy Always pod is silent: it restarts",
            vec![Apply(p().app(c("web", 0))), Apply(p().app(c("web", 0).ended("Error", 1, T0)))],
            vec![],
        ),
        (
            "a failure seen again is reported once",
            vec![
                Apply(p().never().app(c("job", 0))),
                Apply(p().never().app(c("job", 0).ended("Error", 3, T0))),
                Apply(p().never().app(c("job", 0).ended("Error", 3, T0)).status(json!({"phase": "Failed"}))),
                Delete(p().never().app(c("job", 0).ended("Error", 3, T0)).status(json!({"phase": "Failed"}))),
            ],
            vec![("failure", "job", Cause::AppError, false)],
        ),
        (
            "a container killed by the pod's deletion is silent (kubectl delete pod)",
            vec![
                Apply(p().never().app(c("job", 0))),
                Apply(p().never().meta(deleting.clone()).app(c("job", 0).ended("Error", 143, "2026-11-20T10:00:02Z"))),
                Delete(p().never().meta(deleting.clone()).app(c("job", 0).ended("Error", 143, "2026-11-20T10:00:02Z"))),
            ],
            vec![],
        ),
        (
            "a pod deleted after its container failed still reports the failure",
            vec![
                Apply(p().never().app(c("job", 0))),
                Delete(p().never().meta(deleting.clone()).app(c("job", 0).ended("Error", 2, "2026-11-20T09:59:00Z"))),
            ],
            vec![("failure", "job", Cause::AppError, false)],
        ),
        (
            "an init container that completes is silent; one that fails in a Never pod is a failure",
            vec![
                Apply(p().never().init(c("migrate", 0)).init(c("seed", 0)).app(creating())),
                Apply(
                    p().never()
                        .init(c("migrate", 0).ended("Completed", 0, T0))
                        .init(c("seed", 0).ended("Error", 1, T0))
                        .app(creating()),
                ),
            ],
            vec![("failure", "seed", Cause::AppError, false)],
        ),
        (
            "a native sidecar stopped at the pod's end is silent",
            vec![
                Apply(p().never().sidecar(c("envoy", 0)).app(c("job", 0))),
                Apply(
                    p().never()
                        .sidecar(c("envoy", 0).ended("Error", 143, T0))
                        .app(c("job", 0).ended("Completed", 0, T0))
                        .status(json!({"phase": "Succeeded"})),
                ),
            ],
            vec![],
        ),
        (
            "a pod evicted by the kubelet is one eviction record, and its killed containers no failure",
            vec![
                Apply(p().app(c("web", 0)).app(c("envoy", 0))),
                Apply(
                    p().app(c("web", 0).ended("Error", 137, T1))
                        .app(c("envoy", 0).ended("Error", 137, T1))
                        .status(evicted.clone()),
                ),
                Apply(
                    p().app(c("web", 0).ended("Error", 137, T1))
                        .app(c("envoy", 0).ended("Error", 137, T1))
                        .status(evicted.clone()),
                ),
            ],
            vec![("eviction", "", Cause::Evicted, false)],
        ),
        (
            "a pod evicted through the Eviction API (a drain) is one eviction record",
            vec![
                Apply(p().app(c("web", 0))),
                Apply(p().app(c("web", 0)).status(drained.clone())),
                Delete(
                    p().meta(deleting.clone())
                        .app(c("web", 0).ended("Error", 143, "2026-11-20T10:00:05Z"))
                        .status(drained.clone()),
                ),
            ],
            vec![("eviction", "", Cause::Evicted, false)],
        ),
        (
            "a pod preempted by the scheduler is one eviction record with cause preempted",
            vec![
                Apply(p().app(c("web", 0))),
                Delete(p().meta(deleting.clone()).app(c("web", 0)).status(preempted.clone())),
            ],
            vec![("eviction", "", Cause::Preempted, false)],
        ),
        (
            "a pod first seen evicted is a baseline: silent",
            vec![Apply(p().app(c("web", 0).ended("Error", 137, T1)).status(evicted.clone()))],
            vec![],
        ),
        (
            "a pod deleted without a disruption condition is silent (rollouts, scale-downs, kubectl delete)",
            vec![
                Apply(p().app(c("web", 0))),
                Apply(p().meta(deleting.clone()).app(c("web", 0))),
                Delete(p().meta(deleting.clone()).app(c("web", 0).ended("Error", 143, "2026-11-20T10:00:01Z"))),
            ],
            vec![],
        ),
        (
            "a Never container in an Always pod that exits 1 is one failure (its own restartPolicy)",
            vec![
                Apply(p().app(c("web", 0)).app(c("task", 0))),
                Apply(p().app(c("web", 0)).app(c("task", 0).ended("Error", 1, T1)).container_spec("task", never())),
            ],
            vec![("failure", "task", Cause::AppError, false)],
        ),
        (
            "an OnFailure container in a Never pod that exits 1 restarts: the restart alone, no failure",
            vec![
                Apply(p().never().app(c("web", 0)).container_spec("web", json!({"restartPolicy": "OnFailure"}))),
                Apply(
                    p().never()
                        .app(c("web", 0).ended("Error", 1, T1))
                        .container_spec("web", json!({"restartPolicy": "OnFailure"})),
                ),
                Apply(
                    p().never()
                        .app(c("web", 1).died("Error", 1, T1))
                        .container_spec("web", json!({"restartPolicy": "OnFailure"})),
                ),
            ],
            vec![("restart", "web", Cause::AppError, false)],
        ),
        (
            "a Never container with the rule Restart on 42 exits 42 in a Never pod: the restart alone",
            vec![
                Apply(p().never().app(c("web", 0)).container_spec("web", on_42())),
                Apply(p().never().app(c("web", 0).ended("Error", 42, T1)).container_spec("web", on_42())),
                Apply(p().never().app(c("web", 1).died("Error", 42, T1)).container_spec("web", on_42())),
            ],
            vec![("restart", "web", Cause::AppError, false)],
        ),
        (
            "the same container exits 1: the rule does not match, one failure and no restart",
            vec![
                Apply(p().never().app(c("web", 0)).container_spec("web", on_42())),
                Apply(p().never().app(c("web", 0).ended("Error", 1, T1)).container_spec("web", on_42())),
            ],
            vec![("failure", "web", Cause::AppError, false)],
        ),
        (
            "a NotIn rule restarts every code but those listed",
            vec![
                Apply(p().never().app(c("web", 0)).container_spec("web", not_in_0())),
                Apply(p().never().app(c("web", 0).ended("Error", 3, T1)).container_spec("web", not_in_0())),
            ],
            vec![],
        ),
        (
            "an evicted pod's final status raises the count with ContainerStatusUnknown: the eviction alone (seen on the real node)",
            vec![
                Apply(p().app(c("web", 0))),
                Apply(
                    p().app(
                        c("web", 1)
                            .waiting("ContainerCreating")
                            .terminated(json!({"exitCode": 137, "reason": "ContainerStatusUnknown",
                                "message": "The container could not be located when the pod was terminated"})),
                    )
                    .status(evicted.clone()),
                ),
            ],
            vec![("eviction", "", Cause::Evicted, false)],
        ),
        (
            "a crash-looping container caught in its back-off by a rollout is silent, though the kubelet's final phase is Failed (seen on the real node)",
            vec![
                Apply(p().app(c("web", 1).died("Error", 1, T0).waiting("CrashLoopBackOff"))),
                Apply(p().meta(deleting.clone()).app(c("web", 1).died("Error", 1, T0).waiting("CrashLoopBackOff"))),
                Apply(
                    p().meta(deleting.clone())
                        .app(c("web", 1).died("Error", 1, T0).ended("Error", 1, "2026-11-20T09:59:00Z"))
                        .status(json!({"phase": "Failed"})),
                ),
            ],
            vec![],
        ),
    ];
    for (name, steps, want) in cases {
        let mut d = Detector::new(KindFilter::default());
        let got = failures_summary(&run(&mut d, steps));
        assert_eq!(got, want, "case: {name}");
    }
}

#[test]
fn a_start_failure_episode_counts_its_attempts_and_reports_its_duration_on_the_closing_record() {
    let p = || pod("99999999-9999-9999-9999-999999999999");
    let mut d = Detector::new(KindFilter::default());
    let at = |s: &str| -> Timestamp { s.parse().unwrap() };
    d.apply(&p().app(c("web", 0).waiting_msg("ContainerCreating", "")).slim(), at("2026-11-20T10:00:00Z"));
    let opened = d.apply(&p().app(c("web", 0).waiting_msg("ErrImagePull", PULL)).slim(), at("2026-11-20T10:00:01Z"));
    for (i, reason) in ["ImagePullBackOff", "ErrImagePull", "ImagePullBackOff", "ErrImagePull"].iter().enumerate() {
        let t = at("2026-11-20T10:00:10Z") + jiff::SignedDuration::from_secs(i as i64 * 10);
        assert!(d.apply(&p().app(c("web", 0).waiting_msg(reason, PULL)).slim(), t).is_empty());
    }
    let closed = d.apply(&p().app(c("web", 0)).slim(), at("2026-11-20T10:02:01Z"));
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].current.message.as_deref(), Some(PULL));
    let e = closed[0].episode.as_ref().unwrap();
    assert_eq!((e.reason.as_str(), e.attempts, e.outcome), ("ErrImagePull", 3, Some("started")));
    assert_eq!(closed[0].observed_at.duration_since(e.started_at).as_secs(), 120);
    assert_ne!(opened[0].restart_id(), closed[0].restart_id(), "the opening and the closing records are two records");
}

#[test]
fn start_failure_messages_are_redacted_and_capped() {
    let p = || pod("aaaaaaaa-9999-9999-9999-999999999999");
    let mut d = Detector::with(&restart_watcher::detector::Detection {
        redactions: restart_watcher::rules::text::compile_redactions(&["password=\\S+".into()]).unwrap(),
        ..Default::default()
    });
    d.apply(&p().app(c("web", 0).waiting_msg("ContainerCreating", "")).slim(), Timestamp::now());
    let long = format!("secret password=hunter2 {}", "x".repeat(5000));
    let got = d.apply(&p().app(c("web", 0).waiting_msg("CreateContainerConfigError", &long)).slim(), Timestamp::now());
    let msg = got[0].current.message.as_deref().unwrap();
    assert!(msg.starts_with("secret [REDACTED] xxx"), "{msg}");
    assert_eq!(msg.len(), restart_watcher::rules::failures::STATUS_MESSAGE_MAX_BYTES);
}

#[test]
fn catch_up_reports_failures_and_evictions_after_the_checkpoint_once_and_late() {
    let checkpoint: Timestamp = "2026-11-20T10:02:00Z".parse().unwrap();
    let mut d = Detector::new(KindFilter::default());
    d.set_catch_up(Some(checkpoint));
    let evicted_at = |t: &str| {
        json!({"phase": "Failed", "reason": "Evicted", "conditions": [{"type": "DisruptionTarget", "status": "True",
            "reason": "TerminationByKubelet", "lastTransitionTime": t}]})
    };
    let steps = vec![
        // before the checkpoint: the previous incarnation reported them
        Apply(pod("bbbbbbbb-0000-0000-0000-000000000001").never().app(c("old", 0).ended("Error", 1, T0))),
        Apply(pod("bbbbbbbb-0000-0000-0000-000000000002").app(c("old", 0)).status(evicted_at(T0))),
        Apply(
            pod("bbbbbbbb-0000-0000-0000-000000000003")
                .meta(json!({"creationTimestamp": T0}))
                .app(c("old", 0).waiting_msg("ErrImagePull", PULL)),
        ),
        // after it: reported late, once
        Apply(pod("bbbbbbbb-0000-0000-0000-000000000004").never().app(c("new", 0).ended("Error", 1, T1))),
        Apply(pod("bbbbbbbb-0000-0000-0000-000000000004").never().app(c("new", 0).ended("Error", 1, T1))),
        Apply(pod("bbbbbbbb-0000-0000-0000-000000000005").app(c("new", 0)).status(evicted_at(T1))),
        Apply(
            pod("bbbbbbbb-0000-0000-0000-000000000006")
                .meta(json!({"creationTimestamp": T1}))
                .app(c("new", 0).waiting_msg("ErrImagePull", PULL)),
        ),
    ];
    assert_eq!(
        failures_summary(&run(&mut d, steps)),
        vec![
            ("failure", "new", Cause::AppError, true),
            ("eviction", "", Cause::Evicted, true),
            ("start_failure", "new", Cause::ImagePull, true),
        ]
    );
}

#[test]
fn events_restart_alone_keeps_to_restarts() {
    let mut d = Detector::with(&restart_watcher::detector::Detection {
        records: restart_watcher::record::RecordKinds::restarts_only(),
        ..Default::default()
    });
    let p = || pod("cccccccc-0000-0000-0000-000000000001");
    let steps = vec![
        Apply(p().never().app(c("web", 0).waiting_msg("ContainerCreating", "")).app(c("job", 0))),
        Apply(p().never().app(c("web", 0).waiting_msg("ErrImagePull", PULL)).app(c("job", 0).ended("Error", 1, T0))),
        Apply(
            p().never()
                .app(c("web", 0))
                .app(c("job", 0).ended("Error", 1, T0))
                .status(json!({"reason": "Evicted", "phase": "Failed"})),
        ),
    ];
    assert_eq!(failures_summary(&run(&mut d, steps)), vec![]);
}

#[test]
fn kept_episodes_stay_within_their_byte_budget_and_past_it_lose_only_their_closing_record() {
    let mut d = Detector::new(KindFilter::default());
    let budget = 10 * restart_watcher::detector::EPISODE_ENTRY_BYTES;
    d.set_episode_budget(budget);
    let uid = |i: u32| format!("dddddddd-0000-0000-0000-{i:012}");
    let mut opened = 0;
    for i in 0..50 {
        d.apply(&pod(&uid(i)).app(c("web", 0).waiting_msg("ContainerCreating", "")).slim(), Timestamp::now());
        opened +=
            d.apply(&pod(&uid(i)).app(c("web", 0).waiting_msg("ErrImagePull", PULL)).slim(), Timestamp::now()).len();
        assert!(d.episode_usage().0 <= budget);
    }
    assert_eq!(opened, 50, "every episode is reported when it opens");
    assert_eq!(d.stats().episodes_over_budget, 40);
    let closed: usize = (0..50).map(|i| d.apply(&pod(&uid(i)).app(c("web", 0)).slim(), Timestamp::now()).len()).sum();
    assert_eq!(closed, 10, "only the kept episodes have a closing record");
    assert_eq!(d.episode_usage().0, 0);
}

/// (event kind, container, cause, outcome of an episode's end) of each record.
fn episodes_summary(events: &[Record]) -> Vec<(&'static str, String, Cause, Option<&'static str>)> {
    events
        .iter()
        .map(|e| (e.kind.as_str(), e.container.name.clone(), e.cause, e.episode.as_ref().and_then(|x| x.outcome)))
        .collect()
}

fn start_failure(container: &str, cause: Cause) -> (&'static str, String, Cause, Option<&'static str>) {
    ("start_failure", container.to_owned(), cause, None)
}

fn ended(container: &str, cause: Cause, outcome: &'static str) -> (&'static str, String, Cause, Option<&'static str>) {
    ("start_failure_ended", container.to_owned(), cause, Some(outcome))
}

#[test]
fn a_pod_deleted_evicted_or_failed_during_an_image_pull_failure_never_started() {
    let p = || pod("eeeeeeee-0000-0000-0000-000000000001");
    let deleting = json!({"deletionTimestamp": "2026-11-20T10:00:30Z", "deletionGracePeriodSeconds": 30});
    let creating = || c("web", 0).waiting_msg("ContainerCreating", "");
    let pulling = || c("web", 0).waiting_msg("ImagePullBackOff", PULL);
    // The kubelet's final status: the waiting container becomes terminated, unknown, 137.
    let gone = || c("web", 0).ended_unstarted("ContainerStatusUnknown", 137);
    let drained = json!({"phase": "Failed", "conditions": [{"type": "DisruptionTarget", "status": "True",
        "reason": "EvictionByEvictionAPI", "lastTransitionTime": T1}]});
    let cases: Vec<(&str, Vec<Step>, Vec<_>)> = vec![
        (
            "a rollback or kubectl delete: the final status, then DELETED",
            vec![
                Apply(p().app(creating())),
                Apply(p().app(pulling())),
                Apply(p().meta(deleting.clone()).app(pulling())),
                Apply(p().meta(deleting.clone()).app(gone()).status(json!({"phase": "Failed"}))),
                Delete(p().meta(deleting.clone()).app(gone()).status(json!({"phase": "Failed"}))),
            ],
            vec![start_failure("web", Cause::ImagePull), ended("web", Cause::ImagePull, "pod_deleted")],
        ),
        (
            "DELETED straight from the episode",
            vec![
                Apply(p().app(creating())),
                Apply(p().app(pulling())),
                Delete(p().meta(deleting.clone()).app(pulling())),
            ],
            vec![start_failure("web", Cause::ImagePull), ended("web", Cause::ImagePull, "pod_deleted")],
        ),
        (
            "a drain: the eviction, and the episode ends evicted",
            vec![
                Apply(p().app(creating())),
                Apply(p().app(pulling())),
                Apply(p().meta(deleting.clone()).app(gone()).status(drained.clone())),
                Delete(p().meta(deleting.clone()).app(gone()).status(drained.clone())),
            ],
            vec![
                start_failure("web", Cause::ImagePull),
                ended("web", Cause::ImagePull, "evicted"),
                ("eviction", String::new(), Cause::Evicted, None),
            ],
        ),
        (
            "a Job's deadline: the pod fails, its container never ran, no failure record",
            vec![
                Apply(p().never().app(creating())),
                Apply(p().never().app(pulling())),
                Apply(p().never().app(gone()).status(json!({"phase": "Failed", "reason": "DeadlineExceeded"}))),
            ],
            vec![start_failure("web", Cause::ImagePull), ended("web", Cause::ImagePull, "pod_failed")],
        ),
    ];
    for (name, steps, want) in cases {
        let mut d = Detector::new(KindFilter::default());
        assert_eq!(episodes_summary(&run(&mut d, steps)), want, "case: {name}");
    }
}

#[test]
fn waiting_reasons_outside_the_list_continue_an_episode_and_never_start_it() {
    let p = || pod("eeeeeeee-0000-0000-0000-000000000002");
    let waiting = |r: &str| p().app(c("web", 0).waiting_msg(r, "pulling"));
    let steps = vec![
        Apply(p().app(c("web", 0).waiting_msg("ContainerCreating", ""))),
        Apply(waiting("ErrImagePull")),
        Apply(waiting("ImageInspectError")),
        Apply(waiting("RegistryUnavailable")),
        Apply(waiting("ImagePullBackOff")),
        Apply(waiting("SomeReasonOfAFutureKubelet")),
        Apply(waiting("ErrImagePull")),
        Apply(p().app(c("web", 0))),
    ];
    let mut d = Detector::new(KindFilter::default());
    let got = run(&mut d, steps);
    assert_eq!(
        episodes_summary(&got),
        vec![start_failure("web", Cause::ImagePull), ended("web", Cause::ImagePull, "started")]
    );
    // ErrImagePull, ImageInspectError, RegistryUnavailable, and ErrImagePull after the unknown reason.
    assert_eq!(got[1].episode.as_ref().unwrap().attempts, 4);
    // A reason the agent does not know opens nothing.
    let mut d = Detector::new(KindFilter::default());
    let q = || pod("eeeeeeee-0000-0000-0000-000000000003");
    let steps = vec![
        Apply(q().app(c("web", 0).waiting_msg("ContainerCreating", ""))),
        Apply(q().app(c("web", 0).waiting_msg("SomeReasonOfAFutureKubelet", ""))),
        Apply(q().app(c("web", 0))),
    ];
    assert_eq!(episodes_summary(&run(&mut d, steps)), vec![]);
}

#[test]
fn a_missing_binary_is_one_episode_whose_restarts_are_runtime_errors_and_never_a_start() {
    let p = || pod("eeeeeeee-0000-0000-0000-000000000004");
    let run_error = |n: u32| {
        let c = c("web", n).waiting_msg("RunContainerError", "exec: \"/app\": stat /app: no such file or directory");
        if n == 0 { c } else { c.died_unstarted("StartError", 128) }
    };
    let back_off = |n: u32| c("web", n).died_unstarted("StartError", 128).waiting("CrashLoopBackOff");
    let steps = vec![
        Apply(p().app(c("web", 0).waiting_msg("ContainerCreating", ""))),
        Apply(p().app(run_error(0))),
        Apply(p().app(back_off(1))),
        Apply(p().app(run_error(1))),
        Apply(p().app(back_off(2))),
        Apply(p().app(run_error(2))),
    ];
    let mut d = Detector::new(KindFilter::default());
    let got = run(&mut d, steps);
    assert_eq!(
        episodes_summary(&got),
        vec![
            start_failure("web", Cause::RuntimeError),
            ("restart", "web".to_owned(), Cause::RuntimeError, None),
            ("restart", "web".to_owned(), Cause::RuntimeError, None),
        ]
    );
}

#[test]
fn two_episodes_and_two_unnamed_restarts_after_a_reset_never_share_an_id() {
    let p = || pod("eeeeeeee-0000-0000-0000-000000000005");
    let at = |s: &str| -> Timestamp { s.parse().unwrap() };
    let mut d = Detector::new(KindFilter::default());
    let mut got = Vec::new();
    got.extend(d.apply(&p().app(c("web", 0).waiting_msg("ContainerCreating", "")).slim(), at("2026-11-20T10:00:00Z")));
    // Two episodes at restart count 0: a pull failure, a start, a second pull failure, a start.
    for (open, close) in
        [("2026-11-20T10:00:10Z", "2026-11-20T10:01:00Z"), ("2026-11-20T10:02:00Z", "2026-11-20T10:03:00Z")]
    {
        got.extend(d.apply(&p().app(c("web", 0).waiting_msg("ErrImagePull", PULL)).slim(), at(open)));
        got.extend(d.apply(&p().app(c("web", 0).running_since(close)).slim(), at(close)));
    }
    // Two restarts #1 with an empty lastState, the count reset between them: two instances.
    got.extend(d.apply(&p().app(c("web", 1).id("containerd://aaaa")).slim(), at("2026-11-20T10:04:00Z")));
    got.extend(d.apply(&p().app(c("web", 0).id("containerd://bbbb")).slim(), at("2026-11-20T10:05:00Z")));
    got.extend(d.apply(&p().app(c("web", 1).id("containerd://cccc")).slim(), at("2026-11-20T10:06:00Z")));
    let kinds: Vec<&str> = got.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["start_failure", "start_failure_ended", "start_failure", "start_failure_ended", "restart", "restart"]
    );
    let ids: std::collections::BTreeSet<String> = got.iter().map(|e| e.restart_id()).collect();
    assert_eq!(ids.len(), got.len(), "every record its own id");
    // An observation of the same restart again, by another replica: the same id.
    let mut replica = Detector::new(KindFilter::default());
    replica.apply(&p().app(c("web", 0).id("containerd://bbbb")).slim(), at("2026-11-20T10:05:00Z"));
    let again = replica.apply(&p().app(c("web", 1).id("containerd://cccc")).slim(), at("2026-11-20T10:06:30Z"));
    assert_eq!(again[0].restart_id(), got[5].restart_id());
}

#[test]
fn a_termination_a_second_before_the_deletion_by_the_nodes_clock_is_the_deletion() {
    let p = || pod("eeeeeeee-0000-0000-0000-000000000006").never();
    // Deletion asked at 10:00:00 (API server); the node's clock is a second behind.
    let deleting = json!({"deletionTimestamp": "2026-11-20T10:00:30Z", "deletionGracePeriodSeconds": 30});
    let steps = vec![
        Apply(p().app(c("job", 0))),
        Apply(p().meta(deleting.clone()).app(c("job", 0).ended("Error", 143, "2026-11-20T09:59:59Z"))),
        Delete(p().meta(deleting.clone()).app(c("job", 0).ended("Error", 143, "2026-11-20T09:59:59Z"))),
    ];
    let mut d = Detector::new(KindFilter::default());
    assert_eq!(failures_summary(&run(&mut d, steps)), vec![]);
    // A failure well before the deletion is still one.
    let q = || pod("eeeeeeee-0000-0000-0000-000000000007").never();
    let steps = vec![
        Apply(q().app(c("job", 0))),
        Delete(q().meta(deleting.clone()).app(c("job", 0).ended("Error", 2, "2026-11-20T09:59:50Z"))),
    ];
    let mut d = Detector::new(KindFilter::default());
    assert_eq!(failures_summary(&run(&mut d, steps)), vec![("failure", "job", Cause::AppError, false)]);
}

/// (event kind, container, cause, category, exit code) of a record, and whether it names the
/// pod-wide record of the same list as its parent.
type WantP = (&'static str, &'static str, Cause, &'static str, Option<i32>, bool);

fn pod_wide_summary(events: &[Record]) -> Vec<WantP> {
    let parent = events.iter().find(|e| e.kind.as_str() == "pod_restart").map(|e| e.restart_id());
    events
        .iter()
        .map(|e| {
            let name: &'static str = Box::leak(e.container.name.clone().into_boxed_str());
            let child = e.parent().map(|(id, _)| id);
            assert!(child.is_none() || child == parent, "a child names its pod-wide record: {e:#?}");
            (e.kind.as_str(), name, e.cause, e.category(), e.terminated.as_ref().map(|t| t.exit_code), child.is_some())
        })
        .collect()
}

fn condition(type_: &str, status: &str) -> serde_json::Value {
    json!({"conditions": [{"type": type_, "status": status}]})
}

/// One case per row of "Pod-wide restarts and resizes" in `docs/detection.md`.
#[test]
fn pod_wide_restart_and_resize_table() {
    let p = || pod("99999999-9999-9999-9999-999999999999");
    let ready = || condition("PodReadyToStartContainers", "True");
    let lost = || condition("PodReadyToStartContainers", "False");
    let restarting = || condition("AllContainersRestarting", "True");
    let resizing = || condition("PodResizeInProgress", "True");
    let all = || {
        json!({"restartPolicy": "Never",
        "restartPolicyRules": [{"action": "RestartAllContainers", "exitCodes": {"operator": "In", "values": [42]}}]})
    };
    let rac = |name: &str, n: u32| {
        c(name, n)
            .waiting("RestartingAllContainers")
            .terminated(json!({"reason": "RestartingAllContainers", "exitCode": 137}))
    };
    let limits = |mem: &str, cpu: &str| json!({"limits": {"memory": mem, "cpu": cpu}});
    let deleting = json!({"deletionTimestamp": "2026-11-20T10:00:30Z", "deletionGracePeriodSeconds": 30});
    let cases: Vec<(&str, Vec<Step>, Vec<WantP>)> = vec![
        (
            "a lost sandbox (PodReadyToStartContainers False while the pod ran), then every container restarted: \
             one pod restart, its containers' restarts its children, all sandbox_changed",
            vec![
                Apply(p().app(c("app", 0)).app(c("helper", 0)).status(ready())),
                Apply(p().app(c("app", 0)).app(c("helper", 0)).status(lost())),
                Apply(
                    p().app(c("app", 1).died("Error", 137, T1))
                        .app(c("helper", 1).died("Error", 137, T1))
                        .status(ready()),
                ),
            ],
            vec![
                ("restart", "app", Cause::SandboxChanged, "infrastructure", Some(137), true),
                ("restart", "helper", Cause::SandboxChanged, "infrastructure", Some(137), true),
                ("pod_restart", "", Cause::SandboxChanged, "infrastructure", None, false),
            ],
        ),
        (
            "a pod waiting for its first sandbox is no lost sandbox: a later crash is the app's",
            vec![
                Apply(p().app(c("app", 0).waiting("ContainerCreating")).status(lost())),
                Apply(p().app(c("app", 0)).status(ready())),
                Apply(p().app(c("app", 1).died("Error", 1, T1)).status(ready())),
            ],
            vec![("restart", "app", Cause::AppError, "application", Some(1), false)],
        ),
        (
            "a sandbox gone with the pod's deletion restarts nothing",
            vec![
                Apply(p().app(c("app", 0)).status(ready())),
                Apply(p().app(c("app", 0).ended("Error", 137, T1)).status(lost()).meta(deleting.clone())),
                Delete(p().app(c("app", 0).ended("Error", 137, T1)).status(lost()).meta(deleting.clone())),
            ],
            vec![],
        ),
        (
            "a container's exit firing RestartAllContainers, then every container restarted: one pod restart whose \
             category is the trigger's; the trigger's own restart keeps its exit and cause, the others are restart_all",
            vec![
                Apply(
                    p().init(c("init", 0).ended("Completed", 0, T0))
                        .app(c("worker", 0))
                        .app(c("helper", 0))
                        .container_spec("worker", all()),
                ),
                Apply(
                    p().init(c("init", 0).ended("Completed", 0, T0))
                        .app(c("worker", 0).ended("Error", 42, T1))
                        .app(c("helper", 0))
                        .container_spec("worker", all())
                        .status(restarting()),
                ),
                Apply(
                    p().init(rac("init", 1))
                        .app(rac("worker", 1))
                        .app(rac("helper", 1))
                        .container_spec("worker", all()),
                ),
            ],
            vec![
                ("restart", "init", Cause::RestartAll, "application", Some(137), true),
                ("restart", "worker", Cause::AppError, "application", Some(42), true),
                ("restart", "helper", Cause::RestartAll, "application", Some(137), true),
                ("pod_restart", "", Cause::RestartAll, "application", Some(42), false),
            ],
        ),
        (
            "a restart-all whose firing exit was not observed: one pod restart, trigger unknown",
            vec![
                Apply(p().app(c("worker", 0)).app(c("helper", 0)).container_spec("worker", all())),
                Apply(p().app(rac("worker", 1)).app(rac("helper", 1)).container_spec("worker", all())),
            ],
            vec![
                ("restart", "worker", Cause::RestartAll, "unknown", Some(137), true),
                ("restart", "helper", Cause::RestartAll, "unknown", Some(137), true),
                ("pod_restart", "", Cause::RestartAll, "unknown", None, false),
            ],
        ),
        (
            "a resize with RestartContainer: the kill is a resize restart (configuration), never the app's",
            vec![
                Apply(p().app(c("app", 0).field("resources", limits("64Mi", "500m")))),
                Apply(p().app(c("app", 0).field("resources", limits("64Mi", "500m"))).status(resizing())),
                Apply(p().app(c("app", 1).died("Error", 137, T1).field("resources", limits("96Mi", "500m")))),
            ],
            vec![("restart", "app", Cause::Resize, "configuration", Some(137), false)],
        ),
        (
            "an app's own exit during a resize stays the app's",
            vec![
                Apply(p().app(c("app", 0).field("resources", limits("64Mi", "500m")))),
                Apply(p().app(c("app", 0).field("resources", limits("64Mi", "500m"))).status(resizing())),
                Apply(p().app(c("app", 1).died("Error", 1, T1).field("resources", limits("96Mi", "500m")))),
            ],
            vec![("restart", "app", Cause::AppError, "application", Some(1), false)],
        ),
        (
            "a resize that restarts nothing (NotRequired), then a kill: a kill, not a resize",
            vec![
                Apply(p().app(c("app", 0).field("resources", limits("64Mi", "500m")))),
                Apply(p().app(c("app", 0).field("resources", limits("64Mi", "500m"))).status(resizing())),
                Apply(p().app(c("app", 0).field("resources", limits("64Mi", "1")))),
                Apply(p().app(c("app", 1).died("Error", 137, T1).field("resources", limits("64Mi", "1")))),
            ],
            vec![("restart", "app", Cause::Signal, "application", Some(137), false)],
        ),
        (
            "a container stopped with its own stop signal (SIGUSR1, exit 138) by the pod's deletion is silent",
            vec![
                Apply(
                    p().app(c("app", 0)).container_spec("app", json!({"lifecycle": {"stopSignal": "SIGUSR1"}})).never(),
                ),
                Apply(p().app(c("app", 0).ended("Error", 138, T1)).never().meta(deleting.clone())),
            ],
            vec![],
        ),
        (
            "a crash by that same signal outside a deletion is still a crash",
            vec![
                Apply(p().app(c("app", 0)).container_spec("app", json!({"lifecycle": {"stopSignal": "SIGUSR1"}}))),
                Apply(p().app(c("app", 1).died("Error", 138, T1))),
            ],
            vec![("restart", "app", Cause::Signal, "application", Some(138), false)],
        ),
    ];
    for (name, steps, want) in cases {
        let mut d = Detector::new(KindFilter::default());
        let got = run(&mut d, steps);
        assert_eq!(pod_wide_summary(&got), want, "{name}");
        assert_eq!(d.episode_usage().0, 0, "{name}: nothing kept once the restarts were seen");
    }
}

/// A restart of pod `uid` of ReplicaSet `web-<hash>` (Deployment `web`), as `(first_of_revision,
/// restart count)` of the records one observation of a rise makes.
fn revision_restart(d: &mut Detector, uid: &str, hash: Option<&str>) -> Vec<(bool, u32)> {
    let now: Timestamp = "2026-11-20T12:00:00Z".parse().unwrap();
    let slim = |n: u32| {
        let mut p = pod(uid).app(c("web", n).died("Error", 1, T0)).json();
        if let Some(hash) = hash {
            p["metadata"]["labels"] = json!({"pod-template-hash": hash});
            p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": format!("web-{hash}"), "uid": format!("rs-{hash}"), "controller": true}]);
        }
        serde_json::from_value::<restart_watcher::pod::SlimPod>(p).unwrap()
    };
    d.apply(&slim(0), now);
    d.apply(&slim(1), now).iter().map(|r| (r.first_of_revision, r.restart_count)).collect()
}

#[test]
fn the_first_failure_of_each_revision_is_marked_once() {
    let mut d = Detector::new(KindFilter::default());
    assert_eq!(
        revision_restart(&mut d, "aaaaaaaa-0000-0000-0000-000000000001", Some("5d8f")),
        [(true, 1)],
        "a revision's first"
    );
    assert_eq!(
        revision_restart(&mut d, "aaaaaaaa-0000-0000-0000-000000000002", Some("5d8f")),
        [(false, 1)],
        "its second pod"
    );
    assert_eq!(
        revision_restart(&mut d, "aaaaaaaa-0000-0000-0000-000000000003", Some("7c9b")),
        [(true, 1)],
        "a new revision"
    );
    assert_eq!(
        revision_restart(&mut d, "aaaaaaaa-0000-0000-0000-000000000004", None),
        [(false, 1)],
        "no revision known"
    );
}
