//! One record of every kind, as the detector builds them from pod statuses, with the fields the
//! later stages set (catch-up, storm control, previous logs, the node's uid): what the tests of the
//! OTLP mapping walk (`tests/semconv_conformance.rs`).

use std::path::PathBuf;

use jiff::Timestamp;
use restart_watcher::detector::Detector;
use restart_watcher::record::{OomKills, Record, RecordKind};
use serde_json::json;

use crate::pods::{c, pod};

/// The kubelet's message for an image its registry does not know (the real node's).
const NOT_FOUND: &str = "rpc error: code = NotFound desc = failed to pull and unpack image \"registry.example.com/web:1.0\": failed to resolve image: registry.example.com/web:1.0: not found";

/// One record of every kind, from the detector: a restart with its workload, a start failure and
/// its end, a terminal failure, an eviction, a pod-wide restart with its children, a resize
/// restart, an OOM kill that restarted nothing, and a pod that did not start and then did.
pub fn every_kind() -> Vec<Record> {
    let at = |s: &str| -> Timestamp { s.parse().unwrap() };
    let mut out = vec![restart()];
    let mut d = Detector::default();
    let uid = "4239abf7-1206-49a7-8747-9f93b9b7d16d";
    let web = || pod(uid).named("shop", "web-0").never();
    out.extend(d.apply(
        &web().app(c("web", 0).waiting_msg("ContainerCreating", "")).app(c("job", 0)).slim(),
        at("2026-11-20T10:00:00Z"),
    ));
    out.extend(d.apply(
        &web().app(c("web", 0).waiting_msg("ErrImagePull", NOT_FOUND)).app(c("job", 0)).slim(),
        at("2026-11-20T10:00:05Z"),
    ));
    let started = web().app(c("web", 0).running_since("2026-11-20T10:01:35Z")).app(c("job", 0).ended(
        "OOMKilled",
        137,
        "2026-11-20T10:01:00Z",
    ));
    out.extend(d.apply(&started.slim(), at("2026-11-20T10:01:40Z")));
    let evicted = json!({"phase": "Failed", "reason": "Evicted", "conditions": [{"type": "DisruptionTarget", "status": "True",
        "reason": "TerminationByKubelet", "lastTransitionTime": "2026-11-20T10:02:00Z"}]});
    let gone = web().app(c("web", 0).ended("Error", 137, "2026-11-20T10:02:01Z")).app(c("job", 0).ended(
        "OOMKilled",
        137,
        "2026-11-20T10:01:00Z",
    ));
    out.extend(d.apply(&gone.status(evicted).slim(), at("2026-11-20T10:02:05Z")));

    let rule = json!({"restartPolicy": "Never",
        "restartPolicyRules": [{"action": "RestartAllContainers", "exitCodes": {"operator": "In", "values": [42]}}]});
    let limits = |mem: &str| json!({"limits": {"memory": mem, "cpu": "500m"}, "requests": {"memory": "16Mi"}});
    let api = |n: u32| {
        pod("11111111-2222-3333-4444-555555555555")
            .named("shop", "api-0")
            .container_spec("worker", rule.clone())
            .app(c("api", n).field("resources", limits("64Mi")))
    };
    let mut d = Detector::default();
    d.apply(&api(0).app(c("worker", 0)).slim(), at("2026-11-20T10:00:00Z"));
    let fired = api(0).app(c("worker", 0).ended("Error", 42, "2026-11-20T10:03:00Z"));
    d.apply(
        &fired.status(json!({"conditions": [{"type": "AllContainersRestarting", "status": "True"}]})).slim(),
        at("2026-11-20T10:03:01Z"),
    );
    let rac = |name: &str| {
        c(name, 1)
            .waiting("RestartingAllContainers")
            .terminated(json!({"reason": "RestartingAllContainers", "exitCode": 137}))
    };
    let restarted =
        pod("11111111-2222-3333-4444-555555555555").named("shop", "api-0").container_spec("worker", rule.clone());
    out.extend(d.apply(
        &restarted.app(rac("api").field("resources", limits("64Mi"))).app(rac("worker")).slim(),
        at("2026-11-20T10:03:02Z"),
    ));

    let mut d = Detector::default();
    let db = |n: u32, mem: &str| {
        pod("99999999-2222-3333-4444-555555555555")
            .named("shop", "db-0")
            .app(c("db", n).field("resources", limits(mem)))
    };
    d.apply(&db(0, "64Mi").slim(), at("2026-11-20T10:00:00Z"));
    d.apply(
        &db(0, "64Mi").status(json!({"conditions": [{"type": "PodResizeInProgress", "status": "True"}]})).slim(),
        at("2026-11-20T10:04:00Z"),
    );
    let resized = pod("99999999-2222-3333-4444-555555555555")
        .named("shop", "db-0")
        .app(c("db", 1).died("Error", 137, "2026-11-20T10:04:01Z").field("resources", limits("96Mi")));
    out.extend(d.apply(&resized.slim(), at("2026-11-20T10:04:02Z")));

    let mut oom = out
        .iter()
        .find(|r| r.kind == RecordKind::Restart && r.container.name == "db")
        .cloned()
        .expect("the resize restart");
    oom.kind = RecordKind::OomKill;
    oom.terminated = None;
    oom.cause = restart_watcher::record::Cause::OomKilled;
    oom.resize = None;
    oom.oom_kills = Some(Box::new(OomKills { count: 1, total: 1, process: Some("exe".into()) }));
    out.push(oom);
    out.extend(pod_start_failure());
    out.extend(rollout_regression());
    // Enrichment's own: the node's uid.
    for r in &mut out {
        r.pod.node_uid = Some("1eb3a0c6-0477-4080-a9cb-0cb7db65c6a2".into());
    }
    out
}

/// A pod no node fits, reported past the pending threshold, and its end when it started.
fn pod_start_failure() -> Vec<Record> {
    let at = |s: &str| -> Timestamp { s.parse().unwrap() };
    let uid = "77777777-2222-3333-4444-555555555555";
    let waiting = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
        "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient memory."}]});
    let big = || pod(uid).named("shop", "big-0").meta(json!({"creationTimestamp": "2026-11-20T10:00:00Z"}));
    let mut d = Detector::with(&restart_watcher::detector::Detection {
        pending_threshold: std::time::Duration::from_secs(300),
        ..Default::default()
    });
    let mut out = d.apply(&big().status(waiting).slim(), at("2026-11-20T10:00:01Z"));
    out.extend(d.tick(at("2026-11-20T10:05:00Z")));
    out.extend(
        d.apply(&big().app(c("big", 0).running_since("2026-11-20T10:07:00Z")).slim(), at("2026-11-20T10:07:01Z")),
    );
    out
}

/// A Deployment rolled out from revision `5c5b6` to `7d9f8`, whose new pod fails three times:
/// its restarts, and the regression.
fn rollout_regression() -> Vec<Record> {
    let at = |s: &str| -> Timestamp { s.parse().unwrap() };
    let web = |i: u32, hash: &str, created: &str| {
        pod(&format!("88888888-2222-3333-4444-{i:012}")).named("shop", &format!("web-{hash}-{i}")).meta(json!({
            "creationTimestamp": created, "labels": {"pod-template-hash": hash},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("web-{hash}"),
                "uid": format!("rs-{hash}"), "controller": true}]}))
    };
    let mut d = Detector::default();
    let now = at("2026-11-20T10:10:00Z");
    d.apply(&web(1, "5c5b6", "2026-11-20T09:00:00Z").app(c("web", 0)).slim(), now);
    let new = || web(2, "7d9f8", "2026-11-20T10:00:00Z");
    d.apply(&new().status(json!({"phase": "Pending"})).app(c("web", 0).waiting("ContainerCreating")).slim(), now);
    let mut out = Vec::new();
    for n in 1..=3 {
        out.extend(d.apply(&new().app(c("web", n).died("Error", 1, &format!("2026-11-20T10:0{n}:00Z"))).slim(), now));
    }
    out.retain(|r| r.kind == RecordKind::RolloutRegression);
    out
}

/// A restart with every optional attribute a restart record can carry: a ReplicaSet owner, three
/// restarts in one observation, a termination by signal with its message, the back-off, and what
/// catch-up, storm control and previous logs add.
fn restart() -> Record {
    let at = |s: &str| -> Timestamp { s.parse().unwrap() };
    let uid = "22222222-2222-3333-4444-555555555555";
    let mut p = pod(uid).named("shop", "checkout-7d9f8-x2x4q").app(c("checkout", 1)).json();
    p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "checkout-7d9f8",
        "uid": "rs-uid", "controller": true}]);
    p["metadata"]["labels"] = json!({"pod-template-hash": "7d9f8", "team": "payments"});
    let mut d = Detector::default();
    d.apply(&serde_json::from_value(p.clone()).unwrap(), at("2026-11-20T10:00:00Z"));
    let status = &mut p["status"]["containerStatuses"][0];
    status["restartCount"] = json!(4);
    status["state"] = json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container=checkout"}});
    status["lastState"] = json!({"terminated": {"reason": "Error", "exitCode": 143, "signal": 15, "message": "shutting down",
        "startedAt": "2026-11-20T10:00:00Z", "finishedAt": "2026-11-20T10:03:20Z", "containerID": "containerd://abc123"}});
    let mut ev = d.apply(&serde_json::from_value(p).unwrap(), at("2026-11-20T10:03:25Z")).remove(0);
    ev.detected_late = true;
    // The owner index's: the revision the ReplicaSet is of its Deployment.
    ev.pod.owners.revision = Some("3".into());
    ev.coalesced = Some(3);
    ev.previous_logs = Some("connection refused: db:5432\n".into());
    ev
}

/// The source of the `opentelemetry-semantic-conventions` crate as cargo unpacked it: the version `Cargo.lock` pins, under the registry of
/// `$CARGO_HOME` (`~/.cargo`).
pub fn semconv_crate_dir() -> PathBuf {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock")).expect("Cargo.lock");
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"opentelemetry-semantic-conventions\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map(|v| v.trim_end_matches('"').to_owned())
        .expect("opentelemetry-semantic-conventions in Cargo.lock");
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cargo"));
    let name = format!("opentelemetry-semantic-conventions-{version}");
    std::fs::read_dir(home.join("registry/src"))
        .expect("cargo's registry sources")
        .flatten()
        .map(|index| index.path().join(&name))
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| panic!("{name} under {}", home.display()))
}
