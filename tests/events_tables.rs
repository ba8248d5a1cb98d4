//! `docs/events.md`'s tables of attributes, one per record kind, are what the converter emits: for
//! each kind, the keys of its sample records (`restart_watcher_test_support::samples`), where each
//! goes (resource, record: the log record and the span event, or span), its type, its requirement
//! level (required, conditionally required and when, opt-in and by which flag), semconv's stability of it (as the semconv crate gates it:
//! `semconv_experimental` is `development`) or `restart_watcher`, and an example. On a mismatch the
//! test prints the section as it should read.

use std::collections::{BTreeMap, BTreeSet};

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};
use restart_watcher::export::convert::{self, MappingConfig};
use restart_watcher::record::{Record, RecordKind};
use restart_watcher_test_support::samples;

const SECTION: &str = "## Attributes by record kind";

/// When a key is there, where it is not on every record of a kind.
fn condition(key: &str) -> &'static str {
    match key {
        "container.id" | "container.runtime.name" => "the terminated instance's `containerID` is known",
        "container.image.tags" => "`status.image` has a tag",
        "container.image.repo_digests" | "oci.manifest.digest" => "`status.imageID` has a digest",
        "service.version" => "an annotation, a label (opt-in) or the image says it",
        "k8s.node.name" | "k8s.node.uid" => "the pod is scheduled (the uid: the node index knows it)",
        "k8s.replicaset.name" | "k8s.replicaset.uid" | "k8s.deployment.name" | "k8s.deployment.uid" => {
            "the pod belongs to a Deployment"
        }
        "k8s.cluster.name" => "`--cluster-name`",
        "restart_watcher.revision" => "the pod belongs to a Deployment (and the owner index knows its ReplicaSet)",
        "restart_watcher.revision.first_failure" => "the first failure of the pod's revision",
        "restart_watcher.revision.hash" => "the pod belongs to a Deployment, StatefulSet or DaemonSet",
        "k8s.cluster.uid" => "read at start (live runs with RBAC for it)",
        "k8s.pod.label.<key>" => "`--pod-label-keys` names it",
        "k8s.container.status.last_terminated_reason" => "the status gives a reason",
        "k8s.container.status.state" | "k8s.container.status.reason" => "the status says",
        "k8s.pod.status.phase" => "the pod's status has one",
        "process.exit.code" => "the termination is known",
        "error.type" => "the cause is not `completed`",
        "restart_watcher.termination.signal" | "restart_watcher.termination.signal_name" => "a signal ended it",
        "restart_watcher.termination.started_at" => "the status gives it",
        "restart_watcher.termination.message" => "the status gives one",
        "restart_watcher.restarts.missed" => "restarts were missed",
        "restart_watcher.restarts.coalesced" => "`--storm-window` (storm control)",
        "restart_watcher.previous_logs" => "`--previous-logs-lines`",
        "restart_watcher.detected_late" => "catch-up reported it",
        "restart_watcher.crash_loop.back_off" => "in `CrashLoopBackOff`",
        "restart_watcher.memory.limit" | "restart_watcher.memory.limit_source" => "an OOM kill under a limit",
        "restart_watcher.memory.request" => "an OOM kill with a request",
        "restart_watcher.pod.qos_class" => "an OOM kill",
        "restart_watcher.pod_restart.id" => "a child of a pod restart",
        "restart_watcher.resize.memory.limit.before" | "restart_watcher.resize.memory.limit.after" => {
            "a resize restart, with a memory limit"
        }
        "restart_watcher.resize.cpu.limit.before" | "restart_watcher.resize.cpu.limit.after" => {
            "a resize restart, with a CPU limit"
        }
        "restart_watcher.pod_restart.trigger.container" | "restart_watcher.pod_restart.trigger.cause" => {
            "a container fired it and its exit was seen"
        }
        "restart_watcher.oom_kill.process" => "`--oom-kill-kernel-log`",
        "restart_watcher.status.message" => "the kubelet gives one",
        "restart_watcher.image_pull.reason" | "restart_watcher.image_pull.registry" => "the cause is `image_pull`",
        "k8s.pod.status.reason" => "the pod's status has one",
        _ => "",
    }
}

/// Whether the crate gates `key`'s constant behind `semconv_experimental`.
fn stability(key: &str, experimental: &BTreeSet<String>) -> &'static str {
    if key.starts_with("restart_watcher.") {
        "restart_watcher"
    } else if experimental.contains(key) {
        "development"
    } else {
        "stable"
    }
}

fn experimental_keys() -> BTreeSet<String> {
    let source = std::fs::read_to_string(samples::semconv_crate_dir().join("src/attribute.rs")).unwrap();
    let lines: Vec<&str> = source.lines().collect();
    let mut out = BTreeSet::new();
    for (i, line) in lines.iter().enumerate() {
        if *line == "#[cfg(feature = \"semconv_experimental\")]"
            && let Some(next) = lines.get(i + 1).filter(|l| l.starts_with("pub const "))
            && let Some(value) = next.split('"').nth(1).or_else(|| lines.get(i + 2)?.split('"').nth(1))
        {
            out.insert(value.to_owned());
        }
    }
    out
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::StringValue(_) => "string",
        Value::IntValue(_) => "int",
        Value::DoubleValue(_) => "double",
        Value::BoolValue(_) => "boolean",
        Value::ArrayValue(a) => match a.values.first().and_then(|x| x.value.as_ref()) {
            Some(Value::IntValue(_)) => "int[]",
            _ => "string[]",
        },
        _ => "other",
    }
}

fn render(v: &Value) -> String {
    match v {
        Value::StringValue(s) => format!("{s:?}"),
        Value::IntValue(i) => i.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        Value::BoolValue(b) => b.to_string(),
        Value::ArrayValue(a) => {
            let items: Vec<String> = a.values.iter().filter_map(|x| x.value.as_ref()).map(render).collect();
            format!("[{}]", items.join(", "))
        }
        _ => String::new(),
    }
}

fn example(v: &Value) -> String {
    let text = render(v);
    let mut short: String = text.chars().take(48).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    format!("`{}`", short.replace('|', "\\|").replace('\n', "\\n"))
}

/// The key as the table names it: a label key as `k8s.pod.label.<key>`.
fn table_key(key: &str) -> String {
    match key.strip_prefix("k8s.pod.label.") {
        Some(_) => "k8s.pod.label.<key>".to_owned(),
        None => key.to_owned(),
    }
}

/// The section as the converter's output says it should read.
fn expected_section() -> String {
    let experimental = experimental_keys();
    let cfg = MappingConfig {
        cluster_name: Some("prod-eu".into()),
        cluster_uid: Some("7b3c1f2e-0c4d-4e5f-8a9b-0123456789ab".into()),
        pod_label_keys: vec!["team".into()],
        service_from_labels: false,
    };
    let records = samples::every_kind();
    let mut out = String::new();
    for kind in RecordKind::ALL {
        let of_kind: Vec<&Record> = records.iter().filter(|r| r.kind == kind).collect();
        assert!(!of_kind.is_empty(), "a sample of {kind}");
        // key -> (where, type, example, on how many records)
        let mut rows: BTreeMap<(u8, String), (&str, &str, String, usize)> = BTreeMap::new();
        for ev in &of_kind {
            let span = convert::span(ev);
            let places: [(u8, &str, Vec<KeyValue>); 3] = [
                (0, "resource", convert::resource_attributes(ev, &cfg)),
                (1, "record", convert::log_record(ev).attributes),
                (2, "span", span.attributes.into_iter().filter(|kv| kv.key == "error.type").collect()),
            ];
            for (order, place, attrs) in places {
                for kv in attrs {
                    let value = kv.value.and_then(|v| v.value).unwrap();
                    let row = rows.entry((order, table_key(&kv.key))).or_insert((
                        place,
                        type_name(&value),
                        example(&value),
                        0,
                    ));
                    row.3 += 1;
                }
            }
        }
        out.push_str(&format!("\n### `{}`\n\n", kind.event_name()));
        out.push_str("| key | on | type | requirement level | semconv | example |\n|---|---|---|---|---|---|\n");
        for ((_, key), (place, ty, example, count)) in rows {
            // A key with a condition is said conditional on every kind (the samples do not show
            // every case); one without must be on every sample of the kind.
            let when = condition(&key);
            let present = if when.starts_with("`--") {
                format!("opt-in: {when}")
            } else if !when.is_empty() {
                format!("conditionally required: {when}")
            } else {
                assert_eq!(count, of_kind.len(), "{key} is not on every {kind} record: say when in condition()");
                "required".to_owned()
            };
            let level = stability(&key, &experimental);
            out.push_str(&format!("| `{key}` | {place} | {ty} | {present} | {level} | {example} |\n"));
        }
    }
    out
}

#[test]
fn the_tables_of_attributes_by_record_kind_are_what_the_converter_emits() {
    let doc = std::fs::read_to_string("docs/events.md").unwrap();
    let start = doc.find(SECTION).expect("docs/events.md has the section") + SECTION.len();
    let body = &doc[start..];
    let end = body.find("\n## ").unwrap_or(body.len());
    let found = body[..end].split("\n### ").skip(1).collect::<Vec<_>>().join("\n### ");
    let want = expected_section();
    let want_tables = want.split("\n### ").skip(1).collect::<Vec<_>>().join("\n### ");
    // Only the tables are compared: prose between them is free.
    let tables = |s: &str| -> Vec<String> {
        s.split("\n### ")
            .map(|part| {
                let heading = part.lines().next().unwrap_or_default().to_owned();
                let rows: Vec<&str> = part.lines().filter(|l| l.starts_with('|')).collect();
                format!("{heading}\n{}", rows.join("\n"))
            })
            .collect()
    };
    assert!(tables(&found) == tables(&want_tables), "docs/events.md's tables are stale; they should read:\n{want}");
}
