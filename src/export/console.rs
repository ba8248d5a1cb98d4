//! The `console` exporter: one readable line per restart, for people at a terminal.
//!
//! `2026-11-20T10:03:20Z shop/checkout-7d9f8-x2x4q checkout restarted #4: Error (exit code 2), 2 missed, now CrashLoopBackOff`

use crate::event::{ContainerKind, RestartEvent, signal_name};

/// Formats one restart as a console line (no trailing newline).
pub fn line(ev: &RestartEvent) -> String {
    let mut s = format!("{} {}/{} {}", ev.time(), ev.pod.namespace, ev.pod.name, ev.container.name);
    if ev.kind() != ContainerKind::App {
        s.push_str(&format!(" ({})", ev.kind()));
    }
    s.push_str(&format!(" restarted #{}: ", ev.restart_count));
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
    if let Some(reason) = ev.current.reason.as_deref().filter(|r| !r.is_empty()) {
        s.push_str(&format!(", now {reason}"));
    }
    if ev.detected_late {
        s.push_str(", detected late");
    }
    s
}
