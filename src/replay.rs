//! Replay: a recorded stream through the same detector as a live watch.
//!
//! Input is what `kubectl get pods -A --watch --output-watch-events -o json` prints (watch events
//! `{"type": ..., "object": Pod}`, one after another, pretty-printed or not), plain Pod objects
//! (`kubectl get pods -w -o json`), and `PodList`/`List` objects (`kubectl get pods -o json`), in
//! any mix. A list is a complete snapshot of the recorded scope, exactly as a relist is for a live
//! watch: pods missing from it are treated as deleted.
//!
//! Bad input: a value that is not valid JSON stops the replay with an error naming its byte offset,
//! line and column and what the parser expected; everything detected before it has already been
//! handed on. A valid value that is not a Pod (or cannot be read as one) is skipped with a warning
//! and counted. BOOKMARK events are ignored; ERROR events (a `Status`) are logged and counted.

use std::io::Read;

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::detector::Detector;
use crate::event::RestartEvent;
use crate::pod::{SlimPod, SlimPodSpec, SlimPodStatus};

/// Errors that stop a replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The stream holds something that is not JSON (or ends inside a value).
    #[error(
        "{source_name}: malformed JSON after byte {byte_offset} (line {line}, column {column}): {detail}; \
         expected a stream of JSON objects (watch events, Pods or PodLists), as `kubectl get pods -A --watch --output-watch-events -o json` prints"
    )]
    Malformed {
        source_name: String,
        byte_offset: usize,
        line: usize,
        column: usize,
        detail: String,
    },
    /// Reading the input failed.
    #[error("{source_name}: cannot read: {source}")]
    Read {
        source_name: String,
        #[source]
        source: std::io::Error,
    },
    /// The consumer of restart events went away (the export task ended).
    #[error("the export pipeline closed before the replay ended")]
    SinkClosed,
}

/// What a replay saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Top-level JSON values read.
    pub values: u64,
    /// Pod observations fed to the detector (watch events, plain Pods, list items).
    pub pod_observations: u64,
    /// Lists (snapshots) read.
    pub lists: u64,
    /// Values or items skipped because they are not Pods.
    pub skipped_not_pod: u64,
    /// ERROR watch events (Status objects).
    pub error_events: u64,
    /// BOOKMARK watch events.
    pub bookmarks: u64,
    /// Restart events detected.
    pub restarts: u64,
}

/// Everything a watch stream's value can be: a watch event, a Pod, a list, or a Status.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type", default)]
    event_type: Option<String>,
    #[serde(default)]
    object: Option<Box<Envelope>>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default, deserialize_with = "crate::pod::deserialize_slim_metadata")]
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    #[serde(default)]
    spec: Option<SlimPodSpec>,
    #[serde(default, deserialize_with = "crate::pod::deserialize_lenient_status")]
    status: SlimPodStatus,
    #[serde(default)]
    items: Option<Vec<Envelope>>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    code: Option<i64>,
}

impl Envelope {
    fn is_pod(&self, default_kind_pod: bool) -> bool {
        match self.kind.as_deref() {
            Some("Pod") => true,
            None => default_kind_pod && self.metadata.uid.is_some(),
            _ => false,
        }
    }

    fn into_pod(self) -> SlimPod {
        SlimPod {
            metadata: self.metadata,
            spec: self.spec.unwrap_or_default(),
            status: self.status,
        }
    }

    fn describe(&self) -> String {
        let kind = self.kind.as_deref().unwrap_or("object without kind");
        match (&self.metadata.namespace, &self.metadata.name) {
            (Some(ns), Some(n)) => format!("{kind} {ns}/{n}"),
            (None, Some(n)) => format!("{kind} {n}"),
            _ => kind.to_owned(),
        }
    }
}

/// Feeds a recorded stream through `detector`, handing each restart to `emit` as soon as it is
/// detected, and counting what it saw in `stats`. `now` gives the observation time. Stops at the first malformed JSON value, after
/// everything before it was emitted; `emit` returning `false` stops the replay (`SinkClosed`).
pub fn replay<R: Read>(
    input: R,
    source_name: &str,
    detector: &mut Detector,
    mut now: impl FnMut() -> Timestamp,
    mut emit: impl FnMut(RestartEvent) -> bool,
    stats: &mut ReplayStats,
) -> Result<(), ReplayError> {
    let mut stream = serde_json::Deserializer::from_reader(std::io::BufReader::new(input))
        .into_iter::<Box<RawValue>>();
    loop {
        let offset = stream.byte_offset();
        let raw = match stream.next() {
            None => break,
            Some(Ok(raw)) => raw,
            Some(Err(e)) if e.is_io() => {
                return Err(ReplayError::Read {
                    source_name: source_name.to_owned(),
                    source: std::io::Error::other(e.to_string()),
                });
            }
            Some(Err(e)) => {
                return Err(ReplayError::Malformed {
                    source_name: source_name.to_owned(),
                    byte_offset: offset,
                    line: e.line(),
                    column: e.column(),
                    detail: describe_json_error(&e),
                });
            }
        };
        stats.values += 1;
        if !raw.get().starts_with('{') {
            stats.skipped_not_pod += 1;
            tracing::warn!(
                byte_offset = offset,
                "Skipped a JSON value that is not an object (a Pod, watch event or list)."
            );
            continue;
        }
        let envelope: Envelope = match serde_json::from_str(raw.get()) {
            Ok(env) => env,
            Err(e) => {
                stats.skipped_not_pod += 1;
                tracing::warn!(byte_offset = offset, error = %e, "Skipped a JSON value that cannot be read as a Pod, watch event or list.");
                continue;
            }
        };
        let mut emit_all =
            |events: Vec<RestartEvent>, stats: &mut ReplayStats| -> Result<(), ReplayError> {
                for ev in events {
                    stats.restarts += 1;
                    if !emit(ev) {
                        return Err(ReplayError::SinkClosed);
                    }
                }
                Ok(())
            };
        if let Some(event_type) = envelope.event_type.clone() {
            let Some(object) = envelope.object else {
                stats.skipped_not_pod += 1;
                tracing::warn!(
                    byte_offset = offset,
                    event_type,
                    "Skipped a watch event without an object."
                );
                continue;
            };
            match event_type.as_str() {
                "BOOKMARK" => stats.bookmarks += 1,
                "ERROR" => {
                    stats.error_events += 1;
                    tracing::warn!(
                        byte_offset = offset,
                        code = object.code,
                        reason = object.reason.as_deref().unwrap_or(""),
                        message = object.message.as_deref().unwrap_or(""),
                        "The recorded watch carried an ERROR event (a relist follows in a live watch)."
                    );
                }
                "ADDED" | "MODIFIED" | "DELETED" if object.is_pod(true) => {
                    stats.pod_observations += 1;
                    let pod = object.into_pod();
                    let events = if event_type == "DELETED" {
                        detector.delete(&pod, now())
                    } else {
                        detector.apply(&pod, now())
                    };
                    emit_all(events, stats)?;
                }
                _ => {
                    stats.skipped_not_pod += 1;
                    tracing::warn!(
                        byte_offset = offset,
                        event_type,
                        object = object.describe(),
                        "Skipped a watch event that is not about a Pod."
                    );
                }
            }
            continue;
        }
        let is_list = matches!(envelope.kind.as_deref(), Some("PodList") | Some("List"))
            || (envelope.kind.is_none() && envelope.items.is_some());
        if is_list {
            stats.lists += 1;
            detector.begin_relist();
            for item in envelope.items.unwrap_or_default() {
                if item.is_pod(true) {
                    stats.pod_observations += 1;
                    let events = detector.apply(&item.into_pod(), now());
                    emit_all(events, stats)?;
                } else {
                    stats.skipped_not_pod += 1;
                    tracing::warn!(
                        byte_offset = offset,
                        object = item.describe(),
                        "Skipped a list item that is not a Pod."
                    );
                }
            }
            detector.end_relist();
        } else if envelope.is_pod(true) {
            stats.pod_observations += 1;
            let events = detector.apply(&envelope.into_pod(), now());
            emit_all(events, stats)?;
        } else if envelope.kind.as_deref() == Some("Status") {
            stats.error_events += 1;
            tracing::warn!(
                byte_offset = offset,
                code = envelope.code,
                message = envelope.message.as_deref().unwrap_or(""),
                "The recording holds a Status (an API error)."
            );
        } else {
            stats.skipped_not_pod += 1;
            tracing::warn!(
                byte_offset = offset,
                object = envelope.describe(),
                "Skipped an object that is not a Pod."
            );
        }
    }
    Ok(())
}

fn describe_json_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    // serde_json appends " at line L column C"; the caller names the position itself.
    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
    if e.is_eof() {
        format!("the stream ends inside a JSON value ({msg}); was the recording cut short?")
    } else {
        msg
    }
}
