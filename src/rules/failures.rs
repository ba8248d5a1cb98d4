//! The rules for container failures that are not restarts, pure: start failures (a container that
//! cannot start), terminal failures (a container that failed and will not be restarted) and pod
//! evictions. The detector applies them; `docs/detection.md` gives one row per rule and
//! `tests/detection_table.rs` one case per row.

use jiff::Timestamp;

use crate::pod::PodProbe;
use crate::pod::{SlimContainerState, SlimPod, SlimTerminated};
use crate::record::{Cause, ContainerKind, Eviction};

/// Waiting reasons that mean the kubelet cannot start the container: they open a start-failure
/// episode. The image reasons are the kubelet's `images` errors (`pkg/kubelet/images/types.go`),
/// the others its container-creation errors (`pkg/kubelet/container/sync_result.go`).
/// `CrashLoopBackOff` is not one: the container ran, and its restarts are reported as restarts.
pub(crate) const START_FAILURE_REASONS: [&str; 13] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "ImageInspectError",
    "RegistryUnavailable",
    "SignatureValidationFailed",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "PreCreateHookError",
    "PreStartHookError",
    "PostStartHookError",
];

/// Waiting reasons that are the kubelet backing off after a failed attempt: moving into one is
/// not a new attempt.
const BACK_OFF_REASONS: [&str; 1] = ["ImagePullBackOff"];

/// Waiting reasons of a container that is being created: they neither open nor end a start-failure
/// episode (the kubelet passes through them between attempts).
const TRANSIENT_REASONS: [&str; 2] = ["ContainerCreating", "PodInitializing"];

/// The waiting reason of a container that ran and is backing off before its next restart.
pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";

/// Termination reasons of a container that never ran: the runtime could not start its process
/// (`StartError`: a missing binary, a bad entrypoint), or the kubelet could not find it when the pod
/// ended (`ContainerStatusUnknown`: it was still waiting to start).
const NEVER_RAN_REASONS: [&str; 2] = ["StartError", "ContainerStatusUnknown"];

/// Longest kubelet message (waiting message, pod status message) copied into a record, in bytes.
pub const STATUS_MESSAGE_MAX_BYTES: usize = 1024;

/// Margin for the skew between the node's clock (`finishedAt`) and the API server's
/// (`deletionTimestamp`, whole seconds): a termination up to this long before the deletion was
/// asked for is taken as killed by it.
pub(crate) const DELETION_CLOCK_SKEW_MARGIN: jiff::SignedDuration = jiff::SignedDuration::from_secs(2);

pub(crate) fn is_start_failure(reason: &str) -> bool {
    START_FAILURE_REASONS.contains(&reason)
}

/// Whether moving into `reason` counts as one more attempt to start.
pub(crate) fn is_new_attempt(reason: &str) -> bool {
    is_start_failure(reason) && !BACK_OFF_REASONS.contains(&reason)
}

/// Whether a terminated instance ran: it ended for a reason other than never having started.
pub fn ran(t: &SlimTerminated) -> bool {
    !t.reason.as_deref().is_some_and(|r| NEVER_RAN_REASONS.contains(&r))
}

/// What a container's state does to a start-failure episode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EpisodeStep {
    /// A start failure: opens an episode, or continues the open one.
    Failing,
    /// Not started, for a reason that opens no episode: a waiting reason the agent does not know,
    /// `CrashLoopBackOff` after a start error, a termination that never ran. Continues an open
    /// episode.
    NotStarted,
    /// Being created: changes nothing.
    Transient,
    /// It ran: running, terminated after running, or `CrashLoopBackOff` after running. Ends an open
    /// episode, at `at` (when it started, where the status says).
    Started { at: Option<Timestamp> },
}

/// The step of a container whose current state is `state` and last termination `last`.
pub(crate) fn episode_step(state: &SlimContainerState, last: Option<&SlimTerminated>) -> EpisodeStep {
    if let Some(w) = &state.waiting {
        let reason = w.reason.as_deref().unwrap_or("");
        return match reason {
            r if is_start_failure(r) => EpisodeStep::Failing,
            r if r.is_empty() || TRANSIENT_REASONS.contains(&r) => EpisodeStep::Transient,
            CRASH_LOOP_BACK_OFF => match last {
                Some(t) if !ran(t) => EpisodeStep::NotStarted,
                _ => EpisodeStep::Started { at: last.and_then(|t| t.started_at) },
            },
            _ => EpisodeStep::NotStarted,
        };
    }
    if let Some(r) = &state.running {
        return EpisodeStep::Started { at: r.started_at };
    }
    match &state.terminated {
        Some(t) if ran(t) => EpisodeStep::Started { at: t.started_at },
        Some(_) => EpisodeStep::NotStarted,
        None => EpisodeStep::Transient,
    }
}

/// The outcome of an episode whose container started.
pub(crate) const OUTCOME_STARTED: &str = "started";
/// The outcome of an episode whose pod was deleted before its container started.
pub(crate) const OUTCOME_POD_DELETED: &str = "pod_deleted";
/// The outcome of an episode whose pod was evicted (or preempted) before its container started.
pub(crate) const OUTCOME_EVICTED: &str = "evicted";
/// The outcome of an episode whose pod failed (its phase `Failed`) before its container started.
pub(crate) const OUTCOME_POD_FAILED: &str = "pod_failed";

/// How an open episode ends when its pod goes away before the container started: `evicted`, or
/// `pod_deleted` (a deletion was asked for), or `pod_failed` (the pod's phase is `Failed`: a Job's
/// deadline, say). `None`: the pod lives on and the episode stays open.
pub(crate) fn episode_end_without_start(pod: &SlimPod) -> Option<&'static str> {
    if eviction(pod).is_some() {
        Some(OUTCOME_EVICTED)
    } else if pod.metadata.deleted_at.is_some() {
        Some(OUTCOME_POD_DELETED)
    } else if pod.status.phase.as_deref() == Some("Failed") {
        Some(OUTCOME_POD_FAILED)
    } else {
        None
    }
}

/// How an open episode ends when its pod is deleted: `evicted` when the pod shows an eviction,
/// else `pod_deleted`.
pub(crate) fn episode_end_on_deletion(pod: &SlimPod) -> &'static str {
    if eviction(pod).is_some() { OUTCOME_EVICTED } else { OUTCOME_POD_DELETED }
}

/// The cause of a start failure, from its waiting reason.
pub(crate) fn start_failure_cause(reason: &str) -> Cause {
    match reason {
        "ErrImagePull"
        | "ImagePullBackOff"
        | "ErrImageNeverPull"
        | "InvalidImageName"
        | "ImageInspectError"
        | "RegistryUnavailable"
        | "SignatureValidationFailed" => Cause::ImagePull,
        "CreateContainerConfigError" => Cause::ConfigError,
        _ => Cause::RuntimeError,
    }
}

/// A termination is a failure when its exit code is not 0 or its reason is not `Completed`.
pub(crate) fn is_failed_exit(exit_code: i64, reason: Option<&str>) -> bool {
    exit_code != 0 || reason.is_some_and(|r| !r.is_empty() && r != "Completed")
}

pub(crate) fn is_failed(t: &SlimTerminated) -> bool {
    is_failed_exit(i64::from(t.exit_code), t.reason.as_deref())
}

/// Whether a terminated container will not be restarted: the pod's phase is `Failed` while it is
/// not being deleted, or the kubelet's rules ([`restarts_after_exit`]) leave it dead. The kubelet
/// gives a deleted pod a terminal phase too (`Failed` when a container's last exit was not 0): a
/// crash-looping container caught in its back-off by a rollout or a scale-down would have been
/// restarted but for the deletion. Native sidecars never: they are stopped when the pod ends, and
/// restarted while it runs.
pub(crate) fn will_not_restart(pod: &SlimPod, name: &str, kind: ContainerKind, exit_code: i32) -> bool {
    match kind {
        ContainerKind::Sidecar | ContainerKind::Ephemeral => false,
        ContainerKind::App | ContainerKind::Init => {
            (pod.status.phase.as_deref() == Some("Failed") && pod.metadata.deleted_at.is_none())
                || !restarts_after_exit(pod, name, kind, exit_code)
        }
    }
}

/// Whether the kubelet restarts a container that exited with `exit_code` (its
/// `ContainerShouldRestart`, Kubernetes 1.35): the first of the container's own
/// `restartPolicyRules` that matches the code decides (`Restart`, and `RestartAllContainers`,
/// restart it); then its own `restartPolicy` (`Always`, `OnFailure`: when not 0, `Never`); then the
/// pod's (`Always` when unset). An init container that is not a sidecar is done once it exits 0.
pub(crate) fn restarts_after_exit(pod: &SlimPod, name: &str, kind: ContainerKind, exit_code: i32) -> bool {
    if kind == ContainerKind::Init && exit_code == 0 {
        return false;
    }
    let by_policy = |policy: &str| match policy {
        "Always" => Some(true),
        "OnFailure" => Some(exit_code != 0),
        "Never" => Some(false),
        _ => None,
    };
    if let Some(own) = pod.own_rules(name, kind == ContainerKind::Init)
        && let Some(policy) = own.restart_policy.as_deref()
    {
        let rule = own.restart_policy_rules.iter().find(|r| r.matches(exit_code));
        if rule.is_some_and(|r| matches!(r.action.as_deref(), Some("Restart" | "RestartAllContainers"))) {
            return true;
        }
        if let Some(decided) = by_policy(policy) {
            return decided;
        }
    }
    pod.spec.restart_policy.as_deref().and_then(by_policy).unwrap_or(true)
}

/// The reason the kubelet gives a container it stops for a `RestartAllContainers` rule (its last
/// state, exit 137, and its waiting state until it starts again).
pub(crate) const RESTARTING_ALL_CONTAINERS: &str = "RestartingAllContainers";

/// Whether the first of a container's own `restartPolicyRules` that matches `exit_code` restarts
/// every container of the pod (`RestartAllContainers`, Kubernetes 1.35+, alpha).
pub(crate) fn restarts_all_after_exit(pod: &SlimPod, name: &str, kind: ContainerKind, exit_code: i32) -> bool {
    pod.own_rules(name, kind == ContainerKind::Init).is_some_and(|own| {
        own.restart_policy_rules
            .iter()
            .find(|r| r.matches(exit_code))
            .is_some_and(|r| r.action.as_deref() == Some("RestartAllContainers"))
    })
}

/// Whether a rise of a container's restart count is the kubelet's bookkeeping of a pod that has
/// ended rather than a restart: the pod's phase is terminal and the container's last state is
/// `ContainerStatusUnknown` (137, "The container could not be located when the pod was
/// terminated"). The real kubelet writes this for an evicted pod's killed container, with the
/// count one higher and the container waiting in `ContainerCreating`: nothing was restarted.
pub(crate) fn is_terminal_bookkeeping(pod: &SlimPod, status: &crate::pod::SlimContainerStatus) -> bool {
    matches!(pod.status.phase.as_deref(), Some("Failed" | "Succeeded"))
        && status.last_state.terminated.as_ref().is_some_and(|t| t.reason.as_deref() == Some("ContainerStatusUnknown"))
}

/// Whether the termination was caused by the pod's deletion: it ended after the deletion was
/// asked for (`deletionTimestamp - deletionGracePeriodSeconds`, less
/// [`DELETION_CLOCK_SKEW_MARGIN`] for the node's clock), or its end is unknown on a pod being
/// deleted.
pub(crate) fn killed_by_deletion(pod: &SlimPod, t: &SlimTerminated) -> bool {
    let Some(asked_at) = deletion_asked_at(pod) else {
        return false;
    };
    let asked_at = asked_at.checked_sub(DELETION_CLOCK_SKEW_MARGIN).unwrap_or(asked_at);
    t.finished_at.is_none_or(|finished| finished >= asked_at)
}

/// When the pod's deletion was asked for: `deletionTimestamp - deletionGracePeriodSeconds`.
pub(crate) fn deletion_asked_at(pod: &SlimPod) -> Option<Timestamp> {
    let deleted_at = pod.metadata.deleted_at?;
    let grace = jiff::SignedDuration::from_secs(pod.metadata.deletion_grace_seconds.unwrap_or(0).max(0));
    Some(deleted_at.checked_sub(grace).unwrap_or(deleted_at))
}

/// Whether a probed object may show a failure other than a restart: a start failure, a failed
/// termination, a failed, pending (it may never start) or reasoned pod, a disruption (eviction, preemption) or a deletion. Such
/// objects take the full path; the others only move restart counts.
pub(crate) fn may_show_failure(probe: &PodProbe<'_>) -> bool {
    let s = &probe.status;
    probe.metadata.deletion_timestamp.is_some()
        || s.reason.is_some()
        || s.telling_condition
        || matches!(s.phase.as_deref(), Some("Failed" | "Pending"))
        || s.container_statuses.iter().chain(&s.init_container_statuses).any(|c| {
            c.state.waiting.as_ref().is_some_and(|w| w.reason.as_deref().is_some_and(is_start_failure))
                || c.state.terminated.as_ref().is_some_and(|t| is_failed_exit(t.exit_code, t.reason.as_deref()))
        })
}

/// The eviction evidence of a pod: `status.reason` `Evicted` (the kubelet under node pressure) or
/// `Preempting` (the kubelet making room for a critical pod), or a `True` `DisruptionTarget`
/// condition. A deletion without that condition (rollouts, scale-downs, `kubectl delete`) is none.
pub fn eviction(pod: &SlimPod) -> Option<Eviction> {
    let status = &pod.status;
    let condition = status.conditions.disruption.as_ref();
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
        pod_phase: status.phase.clone(),
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
        let t = |s: &str| -> Option<Timestamp> { Some(s.parse().unwrap()) };
        let started = "2026-11-20T10:00:21Z";
        let error_last = r#"{"terminated":{"reason":"Error","exitCode":1,"startedAt":"2026-11-20T10:00:21Z"}}"#;
        let start_error_last = r#"{"terminated":{"reason":"StartError","exitCode":128}}"#;
        for (state, last, step) in [
            (r#"{"waiting":{"reason":"ErrImagePull"}}"#, "{}", EpisodeStep::Failing),
            (r#"{"waiting":{"reason":"ImagePullBackOff"}}"#, "{}", EpisodeStep::Failing),
            (r#"{"waiting":{"reason":"CreateContainerConfigError"}}"#, "{}", EpisodeStep::Failing),
            (r#"{"waiting":{"reason":"ImageInspectError"}}"#, "{}", EpisodeStep::Failing),
            (r#"{"waiting":{"reason":"RegistryUnavailable"}}"#, "{}", EpisodeStep::Failing),
            (r#"{"waiting":{"reason":"ContainerCreating"}}"#, "{}", EpisodeStep::Transient),
            (r#"{"waiting":{"reason":"PodInitializing"}}"#, "{}", EpisodeStep::Transient),
            (r#"{"waiting":{}}"#, "{}", EpisodeStep::Transient),
            // A reason the agent does not know keeps an open episode open, and opens none.
            (r#"{"waiting":{"reason":"SomeFutureReason"}}"#, "{}", EpisodeStep::NotStarted),
            (r#"{"waiting":{"reason":"CrashLoopBackOff"}}"#, error_last, EpisodeStep::Started { at: t(started) }),
            (r#"{"waiting":{"reason":"CrashLoopBackOff"}}"#, "{}", EpisodeStep::Started { at: None }),
            // A missing binary: the restart's instance never ran.
            (r#"{"waiting":{"reason":"CrashLoopBackOff"}}"#, start_error_last, EpisodeStep::NotStarted),
            (r#"{"running":{"startedAt":"2026-11-20T10:00:21Z"}}"#, "{}", EpisodeStep::Started { at: t(started) }),
            (r#"{"running":{}}"#, "{}", EpisodeStep::Started { at: None }),
            (error_last, "{}", EpisodeStep::Started { at: t(started) }),
            (start_error_last, "{}", EpisodeStep::NotStarted),
            // The kubelet's final status for a container still waiting when its pod went away.
            (r#"{"terminated":{"reason":"ContainerStatusUnknown","exitCode":137}}"#, "{}", EpisodeStep::NotStarted),
            ("{}", "{}", EpisodeStep::Transient),
        ] {
            let state: SlimContainerState = serde_json::from_str(state).unwrap();
            let last: SlimContainerState = serde_json::from_str(last).unwrap();
            assert_eq!(episode_step(&state, last.terminated.as_ref()), step, "{state:?} after {last:?}");
        }
        assert!(is_new_attempt("ErrImagePull") && !is_new_attempt("ImagePullBackOff"));
        assert!(!is_new_attempt("SomeFutureReason"));
    }

    #[test]
    fn an_episode_ends_without_a_start_only_when_its_pod_goes_away() {
        let cases = [
            (r#"{"status":{"phase":"Pending"}}"#, None),
            (r#"{"status":{"phase":"Failed","reason":"DeadlineExceeded"}}"#, Some("pod_failed")),
            (
                r#"{"metadata":{"deletionTimestamp":"2026-11-20T10:00:30Z"},"status":{"phase":"Failed"}}"#,
                Some("pod_deleted"),
            ),
            (
                r#"{"metadata":{"deletionTimestamp":"2026-11-20T10:00:30Z"},"status":{"phase":"Failed","reason":"Evicted"}}"#,
                Some("evicted"),
            ),
        ];
        for (json, want) in cases {
            assert_eq!(episode_end_without_start(&pod(json)), want, "{json}");
        }
        assert_eq!(episode_end_on_deletion(&pod(r#"{"status":{"phase":"Pending"}}"#)), "pod_deleted");
        let evicted = pod(
            r#"{"status":{"conditions":[{"type":"DisruptionTarget","status":"True","reason":"EvictionByEvictionAPI"}]}}"#,
        );
        assert_eq!(episode_end_on_deletion(&evicted), "evicted");
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
        // The node's clock a second behind the API server's, and deletion times in whole seconds.
        assert!(killed_by_deletion(&p, &at("2025-12-31T23:59:59Z")), "within the skew margin");
        assert!(!killed_by_deletion(&p, &at("2025-12-31T23:59:57Z")), "before the request and its margin");
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
