//! The detector: pure and synchronous. Observations of Pods in, `RestartEvent`s out.
//!
//! It keeps, per `(pod uid, container kind, container name)`, the last `restartCount` it accounted for,
//! and nothing else: no Pod objects. It is level-triggered: it compares what it sees with what it
//! remembers, so it does not matter whether an object came from the initial list, a watch event, a
//! relist after `410 Gone`, or a recording. The rules are those of `docs/detection.md`:
//!
//! - first sighting of a pod: baseline, silent (unless catch-up is on and the container's last
//!   termination is newer than the checkpoint: then one record with `detected_late`);
//! - a rise by k: one record for the newest restart, `missed = k - 1`;
//! - a fall (kubelet lost state): silent, the baseline resets;
//! - duplicates and status noise: silent;
//! - a deleted pod: its final object is compared first (a restart seen only there is reported), then
//!   its state is dropped; pods missing from a completed relist are dropped too;
//! - a container that appears later in a pod already known (its status was not yet written when the
//!   pod was first seen) counts from 0, so restarts it already shows are reported.
//!
//! Memory: one small entry per pod plus ~24 bytes and the name per container (see
//! `docs/performance.md`).

use std::collections::HashMap;

use jiff::Timestamp;

use crate::enrich::{causes, owners};
use crate::event::{ContainerInfo, ContainerKind, CurrentState, PodInfo, RestartEvent};
use crate::pod::{SlimContainerStatus, SlimPod};

/// Which container kinds the detector reports. All restartable kinds by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindFilter {
    pub app: bool,
    pub init: bool,
    pub sidecar: bool,
}

impl Default for KindFilter {
    fn default() -> Self {
        KindFilter { app: true, init: true, sidecar: true }
    }
}

impl KindFilter {
    pub fn from_kinds(kinds: &[ContainerKind]) -> Self {
        KindFilter {
            app: kinds.contains(&ContainerKind::App),
            init: kinds.contains(&ContainerKind::Init),
            sidecar: kinds.contains(&ContainerKind::Sidecar),
        }
    }
    pub fn allows(&self, kind: ContainerKind) -> bool {
        match kind {
            ContainerKind::App => self.app,
            ContainerKind::Init => self.init,
            ContainerKind::Sidecar => self.sidecar,
            ContainerKind::Ephemeral => false,
        }
    }
}

/// What the detector remembers of one container.
#[derive(Debug)]
struct Tracked {
    name: Box<str>,
    kind: ContainerKind,
    restart_count: u32,
}

/// What the detector remembers of one pod.
#[derive(Debug)]
struct PodState {
    containers: Vec<Tracked>,
    /// The relist generation in which the pod was last seen.
    seen_in: u32,
    /// A duplicate container name was warned about (once per pod).
    warned_duplicate: bool,
}

/// Counters of what the detector did, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetectorStats {
    pub observations: u64,
    pub restarts: u64,
    pub resets: u64,
    pub pods_dropped: u64,
    pub objects_without_uid: u64,
}

/// The restart detector. See the module docs for its rules.
#[derive(Debug, Default)]
pub struct Detector {
    pods: HashMap<u128, PodState>,
    kinds: KindFilter,
    catch_up_since: Option<Timestamp>,
    generation: u32,
    in_relist: bool,
    stats: DetectorStats,
}

impl Detector {
    pub fn new(kinds: KindFilter) -> Self {
        Detector { kinds, ..Default::default() }
    }

    /// Turns catch-up on: a container first seen with a last termination later than `since` is
    /// reported once with `detected_late`. `None` turns it off (first sightings stay silent).
    pub fn set_catch_up(&mut self, since: Option<Timestamp>) {
        self.catch_up_since = since;
    }

    pub fn catch_up_since(&self) -> Option<Timestamp> {
        self.catch_up_since
    }

    pub fn stats(&self) -> DetectorStats {
        self.stats
    }

    /// Number of pods tracked.
    pub fn pods(&self) -> usize {
        self.pods.len()
    }

    /// Number of containers tracked.
    pub fn containers(&self) -> usize {
        self.pods.values().map(|p| p.containers.len()).sum()
    }

    /// A pod was added or modified (or listed).
    pub fn apply(&mut self, pod: &SlimPod, observed_at: Timestamp) -> Vec<RestartEvent> {
        self.observe(pod, observed_at, false)
    }

    /// The fast path: when an update of a known pod shows exactly the counts already accounted
    /// for (the common case: readiness, IPs, conditions), marks the pod seen and returns `true`;
    /// the caller then need not decode the rest of the object. Returns `false` when the update
    /// must go through [`Detector::apply`] (unknown pod, a count changed, a new container).
    pub fn unchanged(&mut self, probe: &crate::pod::PodProbe<'_>) -> bool {
        let Some(uid) = probe.metadata.uid.as_deref().filter(|u| !u.is_empty()) else {
            return false;
        };
        let generation = self.generation;
        let kinds = self.kinds;
        let Some(state) = self.pods.get_mut(&pod_key(uid)) else {
            return false;
        };
        let same = |statuses: &[crate::pod::ProbeCount<'_>], app: bool| {
            statuses.iter().all(|c| {
                let tracked = state.containers.iter().find(|t| {
                    *t.name == *c.name && if app { t.kind == ContainerKind::App } else { t.kind != ContainerKind::App }
                });
                match tracked {
                    Some(t) => t.restart_count == c.restart_count,
                    // Not tracked: fine only if no kind it could be is reported.
                    None if app => !kinds.app,
                    None => !kinds.init && !kinds.sidecar,
                }
            })
        };
        if same(&probe.status.container_statuses, true) && same(&probe.status.init_container_statuses, false) {
            state.seen_in = generation;
            self.stats.observations += 1;
            true
        } else {
            false
        }
    }

    /// The fast path for a pod seen for the first time when catch-up is off: the first sighting
    /// only sets the baseline, and the probe has all a baseline needs (uid, container names and
    /// counts, which init containers are sidecars). Returns `true` when the baseline was set; the
    /// caller then need not decode the rest. `false` (nothing done) for a known pod, with catch-up on,
    /// or without a uid.
    pub fn baseline_new(&mut self, probe: &crate::pod::PodProbe<'_>) -> bool {
        if self.catch_up_since.is_some() {
            return false;
        }
        let Some(uid) = probe.metadata.uid.as_deref().filter(|u| !u.is_empty()) else {
            return false;
        };
        let key = pod_key(uid);
        if self.pods.contains_key(&key) {
            return false;
        }
        let kinds = self.kinds;
        let init = probe.status.init_container_statuses.iter().map(|c| {
            let kind = if probe.is_sidecar(&c.name) { ContainerKind::Sidecar } else { ContainerKind::Init };
            (c, kind)
        });
        let app = probe.status.container_statuses.iter().map(|c| (c, ContainerKind::App));
        let mut containers: Vec<Tracked> = Vec::new();
        for (c, kind) in init.chain(app).filter(|(_, kind)| kinds.allows(*kind)) {
            // The first status of a duplicated name counts, as in `observe`.
            if !containers.iter().any(|t| t.kind == kind && *t.name == *c.name) {
                containers.push(Tracked { name: c.name.as_ref().into(), kind, restart_count: c.restart_count });
            }
        }
        containers.shrink_to_fit();
        self.pods.insert(key, PodState { containers, seen_in: self.generation, warned_duplicate: false });
        self.stats.observations += 1;
        true
    }

    /// A pod was deleted: its final object is compared, then its state is dropped.
    pub fn delete(&mut self, pod: &SlimPod, observed_at: Timestamp) -> Vec<RestartEvent> {
        self.observe(pod, observed_at, true)
    }

    /// A (re)list starts (kube watcher `Init`). Pods not seen before `end_relist` are dropped.
    pub fn begin_relist(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.in_relist = true;
    }

    /// The (re)list is complete (kube watcher `InitDone`): pods missing from it were deleted while
    /// nobody watched. Returns how many were dropped.
    pub fn end_relist(&mut self) -> usize {
        if !self.in_relist {
            return 0;
        }
        self.in_relist = false;
        let generation = self.generation;
        let before = self.pods.len();
        self.pods.retain(|_, p| p.seen_in == generation);
        let dropped = before - self.pods.len();
        self.stats.pods_dropped += dropped as u64;
        dropped
    }

    fn observe(&mut self, pod: &SlimPod, observed_at: Timestamp, deleted: bool) -> Vec<RestartEvent> {
        self.stats.observations += 1;
        let Some(uid) = pod.uid() else {
            self.stats.objects_without_uid += 1;
            return Vec::new();
        };
        let key = pod_key(uid);
        let generation = self.generation;
        let known = self.pods.contains_key(&key);
        let mut rises: Vec<(&SlimContainerStatus, ContainerKind, u32, bool)> = Vec::new();
        {
            let state = self.pods.entry(key).or_insert_with(|| PodState {
                containers: Vec::new(),
                seen_in: generation,
                warned_duplicate: false,
            });
            state.seen_in = generation;
            let mut seen: Vec<(&str, ContainerKind)> = Vec::new();
            for (status, kind) in statuses(pod) {
                if !self.kinds.allows(kind) {
                    continue;
                }
                // Container names are unique in a valid pod; in malformed input, the first status
                // of a name counts and the others are ignored (else each would move the count).
                if seen.contains(&(status.name.as_str(), kind)) {
                    if !state.warned_duplicate {
                        state.warned_duplicate = true;
                        tracing::warn!(
                            pod = format!("{}/{}", pod.namespace(), pod.name()),
                            container = status.name,
                            "The pod lists a container name twice (malformed object); only its first status is used."
                        );
                    }
                    continue;
                }
                seen.push((status.name.as_str(), kind));
                let new = status.restart_count;
                match state.containers.iter_mut().find(|t| t.kind == kind && *t.name == *status.name) {
                    Some(t) => {
                        if new > t.restart_count {
                            rises.push((status, kind, new - t.restart_count - 1, false));
                        } else if new < t.restart_count {
                            self.stats.resets += 1;
                        }
                        t.restart_count = new;
                    }
                    None => {
                        if known && new > 0 {
                            // The pod was known before this container's status appeared: count from 0.
                            rises.push((status, kind, new - 1, false));
                        } else if !known && new > 0 && is_after_checkpoint(status, self.catch_up_since) {
                            rises.push((status, kind, 0, true));
                        }
                        state.containers.push(Tracked { name: status.name.as_str().into(), kind, restart_count: new });
                    }
                }
            }
            state.containers.shrink_to_fit();
        }
        if deleted {
            self.pods.remove(&key);
            self.stats.pods_dropped += 1;
        }
        if rises.is_empty() {
            return Vec::new();
        }
        self.stats.restarts += rises.len() as u64;
        let info = pod_info(pod, uid);
        rises
            .into_iter()
            .map(|(status, kind, missed, late)| restart_event(&info, pod, status, kind, missed, late, observed_at))
            .collect()
    }
}

fn is_after_checkpoint(status: &SlimContainerStatus, since: Option<Timestamp>) -> bool {
    match (since, status.last_state.terminated.as_ref().and_then(|t| t.finished_at)) {
        (Some(since), Some(finished)) => finished > since,
        _ => false,
    }
}

/// The pod's container statuses with their kinds; ephemeral containers are not decoded at all.
fn statuses(pod: &SlimPod) -> impl Iterator<Item = (&SlimContainerStatus, ContainerKind)> {
    let init = pod.status.init_container_statuses.iter().map(move |s| {
        let kind = if pod.is_sidecar(&s.name) { ContainerKind::Sidecar } else { ContainerKind::Init };
        (s, kind)
    });
    let app = pod.status.container_statuses.iter().map(|s| (s, ContainerKind::App));
    init.chain(app)
}

/// Map key of a pod: the UID's 128 bits when it is a UUID (it always is from a real API server),
/// else a hash of it.
fn pod_key(uid: &str) -> u128 {
    u128::from_be_bytes(crate::event::trace_id_for_pod(uid))
}

/// Identity and workload of the pod, copied out for the record.
pub fn pod_info(pod: &SlimPod, uid: &str) -> PodInfo {
    let labels = pod.labels();
    PodInfo {
        namespace: pod.namespace().to_owned(),
        name: pod.name().to_owned(),
        uid: uid.to_owned(),
        node_name: pod.spec.node_name.clone(),
        owners: owners::from_pod(pod, &labels),
        labels,
        annotations: pod.annotations(),
    }
}

fn restart_event(
    info: &PodInfo,
    pod: &SlimPod,
    status: &SlimContainerStatus,
    kind: ContainerKind,
    missed: u32,
    detected_late: bool,
    observed_at: Timestamp,
) -> RestartEvent {
    let terminated = status.last_state.terminated.clone();
    let cause = causes::classify_from_status(terminated.as_ref(), pod.status.reason.as_deref());
    RestartEvent {
        pod: info.clone(),
        container: ContainerInfo {
            name: status.name.clone(),
            kind: Some(kind),
            image: status.image.clone(),
            image_id: status.image_id.clone(),
        },
        restart_count: status.restart_count,
        missed,
        terminated,
        current: CurrentState {
            state: status.state.name(),
            reason: status.state.reason().map(str::to_owned),
            message: status.state.message().map(str::to_owned),
            back_off: status
                .state
                .waiting
                .as_ref()
                .filter(|w| w.reason.as_deref() == Some("CrashLoopBackOff"))
                .and_then(|w| w.message.as_deref())
                .and_then(causes::crash_loop_back_off),
        },
        observed_at,
        detected_late,
        cause,
        pod_reason: pod.status.reason.clone(),
        coalesced: None,
        previous_logs: None,
    }
}
