//! The record: plain data describing one observed failure (a restart, a start failure, a failure
//! that restarts nothing, an eviction), and the pure functions that derive its signal, severity and
//! deterministic ids.
//!
//! A `Record` holds everything the record mapping (`export::convert`) needs, copied out of the
//! Pod at detection time, so no Pod object outlives the observation that produced it.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;

use crate::pod::SlimTerminated;

mod identity;
mod kind;
mod meaning;
mod more;

use identity::Identity;
pub use kind::{RecordKind, RecordKinds};
pub use meaning::severity;
pub(crate) use meaning::{exit_code_meaning, signal_name, termination_signal};
pub use more::{Episode, Eviction, OomKills, PodRestart, ResizeChange, RestartedContainer, RolloutRegression, Trigger};

/// Which list of the pod spec a container comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContainerKind {
    /// `spec.containers`
    App,
    /// `spec.initContainers` that run to completion
    Init,
    /// `spec.initContainers` with `restartPolicy: Always` (native sidecars)
    Sidecar,
    /// `spec.ephemeralContainers`: never restart, never reported; named for the schema's sake.
    Ephemeral,
}

impl ContainerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerKind::App => "app",
            ContainerKind::Init => "init",
            ContainerKind::Sidecar => "sidecar",
            ContainerKind::Ephemeral => "ephemeral",
        }
    }
}

impl fmt::Display for ContainerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The classified cause of a restart (`restart_watcher.cause`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cause {
    OomKilled,
    LivenessProbe,
    StartupProbe,
    AppError,
    Completed,
    Signal,
    Evicted,
    Preempted,
    /// Start failures: the image cannot be pulled (or its name is invalid).
    ImagePull,
    /// Start failures: the container's configuration cannot be built (a missing Secret or ConfigMap key).
    ConfigError,
    /// Start failures: the runtime cannot create or run the container.
    RuntimeError,
    /// The pod's sandbox was lost and recreated: every container with it.
    SandboxChanged,
    /// A container's exit fired a `RestartAllContainers` rule: every container of the pod restarted.
    RestartAll,
    /// An in-place resize whose `resizePolicy` is `RestartContainer`.
    Resize,
    /// A pod that never started: no node fits it (the scheduler's `Unschedulable`).
    Unschedulable,
    /// A pod that never started: its volumes cannot be attached or mounted.
    Volume,
    Unknown,
}

impl Cause {
    pub const ALL: [Cause; 17] = [
        Cause::OomKilled,
        Cause::LivenessProbe,
        Cause::StartupProbe,
        Cause::AppError,
        Cause::Completed,
        Cause::Signal,
        Cause::Evicted,
        Cause::Preempted,
        Cause::ImagePull,
        Cause::ConfigError,
        Cause::RuntimeError,
        Cause::SandboxChanged,
        Cause::RestartAll,
        Cause::Resize,
        Cause::Unschedulable,
        Cause::Volume,
        Cause::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Cause::OomKilled => "oom_killed",
            Cause::LivenessProbe => "liveness_probe",
            Cause::StartupProbe => "startup_probe",
            Cause::AppError => "app_error",
            Cause::Completed => "completed",
            Cause::Signal => "signal",
            Cause::Evicted => "evicted",
            Cause::Preempted => "preempted",
            Cause::ImagePull => "image_pull",
            Cause::ConfigError => "config_error",
            Cause::RuntimeError => "runtime_error",
            Cause::SandboxChanged => "sandbox_changed",
            Cause::RestartAll => "restart_all",
            Cause::Resize => "resize",
            Cause::Unschedulable => "unschedulable",
            Cause::Volume => "volume",
            Cause::Unknown => "unknown",
        }
    }

    /// The kind of fault (`restart_watcher.cause.category`): evictions, runtime errors and lost
    /// sandboxes are the infrastructure's, image and configuration errors and resizes the
    /// deployment's, OOM kills and pods no node fits a resource's, volumes that cannot be mounted
    /// the deployment's, the rest the application's. A restart-all's is
    /// its trigger's ([`Record::category`]); `unknown` when the trigger was not seen.
    pub fn category(self) -> &'static str {
        match self {
            Cause::OomKilled | Cause::Unschedulable => "resource",
            Cause::LivenessProbe | Cause::StartupProbe | Cause::AppError | Cause::Completed | Cause::Signal => {
                "application"
            }
            Cause::ImagePull | Cause::ConfigError | Cause::Resize | Cause::Volume => "configuration",
            Cause::Evicted | Cause::Preempted | Cause::RuntimeError | Cause::SandboxChanged => "infrastructure",
            Cause::RestartAll | Cause::Unknown => "unknown",
        }
    }

    /// Causes the detector decides from the pod's status over several observations (pod-wide
    /// restarts, resizes): the kube events do not re-classify them.
    pub(crate) fn is_pod_wide_or_resize(self) -> bool {
        matches!(self, Cause::SandboxChanged | Cause::RestartAll | Cause::Resize)
    }

    /// A clean exit: no `error.type`, INFO severity, span status unset.
    pub(crate) fn is_clean(self) -> bool {
        self == Cause::Completed
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The pod that owns the restarted container (identity and the inputs of `service.name`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node_name: Option<String>,
    /// `k8s.node.uid`, from the node index (enrichment; absent in replay).
    pub node_uid: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Only the `resource.opentelemetry.io/*` annotations.
    pub annotations: BTreeMap<String, String>,
    pub owners: Owners,
}

/// A workload object known by name (and uid where the pod's ownerReferences say it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnerRef {
    pub name: String,
    pub uid: Option<String>,
}

/// The pod's workload chain as far as it is known, and the revision of it the pod runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owners {
    /// A Deployment's revision (its ReplicaSet's `deployment.kubernetes.io/revision`, from the
    /// owner index).
    pub revision: Option<String>,
    /// The pod's template hash: `pod-template-hash` (Deployments) or `controller-revision-hash`
    /// (StatefulSets, DaemonSets).
    pub revision_hash: Option<String>,
    pub replicaset: Option<OwnerRef>,
    pub deployment: Option<OwnerRef>,
    pub statefulset: Option<OwnerRef>,
    pub daemonset: Option<OwnerRef>,
    pub job: Option<OwnerRef>,
    pub cronjob: Option<OwnerRef>,
}

/// The restarted container.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerInfo {
    pub name: String,
    pub kind: Option<ContainerKind>,
    pub image: String,
    pub image_id: String,
    /// `containerID` of the current instance (the one started after the restart): part of a
    /// restart's identity when the status does not name the instance that died.
    pub current_id: Option<String>,
    /// The memory the container had, what an OOM kill is read against.
    pub memory: MemoryContext,
}

/// The memory in force when a container ended: its limit (after any in-place resize; the pod's
/// when only the pod sets one), its request, and the pod's QoS class.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryContext {
    pub limit_bytes: Option<u64>,
    /// Whether the limit is the pod's (pod-level resources), not the container's own.
    pub limit_is_pod_level: bool,
    pub request_bytes: Option<u64>,
    pub qos_class: Option<String>,
}

/// The container's state now (after the restart), e.g. `waiting` / `CrashLoopBackOff`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CurrentState {
    pub state: Option<&'static str>,
    pub reason: Option<String>,
    pub message: Option<String>,
    /// In `CrashLoopBackOff`: the back-off delay the kubelet's message gives.
    pub back_off: Option<std::time::Duration>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// What the record states: a restart, a start failure, a terminal failure, an eviction.
    pub kind: RecordKind,
    pub pod: PodInfo,
    pub container: ContainerInfo,
    /// The new `restartCount`.
    pub restart_count: u32,
    /// Restarts that happened between two observations and of which nothing is known (k - 1).
    pub missed: u32,
    /// `lastState.terminated` of the instance that died; `None` when the status did not say.
    pub terminated: Option<SlimTerminated>,
    pub current: CurrentState,
    /// When the agent saw the restart.
    pub observed_at: Timestamp,
    /// Emitted by catch-up after the agent's own downtime.
    pub detected_late: bool,
    pub cause: Cause,
    /// The pod's `status.reason` (`Evicted`, ...), an input of the cause.
    pub pod_reason: Option<String>,
    /// Storm control: how many restarts this record stands for (set only when it coalesces several).
    pub coalesced: Option<u32>,
    /// Opt-in: the last log lines of the instance that died (redacted, capped).
    pub previous_logs: Option<String>,
    /// Start failures: the episode.
    pub episode: Option<Box<Episode>>,
    /// Evictions: the reason, message and time.
    pub eviction: Option<Box<Eviction>>,
    /// A pod-wide restart: on its own record, and on the records of its containers (their parent).
    pub pod_restart: Option<std::sync::Arc<PodRestart>>,
    /// A restart for an in-place resize: the limits before and after.
    pub resize: Option<Box<ResizeChange>>,
    /// OOM kills that restarted nothing.
    pub oom_kills: Option<Box<OomKills>>,
    /// The first failure of its workload's revision (`restart_watcher.revision.first_failure`).
    pub first_of_revision: bool,
    /// A rollout regression: the rollout and what failed.
    pub rollout: Option<Box<RolloutRegression>>,
    /// Pipeline bookkeeping, never exported: the time under which the record counts as in flight
    /// until it is settled (storm control: its window's oldest record); `None`: `observed_at`.
    pub in_flight_since: Option<Timestamp>,
}

/// Heap bytes of an optional string.
fn opt_len(s: &Option<String>) -> usize {
    s.as_ref().map_or(0, String::len)
}

/// Heap bytes of a string map: each entry's key and value, and the B-tree's node overhead (about
/// two words per entry).
fn map_bytes(m: &BTreeMap<String, String>) -> usize {
    m.iter().map(|(k, v)| k.len() + v.len() + 2 * std::mem::size_of::<String>()).sum()
}

impl Record {
    /// What the record occupies, in bytes: the struct and the heap bytes of its strings (the text
    /// of each, not the allocators' rounding). What the byte budgets of the stores holding records
    /// count (storm control, the records waiting for Events).
    pub(crate) fn approx_bytes(&self) -> usize {
        let owners = &self.pod.owners;
        let owner = |o: &Option<OwnerRef>| o.as_ref().map_or(0, |o| o.name.len() + opt_len(&o.uid));
        let pod = self.pod.namespace.len()
            + self.pod.name.len()
            + self.pod.uid.len()
            + opt_len(&self.pod.node_name)
            + opt_len(&self.pod.node_uid)
            + map_bytes(&self.pod.labels)
            + map_bytes(&self.pod.annotations)
            + [
                &owners.replicaset,
                &owners.deployment,
                &owners.statefulset,
                &owners.daemonset,
                &owners.job,
                &owners.cronjob,
            ]
            .into_iter()
            .map(owner)
            .sum::<usize>()
            + opt_len(&owners.revision)
            + opt_len(&owners.revision_hash);
        let c = &self.container;
        let container = c.name.len() + c.image.len() + c.image_id.len();
        let terminated =
            self.terminated.as_ref().map_or(0, |t| opt_len(&t.reason) + opt_len(&t.message) + opt_len(&t.container_id));
        let current = opt_len(&self.current.reason) + opt_len(&self.current.message);
        let episode = self.episode.as_ref().map_or(0, |e| std::mem::size_of::<Episode>() + e.reason.len());
        let eviction = self.eviction.as_ref().map_or(0, |e| {
            std::mem::size_of::<Eviction>() + e.reason.len() + opt_len(&e.message) + opt_len(&e.pod_phase)
        });
        let pod_restart = self.pod_restart.as_ref().map_or(0, |p| {
            let trigger = p.trigger.as_ref().map_or(0, |t| t.container.len() + opt_len(&t.terminated.message));
            std::mem::size_of::<PodRestart>()
                + trigger
                + p.containers.iter().map(|c| std::mem::size_of::<RestartedContainer>() + c.name.len()).sum::<usize>()
        });
        let resize = self.resize.as_ref().map_or(0, |_| std::mem::size_of::<ResizeChange>())
            + self.rollout.as_ref().map_or(0, |r| std::mem::size_of::<RolloutRegression>() + r.revision.len())
            + self.oom_kills.as_ref().map_or(0, |o| std::mem::size_of::<OomKills>() + opt_len(&o.process));
        std::mem::size_of::<Self>()
            + episode
            + eviction
            + pod_restart
            + resize
            + pod
            + container
            + terminated
            + current
            + opt_len(&self.pod_reason)
            + opt_len(&self.previous_logs)
    }

    /// Kind as used in the record; `app` when unknown.
    pub fn container_kind(&self) -> ContainerKind {
        self.container.kind.unwrap_or(ContainerKind::App)
    }

    /// When the old instance died: `finishedAt`, else the detection time.
    /// When it happened: the termination's end for restarts and failures, the eviction's time
    /// where the status gives it, else when it was observed.
    pub fn time(&self) -> Timestamp {
        match self.kind {
            RecordKind::Restart | RecordKind::Failure => {
                self.terminated.as_ref().and_then(|t| t.finished_at).unwrap_or(self.observed_at)
            }
            RecordKind::Eviction => self.eviction.as_ref().and_then(|e| e.at).unwrap_or(self.observed_at),
            RecordKind::StartFailure | RecordKind::PodStartFailure => {
                self.episode.as_ref().map_or(self.observed_at, |e| e.started_at)
            }
            RecordKind::StartFailureEnded | RecordKind::PodStartFailureEnded => {
                self.episode.as_ref().map_or(self.observed_at, |e| e.ended_at)
            }
            RecordKind::OomKill => self.observed_at,
            RecordKind::RolloutRegression => self.rollout.as_ref().map_or(self.observed_at, |r| r.failed_at),
            RecordKind::PodRestart => self
                .pod_restart
                .as_ref()
                .and_then(|p| p.trigger.as_ref()?.terminated.finished_at)
                .unwrap_or(self.observed_at),
        }
    }

    /// `restart_watcher.cause.category`: the cause's, but a restart-all's is its trigger's.
    pub fn category(&self) -> &'static str {
        match (&self.pod_restart, self.cause) {
            (Some(p), Cause::RestartAll) => p.trigger.as_ref().map_or(Cause::RestartAll, |t| t.cause).category(),
            (_, cause) => cause.category(),
        }
    }

    /// The second under which the record counts as in flight (see `in_flight_since`).
    pub(crate) fn in_flight_second(&self) -> i64 {
        self.in_flight_since.unwrap_or(self.observed_at).as_second()
    }

    /// The deterministic restart id: one termination, whichever agent replica or incarnation
    /// reports it, and after any number of relists. 32 lowercase hex characters. See
    /// [`restart_digest`] for what identifies a termination.
    pub fn restart_id(&self) -> String {
        hex(&self.digest()[..16])
    }

    fn digest(&self) -> [u8; 32] {
        let id = Identity {
            kind: None,
            pod_uid: &self.pod.uid,
            container: &self.container.name,
            restart_count: self.restart_count,
            terminated: None,
            current_id: None,
            episode_started_at: None,
            members: &[],
        };
        match self.kind {
            RecordKind::Restart => Identity {
                terminated: self.terminated.as_ref(),
                current_id: self.container.current_id.as_deref(),
                ..id
            }
            .digest(),
            RecordKind::Failure => {
                Identity { kind: Some(self.kind), terminated: self.terminated.as_ref(), ..id }.digest()
            }
            // One per episode (its container, and when it was first seen), one per pod.
            RecordKind::StartFailure
            | RecordKind::StartFailureEnded
            | RecordKind::PodStartFailure
            | RecordKind::PodStartFailureEnded => Identity {
                kind: Some(self.kind),
                episode_started_at: self.episode.as_ref().map(|e| e.started_at),
                ..id
            }
            .digest(),
            RecordKind::Eviction => Identity { kind: Some(self.kind), ..id }.digest(),
            // One per reading of the counter that rose: the instance and the count it reached.
            RecordKind::OomKill => Identity {
                kind: Some(self.kind),
                restart_count: self.oom_kills.as_ref().map_or(0, |o| u32::try_from(o.total).unwrap_or(u32::MAX)),
                current_id: self.container.current_id.as_deref(),
                ..id
            }
            .digest(),
            // One per pod-wide restart: its containers and their new counts.
            RecordKind::PodRestart => pod_restart_digest(&self.pod.uid, self.pod_restart.as_deref()),
            // One per rollout: its workload and revision, and when it began.
            RecordKind::RolloutRegression => Identity {
                kind: Some(self.kind),
                pod_uid: "",
                container: self.rollout.as_ref().map_or("", |r| r.revision.as_str()),
                episode_started_at: self.rollout.as_ref().map(|r| r.started_at),
                ..id
            }
            .digest(),
        }
    }

    /// The pod-wide restart this record is one container of, as its parent: its record's restart
    /// id and span id. `None` for the pod-wide record itself and for every other record.
    pub fn parent(&self) -> Option<(String, [u8; 8])> {
        let p = self.pod_restart.as_deref().filter(|_| self.kind != RecordKind::PodRestart)?;
        let d = pod_restart_digest(&self.pod.uid, Some(p));
        Some((hex(&d[..16]), span_id_of(&d)))
    }

    /// `k8s.container.restart_count` of the instance the record is about: for a restart, that of
    /// the instance that died (the new count minus one); otherwise the current count.
    pub(crate) fn terminated_restart_count(&self) -> u32 {
        match self.kind {
            RecordKind::Restart => self.restart_count.saturating_sub(1),
            _ => self.restart_count,
        }
    }

    /// Trace id: the pod UID's 16 bytes, so every restart of a pod lands in one trace.
    pub fn trace_id(&self) -> [u8; 16] {
        crate::pod::uid_bytes(&self.pod.uid)
    }

    /// Span id: 8 bytes of the restart digest, never all zero.
    pub fn span_id(&self) -> [u8; 8] {
        span_id_of(&self.digest())
    }

    /// The signal that ended the old instance, if any.
    pub fn signal(&self) -> Option<i32> {
        self.terminated.as_ref().and_then(termination_signal)
    }
}

/// What identifies a pod-wide restart: its pod, and the containers restarted with their new counts.
fn pod_restart_digest(pod_uid: &str, p: Option<&PodRestart>) -> [u8; 32] {
    Identity {
        kind: Some(RecordKind::PodRestart),
        pod_uid,
        container: "",
        restart_count: 0,
        terminated: None,
        current_id: None,
        episode_started_at: None,
        members: p.map_or(&[], |p| &p.containers),
    }
    .digest()
}

/// A span id: bytes 16..24 of a record's digest, never all zero.
fn span_id_of(digest: &[u8; 32]) -> [u8; 8] {
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[16..24]);
    if id == [0u8; 8] {
        id[7] = 1;
    }
    id
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

#[cfg(test)]
impl Record {
    /// A restart (count 1) of `container` in pod `namespace/pod` with `cause`, for unit tests.
    pub(crate) fn sample(namespace: &str, pod: &str, container: &str, cause: Cause) -> Self {
        Record {
            kind: RecordKind::Restart,
            pod: PodInfo {
                namespace: namespace.into(),
                name: pod.into(),
                uid: format!("uid-{pod}"),
                ..Default::default()
            },
            container: ContainerInfo { name: container.into(), ..Default::default() },
            restart_count: 1,
            missed: 0,
            terminated: None,
            current: Default::default(),
            observed_at: Timestamp::now(),
            detected_late: false,
            cause,
            pod_reason: None,
            coalesced: None,
            previous_logs: None,
            episode: None,
            eviction: None,
            pod_restart: None,
            resize: None,
            oom_kills: None,
            first_of_revision: false,
            rollout: None,
            in_flight_since: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(reason: Option<&str>, exit_code: i32, signal: Option<i32>) -> SlimTerminated {
        SlimTerminated { reason: reason.map(str::to_owned), exit_code, signal, ..Default::default() }
    }

    #[test]
    fn signal_comes_from_field_else_from_exit_code_above_128() {
        assert_eq!(termination_signal(&term(None, 143, Some(15))), Some(15));
        assert_eq!(termination_signal(&term(None, 137, None)), Some(9));
        assert_eq!(termination_signal(&term(None, 139, None)), Some(11));
        assert_eq!(termination_signal(&term(None, 2, None)), None);
        assert_eq!(termination_signal(&term(None, 255, None)), None);
        assert_eq!(signal_name(9), Some("SIGKILL"));
        assert_eq!(signal_name(15), Some("SIGTERM"));
        assert_eq!(signal_name(6), Some("SIGABRT"));
        assert_eq!(signal_name(0), None);
        assert_eq!(signal_name(64), None);
    }

    #[test]
    fn pod_uid_is_the_trace_id() {
        let id = crate::pod::uid_bytes("4239abf7-1206-49a7-8747-9f93b9b7d16d");
        assert_eq!(hex(&id), "4239abf7120649a787479f93b9b7d16d");
        assert_eq!(crate::pod::parse_uuid("not-a-uuid"), None);
        assert_ne!(crate::pod::uid_bytes("not-a-uuid"), [0u8; 16]);
    }
}
