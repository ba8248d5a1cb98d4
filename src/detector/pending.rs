//! Pods that never start (`restart_watcher.pod.start_failure`): the pods still waiting to start,
//! each with the record that reports it once it has waited past the pending threshold, and its end
//! (started, failed, deleted) once reported. Kept within a byte budget shared by the detectors of
//! every scope; a pod past it is not tracked (counted). Live runs report a pod when the threshold
//! passes ([`PendingPods::due`] on the detector's tick), replays at the recording's next time past
//! it: the records are the same, dated by the pod's creation.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use jiff::{SignedDuration, Timestamp};

use crate::accounting::BudgetUsage;
use crate::pod::{PodKey, SlimPod};
use crate::record::{Episode, PodInfo, Record, RecordKind};
use crate::rules::failures;
use crate::rules::pending::{self, Waiting};

/// The default budget of the pods waiting to start, in bytes: about 2,500 pods (each kept with its
/// record, about 1.6 KiB with a scheduler's message).
pub const PENDING_BUDGET_BYTES: usize = 4 * 1024 * 1024;
/// What one kept pod costs besides its record: its key and box in the map, with the map's overhead.
const ENTRY_BYTES: usize = 64;

/// A pod waiting to start.
#[derive(Debug)]
struct Waiter {
    /// Since when it waits: its creation.
    since: Timestamp,
    /// Its opening was reported: its end will be.
    reported: bool,
    /// First seen already past the threshold, without catch-up: a baseline, never reported.
    silent: bool,
    /// The opening record, kept up to date with the pod's reason and message.
    record: Record,
    bytes: usize,
}

/// The pods waiting to start, by pod key.
#[derive(Debug, Default)]
pub(super) struct PendingPods {
    map: HashMap<PodKey, Waiter>,
    pub usage: Arc<BudgetUsage>,
    threshold: SignedDuration,
}

/// One observation of a pod, as the rule reads it.
pub(super) struct PendingObservation<'a> {
    pub pod: &'a SlimPod,
    pub key: PodKey,
    pub info: &'a dyn Fn() -> PodInfo,
    /// The pod was tracked before (else its first sighting).
    pub known: bool,
    pub catch_up_since: Option<Timestamp>,
    pub observed_at: Timestamp,
    /// When its status was last written, and when its deletion was asked for.
    pub status_at: Timestamp,
    pub deletion_asked_at: Timestamp,
    pub deleted: bool,
}

impl PendingPods {
    pub fn sharing(usage: Arc<BudgetUsage>, threshold: std::time::Duration) -> Self {
        let threshold = SignedDuration::try_from(threshold).unwrap_or(SignedDuration::MAX);
        PendingPods { usage, threshold, ..PendingPods::default() }
    }

    fn budget(&self) -> usize {
        self.usage.budget_or(PENDING_BUDGET_BYTES)
    }

    fn threshold(&self) -> SignedDuration {
        if self.threshold.is_zero() {
            SignedDuration::try_from(pending::DEFAULT_PENDING_THRESHOLD).unwrap_or(SignedDuration::MAX)
        } else {
            self.threshold
        }
    }

    pub fn contains(&self, key: &PodKey) -> bool {
        !self.map.is_empty() && self.map.contains_key(key)
    }

    /// What an observation of a pod says: its opening when it has now waited past the threshold,
    /// its end when it no longer waits (or `None`).
    pub fn observe(&mut self, o: &PendingObservation<'_>, redactions: &[regex::Regex]) -> Option<Record> {
        let waiting = if o.deleted { None } else { pending::not_started(o.pod) };
        match waiting {
            Some(w) => {
                match self.map.get_mut(&o.key) {
                    // Kept: its reason and message now (admitted, it has them already).
                    Some(kept) => {
                        let message = w.message.as_deref().map(|m| super::found::redact(m, redactions));
                        set_reason(&mut kept.record, &w.reason, message);
                    }
                    None => self.admit(o, &w, redactions)?,
                }
                self.due(o.key, o.observed_at)
            }
            None => {
                let kept = self.remove(&o.key)?;
                let (outcome, at) = if o.deleted || o.pod.metadata.deleted_at.is_some() {
                    (failures::OUTCOME_POD_DELETED, o.deletion_asked_at)
                } else if o.pod.status.phase.as_deref() == Some("Failed") {
                    (failures::OUTCOME_POD_FAILED, o.status_at)
                } else {
                    (failures::OUTCOME_STARTED, o.status_at)
                };
                kept.reported.then(|| ended(kept.record, outcome, at, o.observed_at))
            }
        }
    }

    /// Starts tracking a pod that waits: `None` when the budget is full (counted).
    fn admit(&mut self, o: &PendingObservation<'_>, w: &Waiting, redactions: &[regex::Regex]) -> Option<()> {
        let since = o.pod.metadata.created_at.unwrap_or(o.observed_at);
        let due = since.checked_add(self.threshold()).unwrap_or(since);
        let mut record = opening(&(o.info)(), o.pod, since, due, o.observed_at);
        let message = w.message.as_deref().map(|m| super::found::redact(m, redactions));
        set_reason(&mut record, &w.reason, message);
        let past = due <= o.observed_at;
        let late = !o.known && past && o.catch_up_since.is_some_and(|c| since > c);
        record.detected_late = late;
        let bytes = ENTRY_BYTES + record.approx_bytes();
        if self.usage.bytes.load(Ordering::Relaxed) as usize + bytes > self.budget() {
            if self.usage.shed.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    budget_bytes = self.budget(),
                    "The pods waiting to start reached their budget: pods that wait past it are not reported \
                     (counted in restart_watcher_pods_waiting_over_budget_total)."
                );
            }
            return None;
        }
        self.usage.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        let silent = !o.known && past && !late;
        self.map.insert(o.key, Waiter { since, reported: false, silent, record, bytes });
        Some(())
    }

    fn remove(&mut self, key: &PodKey) -> Option<Waiter> {
        let w = self.map.remove(key)?;
        self.usage.bytes.fetch_sub(w.bytes as u64, Ordering::Relaxed);
        Some(w)
    }

    /// The opening of the pod at `key` if it is due at `now` and not yet reported.
    fn due(&mut self, key: PodKey, now: Timestamp) -> Option<Record> {
        let threshold = self.threshold();
        let w = self.map.get_mut(&key)?;
        let due = w.since.checked_add(threshold).is_ok_and(|d| d <= now);
        if w.reported || w.silent || !due {
            return None;
        }
        w.reported = true;
        let mut ev = w.record.clone();
        ev.observed_at = now;
        Some(ev)
    }

    /// The openings due at `now`: the detector's tick.
    pub fn due_at(&mut self, now: Timestamp) -> Vec<Record> {
        if self.map.is_empty() {
            return Vec::new();
        }
        // Oldest first, in one order whatever the map's: live and replay report alike.
        let mut keys: Vec<(Timestamp, PodKey)> =
            self.map.iter().filter(|(_, w)| !w.reported && !w.silent).map(|(k, w)| (w.since, *k)).collect();
        keys.sort_unstable();
        keys.into_iter().filter_map(|(_, k)| self.due(k, now)).collect()
    }

    /// Keeps only the pods `keep` accepts (a relist's): the others went while nobody watched, and
    /// how they ended is not known.
    pub fn retain(&mut self, keep: impl Fn(&PodKey) -> bool) {
        let gone: Vec<PodKey> = self.map.keys().filter(|k| !keep(k)).copied().collect();
        for k in gone {
            self.remove(&k);
        }
    }
}

/// The opening record of a pod that waits since `since`, due at `due` (its episode's end until it
/// ends: how long it had waited when reported).
fn opening(info: &PodInfo, pod: &SlimPod, since: Timestamp, due: Timestamp, observed_at: Timestamp) -> Record {
    let mut ev = super::found::pod_record(info, pod, observed_at);
    ev.kind = RecordKind::PodStartFailure;
    ev.episode =
        Some(Box::new(Episode { reason: String::new(), started_at: since, ended_at: due, attempts: 0, outcome: None }));
    ev
}

/// The pod's reason and message now, and the cause they give.
fn set_reason(ev: &mut Record, reason: &str, message: Option<String>) {
    if let Some(e) = ev.episode.as_deref_mut().filter(|e| e.reason != reason) {
        e.reason = reason.to_owned();
    }
    ev.cause = pending::cause(reason);
    ev.current.message = message;
}

/// The closing record of a reported pod: how and when it ended.
fn ended(mut ev: Record, outcome: &'static str, at: Timestamp, observed_at: Timestamp) -> Record {
    ev.kind = RecordKind::PodStartFailureEnded;
    ev.observed_at = observed_at;
    ev.detected_late = false;
    ev.current.message = None;
    if let Some(e) = ev.episode.as_deref_mut() {
        e.ended_at = at.max(e.started_at);
        e.outcome = Some(outcome);
    }
    ev
}
