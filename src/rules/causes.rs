//! Why a container restarted: one classified cause from all the evidence Kubernetes keeps.
//!
//! Exit codes alone mislead: 137 is an OOM kill only when the runtime says `OOMKilled`; a liveness
//! probe failure shows as 137 or 143 (the kubelet's SIGTERM, then SIGKILL after the grace period);
//! an app may `exit(137)` by itself. The status says what happened to the process; the kubelet's
//! Events about the pod say why it was killed. This module joins them, purely: the Events watch
//! and the waiting for a late Event live in `events.rs` and `mod.rs` beside this file.

use std::time::Duration;

use jiff::Timestamp;

use crate::pod::SlimTerminated;
use crate::record::{Cause, Record};

/// A kubelet (or scheduler, or node) Event about a pod, reduced to what classification reads:
/// no message is kept (probe output makes messages of a kilobyte, and a storm brings thousands).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeEvent {
    /// One of [`RELEVANT_REASONS`] or [`NODE_OOM_REASONS`].
    pub reason: &'static str,
    /// For a `Killing` Event: which probe its message names, if any.
    pub kill: Option<Kill>,
    /// The container named by `involvedObject.fieldPath` (`spec.containers{name}`), if any.
    pub container: Option<String>,
    /// When it last happened (`lastTimestamp` / `eventTime` / `series.lastObservedTime`).
    pub time: Timestamp,
    /// An Event about the pod's Node (a node-level OOM kill), not about the pod itself.
    pub on_node: bool,
}

/// What a `Killing` Event's message says killed the container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kill {
    LivenessProbe,
    StartupProbe,
    /// A kill for an in-place resize whose `resizePolicy` is `RestartContainer`.
    Resize,
    /// A kill for another reason (a deletion, a preemption, a pod update).
    Other,
}

impl KubeEvent {
    /// The Event as classification keeps it, or `None` for a reason it does not read (including
    /// `Unhealthy`: a failing probe kills nothing by itself; readiness failures never do).
    pub fn decode(
        reason: &str,
        message: &str,
        container: Option<String>,
        time: Timestamp,
        on_node: bool,
    ) -> Option<KubeEvent> {
        let reasons: &[&'static str] = if on_node { &NODE_OOM_REASONS } else { &RELEVANT_REASONS };
        let reason = *reasons.iter().find(|r| **r == reason)?;
        let kill = (reason == "Killing").then(|| {
            let msg = message.to_ascii_lowercase();
            if msg.contains("failed liveness probe") {
                Kill::LivenessProbe
            } else if msg.contains("failed startup probe") {
                Kill::StartupProbe
            } else if msg.contains("resize requires restart") {
                Kill::Resize
            } else {
                Kill::Other
            }
        });
        Some(KubeEvent { reason, kill, container, time, on_node })
    }
}

/// Reasons of the Node Events that report an OOM kill on the node: `OOMKilling` from
/// node-problem-detector's kernel monitor, `SystemOOM` from the kubelet.
pub(crate) const NODE_OOM_REASONS: [&str; 2] = ["OOMKilling", "SystemOOM"];

/// Event reasons that can explain a restart, or a pod that does not start
/// ([`super::pending::EVENT_REASONS`]); other Events are not kept.
pub(crate) const RELEVANT_REASONS: [&str; 11] = [
    "Killing",
    "Evicted",
    "Preempting",
    "Preempted",
    "OOMKilling",
    "Shutdown",
    "NodeShutdown",
    "TerminationGracePeriodOverride",
    "FailedMount",
    "FailedAttachVolume",
    "FailedCreatePodSandBox",
];

/// How far before the termination an Event may be and still explain it (the kubelet kills after the
/// probe's failures and the termination grace period, 30 s by default).
pub(crate) const EVENT_BEFORE_TERMINATION: Duration = Duration::from_secs(120);
/// How far after the termination an Event may be (Events are written after the fact, and clocks differ).
pub(crate) const EVENT_AFTER_TERMINATION: Duration = Duration::from_secs(10);

/// The container named by an Event's `involvedObject.fieldPath`: `spec.containers{web}` -> `web`
/// (also `spec.initContainers{x}`).
pub(crate) fn container_of_field_path(field_path: &str) -> Option<&str> {
    let start = field_path.find('{')?;
    let end = field_path.rfind('}')?;
    (end > start + 1).then(|| &field_path[start + 1..end])
}

/// The Events that can explain a termination of `container` at `finished`.
fn near<'a>(
    events: &'a [KubeEvent],
    container: &'a str,
    finished: Option<Timestamp>,
) -> impl Iterator<Item = &'a KubeEvent> {
    events.iter().filter(move |e| {
        let same_container = e.container.as_deref().is_none_or(|c| c == container);
        let in_window = match finished {
            Some(f) => {
                let before = jiff::SignedDuration::try_from(EVENT_BEFORE_TERMINATION).unwrap_or_default();
                let after = jiff::SignedDuration::try_from(EVENT_AFTER_TERMINATION).unwrap_or_default();
                f.checked_sub(before).is_ok_and(|lo| e.time >= lo) && f.checked_add(after).is_ok_and(|hi| e.time <= hi)
            }
            None => true,
        };
        same_container && in_window
    })
}

/// Classifies a restart from the container status alone (reason, exit code, signal) and the pod's
/// own status reason. [`classify`] refines it with the kubelet's Events (probe kills, evictions).
///
/// Exit codes alone mislead: 137 is an OOM kill only when the runtime says `OOMKilled`; otherwise
/// it is a SIGKILL from someone (a probe, a user) or the app's own `exit(137)`, reported as `signal`.
pub(crate) fn classify_from_status(terminated: Option<&SlimTerminated>, pod_reason: Option<&str>) -> Cause {
    match pod_reason {
        Some("Evicted") => return Cause::Evicted,
        Some("Preempting") | Some("Preempted") => return Cause::Preempted,
        _ => {}
    }
    let Some(t) = terminated else {
        return Cause::Unknown;
    };
    match t.reason.as_deref() {
        Some("OOMKilled") => Cause::OomKilled,
        Some("Evicted") => Cause::Evicted,
        // The runtime could not start the process (a missing binary, a bad entrypoint): exit 128.
        Some("StartError") => Cause::RuntimeError,
        Some("Completed") if t.exit_code == 0 => Cause::Completed,
        _ if t.exit_code == 0 && t.signal.is_none() => Cause::Completed,
        _ if t.signal.is_some() || t.exit_code > 128 => Cause::Signal,
        _ => Cause::AppError,
    }
}

/// The cause of a detected restart from its status alone.
pub(crate) fn restart_cause_from_status(ev: &Record) -> Cause {
    classify_from_status(ev.terminated.as_ref(), ev.pod_reason.as_deref())
}

/// The cause of a detected restart from its status and the recent Events of its pod.
pub(crate) fn restart_cause(ev: &Record, events: &[KubeEvent]) -> Cause {
    classify(ev.terminated.as_ref(), ev.pod_reason.as_deref(), &ev.container.name, events)
}

/// Whether a detected restart is worth waiting for a late Event: its status leaves the cause open.
pub(crate) fn restart_worth_waiting_for_events(ev: &Record) -> bool {
    worth_waiting_for_events(ev.terminated.as_ref(), ev.pod_reason.as_deref())
}

/// The cause of a restart of `container`, from its last termination, the pod's status reason and
/// the pod's recent Events.
pub(crate) fn classify(
    terminated: Option<&SlimTerminated>,
    pod_reason: Option<&str>,
    container: &str,
    events: &[KubeEvent],
) -> Cause {
    let status = classify_from_status(terminated, pod_reason);
    // The runtime's own verdict is authoritative for OOM kills and clean exits.
    if matches!(status, Cause::OomKilled | Cause::Completed | Cause::Evicted | Cause::Preempted | Cause::RuntimeError) {
        return status;
    }
    let finished = terminated.and_then(|t| t.finished_at);
    let killed = terminated.is_some_and(|t| t.exit_code == 137 || t.signal == Some(9));
    let mut cause = None;
    let mut node_oom = false;
    for e in near(events, container, finished) {
        if e.on_node {
            // The node's kernel killed a process near the time this container died of SIGKILL.
            // It names no container, so any Event about the pod itself explains it better.
            node_oom |= killed && NODE_OOM_REASONS.contains(&e.reason);
            continue;
        }
        let found = match e.reason {
            "Evicted" => Some(Cause::Evicted),
            "Preempting" | "Preempted" => Some(Cause::Preempted),
            "Shutdown" | "NodeShutdown" => Some(Cause::Evicted),
            "Killing" if e.kill == Some(Kill::LivenessProbe) => Some(Cause::LivenessProbe),
            "Killing" if e.kill == Some(Kill::StartupProbe) => Some(Cause::StartupProbe),
            "Killing" if e.kill == Some(Kill::Resize) => Some(Cause::Resize),
            "OOMKilling" if terminated.is_some_and(|t| t.exit_code == 137) => Some(Cause::OomKilled),
            _ => None,
        };
        // The most specific explanation wins: pod-level (eviction, preemption) over probes.
        cause = match (cause, found) {
            (None, f) => f,
            (Some(c), Some(f)) if rank(f) > rank(c) => Some(f),
            (c, _) => c,
        };
    }
    cause.or(node_oom.then_some(Cause::OomKilled)).unwrap_or(status)
}

fn rank(c: Cause) -> u8 {
    match c {
        Cause::Evicted | Cause::Preempted => 3,
        Cause::OomKilled => 2,
        Cause::LivenessProbe | Cause::StartupProbe | Cause::Resize => 1,
        _ => 0,
    }
}

/// Whether the status alone leaves the cause open, so that waiting briefly for a late Event is
/// worth it: a kill by signal (137, 143, a `signal` field) or no termination details.
pub(crate) fn worth_waiting_for_events(terminated: Option<&SlimTerminated>, pod_reason: Option<&str>) -> bool {
    matches!(classify_from_status(terminated, pod_reason), Cause::Signal | Cause::Unknown)
}

/// The back-off delay of a `CrashLoopBackOff` message: `back-off 1m20s restarting failed
/// container=...` -> 80 s.
pub(crate) fn crash_loop_back_off(message: &str) -> Option<Duration> {
    let rest = &message[message.find("back-off ")? + "back-off ".len()..];
    let token = rest.split_whitespace().next()?;
    let mut total = 0u64;
    let mut num = String::new();
    let mut any = false;
    for c in token.chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            let n: u64 = num.parse().ok()?;
            num.clear();
            total += match c {
                'h' => n * 3600,
                'm' => n * 60,
                's' => n,
                _ => return None,
            };
            any = true;
        }
    }
    (any && num.is_empty()).then_some(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_term(reason: Option<&str>, exit_code: i32, signal: Option<i32>) -> SlimTerminated {
        SlimTerminated { reason: reason.map(str::to_owned), exit_code, signal, ..Default::default() }
    }

    #[test]
    fn status_classification_table() {
        let cases: Vec<(&str, Option<SlimTerminated>, Option<&str>, Cause)> = vec![
            (
                "oom kill with exit 137 is oom_killed",
                Some(status_term(Some("OOMKilled"), 137, None)),
                None,
                Cause::OomKilled,
            ),
            (
                "exit 137 without OOMKilled is a signal, not an oom kill",
                Some(status_term(Some("Error"), 137, None)),
                None,
                Cause::Signal,
            ),
            ("sigterm exit 143 is a signal", Some(status_term(Some("Error"), 143, Some(15))), None, Cause::Signal),
            ("explicit signal field is a signal", Some(status_term(Some("Error"), 0, Some(9))), None, Cause::Signal),
            ("exit 1 is an app error", Some(status_term(Some("Error"), 1, None)), None, Cause::AppError),
            ("exit 2 is an app error", Some(status_term(Some("Error"), 2, None)), None, Cause::AppError),
            (
                "container cannot run is an app error",
                Some(status_term(Some("ContainerCannotRun"), 128, None)),
                None,
                Cause::AppError,
            ),
            ("completed exit 0 is completed", Some(status_term(Some("Completed"), 0, None)), None, Cause::Completed),
            ("exit 0 without reason is completed", Some(status_term(None, 0, None)), None, Cause::Completed),
            ("no termination is unknown", None, None, Cause::Unknown),
            ("evicted pod is evicted", Some(status_term(Some("Error"), 137, None)), Some("Evicted"), Cause::Evicted),
        ];
        for (name, t, pod_reason, want) in cases {
            assert_eq!(classify_from_status(t.as_ref(), pod_reason), want, "{name}");
        }
    }

    fn term(reason: &str, code: i32, signal: Option<i32>) -> SlimTerminated {
        SlimTerminated {
            reason: Some(reason.into()),
            exit_code: code,
            signal,
            finished_at: Some("2026-11-20T10:00:00Z".parse().unwrap()),
            ..Default::default()
        }
    }

    fn ev(reason: &str, message: &str, container: Option<&str>, at: &str) -> KubeEvent {
        KubeEvent::decode(reason, message, container.map(Into::into), at.parse().unwrap(), false).unwrap()
    }

    /// An Event about the pod's Node.
    fn node_ev(reason: &str, message: &str, at: &str) -> KubeEvent {
        KubeEvent::decode(reason, message, None, at.parse().unwrap(), true).unwrap()
    }

    #[test]
    fn events_keep_no_message_and_probe_failures_that_kill_nothing_are_dropped_at_decode() {
        let at: Timestamp = "2026-11-20T09:59:50Z".parse().unwrap();
        let decode = |reason: &str, message: &str| KubeEvent::decode(reason, message, None, at, false);
        let cases = [
            ("Killing", LIVENESS, Some(Some(Kill::LivenessProbe))),
            ("Killing", STARTUP, Some(Some(Kill::StartupProbe))),
            ("Killing", "Stopping container web", Some(Some(Kill::Other))),
            ("Evicted", "The node was low on resource: memory.", Some(None)),
            ("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503", None),
            ("Unhealthy", "Liveness probe failed: HTTP 500", None),
            ("Pulled", "Successfully pulled image", None),
            ("OOMKilling", "Memory cgroup out of memory", Some(None)),
        ];
        for (reason, message, want) in cases {
            let got = decode(reason, message);
            assert_eq!(got.as_ref().map(|e| e.kill), want, "{reason}: {message}");
            if let Some(e) = got {
                assert_eq!(e.reason, reason);
            }
        }
        assert!(KubeEvent::decode("OOMKilling", "x", None, at, true).is_some());
        assert!(KubeEvent::decode("Killing", "x", None, at, true).is_none(), "a Node's Killing is not kept");
    }

    const LIVENESS: &str = "Container web failed liveness probe, will be restarted";
    const STARTUP: &str = "Container web failed startup probe, will be restarted";

    #[test]
    fn classification_table_including_the_misleading_137s() {
        type Case<'a> = (&'a str, SlimTerminated, Option<&'a str>, Vec<KubeEvent>, Cause);
        let cases: Vec<Case> = vec![
            ("137 with OOMKilled is an OOM kill", term("OOMKilled", 137, None), None, vec![], Cause::OomKilled),
            (
                "137 after a liveness Killing event is the probe, not an OOM kill",
                term("Error", 137, None),
                None,
                vec![ev("Killing", LIVENESS, Some("web"), "2026-11-20T09:59:30Z")],
                Cause::LivenessProbe,
            ),
            (
                "143 after a liveness Killing event (graceful stop) is the probe",
                term("Error", 143, Some(15)),
                None,
                vec![ev("Killing", LIVENESS, Some("web"), "2026-11-20T09:59:58Z")],
                Cause::LivenessProbe,
            ),
            (
                "137 after a startup probe failure is the startup probe",
                term("Error", 137, None),
                None,
                vec![ev("Killing", STARTUP, Some("web"), "2026-11-20T09:59:50Z")],
                Cause::StartupProbe,
            ),
            (
                "137 with no event is a signal (maybe the app's own exit 137)",
                term("Error", 137, None),
                None,
                vec![],
                Cause::Signal,
            ),
            (
                "a liveness event for another container does not count",
                term("Error", 137, None),
                None,
                vec![ev("Killing", LIVENESS, Some("envoy"), "2026-11-20T09:59:30Z")],
                Cause::Signal,
            ),
            (
                "a liveness event long before the termination does not count",
                term("Error", 137, None),
                None,
                vec![ev("Killing", LIVENESS, Some("web"), "2026-11-20T09:40:00Z")],
                Cause::Signal,
            ),
            (
                "Unhealthy alone (probe failing, no kill) does not change the cause",
                term("Error", 1, None),
                None,
                KubeEvent::decode(
                    "Unhealthy",
                    "Liveness probe failed: HTTP 500",
                    Some("web".into()),
                    "2026-11-20T09:59:50Z".parse().unwrap(),
                    false,
                )
                .into_iter()
                .collect(),
                Cause::AppError,
            ),
            (
                "a node OOMKilling event makes a plain 137 an OOM kill",
                term("Error", 137, None),
                None,
                vec![ev(
                    "OOMKilling",
                    "Memory cgroup out of memory: Killed process 4242",
                    None,
                    "2026-11-20T10:00:01Z",
                )],
                Cause::OomKilled,
            ),
            (
                "a Node OOMKilling event (node-problem-detector) near a 137 is an OOM kill",
                term("Error", 137, None),
                None,
                vec![node_ev(
                    "OOMKilling",
                    "Memory cgroup out of memory: Killed process 4242 (java)",
                    "2026-11-20T10:00:00Z",
                )],
                Cause::OomKilled,
            ),
            (
                "a Node SystemOOM event (kubelet) near a SIGKILL is an OOM kill",
                term("Error", 137, Some(9)),
                None,
                vec![node_ev(
                    "SystemOOM",
                    "System OOM encountered, victim process: java, pid: 4242",
                    "2026-11-20T09:59:58Z",
                )],
                Cause::OomKilled,
            ),
            (
                "a probe kill of this container explains a 137 better than a node OOM",
                term("Error", 137, None),
                None,
                vec![
                    node_ev("SystemOOM", "System OOM encountered", "2026-11-20T09:59:58Z"),
                    ev("Killing", LIVENESS, Some("web"), "2026-11-20T09:59:50Z"),
                ],
                Cause::LivenessProbe,
            ),
            (
                "a node OOM does not explain an exit 1",
                term("Error", 1, None),
                None,
                vec![node_ev("SystemOOM", "System OOM encountered", "2026-11-20T09:59:58Z")],
                Cause::AppError,
            ),
            (
                "a node OOM long before the termination does not explain it",
                term("Error", 137, None),
                None,
                vec![node_ev("OOMKilling", "Memory cgroup out of memory", "2026-11-20T09:50:00Z")],
                Cause::Signal,
            ),
            (
                "an Evicted event is an eviction",
                term("Error", 137, None),
                None,
                vec![ev("Evicted", "The node was low on resource: memory.", None, "2026-11-20T09:59:59Z")],
                Cause::Evicted,
            ),
            (
                "a Preempting event is a preemption",
                term("Error", 143, Some(15)),
                None,
                vec![ev("Preempting", "Preempted by a pod on node n1", None, "2026-11-20T09:59:59Z")],
                Cause::Preempted,
            ),
            (
                "eviction wins over a probe kill in the same window",
                term("Error", 137, None),
                None,
                vec![
                    ev("Killing", LIVENESS, Some("web"), "2026-11-20T09:59:50Z"),
                    ev("Evicted", "low memory", None, "2026-11-20T09:59:59Z"),
                ],
                Cause::Evicted,
            ),
            (
                "a node shutdown counts as an eviction",
                term("Error", 143, Some(15)),
                None,
                vec![ev("Shutdown", "Shutdown manager detected shutdown event", None, "2026-11-20T09:59:59Z")],
                Cause::Evicted,
            ),
            ("exit 1 stays an app error whatever the events", term("Error", 1, None), None, vec![], Cause::AppError),
            (
                "a clean exit stays completed even after a Killing event",
                term("Completed", 0, None),
                None,
                vec![ev("Killing", LIVENESS, Some("web"), "2026-11-20T09:59:59Z")],
                Cause::Completed,
            ),
            ("the pod's Evicted status reason wins", term("Error", 137, None), Some("Evicted"), vec![], Cause::Evicted),
        ];
        for (name, t, pod_reason, events, want) in cases {
            assert_eq!(classify(Some(&t), pod_reason, "web", &events), want, "{name}");
        }
        assert_eq!(classify(None, None, "web", &[]), Cause::Unknown, "no termination at all");
    }

    #[test]
    fn waiting_for_events_only_when_the_status_leaves_it_open() {
        assert!(worth_waiting_for_events(Some(&term("Error", 137, None)), None));
        assert!(worth_waiting_for_events(None, None));
        assert!(!worth_waiting_for_events(Some(&term("OOMKilled", 137, None)), None));
        assert!(!worth_waiting_for_events(Some(&term("Error", 1, None)), None));
    }

    #[test]
    fn field_paths_name_the_container() {
        assert_eq!(container_of_field_path("spec.containers{web}"), Some("web"));
        assert_eq!(container_of_field_path("spec.initContainers{migrate}"), Some("migrate"));
        assert_eq!(container_of_field_path(""), None);
    }

    #[test]
    fn crash_loop_back_off_delays_are_read_from_the_message() {
        let cases = [
            ("back-off 40s restarting failed container=web pod=web-1_shop(uid)", Some(40)),
            ("back-off 1m20s restarting failed container=web", Some(80)),
            ("back-off 5m0s restarting failed container=web", Some(300)),
            ("back-off 2h0m0s restarting", Some(7200)),
            ("something else", None),
            ("back-off soon", None),
        ];
        for (msg, want) in cases {
            assert_eq!(crash_loop_back_off(msg).map(|d| d.as_secs()), want, "{msg}");
        }
    }
}
