//! What an observation found, and the record built from it: the pod's identity and workload, the
//! container's status, and what each kind of record adds (the episode, the terminal state, the
//! eviction).

use std::sync::Arc;

use jiff::Timestamp;

use super::episodes::EpisodeState;
use super::steps::PodFacts;
use crate::pod::{SlimContainerStatus, SlimPod, SlimTerminated};
use crate::record::{
    Cause, ContainerInfo, ContainerKind, CurrentState, Episode, PodInfo, PodRestart, Record, RecordKind, ResizeChange,
};
use crate::rules::{causes, failures, owners};

/// What one observation found, before it becomes a record.
pub(super) struct Found<'a> {
    pub what: RecordKind,
    pub status: Option<&'a SlimContainerStatus>,
    pub kind: ContainerKind,
    pub missed: u32,
    pub late: bool,
    pub episode: Option<Episode>,
    pub more: More,
}

/// What the pod-wide rules add to a record (`pod_wide.rs`): the pod-wide restart it belongs to,
/// its cause and termination where they are not its status's, a resize's limits.
#[derive(Default)]
pub(super) struct More {
    pub pod_restart: Option<Arc<PodRestart>>,
    pub cause: Option<Cause>,
    pub terminated: Option<SlimTerminated>,
    pub resize: Option<ResizeChange>,
}

impl<'a> Found<'a> {
    pub fn restart(status: &'a SlimContainerStatus, kind: ContainerKind, missed: u32, late: bool) -> Self {
        Found {
            what: RecordKind::Restart,
            status: Some(status),
            kind,
            missed,
            late,
            episode: None,
            more: More::default(),
        }
    }

    pub(crate) fn episode_end(
        status: &'a SlimContainerStatus,
        kind: ContainerKind,
        e: &EpisodeState,
        outcome: &'static str,
        at: Timestamp,
    ) -> Self {
        Found { status: Some(status), kind, ..Self::ended(e, outcome, at) }
    }

    pub fn ended(e: &EpisodeState, outcome: &'static str, at: Timestamp) -> Self {
        Found {
            what: RecordKind::StartFailureEnded,
            status: None,
            kind: ContainerKind::App,
            missed: 0,
            late: false,
            more: More::default(),
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

/// Builds the record of what an observation found, with the kubelet's messages it copies
/// redacted by `redactions` and capped.
pub(super) fn build(
    info: &PodInfo,
    facts: &PodFacts<'_>,
    f: Found<'_>,
    redactions: &[regex::Regex],
    observed_at: Timestamp,
) -> Record {
    let (pod, eviction) = (facts.pod, facts.eviction.as_ref());
    let mut ev = match f.status {
        Some(status) => record_of(info, pod, status, f.kind, f.missed, f.late, observed_at),
        None => Record { detected_late: f.late, ..pod_record(info, pod, observed_at) },
    };
    ev.kind = f.what;
    match f.what {
        RecordKind::Restart => {}
        // Built by `pending.rs`, `rollouts.rs` and `node_oom`, not from a finding.
        RecordKind::OomKill
        | RecordKind::PodStartFailure
        | RecordKind::PodStartFailureEnded
        | RecordKind::RolloutRegression => {}
        RecordKind::PodRestart => {
            ev.terminated = f.more.pod_restart.as_ref().and_then(|p| Some(p.trigger.as_ref()?.terminated.clone()));
            ev.current = CurrentState::default();
        }
        RecordKind::StartFailure | RecordKind::StartFailureEnded => {
            ev.terminated = None;
            if let Some(e) = &f.episode {
                ev.cause = failures::start_failure_cause(&e.reason);
            }
            ev.current.message = ev.current.message.as_deref().map(|m| redact(m, redactions));
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
                let message = e.message.as_deref().map(|m| redact(m, redactions));
                ev.eviction = Some(Box::new(crate::record::Eviction { message, ..e.clone() }));
            }
        }
    }
    let more = f.more;
    if let Some(t) = more.terminated {
        ev.terminated = Some(t);
    }
    if let Some(cause) = more.cause {
        ev.cause = cause;
    }
    if let Some(r) = more.resize {
        ev.cause = Cause::Resize;
        ev.resize = Some(Box::new(r));
    }
    ev.pod_restart = more.pod_restart;
    ev
}

/// A kubelet message as a record carries it: redacted, then capped.
pub(super) fn redact(message: &str, redactions: &[regex::Regex]) -> String {
    let text = crate::rules::text::redact_and_cap(message, redactions, usize::MAX);
    crate::rules::text::cap_utf8(&text, failures::STATUS_MESSAGE_MAX_BYTES).to_owned()
}

/// A record about the pod itself (no container), before its kind says what it states.
pub(super) fn pod_record(info: &PodInfo, pod: &SlimPod, observed_at: Timestamp) -> Record {
    let ev = record_of(info, pod, &SlimContainerStatus::default(), ContainerKind::App, 0, false, observed_at);
    Record { container: ContainerInfo::default(), terminated: None, current: CurrentState::default(), ..ev }
}

/// Identity and workload of the pod, copied out for the record.
pub(crate) fn pod_info(pod: &SlimPod, uid: &str) -> PodInfo {
    let labels = pod.labels();
    PodInfo {
        namespace: pod.namespace().to_owned(),
        name: pod.name().to_owned(),
        uid: uid.to_owned(),
        node_name: pod.spec.node_name.clone(),
        node_uid: None,
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
            memory: crate::rules::memory::context(pod, status),
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
        pod_restart: None,
        resize: None,
        oom_kills: None,
        first_of_revision: false,
        rollout: None,
        in_flight_since: None,
    }
}

/// The record of OOM kills in the container of `pod` whose instance is `container_id` (bare, as
/// its cgroup is named): `None` unless the pod shows that instance running (it lived on). The
/// memory limit is the cgroup's own when it has one (what the kernel enforced).
pub(crate) fn oom_kill(
    pod: &SlimPod,
    container_id: &str,
    kills: crate::record::OomKills,
    cgroup_limit_bytes: Option<u64>,
    observed_at: Timestamp,
) -> Option<Record> {
    let uid = pod.uid()?;
    let (status, kind) = super::steps::statuses(pod).find(|(s, _)| {
        s.state.running.is_some()
            && s.container_id
                .as_deref()
                .is_some_and(|id| id.rsplit_once("://").map_or(id, |(_, bare)| bare) == container_id)
    })?;
    let mut ev = record_of(&pod_info(pod, uid), pod, status, kind, 0, false, observed_at);
    ev.kind = RecordKind::OomKill;
    ev.terminated = None;
    ev.cause = Cause::OomKilled;
    ev.container.memory.limit_bytes = cgroup_limit_bytes.or(ev.container.memory.limit_bytes);
    ev.container.memory.limit_is_pod_level &= cgroup_limit_bytes.is_none();
    ev.oom_kills = Some(Box::new(kills));
    Some(ev)
}
