//! Storm control (opt-in, `--storm-window`): during a crash loop, per (workload, container, cause),
//! the first restart is emitted at once; the restarts that follow within the window are held, and
//! at the window's end one record (the latest) is emitted for all of them, carrying
//! `restart_watcher.restarts.coalesced` = how many restarts it stands for. A window with no restart
//! ends the storm: the next restart is emitted at once again. So a 500-pod crash loop of one
//! Deployment yields one record per window, not 500.
//!
//! Off by default: one record per restart is the contract. Pure: the caller supplies the time.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::event::{Cause, RestartEvent};

/// Keys tracked at most; beyond, restarts pass through uncoalesced (memory bound).
pub const MAX_STORM_KEYS: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    namespace: String,
    workload: String,
    container: String,
    cause: Cause,
}

fn key(ev: &RestartEvent) -> Key {
    let o = &ev.pod.owners;
    let workload = super::owners::workload(o).map(|r| r.name.clone()).unwrap_or_else(|| format!("pod/{}", ev.pod.name));
    Key { namespace: ev.pod.namespace.clone(), workload, container: ev.container.name.clone(), cause: ev.cause }
}

struct Window {
    ends: Instant,
    held: Option<RestartEvent>,
    /// Restarts held (a record with `missed` counts for 1 + missed).
    count: u32,
    /// Records held (for the pipeline's accounting).
    records: u64,
}

/// A record to emit and how many detected records it stands for (itself included).
pub type Emit = (RestartEvent, u64);

/// The coalescer.
pub struct StormControl {
    window: Duration,
    windows: HashMap<Key, Window>,
}

impl StormControl {
    pub fn new(window: Duration) -> Self {
        StormControl { window, windows: HashMap::new() }
    }

    /// Offers a restart; returns what to emit now (the restart itself, or nothing when held).
    pub fn offer(&mut self, ev: RestartEvent, now: Instant) -> Option<RestartEvent> {
        let k = key(&ev);
        let stands_for = 1 + ev.missed;
        match self.windows.get_mut(&k) {
            Some(w) if now < w.ends => {
                w.count += stands_for;
                w.records += 1;
                w.held = Some(ev);
                None
            }
            _ => {
                if self.windows.len() >= MAX_STORM_KEYS && !self.windows.contains_key(&k) {
                    return Some(ev);
                }
                self.windows.insert(k, Window { ends: now + self.window, held: None, count: 0, records: 0 });
                Some(ev)
            }
        }
    }

    /// Ends the windows due by `now`: returns one record per window that held restarts (a new
    /// window starts for those); windows without restarts are forgotten.
    pub fn tick(&mut self, now: Instant) -> Vec<Emit> {
        let mut out = Vec::new();
        let window = self.window;
        self.windows.retain(|_, w| {
            if now < w.ends {
                return true;
            }
            match w.held.take() {
                Some(mut ev) => {
                    ev.coalesced = Some(w.count);
                    out.push((ev, w.records));
                    w.count = 0;
                    w.records = 0;
                    w.ends = now + window;
                    true
                }
                None => false,
            }
        });
        out
    }

    /// Everything held, at shutdown.
    pub fn drain(&mut self) -> Vec<Emit> {
        self.windows
            .drain()
            .filter_map(|(_, mut w)| {
                w.held.take().map(|mut ev| {
                    ev.coalesced = Some(w.count);
                    (ev, w.records)
                })
            })
            .collect()
    }

    /// Restarts held right now (each held record may stand for several).
    pub fn held(&self) -> u64 {
        self.windows.values().map(|w| u64::from(w.count)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ContainerInfo, OwnerRef, PodInfo};

    fn ev(pod: &str, deployment: &str, container: &str, cause: Cause, n: u32) -> RestartEvent {
        RestartEvent {
            pod: PodInfo {
                namespace: "shop".into(),
                name: pod.into(),
                uid: format!("uid-{pod}"),
                owners: crate::event::Owners {
                    deployment: Some(OwnerRef { name: deployment.into(), uid: None }),
                    ..Default::default()
                },
                ..Default::default()
            },
            container: ContainerInfo { name: container.into(), ..Default::default() },
            restart_count: n,
            missed: 0,
            terminated: None,
            current: Default::default(),
            observed_at: jiff::Timestamp::now(),
            detected_late: false,
            cause,
            pod_reason: None,
            coalesced: None,
            previous_logs: None,
        }
    }

    #[test]
    fn storm_windows_table() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut sc = StormControl::new(s(60));
        // first restart of the workload: at once
        assert!(sc.offer(ev("api-1", "api", "app", Cause::AppError, 1), t0).is_some());
        // 499 more pods of the same deployment crash within the window: held
        for i in 2..=500 {
            assert!(sc.offer(ev(&format!("api-{i}"), "api", "app", Cause::AppError, 1), t0 + s(1)).is_none());
        }
        // another container, another cause, another workload: each at once
        assert!(sc.offer(ev("api-1", "api", "envoy", Cause::AppError, 1), t0 + s(2)).is_some());
        assert!(sc.offer(ev("api-1", "api", "app", Cause::OomKilled, 2), t0 + s(2)).is_some());
        assert!(sc.offer(ev("web-1", "web", "app", Cause::AppError, 1), t0 + s(2)).is_some());
        assert_eq!(sc.held(), 499);
        // nothing before the window ends
        assert!(sc.tick(t0 + s(59)).is_empty());
        // at its end: one record standing for the 499
        let out = sc.tick(t0 + s(60));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0.coalesced, Some(499));
        assert_eq!(out[0].1, 499, "it settles the 499 held records");
        assert_eq!(out[0].0.pod.name, "api-500", "the latest restart is the one emitted");
        // the storm goes on: held again in the new window
        assert!(sc.offer(ev("api-7", "api", "app", Cause::AppError, 2), t0 + s(70)).is_none());
        assert_eq!(sc.tick(t0 + s(120))[0].0.coalesced, Some(1));
        // a quiet window ends the storm: the next restart is at once again
        assert!(sc.tick(t0 + s(180)).is_empty());
        assert!(sc.offer(ev("api-1", "api", "app", Cause::AppError, 3), t0 + s(200)).is_some());
    }

    #[test]
    fn missed_restarts_count_in_what_a_record_stands_for_and_drain_loses_nothing() {
        let t0 = Instant::now();
        let mut sc = StormControl::new(Duration::from_secs(60));
        sc.offer(ev("a", "api", "app", Cause::AppError, 1), t0);
        let mut jump = ev("a", "api", "app", Cause::AppError, 4);
        jump.missed = 2;
        assert!(sc.offer(jump, t0).is_none());
        let drained = sc.drain();
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].0.coalesced, Some(3));
        assert_eq!(drained[0].0.restart_count, 4);
    }
}
