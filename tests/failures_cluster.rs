//! Failures that are not restarts, end to end on the real v1.35 control plane
//! (tests/support/cluster.sh): pods made by the real Deployment, ReplicaSet and Job controllers,
//! started by kwok's simulated kubelets. The test plays the kubelet only where kwok cannot: a
//! container that fails to start (a pod annotated `rw.test/hold` is left Pending by kwok, and the
//! test writes the waiting reason the kubelet would), a container that exits, and the kubelet's
//! eviction. Each scenario asserts the exact records, nothing more, and that the replay of the same
//! API server's watch stream, recorded by `kubectl get pods --watch --output-watch-events`, gives
//! the same records.

use restart_watcher_test_support::cluster;
use restart_watcher_test_support::pods;
use restart_watcher_test_support::recorder::Recorder;

use std::path::Path;
use std::time::Duration;

use cluster::{Agent, Cluster, attr, http_get, now_rfc3339, series};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
/// How long a scenario listens for records that must not come.
const QUIET: Duration = Duration::from_secs(3);

/// (event name, pod, container, cause) of a record.
type Rec = (String, String, String, String);

fn recs(records: &[Value]) -> Vec<Rec> {
    records
        .iter()
        .map(|r| {
            let res = &r["resource"]["attributes"];
            (
                r["eventName"].as_str().unwrap_or_default().to_owned(),
                attr(res, "k8s.pod.name").as_str().unwrap_or_default().to_owned(),
                attr(res, "k8s.container.name").as_str().unwrap_or_default().to_owned(),
                attr(&r["attributes"], "restart_watcher.cause").as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn rec(event: &str, pod: &str, container: &str, cause: &str) -> Rec {
    (format!("restart_watcher.{event}"), pod.to_owned(), container.to_owned(), cause.to_owned())
}

fn apply(k: &Cluster, obj: Value) {
    k.kubectl_stdin(&["apply", "-f", "-"], Some(&obj.to_string()));
}

/// Waits until `n` pods match `selector` (in any phase); returns their names.
fn wait_pods(k: &Cluster, ns: &str, selector: &str, n: usize) -> Vec<String> {
    let mut names = Vec::new();
    k.wait_for(&format!("{n} pods {selector} in {ns}"), || {
        names = k.pods(ns, selector);
        names.len() == n
    });
    names
}

/// Plays the kubelet failing to start `container` of a Pending pod: its status says waiting with
/// `reason` and `message`.
fn fail_to_start(k: &Cluster, ns: &str, pod: &str, container: &str, image: &str, reason: &str, message: &str) {
    let waiting = pods::c(container, 0).waiting_msg(reason, message).field("image", image).field("imageID", "");
    let waiting = waiting.field("ready", false).field("started", false);
    let patch = json!({"status": {"phase": "Pending", "containerStatuses": [waiting.json()]}});
    status_patch(k, ns, pod, &patch);
}

/// Plays the kubelet when every container of a pod has ended and the pod is over: `phase`, the
/// containers' terminated states, and `extra` status fields (an eviction's reason and condition).
fn end_pod(k: &Cluster, ns: &str, pod: &str, phase: &str, ended: &[(&str, &str, i32)], extra: Value) {
    let obj = k.get_pod(ns, pod);
    let mut status = obj["status"].clone();
    let now = now_rfc3339();
    for c in status["containerStatuses"].as_array_mut().expect("container statuses") {
        if let Some((_, reason, code)) = ended.iter().find(|(name, _, _)| c["name"] == *name) {
            let started = c["state"]["running"]["startedAt"].clone();
            c["state"] = json!({"terminated": {"exitCode": code, "reason": reason, "startedAt": started,
                "finishedAt": now, "containerID": c["containerID"].clone()}});
            c["ready"] = json!(false);
            c["started"] = json!(false);
        }
    }
    status["phase"] = json!(phase);
    for (key, value) in extra.as_object().into_iter().flatten() {
        status[key] = value.clone();
    }
    status_patch(k, ns, pod, &json!({"status": status}));
}

fn status_patch(k: &Cluster, ns: &str, pod: &str, patch: &Value) {
    k.kubectl(&["-n", ns, "patch", "pod", pod, "--subresource=status", "--type=merge", "-p", &patch.to_string()]);
}

/// Starts recording the namespace's stream, then the agent on it; returns both once it watches.
fn watch(k: &Cluster, ns: &str) -> (Recorder, Agent) {
    let recorder = Recorder::start(k, ns, Path::new(env!("CARGO_TARGET_TMPDIR")));
    let mut agent = Agent::start(Path::new(k.admin()), &["-n", ns, "--no-checkpoint"]);
    agent.wait_ready();
    (recorder, agent)
}

/// Asserts the agent's records, and the same from the replay of the recorded stream.
fn assert_live_and_replayed(agent: &mut Agent, recorder: Recorder, want: &[Rec]) {
    assert_eq!(recs(agent.settle(QUIET)), want, "live records");
    assert_eq!(recs(&recorder.stop_and_replay()), want, "replayed records");
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_deployment_with_a_missing_image_reports_one_start_failure_per_pod_and_its_end_on_scale_down() {
    let k = Cluster::shared();
    let ns = "f-image";
    k.create_namespace(ns);
    let image = "registry.example.com/search:does-not-exist";
    apply(
        k,
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "search", "namespace": ns},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "search"}},
            "template": {"metadata": {"labels": {"app": "search"}, "annotations": {"rw.test/hold": "image"}},
                "spec": {"containers": [{"name": "search", "image": image}]}}}}),
    );
    let pods = wait_pods(k, ns, "app=search", 2);
    let (recorder, mut agent) = watch(k, ns);
    let msg = format!("failed to pull and unpack image \"{image}\": not found");
    for pod in &pods {
        fail_to_start(k, ns, pod, "search", image, "ErrImagePull", &msg);
        fail_to_start(k, ns, pod, "search", image, "ImagePullBackOff", &format!("Back-off pulling image \"{image}\""));
        fail_to_start(k, ns, pod, "search", image, "ErrImagePull", &msg);
    }
    agent.wait_records(2, WAIT);
    k.kubectl(&["-n", ns, "scale", "deployment/search", "--replicas=0"]);
    k.wait_for("no pods left", || k.pods(ns, "app=search").is_empty());
    agent.wait_records(4, WAIT);
    let mut want: Vec<Rec> = pods.iter().map(|p| rec("container.start_failure", p, "search", "image_pull")).collect();
    want.extend(pods.iter().map(|p| rec("container.start_failure_ended", p, "search", "image_pull")));
    let mut got = recs(&agent.records);
    got[2..].sort();
    want[2..].sort();
    assert_eq!(got, want);
    for r in &agent.records[..2] {
        assert_eq!(attr(&r["attributes"], "restart_watcher.status.message"), msg.as_str());
        assert_eq!(attr(&r["attributes"], "k8s.container.status.reason"), "ErrImagePull");
        assert_eq!(attr(&r["resource"]["attributes"], "k8s.deployment.name"), "search");
    }
    for r in &agent.records[2..] {
        assert_eq!(attr(&r["attributes"], "restart_watcher.start_failure.outcome"), "pod_deleted");
        assert_eq!(attr(&r["attributes"], "restart_watcher.start_failure.attempts"), 2);
    }
    // The replay exports in one batch, grouped by resource (pod): the same records, in another order.
    let mut replayed = recs(&recorder.stop_and_replay());
    replayed.sort();
    want.sort();
    assert_eq!(replayed, want, "replayed records");
    assert_eq!(recs(agent.settle(QUIET)).len(), 4, "nothing else");
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_missing_configmap_key_is_one_start_failure_and_one_end_once_fixed() {
    let k = Cluster::shared();
    let ns = "f-config";
    k.create_namespace(ns);
    apply(
        k,
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "api", "namespace": ns, "labels": {"app": "api"}, "annotations": {"rw.test/hold": "config"}},
        "spec": {"containers": [{"name": "api", "image": "registry.example.com/api:1.0",
            "env": [{"name": "DB_URL", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "db-url"}}}]}]}}),
    );
    wait_pods(k, ns, "app=api", 1);
    let (recorder, mut agent) = watch(k, ns);
    let msg = "couldn't find key db-url in ConfigMap f-config/app-config";
    fail_to_start(k, ns, "api", "api", "registry.example.com/api:1.0", "CreateContainerConfigError", msg);
    agent.wait_records(1, WAIT);
    // The open episode is kept for its closing record, within its budget; the metrics say so.
    let admin = agent.admin_addr();
    let metric = |name: &str, labels: &[(&str, &str)]| series(&admin, name, labels);
    let entry = restart_watcher::detector::EPISODE_ENTRY_BYTES.to_string();
    assert_eq!(metric("restart_watcher_episodes_usage_bytes", &[]), Some(entry));
    let budget = restart_watcher::detector::EPISODE_BUDGET_BYTES.to_string();
    assert_eq!(metric("restart_watcher_episodes_limit_bytes", &[]), Some(budget));
    assert_eq!(
        metric("restart_watcher_failures_detected_total", &[("cause", "config_error"), ("event", "start_failure")]),
        Some("1".to_owned())
    );
    // The fix: the key is created, and the kubelet's next attempt starts the container.
    k.kubectl(&["-n", ns, "create", "configmap", "app-config", "--from-literal=db-url=postgres://db"]);
    k.kubectl(&["-n", ns, "annotate", "pod", "api", "rw.test/hold-"]);
    k.wait_running(ns, "api");
    agent.wait_records(2, WAIT);
    assert_live_and_replayed(
        &mut agent,
        recorder,
        &[
            rec("container.start_failure", "api", "api", "config_error"),
            rec("container.start_failure_ended", "api", "api", "config_error"),
        ],
    );
    assert_eq!(attr(&agent.records[0]["attributes"], "restart_watcher.status.message"), msg);
    assert_eq!(attr(&agent.records[0]["attributes"], "restart_watcher.cause.category"), "configuration");
    assert_eq!(attr(&agent.records[1]["attributes"], "restart_watcher.start_failure.outcome"), "started");
    assert_eq!(
        metric("restart_watcher_episodes_usage_bytes", &[]),
        Some("0".to_owned()),
        "the ended episode is let go"
    );
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_never_job_pod_exiting_3_is_one_failure_and_a_pod_exiting_0_is_silent() {
    let k = Cluster::shared();
    let ns = "f-job";
    k.create_namespace(ns);
    let (recorder, mut agent) = watch(k, ns);
    apply(
        k,
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate", "namespace": ns},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "migrate", "image": "registry.example.com/migrate:1.0"}]}}}}),
    );
    // A one-off pod with an init container (kwok completes it, exit 0) whose app exits 0.
    apply(
        k,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "oneoff", "namespace": ns},
        "spec": {"restartPolicy": "Never", "initContainers": [{"name": "setup", "image": "registry.example.com/setup:1.0"}],
            "containers": [{"name": "task", "image": "registry.example.com/task:1.0"}]}}),
    );
    let job_pod = k.wait_pods_running(ns, "job-name=migrate", 1).remove(0);
    k.wait_running(ns, "oneoff");
    end_pod(k, ns, &job_pod, "Failed", &[("migrate", "Error", 3)], json!({}));
    end_pod(k, ns, "oneoff", "Succeeded", &[("task", "Completed", 0)], json!({}));
    k.kubectl(&["-n", ns, "wait", "--for=condition=Failed", "job/migrate", "--timeout=60s"]);
    agent.wait_records(1, WAIT);
    assert_live_and_replayed(&mut agent, recorder, &[rec("container.failure", &job_pod, "migrate", "app_error")]);
    let r = &agent.records[0];
    assert_eq!(attr(&r["attributes"], restart_watcher::keys::PROCESS_EXIT_CODE), 3);
    assert_eq!(attr(&r["resource"]["attributes"], "k8s.job.name"), "migrate");
    assert_eq!(r["severityText"], "WARN");
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn an_oom_killed_never_pod_is_one_failure_and_kubectl_delete_pod_is_silent() {
    let k = Cluster::shared();
    let ns = "f-oom";
    k.create_namespace(ns);
    let (recorder, mut agent) = watch(k, ns);
    apply(
        k,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "batch", "namespace": ns},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "batch", "image": "registry.example.com/batch:1.0"}]}}),
    );
    k.create_pod(ns, "doomed", "node-a", json!({}), &["web"]);
    k.wait_running(ns, "batch");
    end_pod(k, ns, "batch", "Failed", &[("batch", "OOMKilled", 137)], json!({}));
    agent.wait_records(1, WAIT);
    k.kubectl(&["-n", ns, "delete", "pod", "doomed", "--wait=true"]);
    assert_live_and_replayed(&mut agent, recorder, &[rec("container.failure", "batch", "batch", "oom_killed")]);
    assert_eq!(agent.records[0]["severityText"], "ERROR");
    assert_eq!(attr(&agent.records[0]["attributes"], "restart_watcher.cause.category"), "resource");
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn an_evicted_pod_is_one_eviction_record_and_its_killed_containers_no_failure() {
    let k = Cluster::shared();
    let ns = "f-evict";
    k.create_namespace(ns);
    apply(
        k,
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "cache", "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "cache"}},
            "template": {"metadata": {"labels": {"app": "cache"}},
                "spec": {"containers": [{"name": "cache", "image": "registry.example.com/cache:1.0"},
                                        {"name": "exporter", "image": "registry.example.com/exporter:1.0"}]}}}}),
    );
    let pod = k.wait_pods_running(ns, "app=cache", 1).remove(0);
    let (recorder, mut agent) = watch(k, ns);
    // What the kubelet writes when it evicts a pod under memory pressure.
    let message = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 80Mi.";
    end_pod(
        k,
        ns,
        &pod,
        "Failed",
        &[("cache", "Error", 137), ("exporter", "Error", 137)],
        json!({"reason": "Evicted", "message": message,
            "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet",
                "message": message, "lastTransitionTime": now_rfc3339()}]}),
    );
    agent.wait_records(1, WAIT);
    // The ReplicaSet controller replaces the pod: a new pod, no record.
    k.wait_for("a replacement pod", || k.pods(ns, "app=cache").len() == 2);
    assert_live_and_replayed(&mut agent, recorder, &[rec("pod.eviction", &pod, "", "evicted")]);
    let r = &agent.records[0];
    assert_eq!(attr(&r["attributes"], "restart_watcher.eviction.reason"), "TerminationByKubelet");
    assert_eq!(attr(&r["attributes"], "restart_watcher.cause.category"), "infrastructure");
    assert_eq!(attr(&r["attributes"], "restart_watcher.status.message"), message);
    assert_eq!(attr(&r["resource"]["attributes"], "k8s.deployment.name"), "cache");
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn workload_metrics_count_restarts_and_failures_per_workload_up_to_their_series_cap() {
    let k = Cluster::shared();
    let ns = "f-metrics";
    k.create_namespace(ns);
    for name in ["api", "web", "db"] {
        apply(
            k,
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": format!("registry.example.com/{name}:1.0")}]}}}}),
        );
    }
    apply(
        k,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "once", "namespace": ns},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "task", "image": "registry.example.com/task:1.0"}]}}),
    );
    let pod = |app: &str| k.wait_pods_running(ns, &format!("app={app}"), 1).remove(0);
    let (api, web, db) = (pod("api"), pod("web"), pod("db"));
    k.wait_running(ns, "once");
    let mut agent = Agent::start(
        Path::new(k.admin()),
        &["-n", ns, "--no-checkpoint", "--workload-metrics", "--workload-metrics-max-series", "3"],
    );
    agent.wait_ready();
    k.crash(ns, &api, "app", "Error", 1);
    k.crash(ns, &api, "app", "Error", 1);
    k.crash(ns, &web, "app", "Error", 1);
    agent.wait_records(3, WAIT);
    end_pod(k, ns, "once", "Failed", &[("task", "Error", 2)], json!({}));
    agent.wait_records(4, WAIT);
    // The fourth series is past the cap of 3: it counts under "other".
    k.crash(ns, &db, "app", "OOMKilled", 137);
    agent.wait_records(5, WAIT);
    let admin = agent.admin_addr();
    let restarts = "restart_watcher_container_restarts_total";
    fn of<'a>(ns: &'a str, workload: &'a str) -> [(&'a str, &'a str); 5] {
        [
            ("namespace", ns),
            ("workload_kind", "Deployment"),
            ("workload", workload),
            ("container", "app"),
            ("cause", "app_error"),
        ]
    }
    assert_eq!(series(&admin, restarts, &of(ns, "api")), Some("2".into()));
    // Each revision its own series: the pods' template hash; `none` for a bare pod.
    let hash = k.get_pod(ns, &api)["metadata"]["labels"]["pod-template-hash"].as_str().unwrap().to_owned();
    let by_revision: Vec<(&str, &str)> = of(ns, "api").into_iter().chain([("revision", hash.as_str())]).collect();
    assert_eq!(series(&admin, restarts, &by_revision), Some("2".into()));
    assert_eq!(series(&admin, restarts, &of(ns, "web")), Some("1".into()));
    let failure = [
        ("namespace", ns),
        ("workload_kind", "Pod"),
        ("workload", "once"),
        ("container", "task"),
        ("event", "failure"),
        ("cause", "app_error"),
        ("revision", "none"),
    ];
    assert_eq!(series(&admin, "restart_watcher_container_failures_total", &failure), Some("1".into()));
    let other = [
        ("namespace", "other"),
        ("workload_kind", "other"),
        ("workload", "other"),
        ("container", "other"),
        ("cause", "oom_killed"),
    ];
    assert_eq!(series(&admin, restarts, &other), Some("1".into()));
    assert_eq!(series(&admin, restarts, &[("workload", "db")]), None, "past the cap, no series of its own");
    assert_eq!(agent.logs_text().matches("reached their series cap").count(), 1, "said once");
    // By node: the four restarts, whichever nodes the scheduler chose.
    let (_, text) = http_get(&admin, "/metrics");
    let by_node: f64 = text
        .lines()
        .filter(|l| l.starts_with("restart_watcher_node_restarts_total{") && l.contains("node=\"node-"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(by_node, 4.0, "{text}");
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_pod_no_node_fits_is_one_pod_start_failure_with_the_schedulers_reason_and_its_end_once_the_request_is_lowered() {
    let k = Cluster::shared();
    let ns = "f-pending";
    k.create_namespace(ns);
    let recorder = Recorder::start(k, ns, Path::new(env!("CARGO_TARGET_TMPDIR")));
    let threshold = ["--pending-threshold", "3s"];
    let mut args = vec!["-n", ns, "--no-checkpoint", "--workload-metrics"];
    args.extend(threshold);
    let mut agent = Agent::start(Path::new(k.admin()), &args);
    agent.wait_ready();
    let deployment = |memory: &str| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "big", "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "big"}},
            "template": {"metadata": {"labels": {"app": "big"}},
                "spec": {"containers": [{"name": "big", "image": "registry.example.com/big:1.0",
                    "resources": {"requests": {"memory": memory}}}]}}}})
    };
    apply(k, deployment("100Ti"));
    let pending = wait_pods(k, ns, "app=big", 1).remove(0);
    agent.wait_records(1, WAIT);
    let r = &agent.records[0];
    assert_eq!(recs(&agent.records), [rec("pod.start_failure", &pending, "", "unschedulable")]);
    assert_eq!(attr(&r["attributes"], "restart_watcher.start_failure.reason"), "Unschedulable");
    let message = attr(&r["attributes"], "restart_watcher.status.message");
    assert!(message.as_str().unwrap().contains("Insufficient memory"), "the scheduler's message: {message}");
    assert_eq!(attr(&r["resource"]["attributes"], "k8s.deployment.name"), "big");
    assert!(attr(&r["resource"]["attributes"], "k8s.node.name").is_null(), "placed on no node");
    let body = r["body"]["stringValue"].as_str().unwrap();
    assert!(body.starts_with(&format!("pod {ns}/{pending} has not started in 3s: Unschedulable: 0/")), "{body}");
    // The request lowered: the new ReplicaSet's pod runs, the Deployment deletes the pending one.
    apply(k, deployment("16Mi"));
    k.wait_pods_running(ns, "app=big", 1);
    k.wait_for("the pending pod gone", || !k.pods(ns, "app=big").contains(&pending));
    agent.wait_records(2, WAIT);
    let want = [
        rec("pod.start_failure", &pending, "", "unschedulable"),
        rec("pod.start_failure_ended", &pending, "", "unschedulable"),
    ];
    assert_eq!(recs(agent.settle(QUIET)), want, "live records");
    let end = &agent.records[1]["attributes"];
    assert_eq!(attr(end, "restart_watcher.start_failure.outcome"), "pod_deleted");
    assert!(attr(end, "error.type").is_null(), "an end is no error");
    let failures = [("namespace", ns), ("workload", "big"), ("event", "pod_start_failure"), ("cause", "unschedulable")];
    assert_eq!(series(&agent.admin_addr(), "restart_watcher_container_failures_total", &failures), Some("1".into()));
    let mut recorder = recorder;
    let recording = recorder.stop();
    assert_eq!(recs(&Recorder::replay_with(&recording, &threshold)), want, "replayed records");
    if std::env::var_os("RW_RECORD_CLUSTER").is_some() {
        std::fs::copy(&recording, PENDING_FIXTURE).expect("keep the recording");
    }
}

/// The recording of the scenario above, committed; `tests/replay.rs` replays it.
const PENDING_FIXTURE: &str = "tests/fixtures/pending-v1.35-watch.json";

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_rollout_to_a_crashing_revision_is_one_rollout_regression_and_a_rollout_that_works_none() {
    let k = Cluster::shared();
    let ns = "f-rollout";
    k.create_namespace(ns);
    let (recorder, mut agent) = watch(k, ns);
    let deployment = |tag: &str| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": format!("registry.example.com/web:{tag}")}]}}}})
    };
    // Each rollout done: one pod of the new template running, the old one gone.
    let roll_to = |tag: &str| {
        apply(k, deployment(tag));
        let image = format!("registry.example.com/web:{tag}");
        let mut running = String::new();
        k.wait_for(&format!("one pod of {tag}, alone"), || {
            let names = k.pods(ns, "app=web");
            let of_tag = |p: &String| k.get_pod(ns, p)["spec"]["containers"][0]["image"] == image.as_str();
            running = names.first().cloned().unwrap_or_default();
            names.len() == 1 && of_tag(&running) && k.get_pod(ns, &running)["status"]["phase"] == "Running"
        });
        running
    };
    roll_to("1.0");
    roll_to("2.0");
    assert!(agent.settle(QUIET).is_empty(), "a rollout that works: nothing");
    let crashing = roll_to("3.0");
    for _ in 0..3 {
        k.crash(ns, &crashing, "web", "Error", 1);
    }
    agent.wait_records(4, WAIT);
    let want = [
        rec("container.restart", &crashing, "web", "app_error"),
        rec("container.restart", &crashing, "web", "app_error"),
        rec("container.restart", &crashing, "web", "app_error"),
        rec("workload.rollout_regression", &crashing, "", "app_error"),
    ];
    assert_eq!(recs(agent.settle(QUIET)), want, "live records");
    let first: Vec<Value> =
        agent.records.iter().map(|r| attr(&r["attributes"], "restart_watcher.revision.first_failure")).collect();
    assert_eq!(first, [json!(true), Value::Null, Value::Null, Value::Null], "the revision's first failure, once");
    let r = &agent.records[3];
    let hash = k.get_pod(ns, &crashing)["metadata"]["labels"]["pod-template-hash"].as_str().unwrap().to_owned();
    assert_eq!(attr(&r["resource"]["attributes"], "restart_watcher.revision.hash"), hash.as_str());
    assert_eq!(attr(&r["resource"]["attributes"], "restart_watcher.revision"), "3", "the Deployment's third revision");
    assert_eq!(attr(&r["resource"]["attributes"], "k8s.deployment.name"), "web");
    assert_eq!(attr(&r["attributes"], "restart_watcher.rollout.failures"), 3);
    assert_eq!(attr(&r["attributes"], "restart_watcher.rollout.failing_pods"), 1);
    assert_eq!(attr(&r["attributes"], "restart_watcher.rollout.previous_failing_pods"), 0);
    assert_eq!(r["severityText"], "ERROR");
    let mut recorder = recorder;
    let recording = recorder.stop();
    assert_eq!(recs(&Recorder::replay(&recording)), want, "replayed records");
    if std::env::var_os("RW_RECORD_CLUSTER").is_some() {
        std::fs::copy(&recording, ROLLOUT_FIXTURE).expect("keep the recording");
    }
}

/// The recording of the scenario above, committed; `tests/replay.rs` replays it.
const ROLLOUT_FIXTURE: &str = "tests/fixtures/rollout-v1.35-watch.json";
