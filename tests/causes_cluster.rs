//! Cause classification live: Events created with kubectl the way kubelet writes them, next to
//! restarts written through the status subresource, on the real API server.

use restart_watcher_test_support::cluster;

use std::path::Path;
use std::time::{Duration, Instant};

use cluster::{Agent, Cluster, attr, now_rfc3339, series, status};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// The container an Event is about.
struct About<'a> {
    ns: &'a str,
    pod: &'a str,
    uid: &'a str,
    container: &'a str,
}

/// Writes an Event about a pod's container as kubelet does.
fn kubelet_event(k: &Cluster, about: About<'_>, reason: &str, message: &str, at: &str) {
    let About { ns, pod, uid, container } = about;
    let name =
        format!("{pod}.{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    let ev = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {"kind": "Pod", "apiVersion": "v1", "namespace": ns, "name": pod, "uid": uid,
                           "fieldPath": format!("spec.containers{{{container}}}")},
        "reason": reason, "message": message, "type": "Warning", "count": 1,
        "source": {"component": "kubelet", "host": "node-a"},
        "firstTimestamp": at, "lastTimestamp": at,
        "reportingComponent": "kubelet", "reportingInstance": "node-a"
    });
    k.kubectl_stdin(&["create", "-f", "-"], Some(&ev.to_string()));
}

fn cause(rec: &serde_json::Value) -> String {
    attr(&rec["attributes"], "restart_watcher.cause").as_str().unwrap_or("").to_owned()
}

/// Each scenario runs in both modes: cluster mode watches the Events, node mode (the agent of
/// node-a) looks up those of the pod that failed. The causes must be the same.
const MODES: [(&str, &[&str]); 2] = [("", &[]), ("-node", &["--node-name", "node-a", "--list-jitter", "0s"])];

/// The agent of a scenario's namespace in a mode.
fn agent(k: &Cluster, ns: &str, mode: &[&str]) -> Agent {
    let mut args = vec!["-n", ns, "--no-checkpoint"];
    args.extend_from_slice(mode);
    let mut agent = Agent::start(Path::new(k.admin()), &args);
    agent.wait_ready();
    agent
}

fn seconds_ago(s: i64) -> String {
    let t = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(s);
    jiff::Timestamp::from_second(t.as_second()).unwrap().to_string()
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_liveness_kill_is_told_apart_from_an_oom_kill_even_when_its_event_comes_late() {
    for (suffix, mode) in MODES {
        liveness_kill_with_a_late_event(&format!("c-late{suffix}"), mode);
    }
}

fn liveness_kill_with_a_late_event(ns: &str, mode: &[&str]) {
    let k = Cluster::shared();
    k.create_namespace(ns);
    let uid = k.create_pod(ns, "web-1", "node-a", json!({}), &["web"]);
    k.set_status(ns, "web-1", json!([status("web", 0, None)]));
    let mut agent = agent(k, ns, mode);
    let finished = now_rfc3339();
    k.set_status(ns, "web-1", json!([status("web", 1, Some(("Error", 137, &finished)))]));
    // The Event arrives a second after the status update.
    std::thread::sleep(Duration::from_secs(1));
    kubelet_event(
        k,
        About { ns, pod: "web-1", uid: &uid, container: "web" },
        "Killing",
        "Container web failed liveness probe, will be restarted",
        &seconds_ago(3),
    );
    let rec = agent.wait_records(1, WAIT)[0].clone();
    assert_eq!(cause(&rec), "liveness_probe");
    assert_eq!(attr(&rec["attributes"], "error.type"), "liveness_probe");
    assert_eq!(attr(&rec["attributes"], "process.exit.code"), 137);
    // The metric counts it under the record's cause, not the status's alone (a signal).
    let admin = agent.admin_addr();
    let counted = |cause: &str| series(&admin, "restart_watcher_restarts_detected_total", &[("cause", cause)]);
    assert_eq!(counted("liveness_probe").as_deref(), Some("1"));
    assert_ne!(counted("signal").as_deref(), Some("1"));
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn without_an_event_a_137_is_a_signal_after_a_bounded_wait_and_nothing_is_lost() {
    for (suffix, mode) in MODES {
        a_137_without_an_event(&format!("c-none{suffix}"), mode);
    }
}

fn a_137_without_an_event(ns: &str, mode: &[&str]) {
    let k = Cluster::shared();
    k.create_namespace(ns);
    let other_uid = k.create_pod(ns, "other-1", "node-a", json!({}), &["web"]);
    k.create_pod(ns, "web-1", "node-a", json!({}), &["web"]);
    k.set_status(ns, "web-1", json!([status("web", 0, None)]));
    let mut agent = agent(k, ns, mode);
    // An Event for another pod must not explain this one.
    kubelet_event(
        k,
        About { ns, pod: "other-1", uid: &other_uid, container: "web" },
        "Killing",
        "Container web failed liveness probe, will be restarted",
        &seconds_ago(2),
    );
    let t = Instant::now();
    k.set_status(ns, "web-1", json!([status("web", 1, Some(("Error", 137, &now_rfc3339())))]));
    let rec = agent.wait_records(1, WAIT)[0].clone();
    let waited = t.elapsed();
    assert_eq!(cause(&rec), "signal");
    // It waited for a late Event (EVENT_WAIT; a second of slack for the agent's own clock reads).
    let wait = restart_watcher::enrich::EVENT_WAIT - Duration::from_secs(1);
    assert!(waited >= wait, "the record waited for a late Event ({waited:?})");
    // An unambiguous restart is classified from its status alone.
    k.set_status(ns, "web-1", json!([status("web", 2, Some(("OOMKilled", 137, &now_rfc3339())))]));
    let rec = agent.wait_records(2, WAIT)[1].clone();
    assert_eq!(cause(&rec), "oom_killed");
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn an_eviction_event_makes_the_cause_evicted() {
    for (suffix, mode) in MODES {
        an_eviction_event(&format!("c-evict{suffix}"), mode);
    }
}

fn an_eviction_event(ns: &str, mode: &[&str]) {
    let k = Cluster::shared();
    k.create_namespace(ns);
    let uid = k.create_pod(ns, "web-1", "node-a", json!({}), &["web"]);
    k.set_status(ns, "web-1", json!([status("web", 0, None)]));
    let mut agent = agent(k, ns, mode);
    kubelet_event(
        k,
        About { ns, pod: "web-1", uid: &uid, container: "web" },
        "Evicted",
        "The node was low on resource: memory.",
        &seconds_ago(1),
    );
    std::thread::sleep(Duration::from_millis(500));
    k.set_status(ns, "web-1", json!([status("web", 1, Some(("Error", 137, &now_rfc3339())))]));
    let rec = agent.wait_records(1, WAIT)[0].clone();
    assert_eq!(cause(&rec), "evicted");
}

/// A namespace whose pods alone the `podreader` user may read, with one running pod `web-1`.
fn pods_only(k: &Cluster, ns: &str) {
    k.create_namespace(ns);
    k.kubectl(&["-n", ns, "create", "role", "pods-only", "--verb=get,list,watch", "--resource=pods"]);
    k.kubectl(&["-n", ns, "create", "rolebinding", "pods-only", "--role=pods-only", "--user=podreader"]);
    k.create_pod(ns, "web-1", "node-a", json!({}), &["web"]);
    k.set_status(ns, "web-1", json!([status("web", 0, None)]));
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn without_rbac_for_events_causes_come_from_the_status_and_the_agent_says_so_once() {
    let k = Cluster::shared();
    let ns = "c-norbac";
    pods_only(k, ns);
    let mut agent = Agent::start(Path::new(k.var("PODREADER_KUBECONFIG")), &["-n", ns, "--no-checkpoint"]);
    agent.wait_ready();
    k.set_status(ns, "web-1", json!([status("web", 1, Some(("OOMKilled", 137, &now_rfc3339())))]));
    let rec = agent.wait_records(1, WAIT)[0].clone();
    assert_eq!(cause(&rec), "oom_killed");
    let logs = agent.logs_text();
    assert_eq!(logs.matches("No RBAC access to events").count(), 1, "{logs}");
    assert!(
        logs.contains("verbs [list,watch] on resource \\\"events\\\"")
            || logs.contains("verbs [list,watch] on resource \"events\""),
        "{logs}"
    );
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn in_node_mode_without_rbac_for_events_a_137_is_a_signal_and_the_agent_says_so_once() {
    let k = Cluster::shared();
    let ns = "c-norbac-node";
    pods_only(k, ns);
    let args = ["-n", ns, "--no-checkpoint", "--node-name", "node-a", "--list-jitter", "0s"];
    let mut agent = Agent::start(Path::new(k.var("PODREADER_KUBECONFIG")), &args);
    agent.wait_ready();
    for n in 1..=2 {
        k.set_status(ns, "web-1", json!([status("web", n, Some(("Error", 137, &now_rfc3339())))]));
        let rec = agent.wait_records(n as usize, WAIT)[n as usize - 1].clone();
        assert_eq!(cause(&rec), "signal");
    }
    let logs = agent.logs_text();
    assert_eq!(logs.matches("No RBAC access to events").count(), 1, "{logs}");
}

/// Writes a Node Event as node-problem-detector's kernel monitor does for an OOM kill.
fn node_oom_event(k: &Cluster, node: &str, at: &str) {
    let name =
        format!("{node}.{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    let ev = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": "default"},
        "involvedObject": {"kind": "Node", "name": node, "uid": node},
        "reason": "OOMKilling", "type": "Warning", "count": 1,
        "message": "Memory cgroup out of memory: Killed process 4242 (java) total-vm:2097152kB, anon-rss:1048576kB",
        "source": {"component": "kernel-monitor", "host": node},
        "firstTimestamp": at, "lastTimestamp": at
    });
    k.kubectl_stdin(&["create", "-f", "-"], Some(&ev.to_string()));
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_node_oom_event_explains_a_137_on_that_node_only() {
    let k = Cluster::shared();
    let ns = "c-nodeoom";
    k.create_namespace(ns);
    // A node of its own, so that no other test's restarts meet this OOM kill.
    let node = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-oom", "annotations": {"kwok.x-k8s.io/node": "fake"},
                     "labels": {"kubernetes.io/hostname": "node-oom", "type": "kwok"}}});
    k.kubectl_stdin(&["apply", "-f", "-"], Some(&node.to_string()));
    k.create_pod(ns, "java-1", "node-oom", json!({}), &["java"]);
    k.create_pod(ns, "web-1", "node-a", json!({}), &["web"]);
    k.set_status(ns, "java-1", json!([status("java", 0, None)]));
    k.set_status(ns, "web-1", json!([status("web", 0, None)]));
    let mut agent = Agent::start(Path::new(k.admin()), &["-n", ns, "--no-checkpoint"]);
    agent.wait_ready();
    node_oom_event(k, "node-oom", &seconds_ago(1));
    let finished = now_rfc3339();
    k.set_status(ns, "java-1", json!([status("java", 1, Some(("Error", 137, &finished)))]));
    k.set_status(ns, "web-1", json!([status("web", 1, Some(("Error", 137, &finished)))]));
    let recs = agent.wait_records(2, WAIT);
    let by_container = |c: &str| {
        recs.iter().find(|r| attr(&r["resource"]["attributes"], "k8s.container.name") == c).map(cause).unwrap()
    };
    assert_eq!(by_container("java"), "oom_killed", "the kernel of its node killed it");
    assert_eq!(by_container("web"), "signal", "another node's OOM kill does not explain it");
}
