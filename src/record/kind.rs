//! Which fact a record states (`RecordKind`: its event name, span name, what it counts as), and
//! which kinds `--events` lets out (`RecordKinds`).

use std::fmt;

/// Which fact a record states: its `event_name`, span name and severity follow from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    /// A container restarted (`restartCount` rose).
    Restart,
    /// A container cannot start (`ErrImagePull`, `CreateContainerConfigError`, ...): one per episode.
    StartFailure,
    /// A start-failure episode ended: the container started, or its pod went away.
    StartFailureEnded,
    /// A container failed and will not be restarted (`restartPolicy: Never`, a failed pod).
    Failure,
    /// A pod was evicted or preempted.
    Eviction,
    /// Every container of a pod restarted at once: its sandbox was recreated, or a container's exit
    /// fired a `RestartAllContainers` rule.
    PodRestart,
    /// A process of a container was OOM-killed and the container lives on (node mode, opt-in).
    OomKill,
    /// A pod has not started (unscheduled, or no container ever ran) past the pending threshold.
    PodStartFailure,
    /// A pod that had not started past the threshold started, failed, or was deleted.
    PodStartFailureEnded,
    /// A workload's new revision fails, within a window after its rollout, where the previous did not.
    RolloutRegression,
}

impl RecordKind {
    pub const ALL: [RecordKind; 10] = [
        RecordKind::Restart,
        RecordKind::StartFailure,
        RecordKind::StartFailureEnded,
        RecordKind::Failure,
        RecordKind::Eviction,
        RecordKind::PodRestart,
        RecordKind::OomKill,
        RecordKind::PodStartFailure,
        RecordKind::PodStartFailureEnded,
        RecordKind::RolloutRegression,
    ];

    /// The name `--events` and the metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Restart => "restart",
            RecordKind::StartFailure => "start_failure",
            RecordKind::StartFailureEnded => "start_failure_ended",
            RecordKind::Failure => "failure",
            RecordKind::Eviction => "eviction",
            RecordKind::PodRestart => "pod_restart",
            RecordKind::OomKill => "oom_kill",
            RecordKind::PodStartFailure => "pod_start_failure",
            RecordKind::PodStartFailureEnded => "pod_start_failure_ended",
            RecordKind::RolloutRegression => "rollout_regression",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// `LogRecord.event_name` and the span event's name.
    pub fn event_name(self) -> &'static str {
        match self {
            RecordKind::Restart => crate::keys::EVENT_NAME,
            RecordKind::StartFailure => crate::keys::EVENT_NAME_START_FAILURE,
            RecordKind::StartFailureEnded => crate::keys::EVENT_NAME_START_FAILURE_ENDED,
            RecordKind::Failure => crate::keys::EVENT_NAME_FAILURE,
            RecordKind::Eviction => crate::keys::EVENT_NAME_EVICTION,
            RecordKind::PodRestart => crate::keys::EVENT_NAME_POD_RESTART,
            RecordKind::OomKill => crate::keys::EVENT_NAME_OOM_KILL,
            RecordKind::PodStartFailure => crate::keys::EVENT_NAME_POD_START_FAILURE,
            RecordKind::PodStartFailureEnded => crate::keys::EVENT_NAME_POD_START_FAILURE_ENDED,
            RecordKind::RolloutRegression => crate::keys::EVENT_NAME_ROLLOUT_REGRESSION,
        }
    }

    /// A failure of a workload's pod, as its revision counts it (`first_failure`, rollout
    /// regressions): a restart, a start failure, a terminal failure, a pod restart, a pod that
    /// never started.
    pub(crate) fn is_failure(self) -> bool {
        matches!(
            self,
            RecordKind::Restart
                | RecordKind::Failure
                | RecordKind::StartFailure
                | RecordKind::PodRestart
                | RecordKind::PodStartFailure
        )
    }

    /// The end of a start failure (a container's or a pod's): not an error.
    pub(crate) fn is_end(self) -> bool {
        matches!(self, RecordKind::StartFailureEnded | RecordKind::PodStartFailureEnded)
    }

    pub(crate) fn span_name(self) -> &'static str {
        match self {
            RecordKind::Restart | RecordKind::Failure => crate::keys::SPAN_NAME,
            RecordKind::StartFailure | RecordKind::StartFailureEnded => crate::keys::SPAN_NAME_START_FAILURE,
            RecordKind::Eviction => crate::keys::SPAN_NAME_EVICTION,
            RecordKind::PodRestart => crate::keys::SPAN_NAME_POD_RESTART,
            RecordKind::OomKill => crate::keys::SPAN_NAME_OOM_KILL,
            RecordKind::PodStartFailure | RecordKind::PodStartFailureEnded => crate::keys::SPAN_NAME_POD_START,
            RecordKind::RolloutRegression => crate::keys::SPAN_NAME_ROLLOUT,
        }
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which event kinds are emitted (`--events`): all by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordKinds(u16);

impl Default for RecordKinds {
    fn default() -> Self {
        RecordKinds::from_kinds(&RecordKind::ALL)
    }
}

impl RecordKinds {
    pub(crate) fn from_kinds(kinds: &[RecordKind]) -> Self {
        RecordKinds(kinds.iter().fold(0, |bits, k| bits | 1 << *k as u16))
    }
    pub fn restarts_only() -> Self {
        RecordKinds::from_kinds(&[RecordKind::Restart])
    }
    pub(crate) fn allows(self, kind: RecordKind) -> bool {
        self.0 & (1 << kind as u16) != 0
    }
}
