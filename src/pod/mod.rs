//! The slim Pod: only the fields restart-watcher reads, decoded straight from the API server's JSON.
//!
//! A full `k8s_openapi` Pod decodes everything, `managedFields` and the
//! `last-applied-configuration` annotation included, which is most of a Pod's bytes. This type skips
//! them while parsing: metadata keeps the identity, labels, ownerReferences and only the
//! `resource.opentelemetry.io/*` annotations; the spec keeps the node name and the init containers'
//! restart policies (to tell native sidecars); the status keeps the container statuses.
//!
//! `metadata.meta` is a real `ObjectMeta` (name, namespace, uid, resourceVersion and the kept
//! annotations) so the same type works with kube-rs's `watcher`, which needs `kube::Resource`.
//! Labels and ownerReferences are only needed when a restart is reported, so they are kept as raw
//! JSON and parsed then ([`SlimPod::labels`], [`SlimPod::owner_references`]).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::de::Deserializer;
use serde_json::value::RawValue;

/// Annotation prefix whose entries are kept (the rest, e.g. last-applied-configuration, is skipped).
const KEPT_ANNOTATION_PREFIX: &str = crate::keys::ANNOTATION_PREFIX;

/// The `visit_*` methods of a visitor that reads numbers, booleans and null as `$value` (for
/// fields whose wrong-typed values read as absent).
macro_rules! numbers_and_null_read_as {
    ($value:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// A lenient visitor's answer to a list or an object where it wants a scalar: both skipped whole.
macro_rules! lists_and_objects_read_as {
    ($value:expr) => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok($value)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($value)
        }
    };
}

mod lenient;
mod probe;
mod revision;

use lenient::*;
pub(crate) use lenient::{deserialize_lenient_status, deserialize_slim_metadata, deserialize_slim_metadata_meta};
pub use probe::*;
pub use revision::{PodRevision, revision};

/// A Pod, reduced to what the detector and the record mapping use.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SlimPod {
    #[serde(default, deserialize_with = "deserialize_slim_metadata")]
    pub metadata: SlimMeta,
    #[serde(default)]
    pub spec: SlimPodSpec,
    #[serde(default, deserialize_with = "deserialize_lenient_status")]
    pub status: SlimPodStatus,
}

/// Metadata: identity as an `ObjectMeta`, labels and ownerReferences as raw JSON.
#[derive(Clone, Debug, Default)]
pub struct SlimMeta {
    pub meta: ObjectMeta,
    pub labels: Option<Box<RawValue>>,
    pub owner_references: Option<Box<RawValue>>,
    /// `creationTimestamp`: with catch-up, a start failure of a pod created after the checkpoint is
    /// reported late.
    pub created_at: Option<Timestamp>,
    /// `deletionTimestamp`: set when the pod is being deleted; containers killed by the deletion
    /// are not failures.
    pub deleted_at: Option<Timestamp>,
    /// `deletionGracePeriodSeconds`: `deleted_at` minus this is when the deletion was asked for.
    pub deletion_grace_seconds: Option<i64>,
    /// The latest `managedFields[].time` of a `status` subresource write: when the status (the
    /// kubelet's, usually) was last written. The time of a start failure, which the status does
    /// not otherwise date.
    pub status_written_at: Option<Timestamp>,
}

/// An ownerReference, as far as the agent reads it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OwnerFields {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub controller: Option<bool>,
}

/// The spec fields the agent uses.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimPodSpec {
    #[serde(default, deserialize_with = "lenient_string")]
    pub node_name: Option<String>,
    /// `Always` (the default), `OnFailure` or `Never`: whether a terminated container is restarted.
    #[serde(default, deserialize_with = "lenient_string")]
    pub restart_policy: Option<String>,
    #[serde(default, deserialize_with = "lenient_objects")]
    pub init_containers: Vec<SlimInitContainer>,
    /// The app containers that set restart rules of their own (the others are not kept).
    #[serde(default, deserialize_with = "containers_with_rules")]
    pub containers: Vec<SlimInitContainer>,
    /// Pod-level resources (Kubernetes 1.34+, `PodLevelResources`), shared by its containers.
    #[serde(default, deserialize_with = "lenient_object_or_default")]
    pub resources: SlimResources,
}

/// A container's name and its own restart rules: `restartPolicy` (on an init container, `Always`
/// makes it a native sidecar) and `restartPolicyRules` (Kubernetes 1.34+, `ContainerRestartRules`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimInitContainer {
    #[serde(default, deserialize_with = "lenient_string_or_empty")]
    pub name: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub restart_policy: Option<String>,
    #[serde(default, deserialize_with = "lenient_objects")]
    pub restart_policy_rules: Vec<SlimRestartRule>,
}

/// One of a container's `restartPolicyRules`: an action (`Restart`, `RestartAllContainers`) when
/// its exit code is `In` or `NotIn` the values.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimRestartRule {
    #[serde(default, deserialize_with = "lenient_string")]
    pub action: Option<String>,
    #[serde(default, deserialize_with = "lenient_object")]
    pub exit_codes: Option<SlimExitCodes>,
}

/// A restart rule's exit codes: `operator` `In` or `NotIn`, and the values.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SlimExitCodes {
    #[serde(default, deserialize_with = "lenient_string")]
    pub operator: Option<String>,
    #[serde(default, deserialize_with = "lenient_i32s")]
    pub values: Vec<i32>,
}

impl SlimRestartRule {
    /// Whether the rule applies to an exit with `exit_code`.
    pub(crate) fn matches(&self, exit_code: i32) -> bool {
        self.exit_codes.as_ref().is_some_and(|e| {
            let listed = e.values.contains(&exit_code);
            match e.operator.as_deref() {
                Some("In") => listed,
                Some("NotIn") => !listed,
                _ => false,
            }
        })
    }
}

/// The status fields the agent uses. Ephemeral container statuses are not decoded: they never restart.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimPodStatus {
    #[serde(default, deserialize_with = "lenient_string")]
    pub phase: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub reason: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub message: Option<String>,
    /// Only the `DisruptionTarget` condition is kept (evictions, preemptions), a `False`
    /// `PodScheduled`, the states of the conditions of pod-wide restarts and resizes, and the
    /// latest time a condition changed.
    #[serde(default, deserialize_with = "slim_conditions")]
    pub conditions: SlimConditions,
    #[serde(default)]
    pub container_statuses: Vec<SlimContainerStatus>,
    #[serde(default)]
    pub init_container_statuses: Vec<SlimContainerStatus>,
    /// `Guaranteed`, `Burstable` or `BestEffort`.
    #[serde(default, rename = "qosClass", deserialize_with = "lenient_string")]
    pub qos_class: Option<String>,
}

/// A pod condition.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SlimCondition {
    #[serde(default, rename = "type", deserialize_with = "lenient_string_or_empty")]
    pub type_: String,
    #[serde(default, deserialize_with = "lenient_string_or_empty")]
    pub status: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub reason: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub message: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub last_transition_time: Option<Timestamp>,
}

/// What the agent reads of `status.conditions`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlimConditions {
    /// The `DisruptionTarget` condition, when it is `True`.
    pub disruption: Option<SlimCondition>,
    /// `PodReadyToStartContainers`: whether the pod's sandbox is ready (`None`: not said).
    pub sandbox_ready: Option<bool>,
    /// `AllContainersRestarting` is `True`: a container's exit fired a `RestartAllContainers` rule
    /// (Kubernetes 1.35+, alpha).
    pub all_restarting: bool,
    /// `PodResizeInProgress` is `True`: an in-place resize is being actuated.
    pub resize_in_progress: bool,
    /// The `PodScheduled` condition when it is `False`: why the scheduler places the pod nowhere.
    pub unscheduled: Option<SlimCondition>,
    /// The latest `lastTransitionTime` of any condition: a time the recording itself gives.
    pub latest_transition: Option<Timestamp>,
}

/// The conditions as far as [`SlimConditions`] keeps them; malformed conditions read as none.
fn slim_conditions<'de, D: Deserializer<'de>>(d: D) -> Result<SlimConditions, D::Error> {
    let conditions: Vec<SlimCondition> = lenient_objects(d)?;
    let latest_transition = conditions.iter().filter_map(|c| c.last_transition_time).max();
    let status = |type_: &str| conditions.iter().find(|c| c.type_ == type_).map(|c| c.status == "True");
    let sandbox_ready = status("PodReadyToStartContainers");
    let all_restarting = status("AllContainersRestarting") == Some(true);
    let resize_in_progress = status("PodResizeInProgress") == Some(true);
    let unscheduled = conditions.iter().find(|c| c.type_ == "PodScheduled" && c.status == "False").cloned();
    let disruption = conditions.into_iter().find(|c| c.type_ == "DisruptionTarget" && c.status == "True");
    Ok(SlimConditions { disruption, sandbox_ready, all_restarting, resize_in_progress, unscheduled, latest_transition })
}

/// One container's status.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimContainerStatus {
    pub name: String,
    #[serde(default, deserialize_with = "non_negative_count")]
    pub restart_count: u32,
    #[serde(default, deserialize_with = "lenient_string_or_empty")]
    pub image: String,
    #[serde(default, rename = "imageID", deserialize_with = "lenient_string_or_empty")]
    pub image_id: String,
    #[serde(default, deserialize_with = "lenient_object_or_default")]
    pub state: SlimContainerState,
    #[serde(default, deserialize_with = "lenient_object_or_default")]
    pub last_state: SlimContainerState,
    /// `containerID`: the current instance (the one that runs, or the last one that ran).
    #[serde(default, rename = "containerID", deserialize_with = "lenient_string")]
    pub container_id: Option<String>,
    /// The resources in force (after any in-place resize), as the kubelet reports them.
    #[serde(default, deserialize_with = "lenient_object_or_default")]
    pub resources: SlimResources,
}

/// A container's (or a pod's) limits and requests, as Kubernetes quantities (`32Mi`, `500m`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SlimResources {
    #[serde(default, deserialize_with = "lenient_object_or_default")]
    pub limits: SlimResourceList,
    #[serde(default, deserialize_with = "lenient_object_or_default")]
    pub requests: SlimResourceList,
}

/// The memory and CPU of a resource list.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SlimResourceList {
    #[serde(default, deserialize_with = "lenient_string")]
    pub memory: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub cpu: Option<String>,
}

/// `state` / `lastState`: at most one of the three is set.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimContainerState {
    #[serde(default, deserialize_with = "lenient_object")]
    pub waiting: Option<SlimWaiting>,
    #[serde(default, deserialize_with = "lenient_object")]
    pub running: Option<SlimRunning>,
    #[serde(default, deserialize_with = "lenient_terminated")]
    pub terminated: Option<SlimTerminated>,
}

/// `state.running`: when it started.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimRunning {
    #[serde(default, deserialize_with = "lenient_time")]
    pub started_at: Option<Timestamp>,
}

/// `state.waiting`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimWaiting {
    #[serde(default, deserialize_with = "lenient_string")]
    pub reason: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub message: Option<String>,
}

/// `lastState.terminated`: what is known of the instance that died.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SlimTerminated {
    #[serde(default)]
    pub exit_code: i32,
    #[serde(default, deserialize_with = "lenient_i32")]
    pub signal: Option<i32>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub reason: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub message: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub started_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub finished_at: Option<Timestamp>,
    #[serde(default, rename = "containerID", deserialize_with = "lenient_string")]
    pub container_id: Option<String>,
}

/// A termination as read, its exit code apart: `Some(None)` is an exit code that is not an int32.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReadTerminated {
    #[serde(default, deserialize_with = "some_lenient_i32")]
    exit_code: Option<Option<i32>>,
    #[serde(default, deserialize_with = "lenient_i32")]
    signal: Option<i32>,
    #[serde(default, deserialize_with = "lenient_string")]
    reason: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    message: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    started_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient_time")]
    finished_at: Option<Timestamp>,
    #[serde(default, rename = "containerID", deserialize_with = "lenient_string")]
    container_id: Option<String>,
}

fn some_lenient_i32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i32>>, D::Error> {
    lenient_i32(d).map(Some)
}

/// A termination whose exit code cannot be read is no termination: an exit code made up (0) would
/// read as a clean exit. Any other field read wrong reads as absent.
fn lenient_terminated<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SlimTerminated>, D::Error> {
    let Some(t) = lenient_object::<D, ReadTerminated>(d)? else {
        return Ok(None);
    };
    let exit_code = match t.exit_code {
        None => 0,
        Some(Some(code)) => code,
        Some(None) => return Ok(None),
    };
    Ok(Some(SlimTerminated {
        exit_code,
        signal: t.signal,
        reason: t.reason,
        message: t.message,
        started_at: t.started_at,
        finished_at: t.finished_at,
        container_id: t.container_id,
    }))
}

impl SlimContainerState {
    /// The state's name as semconv's `k8s.container.status.state` spells it.
    pub fn name(&self) -> Option<&'static str> {
        if self.waiting.is_some() {
            Some("waiting")
        } else if self.running.is_some() {
            Some("running")
        } else if self.terminated.is_some() {
            Some("terminated")
        } else {
            None
        }
    }

    /// The reason of the current state (`CrashLoopBackOff`, `OOMKilled`, ...), if any.
    pub fn reason(&self) -> Option<&str> {
        if let Some(w) = &self.waiting {
            return w.reason.as_deref();
        }
        self.terminated.as_ref().and_then(|t| t.reason.as_deref())
    }

    /// The message of the current state (the back-off message of `CrashLoopBackOff`), if any.
    pub fn message(&self) -> Option<&str> {
        if let Some(w) = &self.waiting {
            return w.message.as_deref();
        }
        self.terminated.as_ref().and_then(|t| t.message.as_deref())
    }
}

impl SlimPod {
    pub fn uid(&self) -> Option<&str> {
        self.metadata.meta.uid.as_deref().filter(|u| !u.is_empty())
    }
    pub fn name(&self) -> &str {
        self.metadata.meta.name.as_deref().unwrap_or("")
    }
    pub fn namespace(&self) -> &str {
        self.metadata.meta.namespace.as_deref().unwrap_or("")
    }
    /// The pod's labels (parsed now from the raw JSON kept at decode time; malformed labels read
    /// as none).
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.metadata.labels.as_ref().and_then(|raw| serde_json::from_str(raw.get()).ok()).unwrap_or_default()
    }
    /// The workload and revision of the pod (parsed now, borrowed), for the rollout rule.
    pub(crate) fn revision(&self) -> Option<PodRevision<'_>> {
        revision(self.metadata.labels.as_deref(), self.metadata.owner_references.as_deref())
    }
    /// The pod's ownerReferences (parsed now; malformed entries read as none).
    pub(crate) fn owner_references(&self) -> Vec<OwnerFields> {
        self.metadata.owner_references.as_ref().and_then(|raw| serde_json::from_str(raw.get()).ok()).unwrap_or_default()
    }
    /// The kept `resource.opentelemetry.io/*` annotations.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        self.metadata.meta.annotations.clone().unwrap_or_default()
    }
    /// The restart rules the named container of `init` (an init container) or not sets itself.
    pub(crate) fn own_rules(&self, name: &str, init: bool) -> Option<&SlimInitContainer> {
        let list = if init { &self.spec.init_containers } else { &self.spec.containers };
        list.iter().find(|c| c.name == name)
    }

    /// Whether the named init container is a native sidecar (`restartPolicy: Always`).
    pub(crate) fn is_sidecar(&self, init_container: &str) -> bool {
        self.spec
            .init_containers
            .iter()
            .any(|c| c.name == init_container && c.restart_policy.as_deref() == Some("Always"))
    }

    /// The latest time the object itself gives: its creation, the asking of its deletion
    /// (`deletionTimestamp` less the grace period: the timestamp is in the future), its last status
    /// write, its conditions' transitions, and its containers' starts and ends. What a replay dates
    /// an observation by.
    pub(crate) fn latest_time(&self) -> Option<Timestamp> {
        let m = &self.metadata;
        let deletion_asked = m.deleted_at.map(|d| {
            let grace = jiff::SignedDuration::from_secs(m.deletion_grace_seconds.unwrap_or(0).max(0));
            d.checked_sub(grace).unwrap_or(d)
        });
        let containers = self.status.container_statuses.iter().chain(&self.status.init_container_statuses);
        let container_times = containers.flat_map(|c| {
            let states = [&c.state, &c.last_state];
            states.into_iter().flat_map(|st| {
                let running = st.running.as_ref().and_then(|r| r.started_at);
                let ended = st.terminated.as_ref().map_or([None, None], |t| [t.started_at, t.finished_at]);
                [running, ended[0], ended[1]]
            })
        });
        [m.created_at, deletion_asked, m.status_written_at, self.status.conditions.latest_transition]
            .into_iter()
            .chain(container_times)
            .flatten()
            .max()
    }
}

impl kube::Resource for SlimPod {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        "Pod".into()
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        "pods".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata.meta
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata.meta
    }
}

/// A pod's map key: the UID's 128 bits (or a hash of a UID that is not a UUID). Byte-aligned, so
/// a map entry has no padding; hashed as one `u128`, as the key was before it was packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PodKey([u8; 16]);

impl Hash for PodKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from_ne_bytes(self.0));
    }
}

impl PodKey {
    pub(crate) fn of_uid(uid: &str) -> Self {
        PodKey(uid_bytes(uid))
    }

    /// The key of these 16 bytes.
    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: [u8; 16]) -> Self {
        PodKey(bytes)
    }
}

/// The 16 bytes of a pod UID (its trace id, its key in the agent's maps) in the API server's canonical form (a lowercase `8-4-4-4-12` UUID);
/// for any other UID, the first 16 bytes of its SHA-256 (still deterministic, never all zero in
/// practice). UIDs that differ only in case are different objects and get different ids.
pub(crate) fn uid_bytes(uid: &str) -> [u8; 16] {
    if let Some(bytes) = parse_canonical_uuid(uid).filter(|b| *b != [0u8; 16]) {
        return bytes;
    }
    let d: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(uid.as_bytes()).into();
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    id
}

/// Parses a canonical UUID: lowercase hex, dashes exactly at `8-4-4-4-12`.
pub(crate) fn parse_canonical_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    let dashes_ok = b.len() == 36 && b.iter().enumerate().all(|(i, c)| matches!(i, 8 | 13 | 18 | 23) == (*c == b'-'));
    let lower = b.iter().all(|c| matches!(c, b'-' | b'0'..=b'9' | b'a'..=b'f'));
    if dashes_ok && lower { parse_uuid(s) } else { None }
}

/// Parses `8-4-4-4-12` hex (or 32 bare hex digits) into 16 bytes.
pub(crate) fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    let mut nibbles = 0usize;
    for c in s.bytes() {
        if c == b'-' {
            continue;
        }
        let v = (c as char).to_digit(16)? as u8;
        if nibbles >= 32 {
            return None;
        }
        out[nibbles / 2] |= if nibbles.is_multiple_of(2) { v << 4 } else { v };
        nibbles += 1;
    }
    (nibbles == 32).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_event_whose_object_comes_before_its_type_decodes_the_same() {
        // JSON objects are unordered: a proxy or a re-encoding client may put `object` first,
        // and serde then buffers the object to find the tag.
        let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"ns","uid":"u1",
            "labels": {"app.kubernetes.io/name": "shop"},
            "ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"rs","uid":"r1","controller":true}]},
          "status":{"containerStatuses":[{"name":"app","restartCount":3}]}}"#;
        let decode = |line: &str| match serde_json::from_str::<kube::core::WatchEvent<SlimPod>>(line) {
            Ok(kube::core::WatchEvent::Modified(pod)) => pod,
            other => panic!("{line}: {other:?}"),
        };
        let type_first = decode(&format!(r#"{{"type":"MODIFIED","object":{pod}}}"#));
        let object_first = decode(&format!(r#"{{"object":{pod},"type":"MODIFIED"}}"#));
        for p in [&type_first, &object_first] {
            assert_eq!(p.labels()["app.kubernetes.io/name"], "shop");
            assert_eq!(p.owner_references()[0].name, "rs");
            assert_eq!(p.status.container_statuses[0].restart_count, 3);
        }
        // Read in one pass, the labels are the input's own text, never rebuilt.
        assert_eq!(type_first.metadata.labels.as_ref().map(|l| l.get()), Some(r#"{"app.kubernetes.io/name": "shop"}"#));
        let null_labels: SlimPod = serde_json::from_str(r#"{"metadata":{"uid":"u","labels":null}}"#).unwrap();
        assert!(null_labels.metadata.labels.is_none());
    }

    #[test]
    fn slim_pod_keeps_only_the_fields_the_agent_uses() {
        let json = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"ns","uid":"u1",
            "labels":{"app.kubernetes.io/name":"shop"},
            "annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{huge}",
                           "resource.opentelemetry.io/service.name":"svc"},
            "managedFields":[{"manager":"kubectl","fieldsV1":{"f:spec":{}}}],
            "ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"rs","uid":"r1","controller":true}]},
          "spec":{"nodeName":"n1","initContainers":[{"name":"proxy","restartPolicy":"Always"},{"name":"migrate"}],
                  "containers":[{"name":"app","image":"img"}]},
          "status":{"containerStatuses":[{"name":"app","restartCount":3,"image":"img:1","imageID":"img@sha256:ab",
             "state":{"waiting":{"reason":"CrashLoopBackOff","message":"back-off 40s"}},
             "lastState":{"terminated":{"exitCode":137,"reason":"OOMKilled","startedAt":"2026-11-20T10:00:00Z",
                "finishedAt":"2026-11-20T10:03:20Z","containerID":"containerd://abc"}}}]}}"#;
        let pod: SlimPod = serde_json::from_str(json).unwrap();
        assert_eq!(pod.uid(), Some("u1"));
        assert_eq!(pod.namespace(), "ns");
        assert_eq!(pod.annotations().len(), 1, "only resource.opentelemetry.io/* annotations are kept");
        assert_eq!(pod.labels()["app.kubernetes.io/name"], "shop");
        assert!(pod.is_sidecar("proxy"));
        assert!(!pod.is_sidecar("migrate"));
        let cs = &pod.status.container_statuses[0];
        assert_eq!(cs.restart_count, 3);
        assert_eq!(cs.state.name(), Some("waiting"));
        assert_eq!(cs.state.reason(), Some("CrashLoopBackOff"));
        let t = cs.last_state.terminated.as_ref().unwrap();
        assert_eq!((t.exit_code, t.reason.as_deref()), (137, Some("OOMKilled")));
        assert_eq!(pod.owner_references()[0].kind, "ReplicaSet");
    }

    #[test]
    fn a_wrongly_typed_field_the_agent_can_do_without_reads_as_absent() {
        let json = r#"{"metadata":{"uid":"u"},"spec":{"nodeName":7,"initContainers":"x"},
          "status":{"reason":{},"containerStatuses":[{"name":"app","restartCount":2,"imageID":-5,"image":[1],
             "state":"running","lastState":{"terminated":{"exitCode":"x"}}}]}}"#;
        let pod: SlimPod = serde_json::from_str(json).unwrap();
        let cs = &pod.status.container_statuses[0];
        assert_eq!((cs.restart_count, cs.image_id.as_str(), cs.image.as_str()), (2, "", ""));
        assert!(cs.state.name().is_none() && cs.last_state.terminated.is_none() && pod.spec.node_name.is_none());
    }

    #[test]
    fn a_restart_count_above_int32_is_an_error_naming_it() {
        let json =
            r#"{"metadata":{"uid":"u"},"status":{"containerStatuses":[{"name":"app","restartCount":4294967296}]}}"#;
        let err = serde_json::from_str::<SlimPod>(json).unwrap_err().to_string();
        assert!(err.contains("restartCount 4294967296 is above the int32 range"), "{err}");
        let neg = r#"{"metadata":{"uid":"u"},"status":{"containerStatuses":[{"name":"app","restartCount":-3}]}}"#;
        assert_eq!(serde_json::from_str::<SlimPod>(neg).unwrap().status.container_statuses[0].restart_count, 0);
    }

    #[test]
    fn pod_without_status_or_container_statuses_decodes() {
        let pod: SlimPod = serde_json::from_str(r#"{"metadata":{"uid":"u"}}"#).unwrap();
        assert!(pod.status.container_statuses.is_empty());
        let pod: SlimPod = serde_json::from_str(r#"{"metadata":{"uid":"u"},"status":{"phase":"Pending"}}"#).unwrap();
        assert!(pod.status.container_statuses.is_empty());
    }

    #[test]
    fn the_latest_status_write_is_read_from_managed_fields_and_malformed_entries_are_skipped() {
        let pod: SlimPod = serde_json::from_str(
            r#"{"metadata":{"uid":"u","managedFields":[
                {"manager":"kube-controller-manager","operation":"Update","time":"2026-11-20T10:09:00Z","fieldsV1":{"f:spec":{}}},
                {"manager":"kubelet","operation":"Update","subresource":"status","time":"2026-11-20T10:05:00Z","fieldsV1":{"f:status":{}}},
                {"manager":"kwok","subresource":"status","time":"2026-11-20T10:06:00Z"},
                {"manager":"x","subresource":"status","time":"not a time"},
                "garbage", 7, null]}}"#,
        )
        .unwrap();
        assert_eq!(pod.metadata.status_written_at, Some("2026-11-20T10:06:00Z".parse().unwrap()));
        let pod: SlimPod =
            serde_json::from_str(r#"{"metadata":{"uid":"u","managedFields":{"not":"a list"}}}"#).unwrap();
        assert_eq!(pod.metadata.status_written_at, None);
    }

    #[test]
    fn status_object_with_string_status_decodes_as_empty_pod_status() {
        let pod: SlimPod =
            serde_json::from_str(r#"{"kind":"Status","status":"Failure","message":"too old","code":410}"#).unwrap();
        assert!(pod.uid().is_none());
    }
}
