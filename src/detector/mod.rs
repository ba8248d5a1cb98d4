//! The detector: pure and synchronous. Observations of Pods in, `Record`s out.
//!
//! It keeps, per `(pod uid, container kind, container name)`, the last `restartCount` it accounted for,
//! and nothing else: no Pod objects. It is level-triggered: it compares what it sees with what it
//! remembers, so it does not matter whether an object came from the initial list, a watch event, a
//! relist after `410 Gone`, or a recording. The rules are those of `docs/detection.md`:
//!
//! - first sighting of a pod: baseline, silent (unless catch-up is on and the container's last
//!   termination is newer than the checkpoint: then one record with `detected_late`);
//! - a rise by k: one record for the newest restart, `missed = k - 1`;
//! - a fall (kubelet lost state): silent, the baseline resets;
//! - duplicates and status noise: silent;
//! - a deleted pod: its final object is compared first (a restart seen only there is reported), then
//!   its state is dropped; pods missing from a completed relist are dropped too;
//! - a container that appears later in a pod already known (its status was not yet written when the
//!   pod was first seen) counts from 0, so restarts it already shows are reported.
//!
//! Memory: a 40-byte map entry per pod, the container names shared by the pods of a template
//! (`tracked`; see `docs/performance.md`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use jiff::Timestamp;

use crate::accounting::BudgetUsage;
use crate::pod::SlimPod;
use crate::record::{ContainerKind, Record, RecordKind, RecordKinds};
use crate::rules::failures;

mod episodes;
mod found;
mod pending;
mod pod_wide;
mod revisions;
mod rollouts;
mod steps;
mod tracked;

use episodes::{EpisodeObservation, Episodes};
pub(crate) use found::oom_kill as oom_kill_record;
use found::{Found, More};
use steps::{PodFacts, UniqueContainers};
pub(crate) use tracked::PodKey;
use tracked::Pods;

/// Which container kinds the detector reports. All restartable kinds by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindFilter {
    pub app: bool,
    pub init: bool,
    pub sidecar: bool,
}

impl Default for KindFilter {
    fn default() -> Self {
        KindFilter { app: true, init: true, sidecar: true }
    }
}

impl KindFilter {
    pub(crate) fn from_kinds(kinds: &[ContainerKind]) -> Self {
        KindFilter {
            app: kinds.contains(&ContainerKind::App),
            init: kinds.contains(&ContainerKind::Init),
            sidecar: kinds.contains(&ContainerKind::Sidecar),
        }
    }
    pub(crate) fn allows(&self, kind: ContainerKind) -> bool {
        match kind {
            ContainerKind::App => self.app,
            ContainerKind::Init => self.init,
            ContainerKind::Sidecar => self.sidecar,
            ContainerKind::Ephemeral => false,
        }
    }
}

/// `Slot::flags`: the container is in a start-failure episode.
const IN_EPISODE: u8 = 1;
/// `Slot::flags`: the episode's opening was reported and its state is kept in `episodes`, so
/// its end is reported too.
const EPISODE_KEPT: u8 = 2;
/// `Slot::flags`: a terminal failure of the container was accounted (reported or baselined).
const FAILED: u8 = 4;

/// `tracked::PodState::flags`: a duplicate container name was warned about (once per pod).
const WARNED_DUPLICATE: u8 = 1;
/// `tracked::PodState::flags`: the pod's eviction was accounted (reported or baselined).
const EVICTED: u8 = 2;
/// `tracked::PodState::flags`: the pod's sandbox is lost (`PodReadyToStartContainers` went
/// `False` while it ran): its next restarts are a pod-wide restart.
const SANDBOX_LOST: u8 = 4;

pub use pending::PENDING_BUDGET_BYTES;
pub use revisions::REVISIONS_BUDGET_BYTES;
pub use rollouts::ROLLOUTS_BUDGET_BYTES;

/// The default budget of the start-failure episodes kept for their closing records, in bytes.
pub const EPISODE_BUDGET_BYTES: usize = 2 * 1024 * 1024;
/// What one kept episode costs: its key and state in the map, with the map's overhead.
pub const EPISODE_ENTRY_BYTES: usize = 64;

/// What the detector reports: container kinds, event kinds, and the redaction of the kubelet
/// messages it copies.
#[derive(Clone, Debug, Default)]
pub struct Detection {
    pub kinds: KindFilter,
    pub records: RecordKinds,
    pub redactions: Vec<regex::Regex>,
    /// The kept start-failure episodes against their budget, shared by the detectors of every
    /// scope and with the metrics.
    pub episodes: Arc<BudgetUsage>,
    /// The revisions that have failed, against their budget (shared likewise).
    pub revisions: Arc<BudgetUsage>,
    /// The pods waiting to start, against their budget (shared likewise).
    pub pending: Arc<BudgetUsage>,
    /// How long a pod may wait to start before it is reported (zero: the default, 5 minutes).
    pub pending_threshold: std::time::Duration,
    /// The workloads watched for rollout regressions, against their budget (shared likewise).
    pub rollouts: Arc<BudgetUsage>,
    /// How long after a rollout its new revision's failures count (zero: the default, 15 minutes).
    pub rollout_window: std::time::Duration,
}

/// Counters of what the detector did, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetectorStats {
    pub observations: u64,
    pub restarts: u64,
    pub resets: u64,
    pub pods_dropped: u64,
    pub objects_without_uid: u64,
    /// Start failures, their ends, terminal failures and evictions reported.
    pub failures: u64,
    /// Pod-wide restarts reported (their containers' restarts count in `restarts`).
    pub pod_restarts: u64,
    /// Start-failure episodes opened while the kept episodes were at their budget: their end is
    /// not reported.
    pub episodes_over_budget: u64,
}

/// The restart detector. See the module docs for its rules.
#[derive(Debug, Default)]
pub struct Detector {
    pods: Pods,
    kinds: KindFilter,
    records: RecordKinds,
    catch_up_since: Option<Timestamp>,
    generation: u32,
    in_relist: bool,
    stats: DetectorStats,
    episodes: Episodes,
    revisions: revisions::Revisions,
    pending: pending::PendingPods,
    rollouts: rollouts::Rollouts,
    /// Applied to the kubelet's messages copied into records.
    redactions: Vec<regex::Regex>,
}

impl Detector {
    pub fn new(kinds: KindFilter) -> Self {
        Detector { kinds, ..Default::default() }
    }

    pub fn with(detection: &Detection) -> Self {
        Detector {
            kinds: detection.kinds,
            records: detection.records,
            redactions: detection.redactions.clone(),
            episodes: Episodes::sharing(detection.episodes.clone()),
            revisions: revisions::Revisions::sharing(detection.revisions.clone()),
            pending: pending::PendingPods::sharing(detection.pending.clone(), detection.pending_threshold),
            rollouts: rollouts::Rollouts::sharing(detection.rollouts.clone(), detection.rollout_window),
            ..Default::default()
        }
    }

    /// The budget of the episodes kept for their closing records, in bytes (0: the default).
    pub fn set_episode_budget(&mut self, bytes: usize) {
        self.episodes.usage.budget_bytes.store(bytes as u64, Ordering::Relaxed);
    }

    /// Bytes of the kept episodes (of every detector sharing the budget), against their budget.
    pub fn episode_usage(&self) -> (usize, usize) {
        (self.episodes.usage.bytes.load(Ordering::Relaxed) as usize, self.episodes.budget())
    }

    /// Turns catch-up on: a container first seen with a last termination later than `since` is
    /// reported once with `detected_late`. `None` turns it off (first sightings stay silent).
    pub fn set_catch_up(&mut self, since: Option<Timestamp>) {
        self.catch_up_since = since;
    }

    pub fn stats(&self) -> DetectorStats {
        self.stats
    }

    /// Number of pods tracked.
    pub fn pods(&self) -> usize {
        self.pods.len()
    }

    /// Number of containers tracked.
    pub fn containers(&self) -> usize {
        self.pods.containers()
    }

    /// Number of distinct container lists (names and kinds) interned: about one per pod template.
    pub fn shapes(&self) -> usize {
        self.pods.shapes()
    }

    /// A pod was added or modified (or listed).
    pub fn apply(&mut self, pod: &SlimPod, observed_at: Timestamp) -> Vec<Record> {
        self.observe(pod, observed_at, false)
    }

    /// The fast path: when an update of a known pod shows exactly the counts already accounted
    /// for (the common case: readiness, IPs, conditions), and nothing that may be another failure,
    /// marks the pod seen and returns `true`; the caller then need not decode the rest of the
    /// object. Returns `false` when the update must go through [`Detector::apply`] (unknown pod, a
    /// count changed, a new container, a failure, an open start-failure episode).
    pub fn unchanged(&mut self, probe: &crate::pod::PodProbe<'_>) -> bool {
        let Some(uid) = probe.metadata.uid.as_deref().filter(|u| !u.is_empty()) else {
            return false;
        };
        if failures::may_show_failure(probe) {
            return false;
        }
        let generation = self.generation;
        let kinds = self.kinds;
        let key = PodKey::of_uid(uid);
        // A pod waiting to start: its start (or its end) is in the full object.
        if self.pending.contains(&key) {
            return false;
        }
        let Some(pod) = self.pods.get_mut(key) else {
            return false;
        };
        if pod.any_flag(IN_EPISODE) {
            return false;
        }
        // The statuses come in the order of the pod's shape: each is looked for after the last.
        let mut next = 0;
        let mut same = |c: &crate::pod::ProbeCount<'_>, candidates: &[ContainerKind], reported: bool| {
            match pod.find_near_any(&c.name, candidates, next) {
                Some(i) => {
                    next = i + 1;
                    pod.slot(i).restart_count == c.restart_count
                }
                // Not tracked: fine only if no kind it could be is reported.
                None => !reported,
            }
        };
        let init = [ContainerKind::Init, ContainerKind::Sidecar];
        let unchanged =
            probe.status.init_container_statuses.iter().all(|c| same(c, &init, kinds.init || kinds.sidecar))
                && probe.status.container_statuses.iter().all(|c| same(c, &[ContainerKind::App], kinds.app));
        if unchanged {
            pod.state.seen_in = generation;
            self.stats.observations += 1;
            true
        } else {
            false
        }
    }

    /// The fast path for a pod seen for the first time when catch-up is off: the first sighting
    /// only sets the baseline, and the probe has all a baseline needs (uid, container names and
    /// counts, which init containers are sidecars). Returns `true` when the baseline was set; the
    /// caller then need not decode the rest. `false` (nothing done) for a known pod, with catch-up on,
    /// without a uid, or when the object may show a failure (its baseline needs the full object).
    pub(crate) fn baseline_new(&mut self, probe: &crate::pod::PodProbe<'_>) -> bool {
        if self.catch_up_since.is_some() || failures::may_show_failure(probe) {
            return false;
        }
        let Some(uid) = probe.metadata.uid.as_deref().filter(|u| !u.is_empty()) else {
            return false;
        };
        let key = PodKey::of_uid(uid);
        if self.pods.contains(&key) {
            return false;
        }
        let kinds = self.kinds;
        let init = probe.status.init_container_statuses.iter().map(|c| {
            let kind = if probe.is_sidecar(&c.name) { ContainerKind::Sidecar } else { ContainerKind::Init };
            (c, kind)
        });
        let app = probe.status.container_statuses.iter().map(|c| (c, ContainerKind::App));
        let mut names = UniqueContainers::default();
        let mut containers: Vec<(&str, ContainerKind, u32)> = Vec::new();
        for (c, kind) in init.chain(app).filter(|(_, kind)| kinds.allows(*kind)) {
            // The first status of a duplicated name counts, as in `observe`.
            if names.push(&c.name, kind) {
                containers.push((&c.name, kind, c.restart_count));
            }
        }
        self.pods.insert(key, &containers, self.generation);
        self.stats.observations += 1;
        let m = &probe.metadata;
        let created = m.creation_timestamp.as_deref().and_then(|t| t.parse().ok());
        let rev = crate::pod::revision(m.labels, m.owner_references);
        self.sighted(m.namespace.as_deref().unwrap_or(""), rev, created, false);
        true
    }

    /// The pods that have now waited past the pending threshold: their openings (a live run calls
    /// it every second; a replay at each time the recording gives).
    pub fn tick(&mut self, now: Timestamp) -> Vec<Record> {
        let records = self.pending.due_at(now);
        self.stats.failures += records.len() as u64;
        self.then_revisions(records)
    }

    /// A pod was deleted: its final object is compared, then its state is dropped.
    pub fn delete(&mut self, pod: &SlimPod, observed_at: Timestamp) -> Vec<Record> {
        self.observe(pod, observed_at, true)
    }

    /// A (re)list starts (kube watcher `Init`). Pods not seen before `end_relist` are dropped.
    pub fn begin_relist(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.in_relist = true;
    }

    /// The (re)list is complete (kube watcher `InitDone`): pods missing from it were deleted while
    /// nobody watched. Returns how many were dropped. Their open episodes are dropped unreported:
    /// how they ended is not known.
    pub fn end_relist(&mut self) -> usize {
        if !self.in_relist {
            return 0;
        }
        self.in_relist = false;
        let generation = self.generation;
        let dropped = self.pods.retain(|p| p.seen_in == generation);
        if dropped > 0 && !(self.episodes.map.is_empty() && self.episodes.pending.is_empty()) {
            let pods = &self.pods;
            self.episodes.map.retain(|(key, _), _| pods.contains(key));
            self.episodes.pending.retain(|(key, _), _| pods.contains(key));
            self.episodes.count();
        }
        if dropped > 0 {
            let pods = &self.pods;
            self.pending.retain(|key| pods.contains(key));
        }
        self.stats.pods_dropped += dropped as u64;
        dropped
    }

    fn observe(&mut self, pod: &SlimPod, observed_at: Timestamp, deleted: bool) -> Vec<Record> {
        self.stats.observations += 1;
        let Some(uid) = pod.uid() else {
            self.stats.objects_without_uid += 1;
            return Vec::new();
        };
        let key = PodKey::of_uid(uid);
        let facts = PodFacts::of(pod, key, observed_at, self.catch_up_since, self.pods.contains(&key));
        if !facts.known {
            self.sighted_pod(pod);
        }
        let mut found: Vec<Found<'_>> = Vec::new();
        {
            let mut state = self.pods.get_or_insert(facts.key, self.generation);
            state.state.seen_in = self.generation;
            let evicted = steps::eviction(&facts, &mut state.state.flags);
            let mut trigger = None;
            for c in steps::containers(&mut state, pod, self.kinds) {
                let mut slot = state.slot(c.index);
                let in_episode = slot.flags & IN_EPISODE != 0;
                let kept = pod_wide::slot(facts.key, c.index);
                if let Some(mut restart) = steps::restart(&facts, &c, &mut slot, &mut self.stats) {
                    match self.episodes.pending.remove(&kept) {
                        Some(pod_wide::Pending::Resize(before)) => {
                            restart.more.resize = pod_wide::resize(&restart, before)
                        }
                        Some(pod_wide::Pending::Trigger(t)) => trigger = Some(pod_wide::trigger(&c.status.name, t)),
                        None => {}
                    }
                    found.push(restart);
                } else if !pod.status.conditions.resize_in_progress
                    && matches!(self.episodes.pending.get(&kept), Some(pod_wide::Pending::Resize(_)))
                {
                    // The resize is over and did not restart this container.
                    self.episodes.pending.remove(&kept);
                }
                if let Some(p) = pod_wide::to_keep(&facts, &c) {
                    self.episodes.keep_pending(kept, p);
                }
                found.extend(EpisodeObservation::new(&facts, &c).apply(
                    &mut slot.flags,
                    &mut self.episodes,
                    &mut self.stats,
                ));
                found.extend(steps::failure(&facts, &c, &mut slot, in_episode));
                state.set_slot(c.index, slot);
            }
            pod_wide::group(&mut found, state.state.flags & SANDBOX_LOST != 0, trigger);
            state.state.flags = pod_wide::next_sandbox_bit(&facts, state.state.flags);
            if deleted {
                found.extend(episodes::end_on_deletion(&facts, &state, &mut self.episodes));
                for index in 0..state.len() {
                    self.episodes.pending.remove(&pod_wide::slot(facts.key, index));
                }
            }
            found.extend(evicted);
        }
        let waiting = self.waiting(pod, uid, &facts, observed_at, deleted);
        if deleted {
            self.pods.remove(&facts.key);
            self.stats.pods_dropped += 1;
        }
        self.episodes.count();
        found.retain(|f| self.records.allows(f.what));
        for f in &found {
            match f.what {
                RecordKind::Restart => self.stats.restarts += 1,
                RecordKind::PodRestart => self.stats.pod_restarts += 1,
                _ => self.stats.failures += 1,
            }
        }
        if found.is_empty() && waiting.is_none() {
            return Vec::new();
        }
        let info = found::pod_info(pod, uid);
        let mut records: Vec<Record> =
            found.into_iter().map(|f| found::build(&info, &facts, f, &self.redactions, observed_at)).collect();
        records.extend(waiting);
        self.then_revisions(records)
    }
}

impl Detector {
    /// The records with their revision's first failure marked, and the rollout regressions they make.
    fn then_revisions(&mut self, mut records: Vec<Record>) -> Vec<Record> {
        let mut regressions = Vec::new();
        for ev in &mut records {
            self.revisions.mark(ev);
            regressions.extend(self.rollouts.failure(ev).filter(|r| self.records.allows(r.kind)));
        }
        self.stats.failures += regressions.len() as u64;
        records.extend(regressions);
        records
    }

    /// A pod first seen: its revision, for the rollout rule.
    fn sighted(
        &mut self,
        namespace: &str,
        rev: Option<crate::pod::PodRevision<'_>>,
        created: Option<Timestamp>,
        pending: bool,
    ) {
        if let (Some(rev), Some(created)) = (rev, created) {
            self.rollouts.sighting(namespace, &rev, created, pending);
        }
    }

    /// A pod first seen in full: `pending` when it had yet to start (created while watched).
    fn sighted_pod(&mut self, pod: &SlimPod) {
        let pending = pod.status.phase.as_deref() == Some("Pending");
        self.sighted(pod.namespace(), pod.revision(), pod.metadata.created_at, pending);
    }

    /// The pod-start rule's record of this observation, if any (`pending.rs`).
    fn waiting(
        &mut self,
        pod: &SlimPod,
        uid: &str,
        facts: &PodFacts<'_>,
        observed_at: Timestamp,
        deleted: bool,
    ) -> Option<Record> {
        if !self.records.allows(RecordKind::PodStartFailure) {
            return None;
        }
        let o = pending::PendingObservation {
            pod,
            key: facts.key,
            info: &|| found::pod_info(pod, uid),
            known: facts.known,
            catch_up_since: self.catch_up_since,
            observed_at,
            status_at: facts.status_at,
            deletion_asked_at: facts.deletion_asked_at,
            deleted,
        };
        let ev = self.pending.observe(&o, &self.redactions).filter(|ev| self.records.allows(ev.kind));
        self.stats.failures += ev.is_some() as u64;
        ev
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracked::NAME_COMPARISONS;

    /// A pod of `n` app containers, `restarted` of them at count 1 (the rest at 0).
    fn wide_pod(n: usize, restarted: usize) -> SlimPod {
        let statuses: Vec<_> = (0..n)
            .map(|i| serde_json::json!({"name": format!("c{i}"), "restartCount": u32::from(i < restarted), "state": {"running": {}}}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"uid": "11111111-2222-3333-4444-555555555555", "name": "wide", "namespace": "ns"},
            "status": {"containerStatuses": statuses},
        }))
        .unwrap()
    }

    #[test]
    fn a_pods_containers_are_found_in_linear_time_however_many_it_has() {
        let now: Timestamp = "2026-11-20T12:00:00Z".parse().unwrap();
        for n in [2_500, 10_000] {
            let mut detector = Detector::new(KindFilter::default());
            assert!(detector.apply(&wide_pod(n, 0), now).is_empty());
            NAME_COMPARISONS.with(|c| c.set(0));
            let records = detector.apply(&wide_pod(n, 1), now);
            assert_eq!(records.len(), 1, "one container restarted");
            // Each status is found where the last one was: one comparison per container and pass.
            let compared = NAME_COMPARISONS.with(|c| c.get());
            assert!(compared <= 2 * n, "{compared} name comparisons for an update of {n} containers");
        }
    }
}
