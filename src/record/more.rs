//! What records beyond a container's own restart carry: a start-failure episode, an eviction, a
//! pod-wide restart (and what fired it), a resize's limits, OOM kills that restarted nothing.

use jiff::Timestamp;

use super::{Cause, ContainerKind};
use crate::pod::SlimTerminated;

/// A start-failure episode, as far as a record says: when it started and ended, how many attempts
/// were observed, and (on the closing record) how it ended. Its times are those of the status
/// writes that showed it (`managedFields`), else when the agent saw them.
#[derive(Clone, Debug, PartialEq)]
pub struct Episode {
    /// The waiting reason that opened it.
    pub reason: String,
    pub started_at: Timestamp,
    /// When it ended (on the closing record; the opening record's is `started_at`).
    pub ended_at: Timestamp,
    /// Observed moves into a failing reason other than a back-off (a lower bound: the kubelet
    /// retries without changing the status when the reason stays the same).
    pub attempts: u32,
    /// `started` or `pod_deleted`, on the closing record.
    pub outcome: Option<&'static str>,
}

/// A pod-wide restart: why, what fired it, and the containers restarted with it. Shared by its
/// own record and those of its containers (which name it as their parent).
#[derive(Clone, Debug, PartialEq)]
pub struct PodRestart {
    /// `sandbox_changed` or `restart_all`.
    pub cause: Cause,
    /// Restart-all: the container whose exit fired the rule, when that exit was observed.
    pub trigger: Option<Trigger>,
    /// The containers restarted, in the pod's order, with their new `restartCount`.
    pub containers: Vec<RestartedContainer>,
}

/// The container whose exit fired a `RestartAllContainers` rule, and that exit.
#[derive(Clone, Debug, PartialEq)]
pub struct Trigger {
    pub container: String,
    /// Its own cause, from its termination.
    pub cause: Cause,
    pub terminated: SlimTerminated,
}

/// One container of a pod-wide restart.
#[derive(Clone, Debug, PartialEq)]
pub struct RestartedContainer {
    pub name: String,
    pub kind: ContainerKind,
    pub restart_count: u32,
}

/// The limits of a container before and after the in-place resize that restarted it: memory in
/// bytes, CPU in millicores (`None`: no limit).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResizeChange {
    pub memory_before: Option<u64>,
    pub memory_after: Option<u64>,
    pub cpu_millis_before: Option<u64>,
    pub cpu_millis_after: Option<u64>,
}

/// OOM kills in a container that lives on, read from its memory cgroup's counter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OomKills {
    /// Kills since the last record (or since the container appeared).
    pub count: u64,
    /// The counter's value: kills in the container's life so far.
    pub total: u64,
    /// The killed process's name, when the kernel log said.
    pub process: Option<String>,
}

/// A rollout whose new revision regressed: when it began, the window, and what failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutRegression {
    /// `<namespace>/<workload>@<revision hash>`: what regressed (its identity).
    pub revision: String,
    /// The failure that made it a regression.
    pub failed_at: Timestamp,
    /// The rollout's start: the new revision's first pod's creation.
    pub started_at: Timestamp,
    pub window_s: i64,
    /// The new revision's failures and failing pods in the window after the rollout.
    pub failures: u32,
    pub failing_pods: u32,
    /// The previous revision's failing pods in the window before it.
    pub previous_failing_pods: u32,
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
    /// The pod's `status.phase` then.
    pub pod_phase: Option<String>,
}
