//! What a termination and a record mean to a reader: the signal that ended an instance, the name
//! of a signal, the usual meaning of an exit code, and a record's severity.

use super::{Cause, RecordKind};
use crate::pod::SlimTerminated;

/// The signal that ended a process: the runtime's `signal` field, else `exit code - 128` for
/// exit codes 129..=159 (the shell convention the runtimes follow).
pub(crate) fn termination_signal(terminated: &SlimTerminated) -> Option<i32> {
    if let Some(s) = terminated.signal.filter(|s| *s > 0) {
        return Some(s);
    }
    let code = terminated.exit_code;
    (129..=128 + 31).contains(&code).then_some(code - 128)
}

/// Linux signal names, 1..=31.
pub(crate) fn signal_name(signal: i32) -> Option<&'static str> {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(signal).ok().and_then(|s| s.checked_sub(1)).and_then(|i| NAMES.get(i).copied())
}

/// A plain-words meaning for the exit codes SREs meet most, for the record's body.
pub(crate) fn exit_code_meaning(code: i32) -> Option<&'static str> {
    Some(match code {
        0 => "exited cleanly",
        1 => "general application error",
        2 => "misuse of shell builtin or bad arguments",
        126 => "command found but not executable",
        127 => "command not found",
        137 => "killed by SIGKILL (OOM kill, probe or manual kill, or the app's own exit 137)",
        139 => "segmentation fault (SIGSEGV)",
        143 => "terminated by SIGTERM (graceful shutdown)",
        255 => "exit status out of range",
        _ => return None,
    })
}

/// Severity number of a record: ERROR (17) for OOM kills, INFO (9) for clean exits and the end of
/// a start-failure episode, else WARN (13).
pub fn severity(event: RecordKind, cause: Cause) -> (i32, &'static str) {
    match (event, cause) {
        (RecordKind::StartFailureEnded | RecordKind::PodStartFailureEnded, _) => (9, "INFO"),
        (_, Cause::OomKilled) | (RecordKind::RolloutRegression, _) => (17, "ERROR"),
        (_, Cause::Completed) => (9, "INFO"),
        _ => (13, "WARN"),
    }
}
