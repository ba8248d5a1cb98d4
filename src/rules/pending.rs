//! Pods that never start, pure: whether a pod has yet to start, why as far as its status says
//! (the scheduler's `PodScheduled` condition, a container's waiting reason), and what the Events
//! about it add (a volume that cannot be mounted, a sandbox that cannot be created). The detector
//! reports a pod still waiting past the pending threshold (`docs/detection.md`, "Pods that never
//! start").

use std::time::Duration;

use crate::pod::SlimPod;
use crate::record::Cause;
use crate::rules::causes::KubeEvent;
use crate::rules::failures;

/// How long a pod may wait to start before it is reported (`--pending-threshold`).
pub const DEFAULT_PENDING_THRESHOLD: Duration = Duration::from_secs(300);

/// The scheduler's reason for a pod no node fits.
pub const UNSCHEDULABLE: &str = "Unschedulable";
/// The reason of a pod whose status says nothing more than that it waits.
pub const PENDING: &str = "Pending";
/// The `PodScheduled` reason of a pod held by a scheduling gate: held on purpose (a queue, an
/// admission controller), never reported.
const SCHEDULING_GATED: &str = "SchedulingGated";

/// The reasons of the Events (the kubelet's, the attach-detach controller's) that say why a
/// scheduled pod does not start; the newest wins.
pub(crate) const EVENT_REASONS: [&str; 3] = ["FailedMount", "FailedAttachVolume", "FailedCreatePodSandBox"];

/// Why a pod waits, as its status says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// `Unschedulable`, a container's waiting reason (`ContainerCreating`, `PodInitializing`), or
    /// `Pending`.
    pub reason: String,
    /// The scheduler's message (`0/3 nodes are available: 3 Insufficient memory. ...`).
    pub message: Option<String>,
}

/// Whether `pod` has yet to start, and why: `None` once any container ran (is running, has ended
/// or restarted), when the pod is not `Pending` (the API server sets it at creation), is being deleted, is held by a scheduling
/// gate, or when a container reports a start failure of its own (an image that cannot be pulled:
/// that container's record says it).
pub fn not_started(pod: &SlimPod) -> Option<Waiting> {
    let s = &pod.status;
    if pod.metadata.deleted_at.is_some() || s.phase.as_deref() != Some("Pending") {
        return None;
    }
    let mut waiting = None;
    for c in s.container_statuses.iter().chain(&s.init_container_statuses) {
        let ran = c.restart_count > 0
            || c.state.running.is_some()
            || c.state.terminated.is_some()
            || c.last_state.terminated.is_some();
        let reason = c.state.waiting.as_ref().and_then(|w| w.reason.as_deref()).filter(|r| !r.is_empty());
        if ran || reason.is_some_and(failures::is_start_failure) {
            return None;
        }
        waiting = waiting.or(reason);
    }
    if let Some(c) = &s.conditions.unscheduled {
        let reason = c.reason.as_deref().filter(|r| !r.is_empty()).unwrap_or(UNSCHEDULABLE);
        if reason == SCHEDULING_GATED {
            return None;
        }
        let message = c.message.clone().filter(|m| !m.is_empty());
        return Some(Waiting { reason: reason.to_owned(), message });
    }
    Some(Waiting { reason: waiting.unwrap_or(PENDING).to_owned(), message: None })
}

/// The cause of a pod that does not start, from its reason.
pub fn cause(reason: &str) -> Cause {
    match reason {
        UNSCHEDULABLE => Cause::Unschedulable,
        "FailedMount" | "FailedAttachVolume" => Cause::Volume,
        "FailedCreatePodSandBox" => Cause::RuntimeError,
        _ => Cause::Unknown,
    }
}

/// What the Events about a scheduled pod that does not start say: the reason of the newest of
/// [`EVENT_REASONS`]. A pod the scheduler places nowhere keeps its scheduler's reason.
pub(crate) fn reason_from_events(status_reason: &str, events: &[KubeEvent]) -> Option<&'static str> {
    if status_reason == UNSCHEDULABLE {
        return None;
    }
    events.iter().filter(|e| !e.on_node && EVENT_REASONS.contains(&e.reason)).max_by_key(|e| e.time).map(|e| e.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(reason: &str, at: &str) -> KubeEvent {
        KubeEvent::decode(reason, "", None, at.parse().unwrap(), false).expect("a kept reason")
    }

    #[test]
    fn the_events_name_why_a_scheduled_pod_does_not_start_table() {
        let mount = ev("FailedMount", "2026-11-20T10:01:00Z");
        let sandbox = ev("FailedCreatePodSandBox", "2026-11-20T10:02:00Z");
        let killing = ev("Killing", "2026-11-20T10:03:00Z");
        let cases: [(&str, Vec<KubeEvent>, Option<&str>); 5] = [
            ("ContainerCreating", vec![], None),
            ("ContainerCreating", vec![mount.clone()], Some("FailedMount")),
            ("Pending", vec![mount.clone(), sandbox.clone(), killing.clone()], Some("FailedCreatePodSandBox")),
            ("ContainerCreating", vec![killing], None),
            (UNSCHEDULABLE, vec![mount], None),
        ];
        for (status, events, want) in cases {
            assert_eq!(reason_from_events(status, &events), want, "{status} with {events:?}");
        }
        assert_eq!(cause("FailedMount"), Cause::Volume);
        assert_eq!(cause("FailedAttachVolume"), Cause::Volume);
        assert_eq!(cause("FailedCreatePodSandBox"), Cause::RuntimeError);
        assert_eq!(cause(UNSCHEDULABLE), Cause::Unschedulable);
        assert_eq!(cause("ContainerCreating"), Cause::Unknown);
    }
}
