//! Cause classification live: Events created with kubectl the way kubelet writes them, next to
//! restarts written through the status subresource, on the real API server.

#[path = "support/cluster.rs"]
mod cluster;

use std::path::Path;
use std::time::{Duration, Instant};

use cluster::{Agent, Cluster, attr, now_rfc3339, status};
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

fn seconds_ago(s: i64) -> String {
    let t = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(s);
    jiff::Timestamp::from_second(t.as_second()).unwrap().to_string()
}

#[test]
fn a_liveness_kill_is_told_apart_from_an_oom_kill_even_when_its_event_comes_late() {
    let k = Cluster::shared();
    let ns = "c-late";
    k.create_namespace(ns);
    let uid = k.create_pod(ns, "web-1", "node-a", json!({}), &["web"]);
    k.set_status(ns, "web-1", json!([status("web", 0, None)]));
    let mut agent = Agent::start(Path::new(k.admin()), &["-n", ns, "--no-checkpoint"]);
    agent.wait_ready();
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
}

#[test]
fn without_an_event_a_137_is_a_signal_after_a_bounded_wait_and_nothing_is_lost() {
    let k = Cluster::shared();
    let ns = "c-none";
    k.create_namespace(ns);
    let other_uid = k.create_pod(ns, "other-1", "node-a", json!({}), &["web"]);
    k.create_pod(ns, "web-1", "node-a", json!({}), &["web"]);
    k.set_status(ns, "web-1", json!([status("web", 0, None)]));
    let mut agent = Agent::start(Path::new(k.admin()), &["-n", ns, "--no-checkpoint"]);
    agent.wait_ready();
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
    assert!(waited >= Duration::from_secs(2), "the record waited for a late Event ({waited:?})");
    assert!(waited < Duration::from_secs(15), "the wait is bounded ({waited:?})");
    // An unambiguous restart does not wait.
    let t = Instant::now();
    k.set_status(ns, "web-1", json!([status("web", 2, Some(("OOMKilled", 137, &now_rfc3339())))]));
    let rec = agent.wait_records(2, WAIT)[1].clone();
    assert_eq!(cause(&rec), "oom_killed");
    assert!(t.elapsed() < Duration::from_secs(2), "no wait when the status decides ({:?})", t.elapsed());
}

#[test]
fn an_eviction_event_makes_the_cause_evicted() {
    let k = Cluster::shared();
    let ns = "c-evict";
    k.create_namespace(ns);
    let uid = k.create_pod(ns, "web-1", "node-a", json!({}), &["web"]);
    k.set_status(ns, "web-1", json!([status("web", 0, None)]));
    let mut agent = Agent::start(Path::new(k.admin()), &["-n", ns, "--no-checkpoint"]);
    agent.wait_ready();
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

#[test]
fn without_rbac_for_events_causes_come_from_the_status_and_the_agent_says_so_once() {
    let k = Cluster::shared();
    let ns = "c-norbac";
    k.create_namespace(ns);
    k.kubectl(&["-n", ns, "create", "role", "pods-only", "--verb=get,list,watch", "--resource=pods"]);
    k.kubectl(&["-n", ns, "create", "rolebinding", "pods-only", "--role=pods-only", "--user=podreader"]);
    k.create_pod(ns, "web-1", "node-a", json!({}), &["web"]);
    k.set_status(ns, "web-1", json!([status("web", 0, None)]));
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

/// Creates an object from JSON and returns its uid.
fn create(k: &Cluster, obj: serde_json::Value) -> String {
    let out = k.kubectl_stdin(&["create", "-o", "jsonpath={.metadata.uid}", "-f", "-"], Some(&obj.to_string()));
    out.trim().to_owned()
}

fn pod_owned_by(
    k: &Cluster,
    ns: &str,
    name: &str,
    kind: &str,
    owner: &str,
    owner_uid: &str,
    labels: serde_json::Value,
) -> String {
    let api = if kind == "Job" { "batch/v1" } else { "apps/v1" };
    create(
        k,
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels,
            "ownerReferences": [{"apiVersion": api, "kind": kind, "name": owner, "uid": owner_uid, "controller": true}]},
        "spec": {"nodeName": "node-a", "restartPolicy": if kind == "Job" { "OnFailure" } else { "Always" },
                 "containers": [{"name": "app", "image": "registry.example.com/app:1.0"}]}}),
    )
}

#[test]
fn deployments_and_cronjobs_are_named_with_their_uids_through_replicasets_and_jobs() {
    let k = Cluster::shared();
    let ns = "c-owners";
    k.create_namespace(ns);
    let template =
        json!({"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [{"name": "app", "image": "x"}]}});
    let dep_uid = create(
        k,
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "shop-api", "namespace": ns},
        "spec": {"selector": {"matchLabels": {"app": "api"}}, "template": template}}),
    );
    let rs_uid = create(
        k,
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "shop-api-7c9d8", "namespace": ns,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop-api", "uid": dep_uid, "controller": true}]},
        "spec": {"selector": {"matchLabels": {"app": "api"}}, "template": template}}),
    );
    let job_template = json!({"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "app", "image": "x"}]}});
    let cj_uid = create(
        k,
        json!({"apiVersion": "batch/v1beta1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": ns},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": job_template}}}}),
    );
    let job_uid = create(
        k,
        json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "nightly-29000000", "namespace": ns,
            "ownerReferences": [{"apiVersion": "batch/v1beta1", "kind": "CronJob", "name": "nightly", "uid": cj_uid, "controller": true}]},
        "spec": {"template": job_template}}),
    );
    pod_owned_by(
        k,
        ns,
        "shop-api-7c9d8-x1",
        "ReplicaSet",
        "shop-api-7c9d8",
        &rs_uid,
        json!({"app": "api", "pod-template-hash": "7c9d8"}),
    );
    pod_owned_by(k, ns, "nightly-29000000-q2", "Job", "nightly-29000000", &job_uid, json!({}));
    for p in ["shop-api-7c9d8-x1", "nightly-29000000-q2"] {
        k.set_status(ns, p, json!([status("app", 0, None)]));
    }
    let mut agent = Agent::start(Path::new(k.admin()), &["-n", ns, "--no-checkpoint"]);
    agent.wait_ready();
    std::thread::sleep(Duration::from_secs(1));
    for p in ["shop-api-7c9d8-x1", "nightly-29000000-q2"] {
        k.set_status(ns, p, json!([status("app", 1, Some(("Error", 1, &now_rfc3339())))]));
    }
    agent.wait_records(2, WAIT);
    let by_pod = |pod: &str| {
        agent.records.iter().find(|r| attr(&r["resource"]["attributes"], "k8s.pod.name") == pod).unwrap()["resource"]["attributes"].clone()
    };
    let dep = by_pod("shop-api-7c9d8-x1");
    assert_eq!(attr(&dep, "k8s.deployment.name"), "shop-api");
    assert_eq!(attr(&dep, "k8s.deployment.uid"), dep_uid.as_str());
    assert_eq!(attr(&dep, "k8s.replicaset.uid"), rs_uid.as_str());
    assert_eq!(attr(&dep, "service.name"), "shop-api");
    let cj = by_pod("nightly-29000000-q2");
    assert_eq!(attr(&cj, "k8s.cronjob.name"), "nightly");
    assert_eq!(attr(&cj, "k8s.cronjob.uid"), cj_uid.as_str());
    assert_eq!(attr(&cj, "k8s.job.name"), "nightly-29000000");
    assert_eq!(attr(&cj, "service.name"), "nightly", "cronjob before job in the service.name order");
}

#[test]
fn without_rbac_for_replicasets_the_deployment_is_named_by_the_naming_rule() {
    let k = Cluster::shared();
    let ns = "c-owners-norbac";
    k.create_namespace(ns);
    k.kubectl(&["-n", ns, "create", "role", "pods-events", "--verb=get,list,watch", "--resource=pods,events"]);
    k.kubectl(&["-n", ns, "create", "rolebinding", "pods-events", "--role=pods-events", "--user=podreader"]);
    pod_owned_by(
        k,
        ns,
        "web-5d4c8b7a9-h8",
        "ReplicaSet",
        "web-5d4c8b7a9",
        "00000000-0000-0000-0000-00000000abcd",
        json!({"pod-template-hash": "5d4c8b7a9"}),
    );
    k.set_status(ns, "web-5d4c8b7a9-h8", json!([status("app", 0, None)]));
    let mut agent = Agent::start(Path::new(k.var("PODREADER_KUBECONFIG")), &["-n", ns, "--no-checkpoint"]);
    agent.wait_ready();
    k.set_status(ns, "web-5d4c8b7a9-h8", json!([status("app", 1, Some(("Error", 1, &now_rfc3339())))]));
    let res = agent.wait_records(1, WAIT)[0]["resource"]["attributes"].clone();
    assert_eq!(attr(&res, "k8s.deployment.name"), "web");
    assert_eq!(attr(&res, "k8s.deployment.uid"), serde_json::Value::Null);
    let logs = agent.logs_text();
    assert_eq!(logs.matches("No RBAC access to replicasets.apps or jobs.batch").count(), 1, "{logs}");
}

#[test]
fn storm_control_turns_a_crash_loop_of_many_pods_into_one_record_per_window() {
    let k = Cluster::shared();
    let ns = "c-storm";
    k.create_namespace(ns);
    let pods: Vec<String> = (1..=5).map(|i| format!("api-7c9d8-{i}")).collect();
    for p in &pods {
        pod_owned_by(
            k,
            ns,
            p,
            "ReplicaSet",
            "api-7c9d8",
            "00000000-0000-0000-0000-0000000000aa",
            json!({"pod-template-hash": "7c9d8"}),
        );
        k.set_status(ns, p, json!([status("app", 0, None)]));
    }
    let mut agent = Agent::start(Path::new(k.admin()), &["-n", ns, "--no-checkpoint", "--storm-window", "4s"]);
    agent.wait_ready();
    for p in &pods {
        k.set_status(ns, p, json!([status("app", 1, Some(("Error", 1, &now_rfc3339())))]));
    }
    let first = agent.wait_records(1, WAIT)[0].clone();
    assert_eq!(
        attr(&first["attributes"], "restart_watcher.restarts.coalesced"),
        serde_json::Value::Null,
        "the first at once"
    );
    agent.wait_records(2, WAIT);
    let all = agent.settle(Duration::from_secs(2)).to_vec();
    assert_eq!(all.len(), 2, "one record for the rest of the storm");
    assert_eq!(attr(&all[1]["attributes"], "restart_watcher.restarts.coalesced"), 4);
    assert_eq!(agent.terminate(), Some(0), "held records are accounted for: nothing undelivered");
}
