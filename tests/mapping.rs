//! The OTLP mapping, asserted against the key constants: resource, record, span, ids, service.name.

use restart_watcher_test_support::pods as support;

use std::collections::BTreeMap;

use jiff::Timestamp;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};
use restart_watcher::detector::Detector;
use restart_watcher::export::convert::{self, MappingConfig};
use restart_watcher::keys;
use restart_watcher::record::{Cause, OwnerRef, Owners, PodInfo, Record, hex};
use serde_json::json;
use support::{c, pod};

const UID: &str = "4239abf7-1206-49a7-8747-9f93b9b7d16d";

fn oom_event() -> Record {
    let mut p = pod(UID).named("shop", "checkout-7d9f8-x2x4q").app(c("checkout", 3)).json();
    p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "checkout-7d9f8",
                                               "uid": "rs-uid", "controller": true}]);
    p["metadata"]["labels"] = json!({"pod-template-hash": "7d9f8", "team": "payments"});
    let before: restart_watcher::pod::SlimPod = serde_json::from_value(p.clone()).unwrap();
    let status = &mut p["status"]["containerStatuses"][0];
    status["restartCount"] = json!(4);
    status["image"] = json!("registry.example.com/shop/checkout:1.8.2");
    status["imageID"] = json!("docker-pullable://registry.example.com/shop/checkout@sha256:abcd");
    status["state"] = json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}});
    status["lastState"] = json!({"terminated": {"reason": "OOMKilled", "exitCode": 137,
        "startedAt": "2026-11-20T10:00:00Z", "finishedAt": "2026-11-20T10:03:20Z",
        "message": "x".repeat(10_000), "containerID": "containerd://abc123"}});
    let after: restart_watcher::pod::SlimPod = serde_json::from_value(p).unwrap();
    let mut d = Detector::default();
    let now: Timestamp = "2026-11-20T10:03:25Z".parse().unwrap();
    assert!(d.apply(&before, now).is_empty());
    let mut events = d.apply(&after, now);
    assert_eq!(events.len(), 1);
    events.remove(0)
}

fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, Value> {
    kvs.iter().map(|kv| (kv.key.clone(), kv.value.clone().unwrap().value.unwrap())).collect()
}

fn s(v: &str) -> Value {
    Value::StringValue(v.to_owned())
}

#[test]
fn resource_is_the_restarted_container() {
    let cfg = MappingConfig {
        cluster_name: Some("prod-eu".into()),
        cluster_uid: Some("7b3c1f2e-0c4d-4e5f-8a9b-0123456789ab".into()),
        pod_label_keys: vec!["team".into(), "absent".into()],
        service_from_labels: false,
    };
    let mut ev = oom_event();
    ev.pod.node_uid = Some("1eb3a0c6-0477-4080-a9cb-0cb7db65c6a2".into());
    let r = attrs(&convert::resource_attributes(&ev, &cfg));
    assert_eq!(r[keys::K8S_NODE_UID], s("1eb3a0c6-0477-4080-a9cb-0cb7db65c6a2"), "from the node index");
    assert_eq!(r[keys::SERVICE_VERSION], s("1.8.2"), "the image's tag");
    assert_eq!(r[keys::OCI_MANIFEST_DIGEST], s("sha256:abcd"));
    assert_eq!(r[keys::SERVICE_NAME], s("checkout"), "deployment name from the ReplicaSet's pod-template-hash");
    assert_eq!(r[keys::SERVICE_NAMESPACE], s("shop"));
    assert_eq!(r[keys::SERVICE_INSTANCE_ID], s("shop.checkout-7d9f8-x2x4q.checkout"));
    assert_eq!(r[keys::K8S_CLUSTER_NAME], s("prod-eu"));
    assert_eq!(r[keys::K8S_CLUSTER_UID], s("7b3c1f2e-0c4d-4e5f-8a9b-0123456789ab"));
    assert_eq!(r[keys::K8S_NAMESPACE_NAME], s("shop"));
    assert_eq!(r[keys::K8S_POD_NAME], s("checkout-7d9f8-x2x4q"));
    assert_eq!(r[keys::K8S_POD_UID], s(UID));
    assert_eq!(r[keys::K8S_NODE_NAME], s("node-a"));
    assert_eq!(r[keys::K8S_CONTAINER_NAME], s("checkout"));
    assert_eq!(r[keys::K8S_CONTAINER_RESTART_COUNT], Value::IntValue(3), "the terminated instance's attempt");
    assert_eq!(r[keys::CONTAINER_ID], s("abc123"), "the terminated instance's id, without its scheme");
    assert_eq!(r[keys::CONTAINER_RUNTIME_NAME], s("containerd"));
    assert_eq!(r[keys::CONTAINER_IMAGE_NAME], s("registry.example.com/shop/checkout"));
    let Value::ArrayValue(tags) = &r[keys::CONTAINER_IMAGE_TAGS] else { panic!("tags is an array") };
    assert_eq!(tags.values[0].value, Some(s("1.8.2")));
    let Value::ArrayValue(digests) = &r[keys::CONTAINER_IMAGE_REPO_DIGESTS] else { panic!("digests is an array") };
    assert_eq!(digests.values[0].value, Some(s("registry.example.com/shop/checkout@sha256:abcd")));
    assert_eq!(r[keys::K8S_REPLICASET_NAME], s("checkout-7d9f8"));
    assert_eq!(r[keys::K8S_REPLICASET_UID], s("rs-uid"));
    assert_eq!(r[keys::K8S_DEPLOYMENT_NAME], s("checkout"));
    assert_eq!(r[&format!("{}team", keys::K8S_POD_LABEL_PREFIX)], s("payments"));
    assert!(!r.contains_key(&format!("{}absent", keys::K8S_POD_LABEL_PREFIX)));
    assert!(!r.contains_key(&format!("{}pod-template-hash", keys::K8S_POD_LABEL_PREFIX)), "labels are opt-in");
}

#[test]
fn log_record_is_the_restart_event() {
    let ev = oom_event();
    let rec = convert::log_record(&ev);
    assert_eq!(rec.event_name, keys::EVENT_NAME);
    assert_eq!(rec.severity_number, 17, "OOMKilled is ERROR");
    assert_eq!(rec.time_unix_nano, "2026-11-20T10:03:20Z".parse::<Timestamp>().unwrap().as_nanosecond() as u64);
    assert_eq!(
        rec.observed_time_unix_nano,
        "2026-11-20T10:03:25Z".parse::<Timestamp>().unwrap().as_nanosecond() as u64
    );
    let Some(Value::StringValue(body)) = rec.body.and_then(|b| b.value) else { panic!("body is a string") };
    assert_eq!(
        body,
        "container checkout in pod shop/checkout-7d9f8-x2x4q restarted: OOMKilled (exit code 137), restart #4"
    );
    assert_eq!(rec.trace_id, ev.trace_id().to_vec());
    assert_eq!(rec.span_id, ev.span_id().to_vec());
    let a = attrs(&rec.attributes);
    assert_eq!(a[keys::K8S_CONTAINER_STATUS_LAST_TERMINATED_REASON], s("OOMKilled"));
    assert_eq!(a[keys::PROCESS_EXIT_CODE], Value::IntValue(137));
    assert_eq!(a[keys::ERROR_TYPE], s("oom_killed"));
    assert_eq!(a[keys::K8S_CONTAINER_STATUS_STATE], s("waiting"));
    assert_eq!(a[keys::K8S_CONTAINER_STATUS_REASON], s("CrashLoopBackOff"));
    assert_eq!(a[keys::CRASH_LOOP_BACK_OFF], Value::IntValue(40), "from the message `back-off 40s`");
    assert_eq!(a[keys::CONTAINER_KIND], s("app"));
    assert_eq!(a[keys::TERMINATION_SIGNAL], Value::IntValue(9));
    assert_eq!(a[keys::TERMINATION_SIGNAL_NAME], s("SIGKILL"));
    assert_eq!(a[keys::TERMINATION_STARTED_AT], s("2026-11-20T10:00:00Z"));
    let Value::StringValue(msg) = &a[keys::TERMINATION_MESSAGE] else { panic!() };
    assert_eq!(msg.len(), keys::TERMINATION_MESSAGE_MAX_BYTES, "the message is capped");
    assert_eq!(a[keys::RESTART_ID], s(&ev.restart_id()));
    assert_eq!(a[keys::CAUSE], s("oom_killed"));
    assert!(!a.contains_key(keys::RESTARTS_MISSED), "nothing missed");
    assert!(!a.contains_key(keys::DETECTED_LATE), "not late");
}

#[test]
fn severity_follows_the_cause() {
    let mut ev = oom_event();
    for (cause, want) in [
        (Cause::OomKilled, 17),
        (Cause::Completed, 9),
        (Cause::AppError, 13),
        (Cause::Signal, 13),
        (Cause::Unknown, 13),
    ] {
        ev.cause = cause;
        assert_eq!(convert::log_record(&ev).severity_number, want, "{cause}");
    }
    ev.cause = Cause::Completed;
    assert!(!attrs(&convert::record_attributes(&ev)).contains_key(keys::ERROR_TYPE), "a clean exit has no error.type");
}

#[test]
fn missed_and_late_restarts_are_marked() {
    let mut ev = oom_event();
    ev.missed = 2;
    ev.detected_late = true;
    let a = attrs(&convert::record_attributes(&ev));
    assert_eq!(a[keys::RESTARTS_MISSED], Value::IntValue(2));
    assert_eq!(a[keys::DETECTED_LATE], Value::BoolValue(true));
    assert_eq!(a[keys::RESTART_COUNT], Value::IntValue(4), "the new count is a record attribute");
}

#[test]
fn trace_id_is_the_pod_uid_and_span_id_comes_from_the_restart_id() {
    let ev = oom_event();
    assert_eq!(hex(&ev.trace_id()), UID.replace('-', ""));
    let id = ev.restart_id();
    assert_eq!(id.len(), 32);
    // deterministic: one termination gives the same ids from any replica, at any time
    let mut other = ev.clone();
    other.observed_at = Timestamp::now();
    other.pod.name = "renamed".into();
    other.missed = 3;
    assert_eq!((other.restart_id(), other.span_id()), (id.clone(), ev.span_id()));
    let mut next = ev.clone();
    next.terminated.as_mut().unwrap().container_id = Some("containerd://def456".into());
    assert_ne!(next.restart_id(), id);
    assert_ne!(next.span_id(), ev.span_id());
    assert_ne!(ev.span_id(), [0u8; 8]);
}

#[test]
fn restarts_after_a_count_reset_get_distinct_ids() {
    // 0 -> 1 (Error), the kubelet loses its state (count back to 0), 0 -> 1 (OOMKilled): two
    // terminations with the same count must not share an id, or backends drop the second one.
    let term = |reason: &str, finished: &str, id: &str| json!({"terminated": {"reason": reason, "exitCode": 1, "finishedAt": finished, "containerID": id}});
    let p0 = pod(UID).app(c("app", 0)).json();
    let mut p1 = p0.clone();
    p1["status"]["containerStatuses"][0]["restartCount"] = json!(1);
    p1["status"]["containerStatuses"][0]["lastState"] = term("Error", "2026-11-20T10:00:00Z", "containerd://a");
    let mut p2 = p1.clone();
    p2["status"]["containerStatuses"][0]["restartCount"] = json!(1);
    p2["status"]["containerStatuses"][0]["lastState"] = term("OOMKilled", "2026-11-20T10:05:00Z", "containerd://b");
    let slim = |v: &serde_json::Value| serde_json::from_value::<restart_watcher::pod::SlimPod>(v.clone()).unwrap();
    let now = Timestamp::now();
    let mut d = Detector::default();
    assert!(d.apply(&slim(&p0), now).is_empty());
    let first = d.apply(&slim(&p1), now);
    assert!(d.apply(&slim(&p0), now).is_empty(), "a reset is silent");
    let second = d.apply(&slim(&p2), now);
    assert_eq!((first.len(), second.len()), (1, 1));
    assert_ne!(first[0].restart_id(), second[0].restart_id());
    assert_ne!(first[0].span_id(), second[0].span_id());
    // Without containerID and finishedAt the count still tells restarts apart.
    let mut bare = first[0].clone();
    bare.terminated = None;
    let mut bare_next = bare.clone();
    bare_next.restart_count += 1;
    assert_ne!(bare.restart_id(), bare_next.restart_id());
}

#[test]
fn span_covers_the_terminated_instance() {
    let ev = oom_event();
    let span = convert::span(&ev);
    assert_eq!(span.name, keys::SPAN_NAME);
    assert_eq!(span.trace_id, ev.trace_id().to_vec());
    assert_eq!(span.span_id, ev.span_id().to_vec());
    assert_eq!(span.start_time_unix_nano, "2026-11-20T10:00:00Z".parse::<Timestamp>().unwrap().as_nanosecond() as u64);
    assert_eq!(span.end_time_unix_nano, "2026-11-20T10:03:20Z".parse::<Timestamp>().unwrap().as_nanosecond() as u64);
    assert_eq!(span.status.as_ref().unwrap().code, 2, "ERROR unless the exit was clean");
    assert_eq!(span.events.len(), 1);
    assert_eq!(span.events[0].name, keys::EVENT_NAME);
    assert_eq!(span.events[0].time_unix_nano, span.end_time_unix_nano);
    assert_eq!(span.events[0].attributes, convert::record_attributes(&ev));
}

#[test]
fn requests_group_records_by_resource_and_carry_the_scope() {
    let ev = oom_event();
    let mut same = ev.clone();
    same.observed_at = Timestamp::now();
    let mut other = ev.clone();
    other.container.name = "envoy".into();
    let cfg = MappingConfig::default();
    let logs = convert::logs_request(&[ev.clone(), same, other.clone()], &cfg);
    assert_eq!(logs.resource_logs.len(), 2);
    assert_eq!(logs.resource_logs[0].scope_logs[0].log_records.len(), 2);
    let scope = logs.resource_logs[0].scope_logs[0].scope.as_ref().unwrap();
    assert_eq!((scope.name.as_str(), scope.version.as_str()), (keys::SCOPE_NAME, keys::SCOPE_VERSION));
    assert_eq!(logs.resource_logs[0].schema_url, keys::SCHEMA_URL);
    let traces = convert::traces_request(&[ev, other], &cfg);
    assert_eq!(traces.resource_spans.len(), 2);
}

#[test]
fn service_name_derivation_order() {
    let full = || PodInfo {
        name: "pod-x".into(),
        annotations: [(keys::ANNOTATION_SERVICE_NAME.to_owned(), "from-annotation".to_owned())].into(),
        labels: [
            (keys::LABEL_APP_INSTANCE.to_owned(), "from-instance".to_owned()),
            (keys::LABEL_APP_NAME.to_owned(), "from-name".to_owned()),
        ]
        .into(),
        owners: Owners {
            deployment: Some(OwnerRef { name: "dep".into(), uid: None }),
            replicaset: Some(OwnerRef { name: "rs".into(), uid: None }),
            statefulset: Some(OwnerRef { name: "sts".into(), uid: None }),
            daemonset: Some(OwnerRef { name: "ds".into(), uid: None }),
            cronjob: Some(OwnerRef { name: "cj".into(), uid: None }),
            job: Some(OwnerRef { name: "job".into(), uid: None }),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut p = full();
    let mut seen = Vec::new();
    type Strip = Box<dyn Fn(&mut PodInfo)>;
    let strip: Vec<Strip> = vec![
        Box::new(|p| {
            p.annotations.clear();
        }),
        Box::new(|p| {
            p.labels.remove(keys::LABEL_APP_INSTANCE);
        }),
        Box::new(|p| {
            p.labels.clear();
        }),
        Box::new(|p| p.owners.deployment = None),
        Box::new(|p| p.owners.replicaset = None),
        Box::new(|p| p.owners.statefulset = None),
        Box::new(|p| p.owners.daemonset = None),
        Box::new(|p| p.owners.cronjob = None),
        Box::new(|p| p.owners.job = None),
        Box::new(|p| p.name.clear()),
    ];
    seen.push(convert::service_name(&p, "ctr", true));
    for f in strip {
        f(&mut p);
        seen.push(convert::service_name(&p, "ctr", true));
    }
    assert_eq!(
        seen,
        ["from-annotation", "from-instance", "from-name", "dep", "rs", "sts", "ds", "cj", "job", "pod-x", "ctr"]
    );
    // Without --service-from-labels, the well-known labels do not count.
    let mut unlabelled = full();
    unlabelled.annotations.clear();
    assert_eq!(convert::service_name(&unlabelled, "ctr", false), "dep");
    let mut ns = full();
    ns.namespace = "k8s-ns".into();
    assert_eq!(convert::service_namespace(&ns), "k8s-ns");
    ns.annotations.insert(keys::ANNOTATION_SERVICE_NAMESPACE.into(), "svc-ns".into());
    assert_eq!(convert::service_namespace(&ns), "svc-ns");
}

#[test]
fn image_references_split_into_name_and_tag() {
    assert_eq!(convert::split_image("nginx:1.27"), ("nginx", Some("1.27")));
    assert_eq!(convert::split_image("registry:5000/team/app:v2"), ("registry:5000/team/app", Some("v2")));
    assert_eq!(convert::split_image("registry:5000/team/app"), ("registry:5000/team/app", None));
    assert_eq!(convert::split_image("app@sha256:abc"), ("app", None));
    assert_eq!(convert::split_container_id("cri-o://ff"), (Some("cri-o"), "ff"));
}

#[test]
fn otlp_json_uses_lower_camel_case_and_hex_ids() {
    let ev = oom_event();
    let line = restart_watcher::export::json::logs_line(&convert::logs_request(
        std::slice::from_ref(&ev),
        &MappingConfig::default(),
    ))
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let rec = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
    assert_eq!(rec["eventName"], keys::EVENT_NAME);
    assert_eq!(rec["traceId"], hex(&ev.trace_id()));
    assert_eq!(rec["spanId"], hex(&ev.span_id()));
    assert_eq!(rec["severityNumber"], 17);
}

/// The records of the other kinds, from one pod: a start failure, its end, a terminal failure of a
/// second container, then the pod's eviction.
fn other_kinds() -> Vec<Record> {
    let p = || pod(UID).named("shop", "search-5c7d-q8x2z").never();
    let mut d = Detector::default();
    let at = |s: &str| -> Timestamp { s.parse().unwrap() };
    let mut out = Vec::new();
    out.extend(d.apply(
        &p().app(c("search", 0).waiting_msg("ContainerCreating", "")).app(c("job", 0)).slim(),
        at("2026-11-20T10:00:00Z"),
    ));
    out.extend(d.apply(
        &p().app(c("search", 0).waiting_msg("ErrImagePull", "not found")).app(c("job", 0)).slim(),
        at("2026-11-20T10:00:05Z"),
    ));
    out.extend(
        d.apply(
            &p().app(c("search", 0).running_since("2026-11-20T10:01:35Z"))
                .app(c("job", 0).ended("Error", 3, "2026-11-20T10:01:00Z"))
                .slim(),
            at("2026-11-20T10:01:40Z"),
        ),
    );
    let evicted = json!({"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory.",
        "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet", "lastTransitionTime": "2026-11-20T10:02:00Z"}]});
    out.extend(
        d.apply(
            &p().app(c("search", 0).ended("Error", 137, "2026-11-20T10:02:01Z"))
                .app(c("job", 0).ended("Error", 3, "2026-11-20T10:01:00Z"))
                .status(evicted)
                .slim(),
            at("2026-11-20T10:02:05Z"),
        ),
    );
    out
}

#[test]
fn each_kind_has_its_event_name_severity_span_and_attributes() {
    let evs = other_kinds();
    let names: Vec<&str> = evs.iter().map(|e| convert::log_record(e).event_name).map(|n| &*n.leak()).collect();
    assert_eq!(
        names,
        vec![
            keys::EVENT_NAME_START_FAILURE,
            keys::EVENT_NAME_START_FAILURE_ENDED,
            keys::EVENT_NAME_FAILURE,
            keys::EVENT_NAME_EVICTION
        ]
    );
    let severities: Vec<i32> = evs.iter().map(|e| convert::log_record(e).severity_number).collect();
    assert_eq!(severities, vec![13, 9, 13, 13]);
    let spans: Vec<String> = evs.iter().map(|e| convert::span(e).name).collect();
    assert_eq!(
        spans,
        vec![keys::SPAN_NAME_START_FAILURE, keys::SPAN_NAME_START_FAILURE, keys::SPAN_NAME, keys::SPAN_NAME_EVICTION]
    );

    let start = attrs(&convert::record_attributes(&evs[0]));
    assert_eq!(start[keys::CAUSE], s("image_pull"));
    assert_eq!(start[keys::CAUSE_CATEGORY], s("configuration"));
    assert_eq!(start[keys::K8S_CONTAINER_STATUS_REASON], s("ErrImagePull"));
    assert_eq!(start[keys::STATUS_MESSAGE], s("not found"));
    assert_eq!(start[keys::START_FAILURE_ATTEMPTS], Value::IntValue(1));
    assert!(!start.contains_key(keys::PROCESS_EXIT_CODE) && !start.contains_key(keys::RESTART_COUNT));
    assert_eq!(
        convert::body(&evs[0]),
        "container search in pod shop/search-5c7d-q8x2z failed to start: ErrImagePull: not found"
    );

    let ended = attrs(&convert::record_attributes(&evs[1]));
    assert!(!ended.contains_key(keys::ERROR_TYPE), "the end of an episode is no error");
    assert_eq!(ended[keys::START_FAILURE_OUTCOME], s("started"));
    assert_eq!(ended[keys::START_FAILURE_DURATION], Value::DoubleValue(90.0));
    let span = convert::span(&evs[1]);
    assert_eq!(span.end_time_unix_nano - span.start_time_unix_nano, 90_000_000_000, "the span covers the episode");

    let failure = attrs(&convert::record_attributes(&evs[2]));
    assert_eq!(failure[keys::PROCESS_EXIT_CODE], Value::IntValue(3));
    assert_eq!(failure[keys::CAUSE], s("app_error"));
    assert_eq!(failure[keys::CAUSE_CATEGORY], s("application"));
    let res = attrs(&convert::resource_attributes(&evs[2], &MappingConfig::default()));
    assert_eq!(res[keys::K8S_CONTAINER_RESTART_COUNT], Value::IntValue(0), "the failed instance is the first");
    assert_eq!(
        convert::body(&evs[2]),
        "container job in pod shop/search-5c7d-q8x2z failed and will not be restarted: Error (exit code 3)"
    );

    let eviction = attrs(&convert::record_attributes(&evs[3]));
    assert_eq!(eviction[keys::CAUSE], s("evicted"));
    assert_eq!(eviction[keys::CAUSE_CATEGORY], s("infrastructure"));
    assert_eq!(eviction[keys::EVICTION_REASON], s("TerminationByKubelet"));
    assert!(!eviction.contains_key(keys::CONTAINER_KIND));
    let res = attrs(&convert::resource_attributes(&evs[3], &MappingConfig::default()));
    assert!(!res.contains_key(keys::K8S_CONTAINER_NAME), "an eviction is the pod's");
    assert_eq!(res[keys::SERVICE_INSTANCE_ID], s("shop.search-5c7d-q8x2z"));
    assert_eq!(
        convert::body(&evs[3]),
        "pod shop/search-5c7d-q8x2z was evicted (TerminationByKubelet): The node was low on resource: memory."
    );
    let condition_time: Timestamp = "2026-11-20T10:02:00Z".parse().unwrap();
    assert_eq!(
        convert::log_record(&evs[3]).time_unix_nano as i128,
        condition_time.as_nanosecond(),
        "the condition's time"
    );

    let ids: std::collections::HashSet<String> = evs.iter().map(Record::restart_id).collect();
    assert_eq!(ids.len(), 4, "every record has its own id");
}

#[test]
fn an_oom_kill_carries_the_memory_it_was_read_against_and_other_causes_do_not() {
    let mut ev = oom_event();
    ev.cause = Cause::OomKilled;
    ev.container.memory = restart_watcher::record::MemoryContext {
        limit_bytes: Some(33_554_432),
        limit_is_pod_level: false,
        request_bytes: Some(16_777_216),
        qos_class: Some("Burstable".into()),
    };
    let a = attrs(&convert::record_attributes(&ev));
    assert_eq!(a[keys::MEMORY_LIMIT], Value::IntValue(33_554_432));
    assert_eq!(a[keys::MEMORY_LIMIT_SOURCE], s("container"));
    assert_eq!(a[keys::MEMORY_REQUEST], Value::IntValue(16_777_216));
    assert_eq!(a[keys::POD_QOS_CLASS], s("Burstable"));
    ev.container.memory.limit_is_pod_level = true;
    assert_eq!(attrs(&convert::record_attributes(&ev))[keys::MEMORY_LIMIT_SOURCE], s("pod"));
    ev.cause = Cause::AppError;
    let a = attrs(&convert::record_attributes(&ev));
    assert!(!a.contains_key(keys::MEMORY_LIMIT) && !a.contains_key(keys::POD_QOS_CLASS), "only on OOM kills");
}

fn int_array(v: &Value) -> Vec<i64> {
    match v {
        Value::ArrayValue(a) => a
            .values
            .iter()
            .map(|x| match &x.value {
                Some(Value::IntValue(i)) => *i,
                other => panic!("not an int: {other:?}"),
            })
            .collect(),
        other => panic!("not an array: {other:?}"),
    }
}

#[test]
fn a_restart_all_is_one_pod_record_whose_containers_are_its_children_and_a_resize_says_its_limits() {
    let now: Timestamp = "2026-11-20T10:03:25Z".parse().unwrap();
    let rule = json!({"restartPolicy": "Never",
        "restartPolicyRules": [{"action": "RestartAllContainers", "exitCodes": {"operator": "In", "values": [42]}}]});
    let p = || pod(UID).named("shop", "web-0").container_spec("worker", rule.clone());
    let rac = |name: &str| {
        c(name, 1)
            .waiting("RestartingAllContainers")
            .terminated(json!({"reason": "RestartingAllContainers", "exitCode": 137}))
    };
    let mut d = Detector::default();
    assert!(d.apply(&p().app(c("worker", 0)).app(c("helper", 0)).slim(), now).is_empty());
    let fired = p()
        .app(c("worker", 0).ended("Error", 42, "2026-11-20T10:03:20Z"))
        .app(c("helper", 0))
        .status(json!({"conditions": [{"type": "AllContainersRestarting", "status": "True"}]}));
    assert!(d.apply(&fired.slim(), now).is_empty(), "nothing until the containers restart");
    let records = d.apply(&p().app(rac("worker")).app(rac("helper")).slim(), now);
    assert_eq!(records.len(), 3, "{records:#?}");
    let (pod_record, worker) = (&records[2], &records[0]);
    let a = attrs(&convert::log_record(pod_record).attributes);
    assert_eq!(convert::log_record(pod_record).event_name, keys::EVENT_NAME_POD_RESTART);
    assert_eq!(a[keys::POD_RESTART_TRIGGER], s("container"));
    assert_eq!(a[keys::POD_RESTART_TRIGGER_CONTAINER], s("worker"));
    assert_eq!(a[keys::POD_RESTART_TRIGGER_CAUSE], s("app_error"));
    assert_eq!(a[keys::CAUSE], s("restart_all"));
    assert_eq!(a[keys::CAUSE_CATEGORY], s("application"));
    assert_eq!(a[keys::PROCESS_EXIT_CODE], Value::IntValue(42));
    assert_eq!(int_array(&a[keys::POD_RESTART_RESTART_COUNTS]), vec![1, 1]);
    assert_eq!(
        convert::body(pod_record),
        "pod shop/web-0 restarted every container for container worker's exit (Error, exit code 42): worker #1, helper #1"
    );
    let child = attrs(&convert::log_record(worker).attributes);
    assert_eq!(child[keys::POD_RESTART_ID], s(&pod_record.restart_id()));
    assert_eq!(child[keys::CAUSE], s("app_error"), "the trigger keeps its own cause");
    assert_eq!(child[keys::PROCESS_EXIT_CODE], Value::IntValue(42), "and its own exit");
    let (parent_span, child_span) = (convert::span(pod_record), convert::span(worker));
    assert_eq!(child_span.parent_span_id, parent_span.span_id);
    assert_eq!(child_span.trace_id, parent_span.trace_id);
    assert!(parent_span.parent_span_id.is_empty());

    let limits = |mem: &str| json!({"limits": {"memory": mem, "cpu": "500m"}});
    let r = || pod(UID).named("shop", "web-0");
    let mut d = Detector::default();
    d.apply(&r().app(c("app", 0).field("resources", limits("64Mi"))).slim(), now);
    let resizing = json!({"conditions": [{"type": "PodResizeInProgress", "status": "True"}]});
    d.apply(&r().app(c("app", 0).field("resources", limits("64Mi"))).status(resizing).slim(), now);
    let records = d.apply(
        &r().app(c("app", 1).died("Error", 137, "2026-11-20T10:03:20Z").field("resources", limits("96Mi"))).slim(),
        now,
    );
    let a = attrs(&convert::log_record(&records[0]).attributes);
    assert_eq!(a[keys::CAUSE], s("resize"));
    assert_eq!(a[keys::CAUSE_CATEGORY], s("configuration"));
    assert_eq!(a[keys::RESIZE_MEMORY_LIMIT_BEFORE], Value::IntValue(64 << 20));
    assert_eq!(a[keys::RESIZE_MEMORY_LIMIT_AFTER], Value::IntValue(96 << 20));
    assert_eq!(a[keys::RESIZE_CPU_LIMIT_BEFORE], Value::DoubleValue(0.5));
    assert_eq!(a[keys::RESIZE_CPU_LIMIT_AFTER], Value::DoubleValue(0.5));
}

#[test]
fn an_oom_kill_that_restarted_nothing_says_how_many_and_under_which_limit() {
    let mut ev = oom_event();
    ev.kind = restart_watcher::record::RecordKind::OomKill;
    ev.terminated = None;
    ev.container.memory.limit_bytes = Some(32 << 20);
    ev.oom_kills = Some(Box::new(restart_watcher::record::OomKills { count: 2, total: 5, process: None }));
    let log = convert::log_record(&ev);
    assert_eq!(log.event_name, keys::EVENT_NAME_OOM_KILL);
    assert_eq!(log.severity_text, "ERROR");
    assert_eq!(
        convert::body(&ev),
        "container checkout in pod shop/checkout-7d9f8-x2x4q had 2 processes OOM-killed under its 32 MiB limit, and runs on"
    );
    let a = attrs(&log.attributes);
    assert_eq!(a[keys::OOM_KILL_COUNT], Value::IntValue(2));
    assert_eq!(a[keys::MEMORY_LIMIT], Value::IntValue(32 << 20));
    assert_eq!(a[keys::CAUSE], s("oom_killed"));
    assert!(!a.contains_key(keys::OOM_KILL_PROCESS));
    assert!(!a.contains_key(keys::RESTART_COUNT));
    let mut next = ev.clone();
    next.oom_kills = Some(Box::new(restart_watcher::record::OomKills { count: 1, total: 6, process: None }));
    assert_ne!(next.restart_id(), ev.restart_id(), "each rise of the counter is its own record");
    assert_eq!(convert::span(&ev).name, keys::SPAN_NAME_OOM_KILL);
}

/// The resource of a pod with `resource.opentelemetry.io/` annotations, well-known labels and an
/// image pinned by tag and digest, with and without `--service-from-labels`.
#[test]
fn annotations_labels_and_the_image_give_the_service_and_more_resource_attributes() {
    let pod = |annotations: &[(&str, &str)], image: &str| {
        let mut p = pod(UID).named("shop", "web-0").app(c("web", 1).died("Error", 1, "2026-11-20T10:00:00Z")).json();
        p["metadata"]["labels"] =
            json!({"app.kubernetes.io/name": "web-label", "app.kubernetes.io/version": "2.0-label"});
        p["metadata"]["annotations"] = annotations.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        p["status"]["containerStatuses"][0]["image"] = json!(image);
        let before: restart_watcher::pod::SlimPod = serde_json::from_value(p.clone()).unwrap();
        p["status"]["containerStatuses"][0]["restartCount"] = json!(2);
        let after: restart_watcher::pod::SlimPod = serde_json::from_value(p).unwrap();
        let mut d = Detector::default();
        let now: Timestamp = "2026-11-20T10:03:25Z".parse().unwrap();
        d.apply(&before, now);
        d.apply(&after, now).remove(0)
    };
    let resource = |ev: &Record, labels: bool| {
        let cfg = MappingConfig { service_from_labels: labels, ..Default::default() };
        attrs(&convert::resource_attributes(ev, &cfg))
    };
    let pinned = "registry.example.com/web:1.4@sha256:feed";
    let annotated = pod(
        &[
            ("resource.opentelemetry.io/service.name", "web-svc"),
            ("resource.opentelemetry.io/service.version", "1.4.0"),
            ("resource.opentelemetry.io/service.instance.id", "web-a"),
            ("resource.opentelemetry.io/deployment.environment.name", "prod"),
            ("resource.opentelemetry.io/k8s.pod.name", "not-the-pod"),
            ("other.io/ignored", "x"),
        ],
        pinned,
    );
    let (plain, by_digest) = (pod(&[], pinned), pod(&[], "registry.example.com/web@sha256:feed"));
    type Case<'a> = (&'a str, &'a Record, bool, [(&'a str, Option<&'a str>); 5]);
    let cases: Vec<Case> = vec![
        (
            "annotations win, and every other one is a resource attribute, but never over the agent's own",
            &annotated,
            true,
            [
                (keys::SERVICE_NAME, Some("web-svc")),
                (keys::SERVICE_VERSION, Some("1.4.0")),
                (keys::SERVICE_INSTANCE_ID, Some("web-a")),
                ("deployment.environment.name", Some("prod")),
                (keys::K8S_POD_NAME, Some("web-0")),
            ],
        ),
        (
            "with --service-from-labels, the well-known labels; the manifest digest is the imageID's",
            &plain,
            true,
            [
                (keys::SERVICE_NAME, Some("web-label")),
                (keys::SERVICE_VERSION, Some("2.0-label")),
                (keys::SERVICE_INSTANCE_ID, Some("shop.web-0.web")),
                ("deployment.environment.name", None),
                (keys::OCI_MANIFEST_DIGEST, Some("sha256:0123")),
            ],
        ),
        (
            "without it, the pod and the image's tag with its digest",
            &plain,
            false,
            [
                (keys::SERVICE_NAME, Some("web-0")),
                (keys::SERVICE_VERSION, Some("1.4@sha256:feed")),
                (keys::SERVICE_INSTANCE_ID, Some("shop.web-0.web")),
                ("other.io/ignored", None),
                (keys::K8S_POD_NAME, Some("web-0")),
            ],
        ),
        (
            "an image pinned by digest alone: the digest",
            &by_digest,
            false,
            [
                (keys::SERVICE_NAME, Some("web-0")),
                (keys::SERVICE_VERSION, Some("sha256:feed")),
                (keys::SERVICE_NAMESPACE, Some("shop")),
                (keys::CONTAINER_IMAGE_NAME, Some("registry.example.com/web")),
                (keys::CONTAINER_IMAGE_TAGS, None),
            ],
        ),
    ];
    for (name, ev, labels, want) in cases {
        let r = resource(ev, labels);
        for (key, value) in want {
            assert_eq!(r.get(key), value.map(s).as_ref(), "{name}: {key}");
        }
    }
}

#[test]
fn a_failed_container_says_its_current_reason_and_an_eviction_its_pods_status() {
    let records = other_kinds();
    let failure = records.iter().find(|r| r.kind.as_str() == "failure").expect("a failure");
    let a = attrs(&convert::log_record(failure).attributes);
    assert_eq!(a[keys::K8S_CONTAINER_STATUS_STATE], s("terminated"));
    assert!(a.contains_key(keys::K8S_CONTAINER_STATUS_REASON), "{a:?}");
    assert!(!a.contains_key(keys::K8S_CONTAINER_STATUS_LAST_TERMINATED_REASON), "that key is lastState's");
    let eviction = records.iter().find(|r| r.kind.as_str() == "eviction").expect("an eviction");
    let a = attrs(&convert::log_record(eviction).attributes);
    assert_eq!(a[keys::K8S_POD_STATUS_REASON], s("Evicted"));
    assert_eq!(a[keys::K8S_POD_STATUS_PHASE], s("Failed"));
}

#[test]
fn a_failing_span_carries_error_type_itself_and_no_status_description() {
    for ev in other_kinds().iter().chain([&oom_event()]) {
        let span = convert::span(ev);
        let status = span.status.clone().unwrap();
        let a = attrs(&span.attributes);
        assert!(status.message.is_empty(), "{}: the description does not repeat error.type", ev.kind);
        if ev.kind.as_str() == "start_failure_ended" {
            assert_eq!(status.code, 0, "an episode's end is no error");
            assert!(!a.contains_key(keys::ERROR_TYPE));
        } else {
            assert_eq!(status.code, 2, "{}: status Error", ev.kind);
            assert_eq!(a[keys::ERROR_TYPE], s(ev.cause.as_str()), "{}", ev.kind);
        }
    }
}
