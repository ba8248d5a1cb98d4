//! The slim decoders: each field read leniently (a wrong type reads as absent, not as a failed
//! Pod), without building a `serde_json::Value`, and the metadata kept.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::{KEPT_ANNOTATION_PREFIX, SlimInitContainer, SlimMeta, SlimPodStatus};

/// The metadata fields kept; everything else (managedFields, most annotations) is skipped unparsed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct MetaFields {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default, deserialize_with = "raw_json")]
    labels: Option<Box<RawValue>>,
    #[serde(default)]
    annotations: Option<KeptAnnotations>,
    #[serde(default, deserialize_with = "raw_json")]
    owner_references: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "lenient_time")]
    creation_timestamp: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient_time")]
    deletion_timestamp: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient")]
    deletion_grace_period_seconds: Option<i64>,
    #[serde(default, deserialize_with = "status_write_time")]
    managed_fields: Option<Timestamp>,
}

/// One `managedFields` entry, as far as [`status_write_time`] reads it: its `time` if it is a
/// write through the `status` subresource. Everything else (`fieldsV1`, most of a Pod's bytes) is
/// skipped without being built; an entry that is not an object reads as none.
pub(super) struct StatusWrite(pub(super) Option<Timestamp>);

impl<'de> Deserialize<'de> for StatusWrite {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StatusWrite;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a managedFields entry")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (mut time, mut status) = (None, false);
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "time" => time = map.next_value::<LenientStr>()?.0.and_then(|s| s.parse().ok()),
                        "subresource" => status = map.next_value::<LenientStr>()?.0.as_deref() == Some("status"),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(StatusWrite(time.filter(|_| status)))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(StatusWrite(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(StatusWrite(None))
            }
            numbers_and_null_read_as!(StatusWrite(None));
        }
        d.deserialize_any(V)
    }
}

/// [`lenient_string`] as a type, for a map visitor's values.
pub(super) struct LenientStr(pub(super) Option<String>);

impl<'de> Deserialize<'de> for LenientStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lenient_string(d).map(LenientStr)
    }
}

/// The latest time of the `managedFields` entries written through the `status` subresource;
/// anything malformed reads as none.
pub(super) fn status_write_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    fold_list(d, None, |latest, StatusWrite(time)| latest.max(time))
}

/// A JSON list read element by element as `T`, folded into `init`; anything but a list reads as
/// `init`, skipped without being built.
pub(super) fn fold_list<'de, D, T, A>(d: D, init: A, fold: fn(A, T) -> A) -> Result<A, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T, A> {
        init: A,
        fold: fn(A, T) -> A,
    }
    impl<'de, T: Deserialize<'de>, A> Visitor<'de> for V<T, A> {
        type Value = A;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list")
        }
        fn visit_seq<S: de::SeqAccess<'de>>(self, mut seq: S) -> Result<A, S::Error> {
            let mut acc = self.init;
            while let Some(item) = seq.next_element::<T>()? {
                acc = (self.fold)(acc, item);
            }
            Ok(acc)
        }
        fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<A, M::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(self.init)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<A, E> {
            Ok(self.init)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<A, E> {
            Ok(self.init)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<A, E> {
            Ok(self.init)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<A, E> {
            Ok(self.init)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<A, E> {
            Ok(self.init)
        }
        fn visit_unit<E: de::Error>(self) -> Result<A, E> {
            Ok(self.init)
        }
    }
    d.deserialize_any(V { init, fold })
}

/// Annotations, keeping only the `resource.opentelemetry.io/*` entries.
pub(super) struct KeptAnnotations(pub(super) BTreeMap<String, String>);

impl<'de> Deserialize<'de> for KeptAnnotations {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeptAnnotations;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of annotations")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut kept = BTreeMap::new();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key.starts_with(KEPT_ANNOTATION_PREFIX) {
                        kept.insert(key.into_owned(), map.next_value::<String>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(KeptAnnotations(kept))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(KeptAnnotations(BTreeMap::new()))
            }
        }
        d.deserialize_any(V)
    }
}

/// serde_json's name for its raw-value newtype: asked for a newtype of this name, its deserializer
/// hands over the field's JSON text unparsed.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// A field kept as its JSON text (labels, ownerReferences), read from the input unparsed. When the
/// input was buffered first (a watch event whose `object` comes before its `type`, which serde
/// buffers to find the tag), the text is rebuilt from the buffered value: the same JSON, without
/// the input's whitespace. A wrong type never fails the Pod. `null` reads as absent.
fn raw_json<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Box<RawValue>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        // serde_json's raw value: one entry whose value is the JSON text, handed to serde_json's
        // own raw-value visitor (which takes the text as it is, without parsing it again).
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            let raw = Box::<RawValue>::deserialize(RawEntry(map))?;
            Ok(Some(raw).filter(|raw| raw.get() != "null"))
        }
        // Any other deserializer (serde's buffered content) passes the value through.
        fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            let value = serde_json::Value::deserialize(d)?;
            Ok(Some(value).filter(|v| !v.is_null()).and_then(|v| serde_json::value::to_raw_value(&v).ok()))
        }
    }
    d.deserialize_newtype_struct(RAW_VALUE_TOKEN, V)
}

/// serde_json's raw-value entry, passed on as a deserializer of its own to `Box<RawValue>`.
struct RawEntry<A>(A);

impl<'de, A: MapAccess<'de>> Deserializer<'de> for RawEntry<A> {
    type Error = A::Error;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
        visitor.visit_map(self.0)
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

pub(crate) fn deserialize_slim_metadata<'de, D: Deserializer<'de>>(d: D) -> Result<SlimMeta, D::Error> {
    let Some(m) = Option::<MetaFields>::deserialize(d)? else {
        return Ok(SlimMeta::default());
    };
    Ok(SlimMeta {
        meta: ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            uid: m.uid,
            resource_version: m.resource_version,
            annotations: m.annotations.map(|a| a.0).filter(|a| !a.is_empty()),
            ..ObjectMeta::default()
        },
        labels: m.labels,
        owner_references: m.owner_references,
        created_at: m.creation_timestamp,
        deleted_at: m.deletion_timestamp,
        deletion_grace_seconds: m.deletion_grace_period_seconds,
        status_written_at: m.managed_fields,
    })
}

/// The identity part of [`deserialize_slim_metadata`], for other slim types (Events).
pub(crate) fn deserialize_slim_metadata_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    deserialize_slim_metadata(d).map(|m| m.meta)
}

/// A Pod's `status` is an object; in a `Status` object (an API error) the same key is a string.
/// Accept both, so one decoder reads every object a watch stream can carry.
pub(crate) fn deserialize_lenient_status<'de, D: Deserializer<'de>>(d: D) -> Result<SlimPodStatus, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = SlimPodStatus;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a pod status object")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            SlimPodStatus::deserialize(de::value::MapAccessDeserializer::new(map))
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(SlimPodStatus::default())
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(SlimPodStatus::default())
        }
    }
    d.deserialize_any(V)
}

/// `restartCount` is an int32 that is never negative. A negative value reads as 0 (the kubelet
/// never writes one); a value above the int32 range is an error that names it, so the object is
/// skipped and counted as malformed rather than compared with a made-up count.
pub(super) fn non_negative_count<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = i64::deserialize(d)?;
    if n > i64::from(i32::MAX) {
        return Err(de::Error::custom(format_args!("restartCount {n} is above the int32 range of the Kubernetes API")));
    }
    Ok(u32::try_from(n.max(0)).unwrap_or(0))
}

/// A field the agent can do without: a value of the wrong type (`"imageID": -5`) reads as absent
/// rather than failing the whole object, and with it a restart.
pub(super) fn lenient<'de, D: Deserializer<'de>, T: de::DeserializeOwned + Default>(d: D) -> Result<T, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(T::deserialize(value).unwrap_or_default())
}

/// [`lenient`] for an optional string, without building a `Value`: a string is kept, anything else
/// (a number, an object, null) reads as absent.
pub(super) fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok(Some(s.to_owned()))
        }
        fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
            Ok(Some(s))
        }
        numbers_and_null_read_as!(None);
        lists_and_objects_read_as!(None);
    }
    d.deserialize_any(V)
}

/// A JSON object read as `T`, anything else (a string, a number, null, a list) as `None`, without
/// building a `Value`: `T`'s fields must each read leniently themselves (then `T` cannot fail on a
/// wrong type, and a wrong-typed field reads as absent while its siblings are kept).
pub(super) struct LenientObject<T>(pub(super) Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for LenientObject<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = LenientObject<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|t| LenientObject(Some(t)))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LenientObject(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(LenientObject(None))
            }
            numbers_and_null_read_as!(LenientObject(None));
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

pub(super) fn lenient_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    LenientObject::deserialize(d).map(|o| o.0)
}

pub(super) fn lenient_object_or_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> Result<T, D::Error> {
    lenient_object(d).map(Option::unwrap_or_default)
}

/// A list of objects read as `T`s (the elements that are not objects are skipped); anything but a
/// list reads as none.
pub(super) fn lenient_objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    fold_list(d, Vec::new(), |mut out, LenientObject(item)| {
        out.extend(item);
        out
    })
}

/// The app containers that set a `restartPolicy` or `restartPolicyRules` of their own; the others
/// (most) are read and dropped, so a pod's state holds nothing more for them.
pub(super) fn containers_with_rules<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SlimInitContainer>, D::Error> {
    fold_list(d, Vec::new(), |mut out, LenientObject(item): LenientObject<SlimInitContainer>| {
        out.extend(item.filter(|c| c.restart_policy.is_some() || !c.restart_policy_rules.is_empty()));
        out
    })
}

/// A list of int32s; the elements that are not (strings, floats, out of range) are skipped.
pub(super) fn lenient_i32s<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i32>, D::Error> {
    struct Item(Option<i32>);
    impl<'de> Deserialize<'de> for Item {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            lenient_i32(d).map(Item)
        }
    }
    fold_list(d, Vec::new(), |mut out, Item(n): Item| {
        out.extend(n);
        out
    })
}

/// A whole number in the int32 range, else absent (a string, a float, an object...).
pub(super) fn lenient_i32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<i32>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an int32")
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
            Ok(i32::try_from(n).ok())
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
            Ok(i32::try_from(n).ok())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
        lists_and_objects_read_as!(None);
    }
    d.deserialize_any(V)
}

/// [`lenient_string`] read as an RFC 3339 time; anything else reads as absent.
pub(super) fn lenient_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    Ok(lenient_string(d)?.and_then(|s| s.parse().ok()))
}

pub(super) fn lenient_string_or_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    lenient_string(d).map(Option::unwrap_or_default)
}
