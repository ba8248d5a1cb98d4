//! Rollout regressions (`restart_watcher.workload.rollout_regression`): per workload, the revision
//! its newest pods run and since when, and, once it fails or rolls out, the failing pods of the
//! current and previous revision and the counts of the rollout under watch. Fed by the pods first
//! seen (a new revision's first pod is its rollout) and by the failures the detector reports; the
//! decision is `rules::rollouts`. Bounded by a byte budget shared by the detectors of every scope
//! (oldest workloads forgotten first). Live and replay compute the same: the times are the pods'
//! creations and the failures' own.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use jiff::Timestamp;

use crate::accounting::BudgetUsage;
use crate::pod::PodRevision;
use crate::record::{Record, RecordKind, RolloutRegression};
use crate::rules::rollouts::{self, MAX_FAILING_PODS};

/// The default budget of the workloads remembered, in bytes (about 40,000 quiet workloads).
pub const ROLLOUTS_BUDGET_BYTES: usize = 2 * 1024 * 1024;
/// What a quiet workload costs: its key and state in the map and the queue, with their overhead.
const QUIET_BYTES: usize = 48;
/// What a workload that failed or rolled out costs more: its failing pods and rollout.
const ACTIVE_BYTES: usize = std::mem::size_of::<Box<Active>>() + std::mem::size_of::<Active>() + MAX_FAILING_PODS * 16;

/// The pods of one revision that failed, by pod, with their last failure (seconds).
#[derive(Debug, Default, Clone)]
struct Failing(Vec<(u64, i64)>);

impl Failing {
    /// Notes a failure of `pod` at `at`: past [`MAX_FAILING_PODS`], the pod that failed least
    /// recently gives its place.
    fn note(&mut self, pod: u64, at: i64) {
        if let Some(e) = self.0.iter_mut().find(|(p, _)| *p == pod) {
            e.1 = e.1.max(at);
        } else if self.0.len() < MAX_FAILING_PODS {
            self.0.push((pod, at));
        } else if let Some(oldest) = self.0.iter_mut().min_by_key(|(_, t)| *t) {
            *oldest = (pod, at);
        }
    }

    /// Pods whose last failure is in `from..to`.
    fn count(&self, from: i64, to: i64) -> usize {
        self.0.iter().filter(|(_, t)| (from..to).contains(t)).count()
    }
}

/// A rollout under watch: its start, the previous revision's failing pods in the window before it,
/// the new revision's failures in the window after it, and whether it was reported.
#[derive(Debug)]
struct Watched {
    at: i64,
    previous_failing: usize,
    failures: u32,
    reported: bool,
}

/// What a workload keeps once it failed or rolled out.
#[derive(Debug, Default)]
struct Active {
    failing: Failing,
    rollout: Option<Watched>,
}

/// One workload: the revision of its newest pods and since when.
#[derive(Debug)]
struct Workload {
    revision: u64,
    since: i64,
    active: Option<Box<Active>>,
}

/// The workloads, by a hash of (namespace, kind, name).
#[derive(Debug, Default)]
pub(super) struct Rollouts {
    map: HashMap<u64, Workload>,
    order: VecDeque<u64>,
    pub usage: Arc<BudgetUsage>,
    window_s: i64,
}

fn hash_of(parts: &[&str]) -> u64 {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

fn cost(w: &Workload) -> usize {
    QUIET_BYTES + w.active.as_ref().map_or(0, |_| ACTIVE_BYTES)
}

impl Rollouts {
    pub fn sharing(usage: Arc<BudgetUsage>, window: std::time::Duration) -> Self {
        Rollouts { usage, window_s: i64::try_from(window.as_secs()).unwrap_or(i64::MAX), ..Rollouts::default() }
    }

    /// The window, in seconds (zero: the default).
    fn window(&self) -> i64 {
        match self.window_s {
            0 => rollouts::DEFAULT_ROLLOUT_WINDOW.as_secs() as i64,
            w => w,
        }
    }

    fn budget(&self) -> usize {
        self.usage.budget_or(ROLLOUTS_BUDGET_BYTES)
    }

    /// A pod first seen, of revision `rev`, created at `created`; `pending` when it had yet to
    /// start (created while the agent watched). A pod of a revision other than its workload's,
    /// created after the workload's newest pods, is a rollout: watched when that pod is seen
    /// pending (a pod first seen running was created before the agent watched: so was the rollout).
    pub fn sighting(&mut self, namespace: &str, rev: &PodRevision<'_>, created: Timestamp, pending: bool) {
        let key = hash_of(&[namespace, rev.kind, &rev.workload]);
        let revision = hash_of(&[&rev.hash]);
        let created = created.as_second();
        let window = self.window();
        let Some(w) = self.map.get_mut(&key) else {
            self.insert(key, Workload { revision, since: created, active: None });
            return;
        };
        if w.revision == revision {
            w.since = w.since.min(created);
            return;
        }
        if created <= w.since {
            return; // a pod of an older revision, seen late
        }
        let before = cost(w);
        let previous_failing = w.active.as_ref().map_or(0, |a| a.failing.count(created - window, created));
        let watched = pending;
        w.revision = revision;
        w.since = created;
        w.active = watched.then(|| {
            let rollout = Watched { at: created, previous_failing, failures: 0, reported: false };
            Box::new(Active { failing: Failing::default(), rollout: Some(rollout) })
        });
        let after = cost(w);
        self.usage.resize(before, after);
    }

    fn insert(&mut self, key: u64, w: Workload) {
        self.usage.resize(0, cost(&w));
        self.map.insert(key, w);
        self.order.push_back(key);
        while self.usage.bytes.load(Ordering::Relaxed) as usize > self.budget() {
            let Some(old) = self.order.pop_front() else { break };
            if let Some(gone) = self.map.remove(&old) {
                self.usage.resize(cost(&gone), 0);
                self.usage.shed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A failure the detector reports: noted against its workload's revision; the regression
    /// record when it makes the watched rollout a regression.
    pub fn failure(&mut self, ev: &Record) -> Option<Record> {
        let owners = &ev.pod.owners;
        let hash = owners.revision_hash.as_deref().filter(|_| ev.kind.is_failure())?;
        let (kind, workload) = workload_of(owners)?;
        let window = self.window();
        let w = self.map.get_mut(&hash_of(&[&ev.pod.namespace, kind, workload]))?;
        if w.revision != hash_of(&[hash]) {
            return None;
        }
        let before = cost(w);
        let active = w.active.get_or_insert_with(Box::default);
        let at = ev.time().as_second();
        active.failing.note(hash_of(&[&ev.pod.uid]), at);
        let failing_pods = active.rollout.as_ref().map_or(0, |r| active.failing.count(r.at, i64::MAX));
        let regression =
            active.rollout.as_mut().filter(|r| !r.reported && (r.at..r.at + window).contains(&at)).and_then(|r| {
                r.failures += 1;
                r.reported = rollouts::regressed(r.failures, failing_pods, r.previous_failing);
                r.reported.then(|| RolloutRegression {
                    revision: format!("{}/{workload}@{hash}", ev.pod.namespace),
                    failed_at: ev.time(),
                    started_at: Timestamp::from_second(r.at).unwrap_or(ev.observed_at),
                    window_s: window,
                    failures: r.failures,
                    failing_pods: failing_pods as u32,
                    previous_failing_pods: r.previous_failing as u32,
                })
            });
        let after = cost(w);
        self.usage.resize(before, after);
        regression.map(|r| regression_record(ev, r))
    }
}

/// The workload a failure's owners name, as a sighting names it.
fn workload_of(o: &crate::record::Owners) -> Option<(&'static str, &str)> {
    match (&o.deployment, &o.replicaset, &o.statefulset, &o.daemonset) {
        (Some(d), ..) => Some(("Deployment", &d.name)),
        (None, Some(r), ..) => Some(("ReplicaSet", &r.name)),
        (None, None, Some(s), _) => Some(("StatefulSet", &s.name)),
        (None, None, None, Some(d)) => Some(("DaemonSet", &d.name)),
        _ => None,
    }
}

/// The regression record: the failure that made it, about its pod (no container), with the rollout.
fn regression_record(ev: &Record, r: RolloutRegression) -> Record {
    let mut out = ev.clone();
    out.kind = RecordKind::RolloutRegression;
    out.container = Default::default();
    out.terminated = None;
    out.current = Default::default();
    out.episode = None;
    out.pod_restart = None;
    out.resize = None;
    out.missed = 0;
    out.restart_count = 0;
    out.first_of_revision = false;
    out.rollout = Some(Box::new(r));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn past_their_budget_the_oldest_workloads_are_forgotten_and_counted() {
        let usage = Arc::new(BudgetUsage::default());
        usage.budget_bytes.store((100 * QUIET_BYTES) as u64, Ordering::Relaxed);
        let mut r = Rollouts::sharing(usage.clone(), std::time::Duration::ZERO);
        let at: Timestamp = "2026-11-20T10:00:00Z".parse().unwrap();
        for i in 0..250 {
            let rev = PodRevision { kind: "Deployment", workload: Cow::Owned(format!("w{i}")), hash: "h".into() };
            r.sighting("ns", &rev, at, false);
            assert!(usage.bytes.load(Ordering::Relaxed) as usize <= 100 * QUIET_BYTES);
        }
        assert_eq!(r.map.len(), 100);
        assert_eq!(usage.shed.load(Ordering::Relaxed), 150);
        // A rollout watched makes its workload active, counted in the bytes too.
        let rev = PodRevision { kind: "Deployment", workload: Cow::Borrowed("w249"), hash: "h2".into() };
        let before = usage.bytes.load(Ordering::Relaxed);
        r.sighting("ns", &rev, at.checked_add(jiff::SignedDuration::from_secs(60)).unwrap(), true);
        assert_eq!(usage.bytes.load(Ordering::Relaxed), before + ACTIVE_BYTES as u64);
        // As docs/detection.md says: 48 bytes a quiet workload, about 250 an active one.
        assert!((150..=250).contains(&ACTIVE_BYTES), "{ACTIVE_BYTES}");
    }
}
