//! Start-failure episodes: one record when a container's episode opens, one when it ends
//! (`docs/detection.md`, "Beyond restarts"), and the episodes kept for their closing records
//! within a byte budget shared by the detectors of every scope.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use jiff::Timestamp;

use super::pod_wide::Pending;
use super::steps::{ContainerSeen, PodFacts, statuses};
use super::tracked::PodMut;
use super::{DetectorStats, EPISODE_BUDGET_BYTES, EPISODE_ENTRY_BYTES, EPISODE_KEPT, Found, IN_EPISODE, More};
use crate::accounting::BudgetUsage;
use crate::pod::{PodKey, SlimContainerStatus, SlimPod};
use crate::record::{ContainerKind, Episode, RecordKind};
use crate::rules::failures::{self, EpisodeStep};

/// A start-failure episode whose opening was reported: what its closing record needs.
#[derive(Debug)]
pub(super) struct EpisodeState {
    pub started_at: Timestamp,
    pub attempts: u32,
    /// Index in `failures::START_FAILURE_REASONS` of the reason that opened it, and of the last one
    /// (`NOT_A_START_FAILURE` after a state that is none: the next start failure is an attempt).
    pub first: u8,
    pub last: u8,
}

/// `EpisodeState::last` after a state that is not a start-failure reason.
const NOT_A_START_FAILURE: u8 = u8::MAX;

/// The episodes whose opening was reported, by (pod key, container index), the facts kept for
/// pod-wide restarts and resizes (`pod_wide.rs`), and their bytes against the budget shared by
/// the detectors of every scope.
#[derive(Debug, Default)]
pub(super) struct Episodes {
    pub map: HashMap<(PodKey, u16), EpisodeState>,
    pub pending: HashMap<(PodKey, u16), Pending>,
    /// Their bytes against the budget (0: `EPISODE_BUDGET_BYTES`), shared; and how many of `map`
    /// are counted in it.
    pub usage: Arc<BudgetUsage>,
    counted: usize,
}

impl Episodes {
    /// No episode yet, counted against `usage` (shared by the detectors of every scope).
    pub(crate) fn sharing(usage: Arc<BudgetUsage>) -> Self {
        Episodes { usage, ..Episodes::default() }
    }

    pub fn budget(&self) -> usize {
        self.usage.budget_or(EPISODE_BUDGET_BYTES)
    }

    /// Keeps `e` if one more episode fits in the shared budget; else counts it as shed. Returns
    /// whether it was kept.
    fn keep(&mut self, slot: (PodKey, u16), e: EpisodeState) -> bool {
        if !self.fits() {
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

    /// Whether one more entry fits in the shared budget.
    fn fits(&self) -> bool {
        let shared = self.usage.bytes.load(Ordering::Relaxed) as usize;
        let uncounted = self.len().saturating_sub(self.counted) * EPISODE_ENTRY_BYTES;
        shared + uncounted + EPISODE_ENTRY_BYTES <= self.budget()
    }

    /// Keeps a pod-wide restart's or a resize's fact of a container, unless one is kept for it
    /// already or the budget is full (the restart it explains is then reported by its status
    /// alone: a restart-all without its trigger's exit, a resize as the kill it was).
    pub fn keep_pending(&mut self, slot: (PodKey, u16), p: Pending) {
        if !self.pending.contains_key(&slot) && self.fits() {
            crate::churn::make_room(&mut self.pending);
            self.pending.insert(slot, p);
        }
    }

    fn len(&self) -> usize {
        self.map.len() + self.pending.len()
    }

    /// Brings the shared count up to date with the map.
    pub fn count(&mut self) {
        let now = self.len();
        if now > self.counted {
            self.usage.bytes.fetch_add(((now - self.counted) * EPISODE_ENTRY_BYTES) as u64, Ordering::Relaxed);
        } else if now < self.counted {
            self.usage.bytes.fetch_sub(((self.counted - now) * EPISODE_ENTRY_BYTES) as u64, Ordering::Relaxed);
        }
        self.counted = now;
    }
}

/// One container's observation, as the start-failure rule reads it.
pub(super) struct EpisodeObservation<'a> {
    pod: &'a SlimPod,
    status: &'a SlimContainerStatus,
    kind: ContainerKind,
    slot: (PodKey, u16),
    /// A container first seen in a pod first seen is a baseline: reported only with catch-up,
    /// when its pod was created after the checkpoint.
    baseline: bool,
    since: Option<Timestamp>,
    status_at: Timestamp,
    deletion_asked_at: Timestamp,
    eviction_at: Option<Timestamp>,
}

impl<'a> EpisodeObservation<'a> {
    pub fn new(facts: &PodFacts<'a>, c: &ContainerSeen<'a>) -> Self {
        EpisodeObservation {
            pod: facts.pod,
            status: c.status,
            kind: c.kind,
            slot: (facts.key, u16::try_from(c.index).unwrap_or(u16::MAX)),
            baseline: !facts.known,
            since: facts.since,
            status_at: facts.status_at,
            deletion_asked_at: facts.deletion_asked_at,
            eviction_at: facts.eviction.as_ref().and_then(|e| e.at),
        }
    }

    /// Start failures: one record when an episode opens, one when it ends (`docs/detection.md`,
    /// "Beyond restarts"). Updates the container's flags and the kept episodes.
    pub fn apply(&self, flags: &mut u8, episodes: &mut Episodes, stats: &mut DetectorStats) -> Option<Found<'a>> {
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
                    more: More::default(),
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
                        failures::OUTCOME_EVICTED => self.eviction_at.unwrap_or(self.status_at),
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

/// The index of a start-failure reason in `failures::START_FAILURE_REASONS`.
pub(super) fn reason_code(reason: &str) -> u8 {
    failures::START_FAILURE_REASONS
        .iter()
        .position(|r| *r == reason)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(u8::MAX)
}

/// The pod went away: its open episodes end with it (`evicted` when it shows an eviction, else
/// `pod_deleted`), at the deletion's request.
pub(super) fn end_on_deletion<'a>(facts: &PodFacts<'a>, state: &PodMut<'_>, episodes: &mut Episodes) -> Vec<Found<'a>> {
    let outcome = failures::episode_end_on_deletion(facts.pod);
    let mut out = Vec::new();
    for index in 0..state.len() {
        let slot = (facts.key, u16::try_from(index).unwrap_or(u16::MAX));
        if state.slot(index).flags & EPISODE_KEPT != 0
            && let Some(e) = episodes.map.remove(&slot)
        {
            let (name, kind) = (state.name(index), state.kind(index));
            let status = statuses(facts.pod).find(|(s, k)| *k == kind && *s.name == *name).map(|(s, _)| s);
            out.push(Found { status, kind, ..Found::ended(&e, outcome, facts.deletion_asked_at) });
        }
    }
    out
}
