//! Storm control (opt-in, `--storm-window`): during a crash loop, per (workload, container, cause),
//! the first restart is emitted at once; the restarts that follow within the window are held, and
//! at the window's end one record (the latest) is emitted for all of them, carrying
//! `restart_watcher.restarts.coalesced` = how many restarts it stands for. A window with no restart
//! ends the storm: the next restart is emitted at once again. So a 500-pod crash loop of one
//! Deployment yields one record per window, not 500.
//!
//! Its state is bounded in bytes (`STORM_BUDGET_BYTES`): each window's key and the record it holds
//! count. A restart that would take the state past the budget (a new window, or a bigger record to
//! hold) is emitted at once, uncoalesced, and counted (`BudgetUsage::shed`): past its budget,
//! storm control degrades to one record per restart, the contract without it; it never grows.
//!
//! Off by default: one record per restart is the contract. Pure: the caller supplies the time.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use crate::accounting::BudgetUsage;
use crate::record::{Cause, Record, RecordKind};

/// The default budget of storm control's state, in bytes.
pub const STORM_BUDGET_BYTES: usize = 8 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    kind: RecordKind,
    namespace: String,
    workload: String,
    container: String,
    cause: Cause,
}

impl Key {
    /// What a window under this key costs before it holds a record: the key's strings, the map
    /// entry and the window.
    fn bytes(&self) -> usize {
        self.namespace.len()
            + self.workload.len()
            + self.container.len()
            + std::mem::size_of::<Key>()
            + std::mem::size_of::<Window>()
    }
}

fn key(ev: &Record) -> Key {
    let o = &ev.pod.owners;
    let workload =
        crate::rules::owners::workload(o).map(|r| r.name.clone()).unwrap_or_else(|| format!("pod/{}", ev.pod.name));
    Key {
        kind: ev.kind,
        namespace: ev.pod.namespace.clone(),
        workload,
        container: ev.container.name.clone(),
        cause: ev.cause,
    }
}

struct Window {
    ends: Instant,
    held: Option<Record>,
    /// Restarts held (a record with `missed` counts for 1 + missed).
    count: u32,
    /// Records held (for the pipeline's accounting).
    records: u64,
    /// When the oldest record the window holds counts as in flight: all its records count there
    /// until the record that stands for them is settled, so the checkpoint cannot pass them.
    since: Option<jiff::Timestamp>,
}

/// A record to emit and how many detected records it stands for (itself included).
pub(crate) type Emit = (Record, u64);

/// The coalescer.
pub struct StormControl {
    window: Duration,
    windows: HashMap<Key, Window>,
    /// Bytes of `windows` (keys and held records), kept up to date at each change.
    bytes: usize,
    budget: usize,
    usage: Arc<BudgetUsage>,
}

impl StormControl {
    pub fn new(window: Duration) -> Self {
        Self::with_budget(window, STORM_BUDGET_BYTES)
    }

    pub(crate) fn with_budget(window: Duration, budget_bytes: usize) -> Self {
        let usage = Arc::new(BudgetUsage::default());
        usage.budget_bytes.store(budget_bytes as u64, Ordering::Relaxed);
        StormControl { window, windows: HashMap::new(), bytes: 0, budget: budget_bytes, usage }
    }

    /// Its use against its budget, for the metrics.
    pub fn usage(&self) -> Arc<BudgetUsage> {
        self.usage.clone()
    }

    /// Bytes of the state now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn set_bytes(&mut self, bytes: usize) {
        self.bytes = bytes;
        self.usage.bytes.store(bytes as u64, Ordering::Relaxed);
    }

    /// The restart goes out at once: holding it would pass the budget.
    fn over_budget(&self, ev: Record) -> Option<Record> {
        self.usage.shed.fetch_add(1, Ordering::Relaxed);
        Some(ev)
    }

    /// Offers a restart; returns what to emit now (the restart itself, or nothing when held).
    #[cfg(test)]
    pub(crate) fn offer(&mut self, ev: Record, now: Instant) -> Option<Record> {
        self.offer_in_flight(ev, now, None)
    }

    /// [`StormControl::offer`], moving a held record's in-flight count to its window's oldest.
    pub(crate) fn offer_in_flight(
        &mut self,
        mut ev: Record,
        now: Instant,
        in_flight: Option<&crate::accounting::InFlightBySecond>,
    ) -> Option<Record> {
        let k = key(&ev);
        let stands_for = 1 + ev.missed;
        let ev_bytes = ev.approx_bytes();
        let (budget, bytes) = (self.budget, self.bytes);
        match self.windows.get_mut(&k) {
            Some(w) if now < w.ends => {
                let after = bytes - w.held.as_ref().map_or(0, Record::approx_bytes) + ev_bytes;
                if after > budget {
                    return self.over_budget(ev);
                }
                w.count += stands_for;
                w.records += 1;
                let since = *w.since.get_or_insert(ev.in_flight_since.unwrap_or(ev.observed_at));
                if let Some(f) = in_flight {
                    f.shift(ev.in_flight_second(), since.as_second(), 1);
                }
                ev.in_flight_since = Some(since);
                w.held = Some(ev);
                self.set_bytes(after);
                None
            }
            // A window that ended: the restart goes out at once; `tick` emits what the window held
            // (and renews it) or forgets it.
            Some(_) => Some(ev),
            None => {
                let cost = k.bytes();
                if bytes + cost > budget {
                    return self.over_budget(ev);
                }
                crate::churn::make_room(&mut self.windows);
                self.windows
                    .insert(k, Window { ends: now + self.window, held: None, count: 0, records: 0, since: None });
                self.set_bytes(bytes + cost);
                Some(ev)
            }
        }
    }

    /// Ends the windows due by `now`: returns one record per window that held restarts (a new
    /// window starts for those); windows without restarts are forgotten.
    pub fn tick(&mut self, now: Instant) -> Vec<Emit> {
        let mut out = Vec::new();
        let window = self.window;
        let mut freed = 0;
        self.windows.retain(|k, w| {
            if now < w.ends {
                return true;
            }
            match w.held.take() {
                Some(mut ev) => {
                    freed += ev.approx_bytes();
                    ev.coalesced = Some(w.count);
                    out.push((ev, w.records));
                    w.count = 0;
                    w.records = 0;
                    w.since = None;
                    w.ends = now + window;
                    true
                }
                None => {
                    freed += k.bytes();
                    false
                }
            }
        });
        self.set_bytes(self.bytes - freed);
        out
    }

    /// Everything held, at shutdown.
    pub fn drain(&mut self) -> Vec<Emit> {
        self.set_bytes(0);
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
    use crate::record::OwnerRef;

    fn ev(pod: &str, deployment: &str, container: &str, cause: Cause, n: u32) -> Record {
        let mut ev = Record::sample("shop", pod, container, cause);
        ev.pod.owners.deployment = Some(OwnerRef { name: deployment.into(), uid: None });
        ev.restart_count = n;
        ev
    }

    #[test]
    fn held_records_count_in_flight_at_their_window_oldest_until_the_record_standing_for_them_settles() {
        let in_flight = crate::accounting::InFlightBySecond::default();
        let mut sc = StormControl::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let base = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let mut emitted = Vec::new();
        for i in 0..5i64 {
            let ev = Record {
                observed_at: base + jiff::SignedDuration::from_secs(i),
                ..Record::sample("shop", "api-1", "app", crate::record::Cause::AppError)
            };
            in_flight.add(ev.in_flight_second(), 1);
            emitted.extend(sc.offer_in_flight(ev, t0, Some(&in_flight)));
        }
        assert_eq!(emitted.len(), 1, "the first at once");
        assert_eq!(in_flight.oldest(), Some(base.as_second()));
        in_flight.settle(emitted[0].in_flight_second(), 1);
        assert_eq!(in_flight.oldest(), Some(base.as_second() + 1), "the four held count at the oldest of them");
        let (ev, records) = sc.tick(t0 + Duration::from_secs(61)).pop().unwrap();
        assert_eq!((records, ev.in_flight_second()), (4, base.as_second() + 1));
        in_flight.settle(ev.in_flight_second(), records - 1); // coalesced, at forward
        assert_eq!(in_flight.oldest(), Some(base.as_second() + 1), "the record standing for them is in flight");
        in_flight.settle(ev.in_flight_second(), 1); // exported
        assert_eq!(in_flight.oldest(), None);
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
    fn each_event_kind_has_its_own_windows() {
        let t0 = Instant::now();
        let mut sc = StormControl::new(Duration::from_secs(60));
        let start_failure = |pod: &str| Record {
            kind: crate::record::RecordKind::StartFailure,
            ..ev(pod, "search", "search", Cause::ImagePull, 0)
        };
        // a bad image rolled out to 100 pods: one start failure at once, the rest coalesced
        assert!(sc.offer(start_failure("search-0"), t0).is_some());
        for i in 1..100 {
            assert!(sc.offer(start_failure(&format!("search-{i}")), t0).is_none());
        }
        // a restart of the same workload and container is another fact: at once
        assert!(sc.offer(ev("search-0", "search", "search", Cause::ImagePull, 1), t0).is_some());
        let out = sc.tick(t0 + Duration::from_secs(60));
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].0.kind, out[0].0.coalesced), (crate::record::RecordKind::StartFailure, Some(99)));
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

    #[test]
    fn past_its_byte_budget_storm_control_emits_each_restart_at_once_and_counts_it() {
        let t0 = Instant::now();
        let budget = 64 * 1024;
        let mut sc = StormControl::with_budget(Duration::from_secs(60), budget);
        let usage = sc.usage();
        // A flood of distinct workloads: each opens a window until the budget is reached.
        let (mut emitted, offered) = (0u64, 10_000u64);
        for i in 0..offered {
            let name = format!("deploy-{i}");
            emitted += u64::from(sc.offer(ev(&format!("{name}-x"), &name, "app", Cause::AppError, 1), t0).is_some());
            assert!(sc.bytes() <= budget, "{} > {budget}", sc.bytes());
        }
        assert_eq!(emitted, offered, "a first restart is always emitted at once");
        let over = usage.shed.load(Ordering::Relaxed);
        assert!(over > 0 && over < offered, "{over}");
        assert_eq!(usage.bytes.load(Ordering::Relaxed), sc.bytes() as u64);
        assert_eq!(usage.budget_bytes.load(Ordering::Relaxed), budget as u64);
        // A restart too big to hold (its previous logs) in an open window goes out at once too.
        let mut big = ev("deploy-0-y", "deploy-0", "app", Cause::AppError, 2);
        big.previous_logs = Some("x".repeat(budget));
        assert!(sc.offer(big, t0).is_some());
        assert_eq!(usage.shed.load(Ordering::Relaxed), over + 1);
        // The windows end without restarts: the state shrinks back to nothing...
        assert!(sc.tick(t0 + Duration::from_secs(60)).is_empty());
        assert_eq!(sc.bytes(), 0);
        assert_eq!(usage.bytes.load(Ordering::Relaxed), 0);
        // ... and coalescing works again.
        let t1 = t0 + Duration::from_secs(61);
        assert!(sc.offer(ev("deploy-0-y", "deploy-0", "app", Cause::AppError, 2), t1).is_some());
        assert!(sc.offer(ev("deploy-0-z", "deploy-0", "app", Cause::AppError, 2), t1).is_none());
        assert_eq!(sc.held(), 1);
    }

    #[test]
    fn a_restart_after_its_window_ended_is_emitted_at_once_and_the_held_one_is_not_lost() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut sc = StormControl::new(s(60));
        assert!(sc.offer(ev("a", "api", "app", Cause::AppError, 1), t0).is_some());
        assert!(sc.offer(ev("b", "api", "app", Cause::AppError, 1), t0 + s(1)).is_none());
        // Offered after the window's end, before the tick that ends it.
        assert!(sc.offer(ev("c", "api", "app", Cause::AppError, 1), t0 + s(61)).is_some());
        let out = sc.tick(t0 + s(61));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0.pod.name, "b");
    }
}
