//! The OTLP mapping (pure) of what is more than a container's own restart: pod-wide restarts,
//! resize restarts, OOM kills that restart nothing, why an image cannot be pulled, rollout
//! regressions; their
//! attributes, and their sentences.

use opentelemetry_proto::tonic::common::v1::KeyValue;

use super::kv::{kv_double, kv_int, kv_int_array, kv_str, kv_str_array};
use crate::keys;
use crate::record::{Cause, Record, RecordKind};

/// The attributes of a pod-wide restart (on its own record: what fired it and what restarted; on
/// its containers' records: its id), of a resize restart (the limits before and after) and of OOM
/// kills that restarted nothing (how many, which process).
pub(super) fn push(attrs: &mut Vec<KeyValue>, ev: &Record) {
    if let Some(p) = &ev.pod_restart {
        if ev.kind == RecordKind::PodRestart {
            let trigger = match (&p.trigger, p.cause) {
                (_, Cause::SandboxChanged) => "sandbox",
                (Some(_), _) => "container",
                (None, _) => "unknown",
            };
            attrs.push(kv_str(keys::POD_RESTART_TRIGGER, trigger));
            if let Some(t) = &p.trigger {
                attrs.push(kv_str(keys::POD_RESTART_TRIGGER_CONTAINER, t.container.as_str()));
                attrs.push(kv_str(keys::POD_RESTART_TRIGGER_CAUSE, t.cause.as_str()));
            }
            attrs.push(kv_str_array(
                keys::POD_RESTART_CONTAINERS,
                p.containers.iter().map(|c| c.name.clone()).collect(),
            ));
            let counts = p.containers.iter().map(|c| i64::from(c.restart_count)).collect();
            attrs.push(kv_int_array(keys::POD_RESTART_RESTART_COUNTS, counts));
        } else if let Some((id, _)) = ev.parent() {
            attrs.push(kv_str(keys::POD_RESTART_ID, id));
        }
    }
    if ev.kind == RecordKind::StartFailure && ev.cause == Cause::ImagePull {
        let message = ev.current.message.as_deref().unwrap_or_default();
        attrs.push(kv_str(keys::IMAGE_PULL_REASON, crate::rules::pulls::classify(message).as_str()));
        let image = crate::rules::pulls::image_in(message).unwrap_or(&ev.container.image);
        if let Some(host) = crate::rules::pulls::registry(image) {
            attrs.push(kv_str(keys::IMAGE_PULL_REGISTRY, host));
        }
    }
    if let Some(r) = &ev.rollout {
        attrs.push(kv_str(keys::ROLLOUT_STARTED_AT, r.started_at.to_string()));
        attrs.push(kv_int(keys::ROLLOUT_WINDOW, r.window_s));
        attrs.push(kv_int(keys::ROLLOUT_FAILURES, i64::from(r.failures)));
        attrs.push(kv_int(keys::ROLLOUT_FAILING_PODS, i64::from(r.failing_pods)));
        attrs.push(kv_int(keys::ROLLOUT_PREVIOUS_FAILING_PODS, i64::from(r.previous_failing_pods)));
    }
    if let Some(o) = &ev.oom_kills {
        attrs.push(kv_int(keys::OOM_KILL_COUNT, i64::try_from(o.count).unwrap_or(i64::MAX)));
        if let Some(process) = o.process.as_deref().filter(|p| !p.is_empty()) {
            attrs.push(kv_str(keys::OOM_KILL_PROCESS, process));
        }
    }
    if let Some(r) = &ev.resize {
        let bytes = |b: u64| i64::try_from(b).unwrap_or(i64::MAX);
        let cores = |m: u64| m as f64 / 1000.0;
        for (key, value) in
            [(keys::RESIZE_MEMORY_LIMIT_BEFORE, r.memory_before), (keys::RESIZE_MEMORY_LIMIT_AFTER, r.memory_after)]
        {
            if let Some(v) = value {
                attrs.push(kv_int(key, bytes(v)));
            }
        }
        for (key, value) in
            [(keys::RESIZE_CPU_LIMIT_BEFORE, r.cpu_millis_before), (keys::RESIZE_CPU_LIMIT_AFTER, r.cpu_millis_after)]
        {
            if let Some(v) = value {
                attrs.push(kv_double(key, cores(v)));
            }
        }
    }
}

/// What a pod-wide restart's sentence says after the pod: `restarted every container, its sandbox
/// was recreated: app #2, helper #2` or `restarted every container for container worker's exit
/// (Error, exit code 42): init #1, worker #1`.
pub(crate) fn predicate(ev: &Record) -> String {
    let Some(p) = &ev.pod_restart else {
        return "restarted every container".to_owned();
    };
    let why = match (&p.trigger, p.cause) {
        (_, Cause::SandboxChanged) => "its sandbox was recreated".to_owned(),
        (Some(t), _) => {
            let reason = t.terminated.reason.as_deref().filter(|r| !r.is_empty()).unwrap_or("terminated");
            format!("for container {}'s exit ({reason}, exit code {})", t.container, t.terminated.exit_code)
        }
        (None, _) => "for a container's exit (a RestartAllContainers rule)".to_owned(),
    };
    let containers: Vec<String> = p.containers.iter().map(|c| format!("{} #{}", c.name, c.restart_count)).collect();
    let sep = if p.cause == Cause::SandboxChanged { ", " } else { " " };
    format!("restarted every container{sep}{why}: {}", containers.join(", "))
}

/// What an OOM kill that restarted nothing says after its container: `had a process OOM-killed
/// (rw-test) under its 32 MiB limit, and runs on`.
pub(crate) fn oom_kill_predicate(ev: &Record) -> String {
    let count = ev.oom_kills.as_ref().map_or(1, |o| o.count);
    let what = if count == 1 { "a process".to_owned() } else { format!("{count} processes") };
    let process =
        ev.oom_kills.as_ref().and_then(|o| o.process.as_deref()).map(|p| format!(" ({p})")).unwrap_or_default();
    let limit = match ev.container.memory.limit_bytes {
        Some(b) if b % (1 << 20) == 0 => format!(" under its {} MiB limit", b >> 20),
        Some(b) => format!(" under its limit of {b} bytes"),
        None => String::new(),
    };
    format!("had {what} OOM-killed{process}{limit}, and runs on")
}

/// A rollout regression's sentence: `deployment shop/web regressed at revision 7d9f8 (rolled out at
/// 2026-11-20T10:00:00Z): 3 failures from 1 pod within 900s of the rollout, where the previous
/// revision had 0 failing pods in the 900s before it; the latest: app_error in pod shop/web-7d9f8-x`.
pub(crate) fn rollout_body(ev: &Record) -> String {
    let o = &ev.pod.owners;
    let kind = match (&o.deployment, &o.replicaset, &o.statefulset) {
        (Some(_), ..) => "deployment",
        (None, Some(_), _) => "replicaset",
        (None, None, Some(_)) => "statefulset",
        _ => "daemonset",
    };
    let workload = crate::rules::owners::workload(o).map_or("", |w| w.name.as_str());
    let revision = o.revision_hash.as_deref().unwrap_or("?");
    format!("{kind} {}/{workload} regressed at revision {revision} {}", ev.pod.namespace, rollout_predicate(ev))
}

/// What a rollout regression says after its workload and revision.
pub(crate) fn rollout_predicate(ev: &Record) -> String {
    let Some(r) = &ev.rollout else {
        return "(a rollout regression)".to_owned();
    };
    let plural = |n: u32, what: &str| if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") };
    format!(
        "(rolled out at {}): {} from {} within {}s of the rollout, where the previous revision had {} in the {}s \
         before it; the latest: {} in pod {}/{}",
        r.started_at,
        plural(r.failures, "failure"),
        plural(r.failing_pods, "pod"),
        r.window_s,
        plural(r.previous_failing_pods, "failing pod"),
        r.window_s,
        ev.cause,
        ev.pod.namespace,
        ev.pod.name
    )
}
