//! Restarts that are not one container's own: a pod's sandbox recreated, a `RestartAllContainers`
//! rule fired, an in-place resize with `RestartContainer` (`docs/detection.md`, "Pod-wide restarts
//! and resizes"). The facts they need span observations: a lost sandbox is a pod bit; the firing
//! exit and the limits before a resize are kept, per container, beside the start-failure episodes
//! and within their budget, until the restart they explain is seen.

use std::sync::Arc;

use super::steps::{ContainerSeen, PodFacts};
use super::{Found, More, SANDBOX_LOST};
use crate::pod::{PodKey, SlimContainerStatus, SlimTerminated};
use crate::record::{Cause, PodRestart, RecordKind, ResizeChange, RestartedContainer, Trigger};
use crate::rules::{causes, failures, memory};

/// What is kept of a container between the observation that shows a pod-wide restart or a resize
/// beginning and the one that shows its restart.
#[derive(Debug)]
pub(super) enum Pending {
    /// The exit that fired a `RestartAllContainers` rule (the kubelet overwrites it with
    /// `RestartingAllContainers` when it restarts the container).
    Trigger(SlimTerminated),
    /// The limits in force when a resize began.
    Resize(Limits),
}

/// A container's memory (bytes) and CPU (millicores) limits, as its status reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Limits {
    memory: Option<u64>,
    cpu_millis: Option<u64>,
}

impl Limits {
    fn of(status: &SlimContainerStatus) -> Self {
        let limits = &status.resources.limits;
        Limits {
            memory: limits.memory.as_deref().and_then(memory::bytes),
            cpu_millis: limits.cpu.as_deref().and_then(memory::millicores),
        }
    }
}

/// What a container's observation leaves to keep: the firing exit of a restart-all (its pod shows
/// `AllContainersRestarting` and the container ended with an exit one of its rules restarts all
/// for), or the limits before a resize (its pod shows `PodResizeInProgress`, the container runs).
pub(super) fn to_keep(facts: &PodFacts<'_>, c: &ContainerSeen<'_>) -> Option<Pending> {
    let conditions = &facts.pod.status.conditions;
    if conditions.all_restarting
        && let Some(t) = c.status.state.terminated.as_ref()
        && failures::restarts_all_after_exit(facts.pod, &c.status.name, c.kind, t.exit_code)
    {
        return Some(Pending::Trigger(t.clone()));
    }
    (conditions.resize_in_progress && c.status.state.running.is_some()).then(|| Pending::Resize(Limits::of(c.status)))
}

/// A restart of a container whose resize was pending: a resize restart when the container was
/// killed (not an exit of its own) and its limits changed; the limits before and after.
pub(super) fn resize(found: &Found<'_>, before: Limits) -> Option<ResizeChange> {
    let status = found.status?;
    let after = Limits::of(status);
    let term = status.last_state.terminated.as_ref();
    let killed = causes::classify_from_status(term, None) == Cause::Signal;
    (killed && after != before).then_some(ResizeChange {
        memory_before: before.memory,
        memory_after: after.memory,
        cpu_millis_before: before.cpu_millis,
        cpu_millis_after: after.cpu_millis,
    })
}

/// Whether the pod's sandbox is lost while the pod runs on: `PodReadyToStartContainers` is
/// `False` in a pod not being deleted nor ended, one of whose containers has run (a pod not yet
/// given its first sandbox shows the same condition).
pub(super) fn sandbox_lost(facts: &PodFacts<'_>) -> bool {
    let pod = facts.pod;
    pod.status.conditions.sandbox_ready == Some(false)
        && pod.metadata.deleted_at.is_none()
        && !matches!(pod.status.phase.as_deref(), Some("Succeeded" | "Failed"))
        && super::steps::statuses(pod).any(|(s, _)| {
            s.state.running.is_some() || s.state.terminated.is_some() || s.last_state.terminated.is_some()
        })
}

/// Groups the restarts of one observation into a pod-wide restart, when they are one: every
/// restart after the pod's sandbox was lost (`sandbox_was_lost`: the pod's bit, as it was before
/// this observation), or those whose last state is the kubelet's `RestartingAllContainers`. Each
/// becomes a child of one `PodRestart` record, appended: its cause is the pod-wide one, but the
/// trigger's, which keeps the exit that fired the rule and its own cause.
pub(super) fn group<'a>(found: &mut Vec<Found<'a>>, sandbox_was_lost: bool, trigger: Option<Trigger>) {
    let member = |f: &Found<'_>| {
        f.what == RecordKind::Restart
            && (sandbox_was_lost
                || f.status.and_then(|s| s.last_state.terminated.as_ref()).and_then(|t| t.reason.as_deref())
                    == Some(failures::RESTARTING_ALL_CONTAINERS))
    };
    if !found.iter().any(member) {
        return;
    }
    let cause = if sandbox_was_lost { Cause::SandboxChanged } else { Cause::RestartAll };
    let containers = found
        .iter()
        .filter(|f| member(f))
        .filter_map(|f| {
            let s = f.status?;
            Some(RestartedContainer { name: s.name.clone(), kind: f.kind, restart_count: s.restart_count })
        })
        .collect();
    let trigger = trigger.filter(|_| cause == Cause::RestartAll);
    let shared = Arc::new(PodRestart { cause, trigger, containers });
    for f in found.iter_mut().filter(|f| member(f)) {
        let is_trigger = shared.trigger.as_ref().is_some_and(|t| f.status.is_some_and(|s| s.name == t.container));
        f.more = match &shared.trigger {
            Some(t) if is_trigger => More {
                cause: Some(t.cause),
                terminated: Some(t.terminated.clone()),
                pod_restart: Some(shared.clone()),
                ..More::default()
            },
            _ => More { cause: Some(cause), pod_restart: Some(shared.clone()), ..More::default() },
        };
    }
    found.push(Found {
        what: RecordKind::PodRestart,
        status: None,
        kind: crate::record::ContainerKind::App,
        missed: 0,
        late: false,
        episode: None,
        more: More { cause: Some(cause), pod_restart: Some(shared), ..More::default() },
    });
}

/// The trigger as a pod-wide restart names it, from its kept exit.
pub(super) fn trigger(name: &str, terminated: SlimTerminated) -> Trigger {
    Trigger { container: name.to_owned(), cause: causes::classify_from_status(Some(&terminated), None), terminated }
}

/// The pod's sandbox bit after this observation: set while the sandbox is lost, cleared once the
/// pod shows a ready sandbox again.
pub(super) fn next_sandbox_bit(facts: &PodFacts<'_>, flags: u8) -> u8 {
    if sandbox_lost(facts) {
        flags | SANDBOX_LOST
    } else if facts.pod.status.conditions.sandbox_ready == Some(true) || facts.pod.metadata.deleted_at.is_some() {
        flags & !SANDBOX_LOST
    } else {
        flags
    }
}

/// The key of a container's kept facts.
pub(super) fn slot(key: PodKey, index: usize) -> (PodKey, u16) {
    (key, u16::try_from(index).unwrap_or(u16::MAX))
}
