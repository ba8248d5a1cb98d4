//! The pure step of one scope's watch: the relist and catch-up bookkeeping around the detector.
//!
//! kube-runtime's watcher turns the API server's list and watch into a stream of
//! [`watcher::Event`]s: `Init` starts a (re)list, `InitApply` and `Apply` are observations,
//! `Delete` carries the final object, `InitDone` ends a (re)list. [`ScopeWatch::on_watch_event`]
//! takes one of them and returns the restarts it reveals, plus what happened to the list, so that
//! the async loop in `watch.rs` only pulls events, forwards restarts and updates health, and every
//! rule here is table-tested without a cluster:
//!
//! - the initial list catches up from the checkpoint (if any), then catch-up is off;
//! - a relist (after `410 Gone` or a broken watch) catches up on pods first seen in it from
//!   [`catch_up_since`] of the last event that arrived: pods created while the watch was down and
//!   whose containers died meanwhile are reported once, `detected_late`;
//! - pods a completed relist did not return are dropped.

use jiff::Timestamp;
use kube::runtime::watcher;

use crate::checkpoint::catch_up_since;
use crate::detector::{Detection, Detector};
use crate::pod::SlimPod;
use crate::record::Record;

/// What an event did to the list, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListChange {
    /// An observation or a deletion: nothing about the list.
    None,
    /// The initial list started.
    ListStarted,
    /// A relist started (the first list was complete before).
    RelistStarted,
    /// The initial list is complete: the scope is now watched.
    InitialListComplete { pods: usize, containers: usize },
    /// A relist is complete; `dropped` pods were missing from it.
    RelistComplete { pods: usize, dropped: usize },
}

/// What one watcher event produced.
#[derive(Debug)]
pub struct Step {
    pub restarts: Vec<Record>,
    pub list: ListChange,
    /// Containers whose restartCount fell (the baseline reset, nothing reported).
    pub resets: u64,
}

/// The state of one scope's watch: its detector, whether its first list is complete, and when the
/// last event arrived (the point a relist catches up from).
#[derive(Debug)]
pub struct ScopeWatch {
    detector: Detector,
    listed: bool,
    last_event_at: Option<Timestamp>,
}

impl ScopeWatch {
    /// A scope about to list for the first time, catching up from `catch_up_since` (the
    /// checkpoint's window) when there is one.
    pub fn new(detection: &Detection, catch_up_since: Option<Timestamp>) -> Self {
        let mut detector = Detector::with(detection);
        detector.set_catch_up(catch_up_since);
        ScopeWatch { detector, listed: false, last_event_at: None }
    }

    /// The initial list is complete (the scope is being watched).
    pub fn listed(&self) -> bool {
        self.listed
    }

    /// The pods that have waited past the pending threshold at `now`: their records.
    pub fn tick(&mut self, now: Timestamp) -> Vec<Record> {
        self.detector.tick(now)
    }

    /// One watcher event, observed at `now`.
    pub fn on_watch_event(&mut self, event: watcher::Event<SlimPod>, now: Timestamp) -> Step {
        let mut list = ListChange::None;
        let resets_before = self.detector.stats().resets;
        let restarts = match event {
            watcher::Event::Init => {
                if self.listed {
                    // Pods created while the watch was down are first sightings: catch up on those
                    // that died since the last event that arrived.
                    self.detector.set_catch_up(Some(catch_up_since(self.last_event_at.unwrap_or(now))));
                    list = ListChange::RelistStarted;
                } else {
                    list = ListChange::ListStarted;
                }
                self.detector.begin_relist();
                Vec::new()
            }
            watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => self.detector.apply(&pod, now),
            watcher::Event::Delete(pod) => self.detector.delete(&pod, now),
            watcher::Event::InitDone => {
                let dropped = self.detector.end_relist();
                self.detector.set_catch_up(None);
                let pods = self.detector.pods();
                list = if self.listed {
                    ListChange::RelistComplete { pods, dropped }
                } else {
                    self.listed = true;
                    ListChange::InitialListComplete { pods, containers: self.detector.containers() }
                };
                Vec::new()
            }
        };
        self.last_event_at = Some(now);
        Step { restarts, list, resets: self.detector.stats().resets - resets_before }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use watcher::Event;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// A pod `uid` whose container `app` shows `restarts`, the last one finished at `finished`.
    fn pod(uid: &str, restarts: u32, finished: &str) -> SlimPod {
        serde_json::from_value(json!({
            "metadata": {"uid": uid, "name": format!("p-{uid}"), "namespace": "ns"},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"containerStatuses": [{"name": "app", "restartCount": restarts,
                "state": {"running": {}},
                "lastState": if restarts > 0 { json!({"terminated": {"exitCode": 1, "reason": "Error",
                    "finishedAt": finished, "containerID": format!("containerd://{uid}-{restarts}")}}) } else { json!({}) }}]}
        }))
        .unwrap()
    }

    /// Runs events through a scope; returns (restart counts with their detected_late flag, the
    /// last list change).
    fn run(scope: &mut ScopeWatch, events: Vec<(Event<SlimPod>, &str)>) -> (Vec<(u32, bool)>, ListChange) {
        let mut out = Vec::new();
        let mut last = ListChange::None;
        for (ev, at) in events {
            let step = scope.on_watch_event(ev, t(at));
            out.extend(step.restarts.iter().map(|r| (r.restart_count, r.detected_late)));
            if step.list != ListChange::None {
                last = step.list;
            }
        }
        (out, last)
    }

    const T0: &str = "2026-11-20T10:00:00Z";

    #[test]
    fn the_initial_list_is_a_silent_baseline_without_a_checkpoint() {
        let mut scope = ScopeWatch::new(&Detection::default(), None);
        let (got, last) = run(
            &mut scope,
            vec![(Event::Init, T0), (Event::InitApply(pod("a", 3, "2026-11-20T09:59:00Z")), T0), (Event::InitDone, T0)],
        );
        assert_eq!(got, vec![]);
        assert_eq!(last, ListChange::InitialListComplete { pods: 1, containers: 1 });
        assert!(scope.listed());
    }

    #[test]
    fn the_initial_list_catches_up_from_the_checkpoint_then_stops_catching_up() {
        let mut scope = ScopeWatch::new(&Detection::default(), Some(t("2026-11-20T09:00:00Z")));
        let (got, _) = run(
            &mut scope,
            vec![
                (Event::Init, T0),
                (Event::InitApply(pod("new", 2, "2026-11-20T09:30:00Z")), T0),
                (Event::InitApply(pod("old", 5, "2026-11-20T08:00:00Z")), T0),
                (Event::InitDone, T0),
                // First seen after the list: a baseline, not a catch-up.
                (Event::Apply(pod("later", 1, "2026-11-20T09:59:00Z")), "2026-11-20T10:00:05Z"),
            ],
        );
        assert_eq!(got, vec![(2, true)], "only the termination newer than the checkpoint");
    }

    #[test]
    fn a_relist_catches_up_on_pods_that_died_while_the_watch_was_down() {
        let mut scope = ScopeWatch::new(&Detection::default(), None);
        run(&mut scope, vec![(Event::Init, T0), (Event::InitApply(pod("a", 0, T0)), T0), (Event::InitDone, T0)]);
        // The watch breaks after an event at 10:05; the relist comes at 10:20 with a pod created and
        // crashed meanwhile (10:10), and one that died long before the outage.
        run(&mut scope, vec![(Event::Apply(pod("a", 0, T0)), "2026-11-20T10:05:00Z")]);
        let (got, last) = run(
            &mut scope,
            vec![
                (Event::Init, "2026-11-20T10:20:00Z"),
                (Event::InitApply(pod("a", 1, "2026-11-20T10:12:00Z")), "2026-11-20T10:20:00Z"),
                (Event::InitApply(pod("b", 1, "2026-11-20T10:10:00Z")), "2026-11-20T10:20:00Z"),
                (Event::InitApply(pod("c", 1, "2026-11-20T09:00:00Z")), "2026-11-20T10:20:00Z"),
                (Event::InitDone, "2026-11-20T10:20:00Z"),
            ],
        );
        assert_eq!(got, vec![(1, false), (1, true)], "a: a rise; b: caught up; c: died before the outage");
        assert_eq!(last, ListChange::RelistComplete { pods: 3, dropped: 0 });
    }

    #[test]
    fn relisting_the_same_state_reports_nothing_and_drops_what_is_gone() {
        let mut scope = ScopeWatch::new(&Detection::default(), None);
        let list = |at: &'static str| {
            vec![
                (Event::Init, at),
                (Event::InitApply(pod("a", 2, "2026-11-20T09:59:00Z")), at),
                (Event::InitApply(pod("b", 1, "2026-11-20T09:59:30Z")), at),
                (Event::InitDone, at),
            ]
        };
        run(&mut scope, list(T0));
        let (got, last) = run(&mut scope, list("2026-11-20T10:01:00Z"));
        assert_eq!(got, vec![], "the same state twice is no restart");
        assert_eq!(last, ListChange::RelistComplete { pods: 2, dropped: 0 });
        let (got, last) = run(
            &mut scope,
            vec![
                (Event::Init, "2026-11-20T10:02:00Z"),
                (Event::InitApply(pod("a", 2, "2026-11-20T09:59:00Z")), "2026-11-20T10:02:00Z"),
                (Event::InitDone, "2026-11-20T10:02:00Z"),
            ],
        );
        assert_eq!(got, vec![]);
        assert_eq!(last, ListChange::RelistComplete { pods: 1, dropped: 1 });
    }

    #[test]
    fn a_restart_during_a_relist_is_reported_once() {
        let mut scope = ScopeWatch::new(&Detection::default(), None);
        run(&mut scope, vec![(Event::Init, T0), (Event::InitApply(pod("a", 1, T0)), T0), (Event::InitDone, T0)]);
        let at = "2026-11-20T10:01:00Z";
        let (got, _) = run(
            &mut scope,
            vec![
                (Event::Init, at),
                (Event::InitApply(pod("a", 2, at)), at),
                (Event::InitDone, at),
                (Event::Apply(pod("a", 2, at)), at),
            ],
        );
        assert_eq!(got, vec![(2, false)]);
    }

    #[test]
    fn a_falling_restart_count_is_counted_as_a_reset_and_the_next_rise_counts_from_it() {
        let mut scope = ScopeWatch::new(&Detection::default(), None);
        run(&mut scope, vec![(Event::Init, T0), (Event::InitApply(pod("a", 5, T0)), T0), (Event::InitDone, T0)]);
        let at = "2026-11-20T10:01:00Z";
        let fell = scope.on_watch_event(Event::Apply(pod("a", 0, at)), t(at));
        assert_eq!((fell.restarts.len(), fell.resets), (0, 1), "a fall reports nothing and counts a reset");
        let rose = scope.on_watch_event(Event::Apply(pod("a", 2, at)), t(at));
        assert_eq!(rose.resets, 0);
        let got: Vec<(u32, u32)> = rose.restarts.iter().map(|r| (r.restart_count, r.missed)).collect();
        assert_eq!(got, vec![(2, 1)], "the rise from the reset baseline: 2, one missed");
    }
}
