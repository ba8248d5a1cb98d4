//! The rules for container failures that are not restarts, pure: start failures (a container that
//! cannot start), terminal failures (a container that failed and will not be restarted) and pod
//! evictions. The detector applies them; `docs/detection.md` gives one row per rule and
//! `tests/detection_table.rs` one case per row.

use jiff::Timestamp;

use crate::event::{Cause, ContainerKind};
use crate::pod::{SlimPod, SlimTerminated};

/// Waiting reasons that mean the kubelet cannot start the container. `CrashLoopBackOff` is not one:
/// the container ran, and its restarts are reported as restarts.
pub const START_FAILURE_REASONS: [&str; 8] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "PreCreateHookError",
];

/// Waiting reasons that are the kubelet backing off after a failed attempt: moving into one is
/// not a new attempt.
const BACK_OFF_REASONS: [&str; 1] = ["ImagePullBackOff"];

/// Waiting reasons of a container that is being created: they neither open nor end a start-failure
/// episode (the kubelet passes through them between attempts).
const TRANSIENT_REASONS: [&str; 2] = ["ContainerCreating", "PodInitializing"];

/// Longest kubelet message (waiting message, pod status message) copied into a record, in bytes.
pub const STATUS_MESSAGE_MAX_BYTES: usize = 1024;

pub fn is_start_failure(reason: &str) -> bool {
    START_FAILURE_REASONS.contains(&reason)
}

/// Whether moving into `reason` counts as one more attempt to start.
pub fn is_new_attempt(reason: &str) -> bool {
    is_start_failure(reason) && !BACK_OFF_REASONS.contains(&reason)
}

/// What a container's current waiting state does to a start-failure episode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpisodeStep {
    /// A start failure: opens an episode, or continues the open one.
    Failing,
    /// Being created: changes nothing.
    Transient,
    /// Running, terminated, or waiting for another reason (`CrashLoopBackOff`: it ran): ends an
    /// open episode.
    Started,
}

/// The step of a container whose state is `waiting` with `reason` (`None`: not waiting).
pub fn episode_step(waiting_reason: Option<&str>, has_state: bool) -> EpisodeStep {
    match waiting_reason {
        Some(r) if is_start_failure(r) => EpisodeStep::Failing,
        Some(r) if TRANSIENT_REASONS.contains(&r) || r.is_empty() => EpisodeStep::Transient,
        Some(_) => EpisodeStep::Started,
        None if has_state => EpisodeStep::Started,
        None => EpisodeStep::Transient,
    }
}

/// The cause of a start failure, from its waiting reason.
pub fn start_failure_cause(reason: &str) -> Cause {
    match reason {
        "ErrImagePull" | "ImagePullBackOff" | "ErrImageNeverPull" | "InvalidImageName" => Cause::ImagePull,
        "CreateContainerConfigError" => Cause::ConfigError,
        _ => Cause::RuntimeError,
    }
}

/// A termination is a failure when its exit code is not 0 or its reason is not `Completed`.
pub fn is_failed_exit(exit_code: i64, reason: Option<&str>) -> bool {
    exit_code != 0 || reason.is_some_and(|r| !r.is_empty() && r != "Completed")
}

pub fn is_failed(t: &SlimTerminated) -> bool {
    is_failed_exit(i64::from(t.exit_code), t.reason.as_deref())
}

/// Whether a terminated container of this kind will not be restarted: any container of a
/// `restartPolicy: Never` pod, or any container of a pod whose phase is `Failed`. Native sidecars
/// never: they are stopped when the pod ends, and restarted while it runs.
pub fn will_not_restart(pod: &SlimPod, kind: ContainerKind) -> bool {
    match kind {
        ContainerKind::Sidecar | ContainerKind::Ephemeral => false,
        ContainerKind::App | ContainerKind::Init => {
            pod.spec.restart_policy.as_deref() == Some("Never") || pod.status.phase.as_deref() == Some("Failed")
        }
    }
}

/// Whether the termination was caused by the pod's deletion: it ended after the deletion was
/// asked for (`deletionTimestamp - deletionGracePeriodSeconds`), or its end is unknown on a pod
/// being deleted.
pub fn killed_by_deletion(pod: &SlimPod, t: &SlimTerminated) -> bool {
    let Some(asked_at) = deletion_asked_at(pod) else {
        return false;
    };
    t.finished_at.is_none_or(|finished| finished >= asked_at)
}

/// When the pod's deletion was asked for: `deletionTimestamp - deletionGracePeriodSeconds`.
pub fn deletion_asked_at(pod: &SlimPod) -> Option<Timestamp> {
    let deleted_at = pod.metadata.deleted_at?;
    let grace = jiff::SignedDuration::from_secs(pod.metadata.deletion_grace_seconds.unwrap_or(0).max(0));
    Some(deleted_at.checked_sub(grace).unwrap_or(deleted_at))
}

/// A pod's eviction or preemption, as its status shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Eviction {
    /// `evicted` or `preempted`.
    pub cause: Cause,
    /// The `DisruptionTarget` reason (`TerminationByKubelet`, `EvictionByEvictionAPI`,
    /// `PreemptionByScheduler`, `DeletionByTaintManager`, `DeletionByPodGC`), else the pod's reason.
    pub reason: String,
    pub message: Option<String>,
    /// When it happened, if the status says.
    pub at: Option<Timestamp>,
}

/// The eviction evidence of a pod: `status.reason` `Evicted` (the kubelet under node pressure) or
/// `Preempting` (the kubelet making room for a critical pod), or a `True` `DisruptionTarget`
/// condition. A deletion without that condition (rollouts, scale-downs, `kubectl delete`) is none.
pub fn eviction(pod: &SlimPod) -> Option<Eviction> {
    let status = &pod.status;
    let condition = status.disruption.as_ref();
    let pod_reason = status.reason.as_deref().filter(|r| matches!(*r, "Evicted" | "Preempting"));
    if condition.is_none() && pod_reason.is_none() {
        return None;
    }
    let reason = condition.and_then(|c| c.reason.clone()).or_else(|| pod_reason.map(str::to_owned)).unwrap_or_default();
    let preempted = reason == "PreemptionByScheduler" || pod_reason == Some("Preempting");
    let message = status
        .message
        .clone()
        .filter(|_| pod_reason.is_some())
        .or_else(|| condition.and_then(|c| c.message.clone()))
        .filter(|m| !m.is_empty());
    Some(Eviction {
        cause: if preempted { Cause::Preempted } else { Cause::Evicted },
        reason,
        message,
        at: condition.and_then(|c| c.last_transition_time),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: &str) -> SlimPod {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn episode_steps() {
        for (reason, has_state, step) in [
            (Some("ErrImagePull"), true, EpisodeStep::Failing),
            (Some("ImagePullBackOff"), true, EpisodeStep::Failing),
            (Some("CreateContainerConfigError"), true, EpisodeStep::Failing),
            (Some("ContainerCreating"), true, EpisodeStep::Transient),
            (Some("PodInitializing"), true, EpisodeStep::Transient),
            (Some("CrashLoopBackOff"), true, EpisodeStep::Started),
            (None, true, EpisodeStep::Started),
            (None, false, EpisodeStep::Transient),
        ] {
            assert_eq!(episode_step(reason, has_state), step, "{reason:?}");
        }
        assert!(is_new_attempt("ErrImagePull") && !is_new_attempt("ImagePullBackOff"));
    }

    #[test]
    fn failed_exits() {
        for (code, reason, failed) in [
            (0, Some("Completed"), false),
            (0, None, false),
            (0, Some(""), false),
            (3, Some("Error"), true),
            (137, Some("OOMKilled"), true),
            (0, Some("OOMKilled"), true),
        ] {
            assert_eq!(is_failed_exit(code, reason), failed, "{code} {reason:?}");
        }
    }

    #[test]
    fn terminations_after_the_deletion_request_are_the_deletions() {
        let p = pod(
            r#"{"metadata":{"uid":"u","deletionTimestamp":"2026-01-01T00:00:30Z","deletionGracePeriodSeconds":30}}"#,
        );
        let at =
            |s: &str| SlimTerminated { finished_at: Some(s.parse().unwrap()), exit_code: 143, ..Default::default() };
        assert!(killed_by_deletion(&p, &at("2026-01-01T00:00:05Z")));
        assert!(killed_by_deletion(&p, &at("2026-01-01T00:00:00Z")), "at the request");
        assert!(!killed_by_deletion(&p, &at("2025-12-31T23:59:59Z")), "before the request");
        assert!(killed_by_deletion(&p, &SlimTerminated::default()));
        assert!(!killed_by_deletion(&pod(r#"{"metadata":{"uid":"u"}}"#), &SlimTerminated::default()));
    }

    #[test]
    fn eviction_evidence() {
        let kubelet = pod(
            r#"{"status":{"phase":"Failed","reason":"Evicted","message":"The node was low on resource: memory.",
            "conditions":[{"type":"DisruptionTarget","status":"True","reason":"TerminationByKubelet","message":"memory pressure","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#,
        );
        let e = eviction(&kubelet).unwrap();
        assert_eq!((e.cause, e.reason.as_str()), (Cause::Evicted, "TerminationByKubelet"));
        assert_eq!(e.message.as_deref(), Some("The node was low on resource: memory."));
        assert!(e.at.is_some());
        let preempted = pod(
            r#"{"status":{"conditions":[{"type":"Ready","status":"True"},{"type":"DisruptionTarget","status":"True","reason":"PreemptionByScheduler","message":"preempted by default/high"}]}}"#,
        );
        let e = eviction(&preempted).unwrap();
        assert_eq!((e.cause, e.message.as_deref()), (Cause::Preempted, Some("preempted by default/high")));
        let old = pod(r#"{"status":{"phase":"Failed","reason":"Evicted","message":"disk"}}"#);
        assert_eq!(eviction(&old).unwrap().reason, "Evicted");
        assert_eq!(eviction(&pod(r#"{"status":{"phase":"Failed","reason":"DeadlineExceeded"}}"#)), None);
        let not_true = pod(r#"{"status":{"conditions":[{"type":"DisruptionTarget","status":"False"}]}}"#);
        assert_eq!(eviction(&not_true), None);
        assert_eq!(eviction(&pod(r#"{"status":{"conditions":"garbage"}}"#)), None);
    }
}
