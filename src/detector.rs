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

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use jiff::Timestamp;

use crate::accounting::BudgetUsage;
use crate::pod::{SlimContainerStatus, SlimPod};
use crate::record::{ContainerInfo, ContainerKind, CurrentState, Episode, PodInfo, Record, RecordKind, RecordKinds};
use crate::rules::failures::{self, EpisodeStep};
use crate::rules::{causes, owners};

mod tracked;

pub use tracked::PodKey;
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
    pub fn from_kinds(kinds: &[ContainerKind]) -> Self {
        KindFilter {
            app: kinds.contains(&ContainerKind::App),
            init: kinds.contains(&ContainerKind::Init),
            sidecar: kinds.contains(&ContainerKind::Sidecar),
        }
    }
    pub fn allows(&self, kind: ContainerKind) -> bool {
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
}

/// A start-failure episode whose opening was reported: what its closing record needs.
#[derive(Debug)]
struct EpisodeState {
    started_at: Timestamp,
    attempts: u32,
    /// Index in `failures::START_FAILURE_REASONS` of the reason that opened it, and of the last one
    /// (`NOT_A_START_FAILURE` after a state that is none: the next start failure is an attempt).
    first: u8,
    last: u8,
}

/// `EpisodeState::last` after a state that is not a start-failure reason.
const NOT_A_START_FAILURE: u8 = u8::MAX;

/// The episodes whose opening was reported, by (pod key, container index), and their bytes
/// against the budget shared by the detectors of every scope.
#[derive(Debug, Default)]
struct Episodes {
    map: HashMap<(PodKey, u16), EpisodeState>,
    /// Their bytes against the budget (0: `EPISODE_BUDGET_BYTES`), shared; and how many of `map`
    /// are counted in it.
    usage: Arc<BudgetUsage>,
    counted: usize,
}

impl Episodes {
    fn budget(&self) -> usize {
        match self.usage.budget_bytes.load(Ordering::Relaxed) {
            0 => EPISODE_BUDGET_BYTES,
            b => usize::try_from(b).unwrap_or(usize::MAX),
        }
    }

    /// Keeps `e` if one more episode fits in the shared budget; else counts it as shed. Returns
    /// whether it was kept.
    fn keep(&mut self, slot: (PodKey, u16), e: EpisodeState) -> bool {
        let shared = self.usage.bytes.load(Ordering::Relaxed) as usize;
        let uncounted = self.map.len().saturating_sub(self.counted) * EPISODE_ENTRY_BYTES;
        if shared + uncounted + EPISODE_ENTRY_BYTES > self.budget() {
            if self.usage.shed.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    budget_bytes = self.budget(),
                    "The start-failure episodes kept for their closing records reached their budget: episodes opened \
                     past it are reported, their ends are not (counted in restart_watcher_episodes_over_budget_total and in \
                     the summary at stop)."
                );
            }
            return false;
        }
        crate::churn::make_room(&mut self.map);
        self.map.insert(slot, e);
        true
    }

    /// Brings the shared count up to date with the map.
    fn count(&mut self) {
        let now = self.map.len();
        if now > self.counted {
            self.usage.bytes.fetch_add(((now - self.counted) * EPISODE_ENTRY_BYTES) as u64, Ordering::Relaxed);
        } else if now < self.counted {
            self.usage.bytes.fetch_sub(((self.counted - now) * EPISODE_ENTRY_BYTES) as u64, Ordering::Relaxed);
        }
        self.counted = now;
    }
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
    /// Applied to the kubelet's messages copied into records.
    redactions: Vec<regex::Regex>,
}

/// What one observation found, before it becomes a record.
struct Found<'a> {
    what: RecordKind,
    status: Option<&'a SlimContainerStatus>,
    kind: ContainerKind,
    missed: u32,
    late: bool,
    episode: Option<Episode>,
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
            episodes: Episodes { usage: detection.episodes.clone(), ..Episodes::default() },
            ..Default::default()
        }
    }

    /// Which event kinds are reported (all by default). The others are still tracked, silently.
    pub fn set_records(&mut self, records: RecordKinds) {
        self.records = records;
    }

    /// Patterns whose matches are replaced with `[REDACTED]` in the kubelet messages a record
    /// carries (start failures, evictions).
    pub fn set_redactions(&mut self, redactions: Vec<regex::Regex>) {
        self.redactions = redactions;
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

    pub fn catch_up_since(&self) -> Option<Timestamp> {
        self.catch_up_since
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
        let Some(pod) = self.pods.get_mut(PodKey::of_uid(uid)) else {
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
    pub fn baseline_new(&mut self, probe: &crate::pod::PodProbe<'_>) -> bool {
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
        true
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
        if dropped > 0 && !self.episodes.map.is_empty() {
            let pods = &self.pods;
            self.episodes.map.retain(|(key, _), _| pods.contains(key));
            self.episodes.count();
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
        let generation = self.generation;
        let since = self.catch_up_since;
        let known = self.pods.contains(&key);
        let eviction = failures::eviction(pod);
        // When the status was written (the time of a start failure), and when a deletion was asked for.
        let status_at = pod.metadata.status_written_at.unwrap_or(observed_at);
        let deletion_asked_at = failures::deletion_asked_at(pod).unwrap_or(observed_at);
        let mut found: Vec<Found<'_>> = Vec::new();
        let mut evicted_now = false;
        {
            let mut state = self.pods.get_or_insert(key, generation);
            state.state.seen_in = generation;
            if let Some(e) = &eviction
                && state.state.flags & EVICTED == 0
            {
                state.state.flags |= EVICTED;
                evicted_now = known || since.is_some_and(|s| e.at.is_some_and(|at| at > s));
            }
            // Containers not tracked yet join the pod's shape first, in one step; they count from 0.
            // The statuses come in the order of the shape: each is looked for after the last found.
            let tracked_before = state.len();
            let mut joining = UniqueContainers::default();
            let mut next = 0;
            for (status, kind) in statuses(pod).filter(|(_, kind)| self.kinds.allows(*kind)) {
                match state.find_near(&status.name, kind, next) {
                    Some(i) => next = i + 1,
                    None => {
                        joining.push(&status.name, kind);
                    }
                }
            }
            state.add(joining.as_slice());
            let mut seen = vec![false; state.len()];
            let mut next = 0;
            for (status, kind) in statuses(pod).filter(|(_, kind)| self.kinds.allows(*kind)) {
                let Some(index) = state.find_near(&status.name, kind, next) else {
                    continue;
                };
                next = index + 1;
                // Container names are unique in a valid pod; in malformed input, the first status
                // of a name counts and the others are ignored (else each would move the count).
                if std::mem::replace(&mut seen[index], true) {
                    if state.state.flags & WARNED_DUPLICATE == 0 {
                        state.state.flags |= WARNED_DUPLICATE;
                        tracing::warn!(
                            pod = format!("{}/{}", pod.namespace(), pod.name()),
                            container = status.name,
                            "The pod lists a container name twice (malformed object); only its first status is used."
                        );
                    }
                    continue;
                }
                let new = status.restart_count;
                let mut t = state.slot(index);
                if index < tracked_before {
                    if new > t.restart_count {
                        found.push(Found::restart(status, kind, new - t.restart_count - 1, false));
                    } else if new < t.restart_count {
                        self.stats.resets += 1;
                    }
                } else if known && new > 0 {
                    // The pod was known before this container's status appeared: count from 0.
                    found.push(Found::restart(status, kind, new - 1, false));
                } else if !known && new > 0 && is_after_checkpoint(status, since) {
                    found.push(Found::restart(status, kind, 0, true));
                }
                t.restart_count = new;
                let in_episode_before = t.flags & IN_EPISODE != 0;
                let step = EpisodeObservation {
                    pod,
                    status,
                    kind,
                    slot: (key, u16::try_from(index).unwrap_or(u16::MAX)),
                    // A container first seen in a pod first seen is a baseline: reported only with
                    // catch-up, when it happened after the checkpoint.
                    baseline: !known,
                    since,
                    status_at,
                    deletion_asked_at,
                    eviction: eviction.as_ref(),
                };
                if let Some(f) = step.apply(&mut t.flags, &mut self.episodes, &mut self.stats) {
                    found.push(f);
                }

                // Terminal failures: a failed container that will not be restarted, once. Those
                // of an evicted pod are the eviction; those killed by a deletion are silent; one
                // that never ran ends its start-failure episode instead.
                if t.flags & FAILED == 0
                    && let Some(term) = status.state.terminated.as_ref().filter(|t| failures::is_failed(t))
                    && failures::will_not_restart(pod, kind)
                {
                    if eviction.is_some() || (in_episode_before && !failures::ran(term)) {
                        t.flags |= FAILED;
                    } else if !failures::killed_by_deletion(pod, term) {
                        t.flags |= FAILED;
                        let after = matches!((since, term.finished_at), (Some(s), Some(f)) if f > s);
                        if known || after {
                            found.push(Found {
                                what: RecordKind::Failure,
                                status: Some(status),
                                kind,
                                missed: 0,
                                late: !known,
                                episode: None,
                            });
                        }
                    }
                }
                state.set_slot(index, t);
            }
            if deleted {
                // The pod went away: its open episodes end with it.
                let outcome = failures::episode_end_on_deletion(pod);
                for index in 0..state.len() {
                    let slot = (key, u16::try_from(index).unwrap_or(u16::MAX));
                    if state.slot(index).flags & EPISODE_KEPT != 0
                        && let Some(e) = self.episodes.map.remove(&slot)
                    {
                        let (name, kind) = (state.name(index), state.kind(index));
                        let status = statuses(pod).find(|(s, k)| *k == kind && *s.name == *name).map(|(s, _)| s);
                        found.push(Found { status, kind, ..Found::ended(&e, outcome, deletion_asked_at) });
                    }
                }
            }
        }
        if deleted {
            self.pods.remove(&key);
            self.stats.pods_dropped += 1;
        }
        self.episodes.count();
        if evicted_now {
            found.push(Found {
                what: RecordKind::Eviction,
                status: None,
                kind: ContainerKind::App,
                missed: 0,
                late: !known,
                episode: None,
            });
        }
        found.retain(|f| self.records.allows(f.what));
        if found.is_empty() {
            return Vec::new();
        }
        for f in &found {
            match f.what {
                RecordKind::Restart => self.stats.restarts += 1,
                _ => self.stats.failures += 1,
            }
        }
        let info = pod_info(pod, uid);
        found.into_iter().map(|f| self.record(&info, pod, f, eviction.as_ref(), observed_at)).collect()
    }

    /// Builds the record of what an observation found.
    fn record(
        &self,
        info: &PodInfo,
        pod: &SlimPod,
        f: Found<'_>,
        eviction: Option<&crate::record::Eviction>,
        observed_at: Timestamp,
    ) -> Record {
        let mut ev = match f.status {
            Some(status) => record_of(info, pod, status, f.kind, f.missed, f.late, observed_at),
            None => Record {
                container: ContainerInfo::default(),
                ..record_of(info, pod, &SlimContainerStatus::default(), f.kind, 0, f.late, observed_at)
            },
        };
        ev.kind = f.what;
        match f.what {
            RecordKind::Restart => {}
            RecordKind::StartFailure | RecordKind::StartFailureEnded => {
                ev.terminated = None;
                if let Some(e) = &f.episode {
                    ev.cause = failures::start_failure_cause(&e.reason);
                }
                ev.current.message = ev.current.message.as_deref().map(|m| self.redact(m));
                ev.episode = f.episode.map(Box::new);
            }
            RecordKind::Failure => {
                let term = f.status.and_then(|s| s.state.terminated.clone());
                ev.cause = causes::classify_from_status(term.as_ref(), pod.status.reason.as_deref());
                ev.terminated = term;
            }
            RecordKind::Eviction => {
                ev.terminated = None;
                ev.current = CurrentState::default();
                if let Some(e) = eviction {
                    ev.cause = e.cause;
                    let message = e.message.as_deref().map(|m| self.redact(m));
                    ev.eviction = Some(Box::new(crate::record::Eviction { message, ..e.clone() }));
                }
            }
        }
        ev
    }

    fn redact(&self, message: &str) -> String {
        let text = crate::rules::text::redact_and_cap(message, &self.redactions, usize::MAX);
        crate::rules::text::cap_utf8(&text, failures::STATUS_MESSAGE_MAX_BYTES).to_owned()
    }
}

impl<'a> Found<'a> {
    fn restart(status: &'a SlimContainerStatus, kind: ContainerKind, missed: u32, late: bool) -> Self {
        Found { what: RecordKind::Restart, status: Some(status), kind, missed, late, episode: None }
    }

    fn episode_end(
        status: &'a SlimContainerStatus,
        kind: ContainerKind,
        e: &EpisodeState,
        outcome: &'static str,
        at: Timestamp,
    ) -> Self {
        Found { status: Some(status), kind, ..Self::ended(e, outcome, at) }
    }

    fn ended(e: &EpisodeState, outcome: &'static str, at: Timestamp) -> Self {
        Found {
            what: RecordKind::StartFailureEnded,
            status: None,
            kind: ContainerKind::App,
            missed: 0,
            late: false,
            episode: Some(Episode {
                reason: failures::START_FAILURE_REASONS
                    .get(usize::from(e.first))
                    .copied()
                    .unwrap_or_default()
                    .to_owned(),
                started_at: e.started_at,
                ended_at: at.max(e.started_at),
                attempts: e.attempts,
                outcome: Some(outcome),
            }),
        }
    }
}

/// One container's observation, as the start-failure rule reads it.
struct EpisodeObservation<'a> {
    pod: &'a SlimPod,
    status: &'a SlimContainerStatus,
    kind: ContainerKind,
    slot: (PodKey, u16),
    baseline: bool,
    since: Option<Timestamp>,
    status_at: Timestamp,
    deletion_asked_at: Timestamp,
    eviction: Option<&'a crate::record::Eviction>,
}

impl<'a> EpisodeObservation<'a> {
    /// Start failures: one record when an episode opens, one when it ends (`docs/detection.md`,
    /// "Beyond restarts"). Updates the container's flags and the kept episodes.
    fn apply(&self, flags: &mut u8, episodes: &mut Episodes, stats: &mut DetectorStats) -> Option<Found<'a>> {
        let status = self.status;
        match failures::episode_step(&status.state, status.last_state.terminated.as_ref()) {
            EpisodeStep::Failing => {
                let reason = status.state.waiting.as_ref().and_then(|w| w.reason.as_deref()).unwrap_or_default();
                let code = reason_code(reason);
                if *flags & IN_EPISODE != 0 {
                    if let Some(e) = episodes.map.get_mut(&self.slot) {
                        if e.last != code && failures::is_new_attempt(reason) {
                            e.attempts = e.attempts.saturating_add(1);
                        }
                        e.last = code;
                    }
                    return None;
                }
                *flags |= IN_EPISODE;
                let created_after = self.since.is_some_and(|s| self.pod.metadata.created_at.is_some_and(|c| c > s));
                if self.baseline && !created_after {
                    return None;
                }
                let kept = EpisodeState { started_at: self.status_at, attempts: 1, first: code, last: code };
                if episodes.keep(self.slot, kept) {
                    *flags |= EPISODE_KEPT;
                } else {
                    stats.episodes_over_budget += 1;
                }
                Some(Found {
                    what: RecordKind::StartFailure,
                    status: Some(status),
                    kind: self.kind,
                    missed: 0,
                    late: self.baseline,
                    episode: Some(Episode {
                        reason: reason.to_owned(),
                        started_at: self.status_at,
                        ended_at: self.status_at,
                        attempts: 1,
                        outcome: None,
                    }),
                })
            }
            EpisodeStep::Transient => None,
            EpisodeStep::NotStarted if *flags & IN_EPISODE == 0 => None,
            EpisodeStep::NotStarted => match failures::episode_end_without_start(self.pod) {
                Some(outcome) => {
                    let at = match outcome {
                        failures::OUTCOME_POD_DELETED => self.deletion_asked_at,
                        failures::OUTCOME_EVICTED => self.eviction.and_then(|e| e.at).unwrap_or(self.status_at),
                        _ => self.status_at,
                    };
                    self.end(flags, episodes, outcome, at)
                }
                None => {
                    if let Some(e) = episodes.map.get_mut(&self.slot) {
                        e.last = NOT_A_START_FAILURE;
                    }
                    None
                }
            },
            EpisodeStep::Started { .. } if *flags & IN_EPISODE == 0 => None,
            EpisodeStep::Started { at } => {
                self.end(flags, episodes, failures::OUTCOME_STARTED, at.unwrap_or(self.status_at))
            }
        }
    }

    /// The open episode ends with `outcome` at `at`: its closing record, if its opening was reported.
    fn end(&self, flags: &mut u8, episodes: &mut Episodes, outcome: &'static str, at: Timestamp) -> Option<Found<'a>> {
        *flags &= !(IN_EPISODE | EPISODE_KEPT);
        let e = episodes.map.remove(&self.slot)?;
        Some(Found::episode_end(self.status, self.kind, &e, outcome, at))
    }
}

/// Containers joining a pod's shape, each once, in the order they come: a linear search while
/// few (the common case, no allocation beyond the list), a set past [`UniqueContainers::LINEAR`].
#[derive(Default)]
struct UniqueContainers<'a> {
    list: Vec<(&'a str, ContainerKind)>,
    set: Option<std::collections::HashSet<(&'a str, ContainerKind)>>,
}

impl<'a> UniqueContainers<'a> {
    const LINEAR: usize = 16;

    /// Adds the container unless it is there; returns whether it was added.
    fn push(&mut self, name: &'a str, kind: ContainerKind) -> bool {
        let item = (name, kind);
        let fresh = match &mut self.set {
            Some(set) => set.insert(item),
            None if self.list.len() < Self::LINEAR => !self.list.contains(&item),
            None => {
                let mut set: std::collections::HashSet<_> = self.list.iter().copied().collect();
                let fresh = set.insert(item);
                self.set = Some(set);
                fresh
            }
        };
        if fresh {
            self.list.push(item);
        }
        fresh
    }

    fn as_slice(&self) -> &[(&'a str, ContainerKind)] {
        &self.list
    }
}

/// The index of a start-failure reason in `failures::START_FAILURE_REASONS`.
fn reason_code(reason: &str) -> u8 {
    failures::START_FAILURE_REASONS
        .iter()
        .position(|r| *r == reason)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(u8::MAX)
}

fn is_after_checkpoint(status: &SlimContainerStatus, since: Option<Timestamp>) -> bool {
    match (since, status.last_state.terminated.as_ref().and_then(|t| t.finished_at)) {
        (Some(since), Some(finished)) => finished > since,
        _ => false,
    }
}

/// The pod's container statuses with their kinds; ephemeral containers are not decoded at all.
fn statuses(pod: &SlimPod) -> impl Iterator<Item = (&SlimContainerStatus, ContainerKind)> {
    let init = pod.status.init_container_statuses.iter().map(move |s| {
        let kind = if pod.is_sidecar(&s.name) { ContainerKind::Sidecar } else { ContainerKind::Init };
        (s, kind)
    });
    let app = pod.status.container_statuses.iter().map(|s| (s, ContainerKind::App));
    init.chain(app)
}

/// Identity and workload of the pod, copied out for the record.
pub fn pod_info(pod: &SlimPod, uid: &str) -> PodInfo {
    let labels = pod.labels();
    PodInfo {
        namespace: pod.namespace().to_owned(),
        name: pod.name().to_owned(),
        uid: uid.to_owned(),
        node_name: pod.spec.node_name.clone(),
        owners: owners::from_pod(pod, &labels),
        labels,
        annotations: pod.annotations(),
    }
}

fn record_of(
    info: &PodInfo,
    pod: &SlimPod,
    status: &SlimContainerStatus,
    kind: ContainerKind,
    missed: u32,
    detected_late: bool,
    observed_at: Timestamp,
) -> Record {
    let terminated = status.last_state.terminated.clone();
    let cause = causes::classify_from_status(terminated.as_ref(), pod.status.reason.as_deref());
    Record {
        pod: info.clone(),
        container: ContainerInfo {
            name: status.name.clone(),
            kind: Some(kind),
            image: status.image.clone(),
            image_id: status.image_id.clone(),
            current_id: status.container_id.clone(),
        },
        restart_count: status.restart_count,
        missed,
        terminated,
        current: CurrentState {
            state: status.state.name(),
            reason: status.state.reason().map(str::to_owned),
            message: status.state.message().map(str::to_owned),
            back_off: status
                .state
                .waiting
                .as_ref()
                .filter(|w| w.reason.as_deref() == Some("CrashLoopBackOff"))
                .and_then(|w| w.message.as_deref())
                .and_then(causes::crash_loop_back_off),
        },
        observed_at,
        detected_late,
        cause,
        pod_reason: pod.status.reason.clone(),
        coalesced: None,
        previous_logs: None,
        kind: RecordKind::Restart,
        episode: None,
        eviction: None,
        in_flight_since: None,
    }
}
