//! The probe: the few fields that decide whether an update can change anything, borrowed from the
//! input buffer.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::lenient::{LenientStr, fold_list, non_negative_count};

/// The few fields that decide whether an update can change anything: the pod's uid and each
/// container's name and `restartCount`, borrowed from the input buffer (no allocation besides two
/// small vectors). Most updates change no count; for those, nothing else is decoded.
#[derive(Debug, Default, Deserialize)]
pub struct PodProbe<'a> {
    #[serde(default, borrow)]
    pub kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    pub metadata: ProbeMeta<'a>,
    #[serde(default, borrow)]
    pub spec: ProbeSpec<'a>,
    #[serde(default, borrow)]
    pub status: ProbeStatus<'a>,
}

/// The init containers' restart policies (to tell native sidecars), borrowed.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeSpec<'a> {
    #[serde(default, borrow)]
    pub init_containers: Vec<ProbeInit<'a>>,
}

/// An init container's name and restart policy.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeInit<'a> {
    #[serde(borrow)]
    pub name: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    pub restart_policy: Option<std::borrow::Cow<'a, str>>,
}

impl PodProbe<'_> {
    /// Whether the named init container is a native sidecar (`restartPolicy: Always`).
    pub(crate) fn is_sidecar(&self, init_container: &str) -> bool {
        self.spec
            .init_containers
            .iter()
            .any(|c| c.name == init_container && c.restart_policy.as_deref() == Some("Always"))
    }
}

/// `metadata.uid`, whether the pod is being deleted, and its namespace, creation, labels and
/// ownerReferences (for the rollout rule).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeMeta<'a> {
    #[serde(default, borrow)]
    pub uid: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    pub deletion_timestamp: Option<IgnoredAny>,
    /// What the rollout rule reads of a pod first seen, borrowed whole (parsed only then).
    #[serde(default, borrow)]
    pub namespace: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    pub creation_timestamp: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    pub labels: Option<&'a serde_json::value::RawValue>,
    #[serde(default, borrow)]
    pub owner_references: Option<&'a serde_json::value::RawValue>,
}

/// Container names, counts and state summaries, and the pod's phase and reason.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeStatus<'a> {
    #[serde(default, borrow)]
    pub phase: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    pub reason: Option<IgnoredAny>,
    /// Whether a condition shows something the detector reads: a `True` `DisruptionTarget` (an
    /// eviction or preemption under way), a `False` `PodReadyToStartContainers` (no sandbox), a
    /// `True` `AllContainersRestarting` or `PodResizeInProgress`.
    #[serde(default, rename = "conditions", deserialize_with = "telling_condition")]
    pub telling_condition: bool,
    #[serde(default, borrow)]
    pub container_statuses: Vec<ProbeCount<'a>>,
    #[serde(default, borrow)]
    pub init_container_statuses: Vec<ProbeCount<'a>>,
}

/// Whether `status.conditions` holds a condition the detector reads (see
/// [`ProbeStatus::telling_condition`]), read without allocating; anything malformed reads as no.
fn telling_condition<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct Condition(bool);
    impl<'de> Deserialize<'de> for Condition {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Condition;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a pod condition")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                    // Told when True (or, for the sandbox, when False).
                    let (mut told_when, mut status) = (None, None);
                    while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                        let value = map.next_value::<LenientStr>()?.0;
                        match key.as_ref() {
                            "type" => {
                                told_when = match value.as_deref() {
                                    Some("DisruptionTarget" | "AllContainersRestarting" | "PodResizeInProgress") => {
                                        Some("True")
                                    }
                                    Some("PodReadyToStartContainers") => Some("False"),
                                    _ => None,
                                }
                            }
                            "status" => status = value,
                            _ => {}
                        }
                    }
                    Ok(Condition(told_when.is_some_and(|t| status.as_deref() == Some(t))))
                }
                fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                    Ok(Condition(false))
                }
                fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                    Ok(Condition(false))
                }
                numbers_and_null_read_as!(Condition(false));
            }
            d.deserialize_any(V)
        }
    }
    fold_list(d, false, |any, Condition(c)| any || c)
}

/// One container's name, `restartCount` and what its state says about failures.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeCount<'a> {
    #[serde(borrow)]
    pub name: std::borrow::Cow<'a, str>,
    #[serde(default, deserialize_with = "non_negative_count")]
    pub restart_count: u32,
    #[serde(default, borrow)]
    pub state: ProbeState<'a>,
}

/// `state`, reduced to the waiting reason and the termination's exit code and reason.
#[derive(Debug, Default, Deserialize)]
pub struct ProbeState<'a> {
    #[serde(default, borrow)]
    pub waiting: Option<ProbeReason<'a>>,
    #[serde(default, borrow)]
    pub terminated: Option<ProbeReason<'a>>,
}

/// A state's reason (and exit code, for `terminated`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeReason<'a> {
    #[serde(default, borrow)]
    pub reason: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    pub exit_code: i64,
}
