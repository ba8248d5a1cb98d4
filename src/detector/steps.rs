//! The per-container rules of one observation, each a small step over the pod's facts and one
//! container's state: a restart (its count rose), a failure that restarts nothing, and the pod's
//! eviction. Start-failure episodes are `episodes.rs`.

use jiff::Timestamp;

use super::tracked::{PodMut, Slot};
use super::{DetectorStats, EVICTED, FAILED, Found, KindFilter, More, WARNED_DUPLICATE};
use crate::pod::{PodKey, SlimContainerStatus, SlimPod};
use crate::record::{ContainerKind, Eviction, RecordKind};
use crate::rules::failures;

/// What one observation says of its pod, read once for every rule.
pub(super) struct PodFacts<'a> {
    pub pod: &'a SlimPod,
    pub key: PodKey,
    /// The pod was tracked before this observation (else it is a first sighting: a baseline).
    pub known: bool,
    /// Catch-up: first sightings newer than this are reported late.
    pub since: Option<Timestamp>,
    pub eviction: Option<Eviction>,
    /// When the status was written (the time of a start failure): its `managedFields` time, else
    /// the observation's.
    pub status_at: Timestamp,
    /// When a deletion was asked for, else the observation's time.
    pub deletion_asked_at: Timestamp,
}

impl<'a> PodFacts<'a> {
    pub fn of(pod: &'a SlimPod, key: PodKey, observed_at: Timestamp, since: Option<Timestamp>, known: bool) -> Self {
        PodFacts {
            pod,
            key,
            known,
            since,
            eviction: failures::eviction(pod),
            status_at: pod.metadata.status_written_at.unwrap_or(observed_at),
            deletion_asked_at: failures::deletion_asked_at(pod).unwrap_or(observed_at),
        }
    }
}

/// One container of the observation: its status, kind, index in the pod's shape, and whether it
/// was tracked before (else it counts from 0).
pub(super) struct ContainerSeen<'a> {
    pub status: &'a SlimContainerStatus,
    pub kind: ContainerKind,
    pub index: usize,
    pub tracked_before: bool,
}

/// The pod's containers of the reported kinds, each once, with their indexes in its shape:
/// containers not tracked yet join the shape first, in one step (they count from 0). The
/// statuses come in the order of the shape, so each is looked for after the last found. In
/// malformed input a name listed twice counts once (its first status), warned about once per pod.
pub(super) fn containers<'a>(state: &mut PodMut<'_>, pod: &'a SlimPod, kinds: KindFilter) -> Vec<ContainerSeen<'a>> {
    let tracked = state.len();
    let mut joining = UniqueContainers::default();
    let mut next = 0;
    for (status, kind) in statuses(pod).filter(|(_, kind)| kinds.allows(*kind)) {
        match state.find_near(&status.name, kind, next) {
            Some(i) => next = i + 1,
            None => {
                joining.push(&status.name, kind);
            }
        }
    }
    state.add(joining.as_slice());
    let mut seen = vec![false; state.len()];
    let mut out = Vec::with_capacity(state.len());
    let mut next = 0;
    for (status, kind) in statuses(pod).filter(|(_, kind)| kinds.allows(*kind)) {
        let Some(index) = state.find_near(&status.name, kind, next) else {
            continue;
        };
        next = index + 1;
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
        out.push(ContainerSeen { status, kind, index, tracked_before: index < tracked });
    }
    out
}

/// Restarts: a rise by k is one record with `missed = k - 1`; a fall resets the baseline
/// silently; a container that appears in a known pod counts from 0; a first sighting is a
/// baseline, reported late only when its termination is newer than the catch-up point. A rise in
/// an ended pod's final status (`ContainerStatusUnknown`) is the kubelet's bookkeeping: silent.
pub(super) fn restart<'a>(
    facts: &PodFacts<'a>,
    c: &ContainerSeen<'a>,
    slot: &mut Slot,
    stats: &mut DetectorStats,
) -> Option<Found<'a>> {
    let new = c.status.restart_count;
    let old = std::mem::replace(&mut slot.restart_count, new);
    if failures::is_terminal_bookkeeping(facts.pod, c.status) {
        return None;
    }
    if c.tracked_before {
        if new < old {
            stats.resets += 1;
        }
        (new > old).then(|| Found::restart(c.status, c.kind, new - old - 1, false))
    } else if facts.known && new > 0 {
        Some(Found::restart(c.status, c.kind, new - 1, false))
    } else if !facts.known && new > 0 && is_after_checkpoint(c.status, facts.since) {
        Some(Found::restart(c.status, c.kind, 0, true))
    } else {
        None
    }
}

/// Failures that restart nothing: a failed container that will not be restarted, once. Those of
/// an evicted pod are the eviction; those killed by a deletion are silent; one that never ran
/// ends its start-failure episode instead (`in_episode`).
pub(super) fn failure<'a>(
    facts: &PodFacts<'a>,
    c: &ContainerSeen<'a>,
    slot: &mut Slot,
    in_episode: bool,
) -> Option<Found<'a>> {
    if slot.flags & FAILED != 0 {
        return None;
    }
    let term = c.status.state.terminated.as_ref().filter(|t| failures::is_failed(t))?;
    if !failures::will_not_restart(facts.pod, &c.status.name, c.kind, term.exit_code) {
        return None;
    }
    if facts.eviction.is_some() || (in_episode && !failures::ran(term)) {
        slot.flags |= FAILED;
        return None;
    }
    if failures::killed_by_deletion(facts.pod, term) {
        return None;
    }
    slot.flags |= FAILED;
    let after = matches!((facts.since, term.finished_at), (Some(s), Some(f)) if f > s);
    (facts.known || after).then_some(Found {
        what: RecordKind::Failure,
        status: Some(c.status),
        kind: c.kind,
        missed: 0,
        late: !facts.known,
        episode: None,
        more: More::default(),
    })
}

/// Evictions: one record per pod, the first time its status shows one (a first sighting already
/// evicted is a baseline, unless newer than the catch-up point).
pub(super) fn eviction<'a>(facts: &PodFacts<'a>, pod_flags: &mut u8) -> Option<Found<'a>> {
    let e = facts.eviction.as_ref().filter(|_| *pod_flags & EVICTED == 0)?;
    *pod_flags |= EVICTED;
    let reported = facts.known || facts.since.is_some_and(|s| e.at.is_some_and(|at| at > s));
    reported.then_some(Found {
        what: RecordKind::Eviction,
        status: None,
        kind: ContainerKind::App,
        missed: 0,
        late: !facts.known,
        episode: None,
        more: More::default(),
    })
}

fn is_after_checkpoint(status: &SlimContainerStatus, since: Option<Timestamp>) -> bool {
    match (since, status.last_state.terminated.as_ref().and_then(|t| t.finished_at)) {
        (Some(since), Some(finished)) => finished > since,
        _ => false,
    }
}

/// The pod's container statuses with their kinds; ephemeral containers are not decoded at all.
pub(super) fn statuses(pod: &SlimPod) -> impl Iterator<Item = (&SlimContainerStatus, ContainerKind)> {
    let init = pod.status.init_container_statuses.iter().map(move |s| {
        let kind = if pod.is_sidecar(&s.name) { ContainerKind::Sidecar } else { ContainerKind::Init };
        (s, kind)
    });
    let app = pod.status.container_statuses.iter().map(|s| (s, ContainerKind::App));
    init.chain(app)
}

/// Containers joining a pod's shape, each once, in the order they come: a linear search while
/// few (the common case, no allocation beyond the list), a set past [`UniqueContainers::LINEAR`].
#[derive(Default)]
pub(super) struct UniqueContainers<'a> {
    list: Vec<(&'a str, ContainerKind)>,
    set: Option<std::collections::HashSet<(&'a str, ContainerKind)>>,
}

impl<'a> UniqueContainers<'a> {
    const LINEAR: usize = 16;

    /// Adds the container unless it is there; returns whether it was added.
    pub fn push(&mut self, name: &'a str, kind: ContainerKind) -> bool {
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

    pub fn as_slice(&self) -> &[(&'a str, ContainerKind)] {
        &self.list
    }
}
