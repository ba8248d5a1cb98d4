//! One case per row of `docs/detection.md`: a sequence of observations and the restarts expected.

mod support;

use jiff::Timestamp;
use restart_watcher::detector::{Detector, KindFilter};
use restart_watcher::event::{Cause, ContainerKind, RestartEvent};
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

fn run(detector: &mut Detector, steps: Vec<Step>) -> Vec<RestartEvent> {
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

fn summary(events: &[RestartEvent]) -> Vec<Want> {
    events
        .iter()
        .map(|e| {
            let name: &'static str = Box::leak(e.container.name.clone().into_boxed_str());
            (name, e.kind(), e.restart_count, e.missed, e.cause, e.detected_late)
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
