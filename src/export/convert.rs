//! Pure mapping: `Record`s to OTLP messages (`ExportLogsServiceRequest`,
//! `ExportTraceServiceRequest`), exactly as `docs/events.md` describes. No I/O.
//!
//! The resource is the restarted container, not the agent, so records are grouped by resource here
//! (the SDK's one-resource-per-provider model does not fit). The agent's identity is the
//! instrumentation scope.

use std::collections::HashMap;

use jiff::Timestamp;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span, status};
use prost::Message;

use super::kv::{kv_bool, kv_double, kv_int, kv_str, kv_str_array};
use super::service::annotated;
pub use super::service::{service_instance_id, service_name, service_namespace, service_version, split_image};
use crate::keys;
use crate::record::{Record, RecordKind, severity, signal_name};
use crate::rules::failures;
use crate::rules::text::cap_utf8;

/// Settings of the mapping that come from configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MappingConfig {
    /// `k8s.cluster.name`, when configured.
    pub cluster_name: Option<String>,
    /// `k8s.cluster.uid`: the `kube-system` namespace's uid, read at start (live watch only).
    pub cluster_uid: Option<String>,
    /// Pod label keys copied as `k8s.pod.label.<key>` (opt-in: labels can be high-cardinality).
    pub pod_label_keys: Vec<String>,
    /// `--service-from-labels`: the well-known labels (`app.kubernetes.io/instance`, `/name`,
    /// `/version`) name the service when no annotation does (opt-in, as semconv's guide asks).
    pub service_from_labels: bool,
}

/// Trace flag "sampled", set on records and spans: restarts are always recorded.
const TRACE_FLAG_SAMPLED: u32 = 1;

/// Splits `containerd://abc` into (`containerd`, `abc`).
pub fn split_container_id(id: &str) -> (Option<&str>, &str) {
    match id.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, id),
    }
}

/// The resource of a restart record: the restarted container.
pub fn resource_attributes(ev: &Record, cfg: &MappingConfig) -> Vec<KeyValue> {
    let pod = &ev.pod;
    let c = &ev.container;
    let mut attrs = super::service::service_attributes(pod, &c.name, &c.image, cfg.service_from_labels);
    if let Some(cluster) = &cfg.cluster_name {
        attrs.push(kv_str(keys::K8S_CLUSTER_NAME, cluster.as_str()));
    }
    if let Some(uid) = &cfg.cluster_uid {
        attrs.push(kv_str(keys::K8S_CLUSTER_UID, uid.as_str()));
    }
    attrs.push(kv_str(keys::K8S_NAMESPACE_NAME, pod.namespace.as_str()));
    attrs.push(kv_str(keys::K8S_POD_NAME, pod.name.as_str()));
    attrs.push(kv_str(keys::K8S_POD_UID, pod.uid.as_str()));
    if let Some(node) = &pod.node_name {
        attrs.push(kv_str(keys::K8S_NODE_NAME, node.as_str()));
    }
    if let Some(uid) = &pod.node_uid {
        attrs.push(kv_str(keys::K8S_NODE_UID, uid.as_str()));
    }
    if !c.name.is_empty() {
        attrs.push(kv_str(keys::K8S_CONTAINER_NAME, c.name.as_str()));
        attrs.push(kv_int(keys::K8S_CONTAINER_RESTART_COUNT, i64::from(ev.terminated_restart_count())));
    }
    // A record about the pod (an eviction, a pod restart) names no container instance.
    let instance = ev.terminated.as_ref().and_then(|t| t.container_id.as_deref()).filter(|_| !c.name.is_empty());
    if let Some(id) = instance.filter(|i| !i.is_empty()) {
        let (runtime, bare) = split_container_id(id);
        attrs.push(kv_str(keys::CONTAINER_ID, bare));
        if let Some(runtime) = runtime {
            attrs.push(kv_str(keys::CONTAINER_RUNTIME_NAME, runtime));
        }
    }
    if !c.image.is_empty() {
        let (name, tag) = split_image(&c.image);
        attrs.push(kv_str(keys::CONTAINER_IMAGE_NAME, name));
        if let Some(tag) = tag {
            attrs.push(kv_str_array(keys::CONTAINER_IMAGE_TAGS, vec![tag.to_owned()]));
        }
    }
    if let Some((_, digest)) = c.image_id.split_once('@').filter(|(_, d)| !d.is_empty()) {
        attrs.push(kv_str(keys::OCI_MANIFEST_DIGEST, digest));
        // imageID is `[scheme://]repo@sha256:...`; semconv wants `repo@sha256:...`.
        let repo = split_container_id(&c.image_id).1;
        let repo = repo.split_once('@').map_or(repo, |(r, _)| r);
        attrs.push(kv_str_array(keys::CONTAINER_IMAGE_REPO_DIGESTS, vec![format!("{repo}@{digest}")]));
    }
    let o = &pod.owners;
    for (owner, name_key, uid_key) in [
        (&o.replicaset, keys::K8S_REPLICASET_NAME, keys::K8S_REPLICASET_UID),
        (&o.deployment, keys::K8S_DEPLOYMENT_NAME, keys::K8S_DEPLOYMENT_UID),
        (&o.statefulset, keys::K8S_STATEFULSET_NAME, keys::K8S_STATEFULSET_UID),
        (&o.daemonset, keys::K8S_DAEMONSET_NAME, keys::K8S_DAEMONSET_UID),
        (&o.job, keys::K8S_JOB_NAME, keys::K8S_JOB_UID),
        (&o.cronjob, keys::K8S_CRONJOB_NAME, keys::K8S_CRONJOB_UID),
    ] {
        if let Some(r) = owner {
            attrs.push(kv_str(name_key, r.name.as_str()));
            if let Some(uid) = &r.uid {
                attrs.push(kv_str(uid_key, uid.as_str()));
            }
        }
    }
    for (key, value) in [(keys::REVISION, &o.revision), (keys::REVISION_HASH, &o.revision_hash)] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            attrs.push(kv_str(key, v));
        }
    }
    for key in &cfg.pod_label_keys {
        if let Some(v) = pod.labels.get(key) {
            attrs.push(kv_str(&format!("{}{key}", keys::K8S_POD_LABEL_PREFIX), v.as_str()));
        }
    }
    // Every other `resource.opentelemetry.io/<key>` annotation, where the agent sets no `<key>`.
    for (key, value) in annotated(pod) {
        if !attrs.iter().any(|a| a.key == key) {
            attrs.push(kv_str(key, value.as_str()));
        }
    }
    attrs
}

/// What an OOM kill is read against: the limit in force, whose it was, the request, the QoS class
/// (on OOM kills only).
fn push_memory(attrs: &mut Vec<KeyValue>, ev: &Record) {
    if ev.cause != crate::record::Cause::OomKilled {
        return;
    }
    let m = &ev.container.memory;
    let int = |bytes: u64| i64::try_from(bytes).unwrap_or(i64::MAX);
    if let Some(limit) = m.limit_bytes {
        attrs.push(kv_int(keys::MEMORY_LIMIT, int(limit)));
        attrs.push(kv_str(keys::MEMORY_LIMIT_SOURCE, if m.limit_is_pod_level { "pod" } else { "container" }));
    }
    if let Some(request) = m.request_bytes {
        attrs.push(kv_int(keys::MEMORY_REQUEST, int(request)));
    }
    if let Some(qos) = m.qos_class.as_deref().filter(|q| !q.is_empty()) {
        attrs.push(kv_str(keys::POD_QOS_CLASS, qos));
    }
}

/// A start failure's episode and an eviction's reason, message and pod status.
fn push_episode_and_eviction(attrs: &mut Vec<KeyValue>, ev: &Record) {
    if let Some(e) = &ev.episode {
        attrs.push(kv_str(keys::START_FAILURE_REASON, e.reason.as_str()));
        // A pod makes no attempts of its own: its containers' records count theirs.
        if matches!(ev.kind, RecordKind::StartFailure | RecordKind::StartFailureEnded) {
            attrs.push(kv_int(keys::START_FAILURE_ATTEMPTS, i64::from(e.attempts)));
        }
        if matches!(ev.kind, RecordKind::StartFailure | RecordKind::PodStartFailure)
            && let Some(msg) = ev.current.message.as_deref().filter(|m| !m.is_empty())
        {
            attrs.push(kv_str(keys::STATUS_MESSAGE, msg));
        }
        if let Some(outcome) = e.outcome {
            attrs.push(kv_str(keys::START_FAILURE_OUTCOME, outcome));
            let seconds = e.ended_at.duration_since(e.started_at).as_secs_f64().max(0.0);
            attrs.push(kv_double(keys::START_FAILURE_DURATION, seconds));
        }
    }
    if let Some(e) = &ev.eviction {
        if let Some(reason) = ev.pod_reason.as_deref().filter(|r| !r.is_empty()) {
            attrs.push(kv_str(keys::K8S_POD_STATUS_REASON, reason));
        }
        if let Some(phase) = e.pod_phase.as_deref().filter(|p| !p.is_empty()) {
            attrs.push(kv_str(keys::K8S_POD_STATUS_PHASE, phase));
        }
        attrs.push(kv_str(keys::EVICTION_REASON, e.reason.as_str()));
        if let Some(msg) = e.message.as_deref() {
            attrs.push(kv_str(keys::STATUS_MESSAGE, msg));
        }
    }
}

/// The record attributes: what happened (not who).
pub fn record_attributes(ev: &Record) -> Vec<KeyValue> {
    let mut attrs = Vec::with_capacity(16);
    if let Some(t) = &ev.terminated {
        // A failure's termination is the container's current state (`k8s.container.status.*`
        // below); the others' is its last state.
        if let Some(reason) = t.reason.as_deref().filter(|r| !r.is_empty() && ev.kind != RecordKind::Failure) {
            attrs.push(kv_str(keys::K8S_CONTAINER_STATUS_LAST_TERMINATED_REASON, reason));
        }
        attrs.push(kv_int(keys::PROCESS_EXIT_CODE, i64::from(t.exit_code)));
    }
    push_memory(&mut attrs, ev);
    super::extra::push(&mut attrs, ev);
    // The end of a start-failure episode is not an error: it keeps the cause, not `error.type`.
    if !ev.cause.is_clean() && !ev.kind.is_end() {
        attrs.push(kv_str(keys::ERROR_TYPE, ev.cause.as_str()));
    }
    if let Some(state) = ev.current.state {
        attrs.push(kv_str(keys::K8S_CONTAINER_STATUS_STATE, state));
    }
    if let Some(reason) = ev.current.reason.as_deref().filter(|r| !r.is_empty()) {
        attrs.push(kv_str(keys::K8S_CONTAINER_STATUS_REASON, reason));
    }
    push_episode_and_eviction(&mut attrs, ev);
    if let Some(back_off) = ev.current.back_off {
        attrs.push(kv_int(keys::CRASH_LOOP_BACK_OFF, back_off.as_secs() as i64));
    }
    if !ev.container.name.is_empty() {
        attrs.push(kv_str(keys::CONTAINER_KIND, ev.container_kind().as_str()));
    }
    if let Some(sig) = ev.signal() {
        attrs.push(kv_int(keys::TERMINATION_SIGNAL, i64::from(sig)));
        if let Some(name) = signal_name(sig) {
            attrs.push(kv_str(keys::TERMINATION_SIGNAL_NAME, name));
        }
    }
    if let Some(t) = &ev.terminated {
        if let Some(started) = t.started_at {
            attrs.push(kv_str(keys::TERMINATION_STARTED_AT, started.to_string()));
        }
        if let Some(msg) = t.message.as_deref().filter(|m| !m.is_empty()) {
            attrs.push(kv_str(keys::TERMINATION_MESSAGE, cap_utf8(msg, keys::TERMINATION_MESSAGE_MAX_BYTES)));
        }
    }
    if ev.missed > 0 {
        attrs.push(kv_int(keys::RESTARTS_MISSED, i64::from(ev.missed)));
    }
    if let Some(n) = ev.coalesced {
        attrs.push(kv_int(keys::RESTARTS_COALESCED, i64::from(n)));
    }
    if let Some(logs) = ev.previous_logs.as_deref().filter(|l| !l.is_empty()) {
        attrs.push(kv_str(keys::PREVIOUS_LOGS, logs));
    }
    if ev.kind == RecordKind::Restart {
        attrs.push(kv_int(keys::RESTART_COUNT, i64::from(ev.restart_count)));
    }
    attrs.push(kv_str(keys::RESTART_ID, ev.restart_id()));
    if ev.detected_late {
        attrs.push(kv_bool(keys::DETECTED_LATE, true));
    }
    if ev.first_of_revision {
        attrs.push(kv_bool(keys::REVISION_FIRST_FAILURE, true));
    }
    attrs.push(kv_str(keys::CAUSE, ev.cause.as_str()));
    attrs.push(kv_str(keys::CAUSE_CATEGORY, ev.category()));
    attrs
}

/// The body sentence, as the schema gives it:
/// `container checkout in pod shop/checkout-x restarted: OOMKilled (exit code 137), restart #4`,
/// followed, where the exit code says more than the reason, by its meaning in plain words. The
/// other kinds follow the same pattern (`failed to start: ...`, `failed and will not be
/// restarted: ...`, `pod shop/x was evicted: ...`).
pub fn body(ev: &Record) -> String {
    if ev.kind == RecordKind::RolloutRegression {
        return super::extra::rollout_body(ev);
    }
    if ev.container.name.is_empty() && ev.kind != RecordKind::Restart {
        return format!("pod {}/{} {}", ev.pod.namespace, ev.pod.name, predicate(ev));
    }
    let kind = match ev.container_kind() {
        crate::record::ContainerKind::App => String::new(),
        k => format!("{k} "),
    };
    let mut s =
        format!("{kind}container {} in pod {}/{} {}", ev.container.name, ev.pod.namespace, ev.pod.name, predicate(ev));
    if let Some(t) = ev.terminated.as_ref().filter(|_| matches!(ev.kind, RecordKind::Restart | RecordKind::Failure)) {
        let self_explained = matches!(t.reason.as_deref(), Some("OOMKilled") | Some("Completed"));
        if let Some(meaning) = crate::record::exit_code_meaning(t.exit_code).filter(|_| !self_explained) {
            s.push_str(&format!("; exit code {}: {meaning}", t.exit_code));
        }
    }
    s
}

/// What happened, after the subject: `restarted: Error (exit code 1), restart #3`, `failed to
/// start: ImagePullBackOff: ...`, `was evicted (TerminationByKubelet): ...`.
pub(crate) fn predicate(ev: &Record) -> String {
    match ev.kind {
        RecordKind::Restart => {
            let mut s = format!("restarted: {}, restart #{}", termination(ev), ev.restart_count);
            if ev.missed > 0 {
                s.push_str(&format!(" ({} earlier restarts missed)", ev.missed));
            }
            s
        }
        RecordKind::Failure => format!("failed and will not be restarted: {}", termination(ev)),
        RecordKind::StartFailure | RecordKind::PodStartFailure => {
            let reason = match ev.kind {
                RecordKind::PodStartFailure => ev.episode.as_ref().map(|e| e.reason.as_str()),
                _ => ev.current.reason.as_deref(),
            };
            let reason = reason.unwrap_or("start failure");
            let what = match ev.episode.as_ref().filter(|_| ev.kind == RecordKind::PodStartFailure) {
                Some(e) => format!("has not started in {}s", e.ended_at.duration_since(e.started_at).as_secs().max(0)),
                None => "failed to start".to_owned(),
            };
            match ev.current.message.as_deref().filter(|m| !m.is_empty()) {
                Some(m) => format!("{what}: {reason}: {m}"),
                None => format!("{what}: {reason}"),
            }
        }
        RecordKind::StartFailureEnded | RecordKind::PodStartFailureEnded => {
            let (reason, attempts, outcome, took) = match &ev.episode {
                Some(e) => (
                    e.reason.as_str(),
                    e.attempts,
                    e.outcome.unwrap_or(failures::OUTCOME_STARTED),
                    e.ended_at.duration_since(e.started_at).as_secs().max(0),
                ),
                None => ("start failure", 1, failures::OUTCOME_STARTED, 0),
            };
            if ev.kind == RecordKind::PodStartFailureEnded {
                let end = match outcome {
                    failures::OUTCOME_POD_DELETED => "was deleted before it started",
                    failures::OUTCOME_POD_FAILED => "failed before it started",
                    _ => "started",
                };
                return format!("{end}, after {took}s waiting ({reason})");
            }
            let end = match outcome {
                failures::OUTCOME_POD_DELETED => "stopped failing to start: its pod was deleted",
                failures::OUTCOME_EVICTED => "stopped failing to start: its pod was evicted",
                failures::OUTCOME_POD_FAILED => "stopped failing to start: its pod failed",
                _ => "started",
            };
            let plural = if attempts == 1 { "" } else { "s" };
            format!("{end} after {reason} for {took}s ({attempts} attempt{plural} observed)")
        }
        RecordKind::PodRestart => super::extra::predicate(ev),
        RecordKind::OomKill => super::extra::oom_kill_predicate(ev),
        RecordKind::RolloutRegression => super::extra::rollout_predicate(ev),
        RecordKind::Eviction => {
            let verb = if ev.cause == crate::record::Cause::Preempted { "preempted" } else { "evicted" };
            let mut s = format!("was {verb}");
            if let Some(e) = &ev.eviction {
                s.push_str(&format!(" ({})", e.reason));
                if let Some(m) = e.message.as_deref() {
                    s.push_str(&format!(": {m}"));
                }
            }
            s
        }
    }
}

/// `OOMKilled (exit code 137)`, or `reason unknown`.
fn termination(ev: &Record) -> String {
    match &ev.terminated {
        Some(t) => {
            let reason = t.reason.as_deref().filter(|r| !r.is_empty()).unwrap_or("terminated");
            format!("{reason} (exit code {})", t.exit_code)
        }
        None => "reason unknown".to_owned(),
    }
}

fn nanos(t: Timestamp) -> u64 {
    u64::try_from(t.as_nanosecond()).unwrap_or(0)
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: keys::SCOPE_NAME.to_owned(),
        version: keys::SCOPE_VERSION.to_owned(),
        ..Default::default()
    }
}

/// The log record of one restart.
pub fn log_record(ev: &Record) -> LogRecord {
    let (severity_number, severity_text) = severity(ev.kind, ev.cause);
    LogRecord {
        time_unix_nano: nanos(ev.time()),
        observed_time_unix_nano: nanos(ev.observed_at),
        severity_number,
        severity_text: severity_text.to_owned(),
        body: Some(AnyValue { value: Some(any_value::Value::StringValue(body(ev))) }),
        attributes: record_attributes(ev),
        flags: TRACE_FLAG_SAMPLED,
        trace_id: ev.trace_id().to_vec(),
        span_id: ev.span_id().to_vec(),
        event_name: ev.kind.event_name().to_owned(),
        ..Default::default()
    }
}

/// The span of the terminated instance, with its span event.
pub fn span(ev: &Record) -> Span {
    let end = ev.time();
    let start = match ev.kind {
        RecordKind::StartFailureEnded | RecordKind::PodStartFailureEnded => ev.episode.as_ref().map(|e| e.started_at),
        _ => ev.terminated.as_ref().and_then(|t| t.started_at),
    };
    let start = start.filter(|s| *s <= end).unwrap_or(end);
    // semconv's recording of errors: `error.type` on the span itself, and a status description
    // that does not repeat it (none: the record's body says what happened).
    let error = !(ev.cause.is_clean() || ev.kind.is_end());
    let status = Status {
        code: if error { status::StatusCode::Error } else { status::StatusCode::Unset } as i32,
        ..Default::default()
    };
    let mut attributes = vec![kv_str(keys::RESTART_ID, ev.restart_id())];
    if error {
        attributes.push(kv_str(keys::ERROR_TYPE, ev.cause.as_str()));
    }
    Span {
        trace_id: ev.trace_id().to_vec(),
        span_id: ev.span_id().to_vec(),
        parent_span_id: ev.parent().map(|(_, span)| span.to_vec()).unwrap_or_default(),
        flags: TRACE_FLAG_SAMPLED,
        name: ev.kind.span_name().to_owned(),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: nanos(start),
        end_time_unix_nano: nanos(end),
        attributes,
        events: vec![span::Event {
            time_unix_nano: nanos(end),
            name: ev.kind.event_name().to_owned(),
            attributes: record_attributes(ev),
            ..Default::default()
        }],
        status: Some(status),
        ..Default::default()
    }
}

/// Groups items by the resource of their event, keeping first-seen order.
fn group_by_resource<T>(
    records: &[Record],
    cfg: &MappingConfig,
    item: impl Fn(&Record) -> T,
) -> Vec<(Resource, Vec<T>)> {
    let mut groups: Vec<(Resource, Vec<T>)> = Vec::new();
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    for ev in records {
        let resource = Resource { attributes: resource_attributes(ev, cfg), ..Default::default() };
        let key = resource.encode_to_vec();
        match index.get(&key) {
            Some(&i) => groups[i].1.push(item(ev)),
            None => {
                index.insert(key, groups.len());
                groups.push((resource, vec![item(ev)]));
            }
        }
    }
    groups
}

/// One `ExportLogsServiceRequest` for a batch of restarts, one `ResourceLogs` per distinct resource.
pub fn logs_request(records: &[Record], cfg: &MappingConfig) -> ExportLogsServiceRequest {
    let resource_logs = group_by_resource(records, cfg, log_record)
        .into_iter()
        .map(|(resource, log_records)| ResourceLogs {
            resource: Some(resource),
            scope_logs: vec![ScopeLogs { scope: Some(scope()), log_records, schema_url: keys::SCHEMA_URL.to_owned() }],
            schema_url: keys::SCHEMA_URL.to_owned(),
        })
        .collect();
    ExportLogsServiceRequest { resource_logs }
}

/// One `ExportTraceServiceRequest` for a batch of restarts, one `ResourceSpans` per distinct resource.
pub fn traces_request(records: &[Record], cfg: &MappingConfig) -> ExportTraceServiceRequest {
    let resource_spans = group_by_resource(records, cfg, span)
        .into_iter()
        .map(|(resource, spans)| ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans { scope: Some(scope()), spans, schema_url: keys::SCHEMA_URL.to_owned() }],
            schema_url: keys::SCHEMA_URL.to_owned(),
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}
