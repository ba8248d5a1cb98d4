//! The requests the agent sends, as the v1.35 API server received them: its audit log records the
//! URI of every list and watch, and this test holds each mode's set of request shapes against the
//! one `docs/operations.md` ("Cost to the control plane") documents.
//!
//! A shape is a request's path and query with resource versions other than `0` written `<rv>`:
//! `GET /api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a&resourceVersion=0&...`.

use restart_watcher_test_support::cluster;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cluster::{Agent, Cluster};
use serde_json::{Value, json};

/// The audit policy: one event per request stage, with its URI, verb and user agent.
const AUDIT_POLICY: &str =
    "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n";

struct Audited {
    cluster: Cluster,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// A cluster (watch cache on, as in production) whose API server writes an audit log.
fn audited_cluster() -> Audited {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("audit-policy.yaml");
    std::fs::write(&policy, AUDIT_POLICY).unwrap();
    let log = dir.path().join("audit.log");
    let policy_flag = format!("--audit-policy-file={}", policy.display());
    let log_flag = format!("--audit-log-path={}", log.display());
    let cluster = Cluster::start(&[&policy_flag, &log_flag]);
    Audited { cluster, log, _dir: dir }
}

/// The distinct shapes of the list, watch and get requests the agent (its User-Agent) sent, read from
/// the audit log from byte `from`.
fn agent_requests(log: &Path, from: usize) -> BTreeSet<String> {
    let text = std::fs::read_to_string(log).unwrap();
    text[from..]
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["userAgent"].as_str().is_some_and(|ua| ua.starts_with("restart-watcher/")))
        .filter(|e| matches!(e["verb"].as_str(), Some("list" | "watch" | "get")))
        .map(|e| shape(e["requestURI"].as_str().unwrap()))
        .collect()
}

/// `uri` with its query parameters sorted and every resource version but `0` written `<rv>`.
fn shape(uri: &str) -> String {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let mut params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some(("resourceVersion", v)) if v != "0" => "resourceVersion=<rv>".to_owned(),
            Some(("fieldSelector", v)) if v.starts_with("involvedObject.uid%3D") => {
                "fieldSelector=involvedObject.uid%3D<uid>".to_owned()
            }
            _ => p.to_owned(),
        })
        .collect();
    params.sort();
    if params.is_empty() { path.to_owned() } else { format!("{path}?{}", params.join("&")) }
}

/// Runs the agent with `args` until every watch it opens has started (its pods listed, an Event
/// and an owner seen, in a new namespace `ns`), then stops it; returns the shapes it sent.
fn requests_of_a_run(a: &Audited, ns: &str, args: &[&str]) -> BTreeSet<String> {
    let k = &a.cluster;
    k.create_namespace(ns);
    let from = std::fs::metadata(&a.log).map(|m| m.len() as usize).unwrap_or(0);
    let mut agent = Agent::start(Path::new(k.admin()), args);
    agent.wait_ready();
    // A restart killed by a signal (its cause open: its Events are read) of a ReplicaSet's pod.
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"nodeName": "node-a", "containers": [{"name": "web", "image": "registry.example.com/web:1.0"}]}}}});
    k.kubectl_stdin(&["apply", "-f", "-"], Some(&rs.to_string()));
    let pod = k.wait_pods_running(ns, "app=web", 1).remove(0);
    k.crash(ns, &pod, "web", "Error", 137);
    let records = agent.wait_records(1, Duration::from_secs(60)).to_vec();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(agent.terminate(), Some(0), "logs:\n{}", agent.logs_text());
    // The audit log is written as requests complete; wait for the last watches to end.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut shapes = agent_requests(&a.log, from);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        let again = agent_requests(&a.log, from);
        if again == shapes {
            break;
        }
        shapes = again;
    }
    shapes
}

fn set(shapes: &[&str]) -> BTreeSet<String> {
    shapes.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn every_list_and_watch_request_has_the_documented_shape_in_both_modes() {
    let a = audited_cluster();

    // Node mode (the DaemonSet): the node's pods from the watch cache, at resourceVersion 0 and in
    // one response (kube-core drops resourceVersion=0 from a list with a limit).
    let node =
        requests_of_a_run(&a, "shape-node", &["--node-name", "node-a", "--list-jitter", "0s", "--no-checkpoint"]);
    let want_node = set(&[
        // Preflight: may the agent list pods (one, from the node index)?
        "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a&limit=1&resourceVersion=0&resourceVersionMatch=NotOlderThan",
        // The kubelet's list: the node's pods from the watch cache, then a watch from there.
        "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a&resourceVersion=0&resourceVersionMatch=NotOlderThan",
        "/api/v1/pods?allowWatchBookmarks=true&fieldSelector=spec.nodeName%3Dnode-a&resourceVersion=<rv>&timeoutSeconds=290&watch=true",
        // The Events of the pod that failed with its cause open, from the watch cache (twice: when the
        // record came, and before its wait for a late Event ended), and this node's own Events.
        "/api/v1/namespaces/shape-node/events?fieldSelector=involvedObject.uid%3D<uid>&resourceVersion=0&resourceVersionMatch=NotOlderThan",
        "/api/v1/namespaces/default/events?fieldSelector=involvedObject.kind%3DNode%2CinvolvedObject.name%3Dnode-a&limit=1",
        "/api/v1/namespaces/default/events?allowWatchBookmarks=true&fieldSelector=involvedObject.kind%3DNode%2CinvolvedObject.name%3Dnode-a&resourceVersion=0&resourceVersionMatch=NotOlderThan&sendInitialEvents=true&timeoutSeconds=290&watch=true",
        // Its own Node's metadata, for k8s.node.uid.
        "/api/v1/nodes?fieldSelector=metadata.name%3Dnode-a&limit=1",
        "/api/v1/nodes?allowWatchBookmarks=true&fieldSelector=metadata.name%3Dnode-a&resourceVersion=0&resourceVersionMatch=NotOlderThan&sendInitialEvents=true&timeoutSeconds=290&watch=true",
        // The failing pod's ReplicaSet's metadata, by name, from the watch cache.
        "/apis/apps/v1/namespaces/shape-node/replicasets/web?resourceVersion=0",
        // The cluster's uid, once.
        "/api/v1/namespaces/kube-system",
    ]);
    assert_eq!(node, want_node, "node mode sent:\n{}", node.iter().cloned().collect::<Vec<_>>().join("\n"));

    // Cluster mode: streaming lists from the watch cache, and a one-pod preflight list.
    let cluster = requests_of_a_run(&a, "shape-cluster", &["--no-checkpoint"]);
    let want_cluster = set(&[
        // Preflights: one object each, from etcd (a quorum read of one key).
        "/api/v1/pods?limit=1",
        "/api/v1/events?limit=1",
        "/api/v1/namespaces/default/events?fieldSelector=involvedObject.kind%3DNode&limit=1",
        "/apis/apps/v1/replicasets?limit=1",
        "/apis/batch/v1/jobs?limit=1",
        "/api/v1/nodes?limit=1",
        // Every watch starts with a streaming list from the watch cache.
        "/api/v1/pods?allowWatchBookmarks=true&resourceVersion=0&resourceVersionMatch=NotOlderThan&sendInitialEvents=true&timeoutSeconds=290&watch=true",
        "/api/v1/events?allowWatchBookmarks=true&fieldSelector=involvedObject.kind%3DPod&resourceVersion=0&resourceVersionMatch=NotOlderThan&sendInitialEvents=true&timeoutSeconds=290&watch=true",
        "/api/v1/namespaces/default/events?allowWatchBookmarks=true&fieldSelector=involvedObject.kind%3DNode&resourceVersion=0&resourceVersionMatch=NotOlderThan&sendInitialEvents=true&timeoutSeconds=290&watch=true",
        "/apis/apps/v1/replicasets?allowWatchBookmarks=true&resourceVersion=0&resourceVersionMatch=NotOlderThan&sendInitialEvents=true&timeoutSeconds=290&watch=true",
        "/apis/batch/v1/jobs?allowWatchBookmarks=true&resourceVersion=0&resourceVersionMatch=NotOlderThan&sendInitialEvents=true&timeoutSeconds=290&watch=true",
        "/api/v1/nodes?allowWatchBookmarks=true&resourceVersion=0&resourceVersionMatch=NotOlderThan&sendInitialEvents=true&timeoutSeconds=290&watch=true",
        // The cluster's uid, once.
        "/api/v1/namespaces/kube-system",
    ]);
    assert_eq!(cluster, want_cluster, "cluster mode sent:\n{}", cluster.iter().cloned().collect::<Vec<_>>().join("\n"));

    // The forced strategies: a paginated list is pages of 500 without a resourceVersion (a quorum
    // read), never the list at resourceVersion 0 that node mode makes.
    let paginated = requests_of_a_run(&a, "shape-paginated", &["--no-checkpoint", "--list-strategy", "paginated"]);
    let pods: BTreeSet<String> = paginated.into_iter().filter(|s| s.starts_with("/api/v1/pods?")).collect();
    let want_paginated = set(&[
        "/api/v1/pods?limit=1",
        "/api/v1/pods?limit=500",
        "/api/v1/pods?allowWatchBookmarks=true&resourceVersion=<rv>&timeoutSeconds=290&watch=true",
    ]);
    assert_eq!(pods, want_paginated);
    let node_cache = requests_of_a_run(
        &a,
        "shape-node-cache",
        &[
            "--node-name",
            "node-a",
            "--list-jitter",
            "0s",
            "--checkpoint-namespace",
            "default",
            "--list-strategy",
            "watch-cache",
        ],
    );
    let pods: BTreeSet<String> = node_cache.into_iter().filter(|s| s.starts_with("/api/v1/pods?")).collect();
    let node_pods: BTreeSet<String> = want_node.into_iter().filter(|s| s.starts_with("/api/v1/pods?")).collect();
    assert_eq!(pods, node_pods, "watch-cache in node mode is auto's list");
}
