//! The `console` exporter: one readable line per record, for people at a terminal.
//!
//! `2026-11-20T10:03:20Z shop/checkout-7d9f8-x2x4q checkout restarted #4: Error (exit code 2), 2 missed, now CrashLoopBackOff`
//! `2026-11-20T10:04:00Z shop/search-5c7d-q8x2z search failed to start: ImagePullBackOff: Back-off pulling image "..."`
//! `2026-11-20T10:05:00Z shop/report-29kx7 report failed, not restarted: Error (exit code 3)`
//! `2026-11-20T10:06:00Z shop/cache-0 was evicted (TerminationByKubelet): The node was low on resource: memory.`

use crate::record::{ContainerKind, Record, RecordKind, signal_name};

/// Formats one record as a console line (no trailing newline).
pub fn line(ev: &Record) -> String {
    if ev.kind == RecordKind::RolloutRegression {
        return format!("{} {}", ev.time(), crate::export::convert::body(ev));
    }
    let mut s = format!("{} {}/{}", ev.time(), ev.pod.namespace, ev.pod.name);
    if !ev.container.name.is_empty() {
        s.push_str(&format!(" {}", ev.container.name));
    }
    if ev.container_kind() != ContainerKind::App {
        s.push_str(&format!(" ({})", ev.container_kind()));
    }
    match ev.kind {
        RecordKind::Restart => s.push_str(&format!(" restarted #{}: ", ev.restart_count)),
        RecordKind::Failure => s.push_str(" failed, not restarted: "),
        RecordKind::StartFailure
        | RecordKind::StartFailureEnded
        | RecordKind::Eviction
        | RecordKind::PodRestart
        | RecordKind::OomKill
        | RecordKind::PodStartFailure
        | RecordKind::PodStartFailureEnded
        | RecordKind::RolloutRegression => {
            s.push(' ');
            s.push_str(&crate::export::convert::predicate(ev));
            if ev.detected_late {
                s.push_str(", detected late");
            }
            return s;
        }
    }
    match &ev.terminated {
        Some(t) => {
            s.push_str(t.reason.as_deref().filter(|r| !r.is_empty()).unwrap_or("terminated"));
            s.push_str(&format!(" (exit code {}", t.exit_code));
            if let Some(name) = ev.signal().and_then(signal_name) {
                s.push_str(&format!(", {name}"));
            }
            s.push(')');
        }
        None => s.push_str("reason unknown"),
    }
    if ev.missed > 0 {
        s.push_str(&format!(", {} missed", ev.missed));
    }
    if let Some(reason) = ev.current.reason.as_deref().filter(|r| !r.is_empty() && ev.kind == RecordKind::Restart) {
        s.push_str(&format!(", now {reason}"));
    }
    if ev.detected_late {
        s.push_str(", detected late");
    }
    s
}
