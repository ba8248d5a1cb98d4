//! End-to-end scenarios that only a real control plane shows: pods created by the real Deployment,
//! ReplicaSet, Job, CronJob and StatefulSet controllers and started by kwok's simulated kubelets
//! (tests/support/cluster.sh, Kubernetes v1.35). The test plays the kubelet only for crashes
//! (`Cluster::crash`). Each scenario asserts the exact records, nothing more. The owners' scenarios
//! run an agent of each mode side by side: node mode looks up what cluster mode watches.

use restart_watcher_test_support::cluster;

use std::path::Path;
use std::time::Duration;

use cluster::{Agent, Cluster, attr, summaries};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
/// How long a scenario listens for records that must not come.
const QUIET: Duration = Duration::from_secs(3);

fn apply(k: &Cluster, obj: Value) {
    k.kubectl_stdin(&["apply", "-f", "-"], Some(&obj.to_string()));
}

fn uid_of(k: &Cluster, ns: &str, kind: &str, name: &str) -> String {
    k.kubectl(&["-n", ns, "get", kind, name, "-o", "jsonpath={.metadata.uid}"])
}

fn deployment(ns: &str, name: &str, replicas: u32, image_tag: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": format!("registry.example.com/{name}:{image_tag}")}]}}}})
}

/// (pod, container, restart count, missed, detected late) of a record.
fn s(pod: &str, c: &str, n: i64) -> (String, String, i64, i64, bool) {
    (pod.to_owned(), c.to_owned(), n, 0, false)
}

fn res(rec: &Value) -> &Value {
    &rec["resource"]["attributes"]
}

/// Two agents of `ns`, both ready: one in cluster mode (watching the Events and owners), one in
/// node mode for `pod`'s node (looking up those of its failing pods). Owners and causes must be the
/// same.
fn agents_of_both_modes(k: &Cluster, ns: &str, pod: &str) -> [Agent; 2] {
    let node = k.get_pod(ns, pod)["spec"]["nodeName"].as_str().expect("a scheduled pod").to_owned();
    let mut cluster = Agent::start(Path::new(k.admin()), &["-n", ns, "--no-checkpoint"]);
    let node_args = ["-n", ns, "--no-checkpoint", "--node-name", &node, "--list-jitter", "0s"];
    let mut node = Agent::start(Path::new(k.admin()), &node_args);
    cluster.wait_ready();
    node.wait_ready();
    [cluster, node]
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_deployment_rollout_and_a_scale_down_to_zero_make_no_record() {
    let k = Cluster::shared();
    let ns = "s-rollout";
    k.create_namespace(ns);
    apply(k, deployment(ns, "web", 2, "1.0"));
    let before = k.wait_pods_running(ns, "app=web", 2);
    let mut agent = Agent::start(Path::new(k.admin()), &["-n", ns, "--no-checkpoint"]);
    agent.wait_ready();

    k.kubectl(&["-n", ns, "set", "image", "deployment/web", "app=registry.example.com/web:2.0"]);
    k.kubectl(&["-n", ns, "rollout", "status", "deployment/web", "--timeout=60s"]);
    let after = k.wait_pods_running(ns, "app=web", 2);
    assert!(after.iter().all(|p| !before.contains(p)), "the rollout replaced every pod: {before:?} -> {after:?}");
    let replicasets = k.kubectl(&["-n", ns, "get", "rs", "-o", "jsonpath={.items[*].metadata.name}"]);
    assert_eq!(replicasets.split_whitespace().count(), 2, "a new ReplicaSet next to the old one");

    k.kubectl(&["-n", ns, "scale", "deployment/web", "--replicas=0"]);
    k.wait_for("no pods left", || k.pods(ns, "app=web").is_empty());
    assert_eq!(summaries(agent.settle(QUIET)), vec![], "rollouts and scale-downs are not restarts");
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_crash_looping_deployment_is_reported_per_restart_with_the_controllers_owner_uids() {
    let k = Cluster::shared();
    let ns = "s-crashloop";
    k.create_namespace(ns);
    apply(k, deployment(ns, "api", 1, "1.0"));
    let pod = k.wait_pods_running(ns, "app=api", 1).remove(0);
    let mut agents = agents_of_both_modes(k, ns, &pod);
    for _ in 0..3 {
        k.crash(ns, &pod, "app", "Error", 1);
    }
    let dep_uid = uid_of(k, ns, "deployment", "api");
    let hash = k.get_pod(ns, &pod)["metadata"]["labels"]["pod-template-hash"].clone();
    let rs = k.get_pod(ns, &pod)["metadata"]["ownerReferences"][0].clone();
    assert_eq!(rs["kind"], "ReplicaSet", "the ReplicaSet controller owns the pod");
    for agent in &mut agents {
        agent.wait_records(3, WAIT);
        let got = summaries(agent.settle(QUIET));
        assert_eq!(got, vec![s(&pod, "app", 1), s(&pod, "app", 2), s(&pod, "app", 3)]);
    }
    for rec in agents.iter().flat_map(|a| &a.records) {
        assert_eq!(attr(res(rec), "k8s.deployment.name"), "api");
        assert_eq!(attr(res(rec), "k8s.deployment.uid"), dep_uid.as_str());
        assert_eq!(attr(res(rec), "k8s.replicaset.name"), rs["name"]);
        assert_eq!(attr(res(rec), "k8s.replicaset.uid"), rs["uid"]);
        // The revision the Deployment controller wrote on the ReplicaSet, and the pod's hash.
        assert_eq!(attr(res(rec), "restart_watcher.revision"), "1");
        assert_eq!(attr(res(rec), "restart_watcher.revision.hash"), hash);
    }
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_cronjob_job_failing_twice_then_completing_makes_two_records_naming_the_job_and_cronjob() {
    let k = Cluster::shared();
    let ns = "s-cronjob";
    k.create_namespace(ns);
    apply(
        k,
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": ns},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"backoffLimit": 6, "template": {"spec": {
            "restartPolicy": "OnFailure", "containers": [{"name": "report", "image": "registry.example.com/report:1.0"}]}}}}}}),
    );
    // What the CronJob controller does at 03:00, now: a Job owned by the CronJob.
    k.kubectl(&["-n", ns, "create", "job", "nightly-manual", "--from=cronjob/nightly"]);
    let pod = k.wait_pods_running(ns, "job-name=nightly-manual", 1).remove(0);
    let mut agents = agents_of_both_modes(k, ns, &pod);
    k.crash(ns, &pod, "report", "Error", 2);
    k.crash(ns, &pod, "report", "Error", 2);
    for agent in &mut agents {
        agent.wait_records(2, WAIT);
    }
    // The third run succeeds: the simulated kubelet completes the pod, the Job controller the Job.
    k.kubectl(&["-n", ns, "label", "pod", &pod, "rw.test/complete=true"]);
    k.kubectl(&["-n", ns, "wait", "--for=condition=Complete", "job/nightly-manual", "--timeout=60s"]);

    for agent in &mut agents {
        assert_eq!(summaries(agent.settle(QUIET)), vec![s(&pod, "report", 1), s(&pod, "report", 2)]);
    }
    let cj_uid = uid_of(k, ns, "cronjob", "nightly");
    let job_uid = uid_of(k, ns, "job", "nightly-manual");
    for rec in agents.iter().flat_map(|a| &a.records) {
        assert_eq!(attr(res(rec), "k8s.job.name"), "nightly-manual");
        assert_eq!(attr(res(rec), "k8s.job.uid"), job_uid.as_str());
        assert_eq!(attr(res(rec), "k8s.cronjob.name"), "nightly");
        assert_eq!(attr(res(rec), "k8s.cronjob.uid"), cj_uid.as_str());
    }
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_statefulset_pod_recreated_under_the_same_name_is_tracked_per_uid() {
    let k = Cluster::shared();
    let ns = "s-statefulset";
    k.create_namespace(ns);
    apply(
        k,
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": ns},
        "spec": {"serviceName": "db", "replicas": 1, "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": "registry.example.com/db:1.0"}]}}}}),
    );
    k.wait_pods_running(ns, "app=db", 1);
    let first_uid = uid_of(k, ns, "pod", "db-0");
    let mut agent = Agent::start(Path::new(k.admin()), &["-n", ns, "--no-checkpoint"]);
    agent.wait_ready();
    k.crash(ns, "db-0", "db", "Error", 1);
    k.crash(ns, "db-0", "db", "Error", 1);
    agent.wait_records(2, WAIT);

    // Deleted while it restarts: the controller recreates db-0 with a new uid and restartCount 0.
    // No `--wait`: the controller recreates db-0 at once, and the loop below waits for the new uid.
    k.kubectl(&["-n", ns, "delete", "pod", "db-0", "--wait=false"]);
    k.wait_for("db-0 recreated", || {
        let uid = k.kubectl(&["-n", ns, "get", "pod", "db-0", "--ignore-not-found", "-o", "jsonpath={.metadata.uid}"]);
        !uid.is_empty() && uid != first_uid
    });
    let second_uid = k.wait_running(ns, "db-0");
    k.crash(ns, "db-0", "db", "OOMKilled", 137);
    agent.wait_records(3, WAIT);

    assert_eq!(summaries(agent.settle(QUIET)), vec![s("db-0", "db", 1), s("db-0", "db", 2), s("db-0", "db", 1)]);
    let uids: Vec<Value> = agent.records.iter().map(|r| attr(res(r), "k8s.pod.uid")).collect();
    assert_eq!(uids, vec![Value::from(first_uid.clone()), Value::from(first_uid), Value::from(second_uid)]);
    // The StatefulSet controller's revision of the pod's template.
    let hash = k.get_pod(ns, "db-0")["metadata"]["labels"]["controller-revision-hash"].clone();
    assert!(hash.as_str().is_some_and(|h| h.starts_with("db-")), "{hash}");
    for rec in &agent.records {
        assert_eq!(attr(res(rec), "restart_watcher.revision.hash"), hash);
    }
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_native_sidecar_restart_is_reported_as_a_sidecar() {
    let k = Cluster::shared();
    let ns = "s-sidecar";
    k.create_namespace(ns);
    apply(
        k,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": ns},
        "spec": {"nodeName": "node-a",
            "initContainers": [{"name": "envoy", "image": "registry.example.com/envoy:1.31", "restartPolicy": "Always"}],
            "containers": [{"name": "web", "image": "registry.example.com/web:1.0"}]}}),
    );
    k.wait_running(ns, "web-1");
    let kept = k.kubectl(&["-n", ns, "get", "pod", "web-1", "-o", "jsonpath={.spec.initContainers[0].restartPolicy}"]);
    assert_eq!(kept, "Always", "the server keeps an init container's restartPolicy");
    let mut agent = Agent::start(Path::new(k.admin()), &["-n", ns, "--no-checkpoint"]);
    agent.wait_ready();
    k.crash(ns, "web-1", "envoy", "Error", 143);
    agent.wait_records(1, WAIT);
    let got = agent.settle(QUIET).to_vec();
    assert_eq!(summaries(&got), vec![s("web-1", "envoy", 1)]);
    assert_eq!(attr(&got[0]["attributes"], "restart_watcher.container.kind"), "sidecar");
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_drained_node_reports_one_eviction_per_evicted_pod_and_no_restart() {
    // A cluster of its own: draining a node of the shared one would evict other tests' pods.
    let k = Cluster::start(&["--nodes", "node-x,node-y"]);
    let ns = "s-drain";
    k.create_namespace(ns);
    apply(&k, deployment(ns, "web", 4, "1.0"));
    k.wait_pods_running(ns, "app=web", 4);
    let mut agent = Agent::start(Path::new(k.admin()), &["-n", ns, "--no-checkpoint"]);
    agent.wait_ready();
    let on_x = k.kubectl(&["-n", ns, "get", "pods", "--field-selector", "spec.nodeName=node-x", "-o", "name"]);
    let mut on_x: Vec<String> = on_x.lines().map(|l| l.trim_start_matches("pod/").to_owned()).collect();
    assert!(!on_x.is_empty(), "the scheduler spread the pods over both nodes");
    k.kubectl(&["drain", "node-x", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s"]);
    k.wait_for("every pod on node-y", || {
        k.kubectl(&["-n", ns, "get", "pods", "--field-selector", "spec.nodeName=node-x", "-o", "name"]).is_empty()
    });
    k.wait_pods_running(ns, "app=web", 4);
    // The Eviction API marks each pod with a DisruptionTarget condition before deleting it.
    let mut got: Vec<(String, String, String)> = agent
        .settle(QUIET)
        .iter()
        .map(|r| {
            (
                r["eventName"].as_str().unwrap_or_default().to_owned(),
                attr(res(r), "k8s.pod.name").as_str().unwrap_or_default().to_owned(),
                attr(&r["attributes"], "restart_watcher.eviction.reason").as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    got.sort();
    on_x.sort();
    let want: Vec<(String, String, String)> = on_x
        .iter()
        .map(|p| ("restart_watcher.pod.eviction".to_owned(), p.clone(), "EvictionByEvictionAPI".to_owned()))
        .collect();
    assert_eq!(got, want, "one eviction per pod drained from node-x, and no restart");
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn the_agent_sigkilled_during_a_crash_loop_catches_up_from_its_lease_checkpoint() {
    let k = Cluster::shared();
    let ns = "s-sigkill";
    k.create_namespace(ns);
    apply(k, deployment(ns, "pay", 1, "1.0"));
    let pod = k.wait_pods_running(ns, "app=pay", 1).remove(0);
    let lease_args = ["-n", ns, "--checkpoint-namespace", ns, "--checkpoint-lease", "rw-checkpoint"];
    let mut first = Agent::start(Path::new(k.admin()), &lease_args);
    first.wait_ready();
    k.crash(ns, &pod, "app", "Error", 1);
    k.crash(ns, &pod, "app", "Error", 1);
    first.wait_records(2, WAIT);
    let delivered = jiff::Timestamp::now();
    k.wait_for("a checkpoint written after both restarts", || {
        let lease = k.kubectl(&["-n", ns, "get", "lease", "rw-checkpoint", "--ignore-not-found", "-o", "json"]);
        serde_json::from_str::<Value>(&lease).ok().and_then(|v| {
            v["metadata"]["annotations"]["restart-watcher.io/checkpoint"].as_str()?.parse::<jiff::Timestamp>().ok()
        }) >= Some(delivered)
    });
    first.kill();

    // The crash loop goes on while the agent is down.
    k.crash(ns, &pod, "app", "Error", 1);
    let mut second = Agent::start(Path::new(k.admin()), &lease_args);
    second.wait_ready();
    second.wait_records(1, WAIT);
    assert_eq!(
        summaries(second.settle(QUIET)),
        vec![(pod.clone(), "app".to_owned(), 3, 0, true)],
        "the restart made while the agent was down, caught up once; none from before"
    );
}
