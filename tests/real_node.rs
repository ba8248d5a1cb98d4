//! The failure catalogue on a real node: a kubelet v1.35 with containerd and runc, registered with
//! the loopback control plane (`tests/support/cluster.sh --real-node`), running the test program's
//! image (`tests/support/test-image.sh`). Nothing here writes a status: every termination, OOM
//! kill, probe kill, back-off and Event is the kubelet's own. Each scenario asserts the exact
//! records, live, and the same from the replay of the API server's stream recorded beside it; with
//! `RW_RECORD_REAL_NODE=1` the stream (pods and kube events) and the records' summary are kept in
//! `tests/fixtures/real-node/` (`<scenario>.watch.json`, `<scenario>.records.json`), the
//! recordings `tests/replay_real_node.rs` replays.

use restart_watcher_test_support::cluster::{Agent, Cluster, attr};
use restart_watcher_test_support::recorder::{Recorder, Summary, keep_fixture, summarise};

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};

const NODE: &str = "rw-node";
const IMAGE: &str = "registry.test/rw-test:1";
/// How long a scenario listens for records that must not come.
const QUIET: Duration = Duration::from_secs(5);

/// The cluster with the real node, shared by the scenarios of this binary.
fn cluster() -> &'static Cluster {
    static REAL: OnceLock<Cluster> = OnceLock::new();
    REAL.get_or_init(|| Cluster::start(&["--real-node", NODE]))
}

type Rec = Summary;

fn recs(records: &[Value]) -> Vec<Rec> {
    summarise(records)
}

#[allow(clippy::too_many_arguments)]
fn rec(
    event: &str,
    container: &str,
    cause: &str,
    category: &str,
    exit: i64,
    signal: i64,
    kind: &str,
    count: i64,
) -> Rec {
    (event.into(), container.into(), cause.into(), category.into(), exit, signal, kind.into(), count, 0)
}

/// A container of the test image running these steps of the test program.
fn program(name: &str, steps: &[&str]) -> Value {
    json!({"name": name, "image": IMAGE, "imagePullPolicy": "Never", "args": steps})
}

/// A pod on the real node.
fn pod(ns: &str, name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["nodeName"] = json!(NODE);
    spec["terminationGracePeriodSeconds"] = spec.get("terminationGracePeriodSeconds").cloned().unwrap_or(json!(2));
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": {"app": name}}, "spec": spec})
}

fn apply(k: &Cluster, obj: &Value) {
    k.kubectl_stdin(&["apply", "-f", "-"], Some(&obj.to_string()));
}

/// A scenario: its namespace, the stream recorded beside it and the agent watching it.
struct Scenario {
    name: &'static str,
    ns: String,
    recorder: Recorder,
    agent: Agent,
    /// When it started (RFC 3339, the API server's clock).
    started_at: String,
}

impl Scenario {
    fn start(name: &'static str) -> Scenario {
        Scenario::start_with(name, &[])
    }

    /// A scenario whose agent runs with these flags too.
    fn start_with(name: &'static str, flags: &[&str]) -> Scenario {
        let k = cluster();
        let ns = format!("rn-{name}");
        k.create_namespace(&ns);
        let recorder = Recorder::start(k, &ns, Path::new(env!("CARGO_TARGET_TMPDIR")));
        let mut args = vec!["-n", &ns, "--no-checkpoint"];
        args.extend_from_slice(flags);
        let mut agent = Agent::start(Path::new(k.admin()), &args);
        agent.wait_ready();
        Scenario { name, ns, recorder, agent, started_at: restart_watcher_test_support::cluster::now_rfc3339() }
    }

    /// Waits until the pod's `container` has restarted `count` times (the kubelet's own count).
    fn wait_restarts(&self, pod: &str, container: &str, count: i64, timeout: Duration) {
        let k = cluster();
        wait(&format!("{pod}/{container} restarted {count} times"), timeout, || {
            let p = k.get_pod(&self.ns, pod);
            let statuses = p["status"]["containerStatuses"].as_array().cloned().unwrap_or_default();
            let init = p["status"]["initContainerStatuses"].as_array().cloned().unwrap_or_default();
            statuses.iter().chain(&init).any(|c| c["name"] == container && c["restartCount"].as_i64() >= Some(count))
        });
    }

    /// [`Scenario::wait_restarts`], then [`Scenario::delete`].
    fn wait_restarts_then_delete(&self, pod: &str, container: &str, count: i64, timeout: Duration) {
        self.wait_restarts(pod, container, count, timeout);
        self.delete(pod);
    }

    /// Deletes the pod and waits until it is gone (the kubelet stops its containers: silent), so
    /// that no restart comes after the ones a scenario waited for.
    fn delete(&self, pod: &str) {
        cluster().kubectl(&["-n", &self.ns, "delete", "pod", pod, "--wait=true"]);
    }

    /// Asserts that the replay of the recorded stream gives these records (the live ones), and
    /// keeps the stream as a fixture when asked to.
    fn assert_records_as_live(self, live: &[Value]) {
        self.assert_replayed(&recs(live));
    }

    /// Asserts that the replay of the recorded stream gives `want`, and keeps the stream as a
    /// fixture (with `want`) when asked to.
    fn assert_replayed(mut self, want: &[Rec]) {
        let path = self.recorder.stop();
        assert_eq!(recs(&Recorder::replay(&path)), want, "replayed records of {}", self.name);
        if std::env::var_os("RW_RECORD_REAL_NODE").is_some() {
            keep_fixture(&path, self.name, want);
        }
    }

    /// Asserts the exact records, live (after a quiet spell) and from the recorded stream; keeps
    /// the stream as a fixture when asked to.
    fn assert_records(mut self, want: &[Rec]) -> Vec<Value> {
        let live = self.agent.settle(QUIET).to_vec();
        assert_eq!(recs(&live), want, "live records of {}", self.name);
        self.assert_records_as_live(&live);
        live
    }
}

fn wait(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn the_real_node_registers_and_reports_the_pinned_versions() {
    let k = cluster();
    let version: Value = serde_json::from_str(&k.kubectl(&["get", "--raw", "/version"])).unwrap();
    assert_eq!(version["gitVersion"], "v1.35.4", "the API server's version stamp");
    let node: Value = serde_json::from_str(&k.kubectl(&["get", "node", NODE, "-o", "json"])).unwrap();
    let info = &node["status"]["nodeInfo"];
    assert_eq!(info["kubeletVersion"], "v1.35.4");
    assert!(info["containerRuntimeVersion"].as_str().unwrap().starts_with("containerd://"), "{info}");
    let client = k.kubectl(&["version", "--client", "-o", "json"]);
    assert!(client.contains("\"gitVersion\": \"v1.35.4\""), "kubectl version: {client}");
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn an_app_that_exits_1_restarts_as_an_app_error_with_the_kubelets_back_off() {
    let s = Scenario::start("exit-1");
    apply(
        cluster(),
        &pod(&s.ns, "crashy", json!({"containers": [program("app", &["say", "starting", "sleep", "1", "exit", "1"])]})),
    );
    s.wait_restarts_then_delete("crashy", "app", 2, Duration::from_secs(90));
    let records = s.assert_records(&[
        rec("container.restart", "app", "app_error", "application", 1, -1, "app", 1),
        rec("container.restart", "app", "app_error", "application", 1, -1, "app", 2),
    ]);
    assert_eq!(attr(&records[1]["attributes"], "k8s.container.status.last_terminated_reason"), "Error");
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn an_app_that_exits_137_itself_is_a_signal_not_an_oom_kill() {
    let s = Scenario::start("exit-137");
    // The program runs a child that kills itself with SIGKILL and exits 128+9, as a shell does.
    apply(
        cluster(),
        &pod(&s.ns, "wrapper", json!({"containers": [program("app", &["sleep", "1", "kill-child", "9"])]})),
    );
    s.wait_restarts_then_delete("wrapper", "app", 1, Duration::from_secs(60));
    // 137 with reason Error and no OOM Event: a signal (docs/detection.md), never an OOM kill.
    let records = s.assert_records(&[rec("container.restart", "app", "signal", "application", 137, 9, "app", 1)]);
    assert_eq!(attr(&records[0]["attributes"], "k8s.container.status.last_terminated_reason"), "Error");
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_kernel_oom_kill_under_a_memory_limit_is_an_oom_kill() {
    let s = Scenario::start("oom");
    let mut c = program("hog", &["sleep", "1", "alloc"]);
    c["resources"] = json!({"limits": {"memory": "32Mi"}});
    apply(cluster(), &pod(&s.ns, "hog", json!({"containers": [c]})));
    s.wait_restarts_then_delete("hog", "hog", 1, Duration::from_secs(60));
    let records = s.assert_records(&[rec("container.restart", "hog", "oom_killed", "resource", 137, 9, "app", 1)]);
    let a = &records[0]["attributes"];
    assert_eq!(attr(a, "k8s.container.status.last_terminated_reason"), "OOMKilled");
    // What the kill is read against: the limit in force, whose it was, the request, the QoS class.
    assert_eq!(attr(a, "restart_watcher.memory.limit"), 33_554_432, "{a:#}");
    assert_eq!(attr(a, "restart_watcher.memory.limit_source"), "container");
    assert_eq!(attr(a, "restart_watcher.memory.request"), 33_554_432, "the request defaults to the limit");
    assert_eq!(attr(a, "restart_watcher.pod.qos_class"), "Burstable");
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_sigterm_ignoring_process_killed_at_the_end_of_its_grace_period_on_delete_is_silent() {
    let s = Scenario::start("grace-kill");
    let spec = json!({"restartPolicy": "Never", "terminationGracePeriodSeconds": 3,
        "containers": [program("stubborn", &["ignore-term", "say", "ready", "hang"])]});
    apply(cluster(), &pod(&s.ns, "stubborn", spec));
    cluster().wait_running(&s.ns, "stubborn");
    cluster().kubectl(&["-n", &s.ns, "delete", "pod", "stubborn", "--wait=true"]);
    s.assert_records(&[]);
}

/// A probe that runs the test program's `check` on `path`, every second, failing after `failures`.
fn exec_probe(path: &str, failures: u32) -> Value {
    json!({"exec": {"command": ["/rw-test", "check", path]}, "periodSeconds": 1, "failureThreshold": failures})
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_failing_exec_liveness_probe_is_a_liveness_probe_kill() {
    let s = Scenario::start("liveness-exec");
    let mut c = program("app", &["touch", "/tmp/healthy", "sleep", "6", "rm", "/tmp/healthy", "hang"]);
    c["livenessProbe"] = exec_probe("/tmp/healthy", 2);
    apply(cluster(), &pod(&s.ns, "probed", json!({"containers": [c]})));
    s.wait_restarts_then_delete("probed", "app", 1, Duration::from_secs(60));
    // The kubelet's SIGTERM to PID 1 without a handler does nothing: SIGKILL at the grace's end.
    s.assert_records(&[rec("container.restart", "app", "liveness_probe", "application", 137, 9, "app", 1)]);
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_failing_http_liveness_probe_is_a_liveness_probe_kill() {
    let s = Scenario::start("liveness-http");
    let mut c = program("web", &["serve", "8080", "touch", "/tmp/healthy", "sleep", "6", "rm", "/tmp/healthy", "hang"]);
    c["livenessProbe"] =
        json!({"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1, "failureThreshold": 2});
    apply(cluster(), &pod(&s.ns, "web", json!({"containers": [c]})));
    s.wait_restarts_then_delete("web", "web", 1, Duration::from_secs(60));
    s.assert_records(&[rec("container.restart", "web", "liveness_probe", "application", 137, 9, "app", 1)]);
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_failing_startup_probe_is_a_startup_probe_kill() {
    let s = Scenario::start("startup");
    let mut c = program("slow", &["hang"]);
    c["startupProbe"] = exec_probe("/tmp/started", 3);
    apply(cluster(), &pod(&s.ns, "slow", json!({"containers": [c]})));
    s.wait_restarts_then_delete("slow", "slow", 1, Duration::from_secs(60));
    s.assert_records(&[rec("container.restart", "slow", "startup_probe", "application", 137, 9, "app", 1)]);
}

/// A volume that outlives a container's restarts (the test program's `fail-first` marks).
fn scratch_volume(spec: &mut Value, containers: &[&str]) {
    spec["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
    for key in ["containers", "initContainers"] {
        for c in spec[key].as_array_mut().into_iter().flatten() {
            if containers.contains(&c["name"].as_str().unwrap_or_default()) {
                c["volumeMounts"] = json!([{"name": "scratch", "mountPath": "/data"}]);
            }
        }
    }
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn an_init_container_that_fails_then_succeeds_is_one_init_restart() {
    let s = Scenario::start("init");
    let mut spec = json!({"initContainers": [program("setup", &["fail-first", "/data/setup", "3"])],
        "containers": [program("app", &["hang"])]});
    scratch_volume(&mut spec, &["setup"]);
    apply(cluster(), &pod(&s.ns, "initing", spec));
    cluster().wait_running(&s.ns, "initing");
    s.assert_records(&[rec("container.restart", "setup", "app_error", "application", 3, -1, "init", 1)]);
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_native_sidecar_that_crashes_is_a_sidecar_restart() {
    let s = Scenario::start("sidecar");
    let mut sidecar = program("proxy", &["say", "proxy up", "sleep", "2", "exit", "1"]);
    sidecar["restartPolicy"] = json!("Always");
    apply(
        cluster(),
        &pod(&s.ns, "meshed", json!({"initContainers": [sidecar], "containers": [program("app", &["hang"])]})),
    );
    s.wait_restarts_then_delete("meshed", "proxy", 1, Duration::from_secs(60));
    s.assert_records(&[rec("container.restart", "proxy", "app_error", "application", 1, -1, "sidecar", 1)]);
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_never_pod_that_exits_3_is_one_failure() {
    let s = Scenario::start("never");
    let spec = json!({"restartPolicy": "Never", "containers": [program("task", &["sleep", "1", "exit", "3"])]});
    apply(cluster(), &pod(&s.ns, "task", spec));
    wait("pod task Failed", Duration::from_secs(60), || {
        cluster().get_pod(&s.ns, "task")["status"]["phase"] == "Failed"
    });
    s.assert_records(&[rec("container.failure", "task", "app_error", "application", 3, -1, "app", -1)]);
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_job_with_a_backoff_limit_fails_once_per_pod() {
    let s = Scenario::start("job");
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate", "namespace": s.ns},
        "spec": {"backoffLimit": 1, "template": {"spec": {"restartPolicy": "Never", "nodeName": NODE,
            "terminationGracePeriodSeconds": 2, "containers": [program("migrate", &["sleep", "1", "exit", "4"])]}}}});
    apply(cluster(), &job);
    wait("job migrate failed", Duration::from_secs(120), || {
        let j: Value =
            serde_json::from_str(&cluster().kubectl(&["-n", &s.ns, "get", "job", "migrate", "-o", "json"])).unwrap();
        j["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Failed" && c["status"] == "True")
    });
    let failure = rec("container.failure", "migrate", "app_error", "application", 4, -1, "app", -1);
    s.assert_records(&[failure.clone(), failure]);
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_crash_looping_deployment_rolled_out_and_scaled_down_reports_only_its_restarts() {
    let s = Scenario::start("rollout");
    let deployment = |version: &str| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": s.ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "api"}},
            "template": {"metadata": {"labels": {"app": "api"}, "annotations": {"version": version}},
                "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 2,
                    "containers": [program("api", &["say", version, "sleep", "1", "exit", "1"])]}}}})
    };
    apply(cluster(), &deployment("v1"));
    let first = wait_pod(&s.ns, "app=api");
    s.wait_restarts(&first, "api", 1, Duration::from_secs(60));
    // The rollout replaces the crashing pod, the scale-down removes its successor: both silent.
    apply(cluster(), &deployment("v2"));
    wait("the v1 pod replaced", Duration::from_secs(60), || !cluster().pods(&s.ns, "app=api").contains(&first));
    let second = wait_pod(&s.ns, "app=api");
    s.wait_restarts(&second, "api", 1, Duration::from_secs(60));
    cluster().kubectl(&["-n", &s.ns, "scale", "deployment/api", "--replicas=0"]);
    wait("no api pods", Duration::from_secs(60), || cluster().pods(&s.ns, "app=api").is_empty());
    let restart = rec("container.restart", "api", "app_error", "application", 1, -1, "app", 1);
    let records = s.assert_records(&[restart.clone(), restart]);
    assert_ne!(
        attr(&records[0]["resource"]["attributes"], "k8s.pod.name"),
        attr(&records[1]["resource"]["attributes"], "k8s.pod.name")
    );
}

/// The one pod matching `selector` (waits for it).
fn wait_pod(ns: &str, selector: &str) -> String {
    let mut name = String::new();
    wait(&format!("one pod {selector}"), Duration::from_secs(60), || {
        let pods = cluster().pods(ns, selector);
        name = pods.first().cloned().unwrap_or_default();
        pods.len() == 1
    });
    name
}

/// What a start-failure record says: (event name, container, cause, outcome).
fn episode(records: &[Value]) -> Vec<(String, String, String, String)> {
    records
        .iter()
        .map(|r| {
            let a = &r["attributes"];
            (
                r["eventName"].as_str().unwrap_or_default().trim_start_matches("restart_watcher.").to_owned(),
                attr(&r["resource"]["attributes"], "k8s.container.name").as_str().unwrap_or_default().to_owned(),
                attr(a, "restart_watcher.cause").as_str().unwrap_or_default().to_owned(),
                attr(a, "restart_watcher.start_failure.outcome").as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn ep(event: &str, container: &str, cause: &str, outcome: &str) -> (String, String, String, String) {
    (event.into(), container.into(), cause.into(), outcome.into())
}

/// Waits until the pod's `container` waits with `reason` (the kubelet's own).
fn wait_waiting(ns: &str, pod: &str, container: &str, reason: &str) {
    wait(&format!("{pod}/{container} waiting with {reason}"), Duration::from_secs(90), || {
        let p = cluster().get_pod(ns, pod);
        p["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["name"] == container && c["state"]["waiting"]["reason"] == reason)
    });
}

/// Imports the test program's image into the real node's containerd under `name`.
fn import_image(name: &str) {
    let k = cluster();
    let tar = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("image-{}.tar", name.replace(['/', ':'], "_")));
    let made = std::process::Command::new("tests/support/test-image.sh").arg(&tar).arg(name).status().unwrap();
    assert!(made.success(), "tests/support/test-image.sh");
    let out = std::process::Command::new(k.var("CTR"))
        .args(["--address", k.var("CONTAINERD_ADDRESS"), "-n", "k8s.io", "images", "import"])
        .arg(&tar)
        .output()
        .unwrap();
    assert!(out.status.success(), "ctr images import: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn an_image_from_an_unreachable_registry_is_one_start_failure_ended_once_the_image_is_there() {
    let s = Scenario::start("pull");
    // Port 1 on loopback: nothing listens, the pull is refused.
    let image = "127.0.0.1:1/rw-test:pull";
    let c = json!({"name": "app", "image": image, "imagePullPolicy": "IfNotPresent", "args": ["hang"]});
    apply(cluster(), &pod(&s.ns, "pulling", json!({"containers": [c]})));
    wait_waiting(&s.ns, "pulling", "app", "ImagePullBackOff");
    import_image(image);
    wait("the container running", Duration::from_secs(120), || {
        cluster().get_pod(&s.ns, "pulling")["status"]["containerStatuses"][0]["state"]["running"].is_object()
    });
    let records = s.assert_records(&[
        rec("container.start_failure", "app", "image_pull", "configuration", -1, -1, "app", -1),
        rec("container.start_failure_ended", "app", "image_pull", "configuration", -1, -1, "app", -1),
    ]);
    assert_eq!(episode(&records)[1], ep("container.start_failure_ended", "app", "image_pull", "started"));
    let message = attr(&records[0]["attributes"], "restart_watcher.status.message");
    assert!(message.as_str().unwrap_or_default().contains("127.0.0.1:1"), "{message}");
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn an_absent_image_that_may_never_be_pulled_is_one_start_failure_ended_by_the_deletion() {
    let s = Scenario::start("never-pull");
    let c = json!({"name": "app", "image": "registry.test/absent:1", "imagePullPolicy": "Never", "args": ["hang"]});
    apply(cluster(), &pod(&s.ns, "absent", json!({"containers": [c]})));
    wait_waiting(&s.ns, "absent", "app", "ErrImageNeverPull");
    s.delete("absent");
    let records = s.assert_records(&[
        rec("container.start_failure", "app", "image_pull", "configuration", -1, -1, "app", -1),
        rec("container.start_failure_ended", "app", "image_pull", "configuration", -1, -1, "app", -1),
    ]);
    assert_eq!(episode(&records)[1].3, "pod_deleted");
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_missing_configmap_key_is_one_start_failure_ended_once_the_key_exists() {
    let s = Scenario::start("config");
    // The ConfigMap exists, without the key the container reads.
    cluster().kubectl(&["-n", &s.ns, "create", "configmap", "app-config", "--from-literal=other=1"]);
    let mut c = program("api", &["hang"]);
    c["env"] = json!([{"name": "DB_URL", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "db-url"}}}]);
    apply(cluster(), &pod(&s.ns, "api", json!({"containers": [c]})));
    wait_waiting(&s.ns, "api", "api", "CreateContainerConfigError");
    let patch = r#"{"data":{"db-url":"postgres://db"}}"#;
    cluster().kubectl(&["-n", &s.ns, "patch", "configmap", "app-config", "--type=merge", "-p", patch]);
    wait("the container running", Duration::from_secs(120), || {
        cluster().get_pod(&s.ns, "api")["status"]["containerStatuses"][0]["state"]["running"].is_object()
    });
    let records = s.assert_records(&[
        rec("container.start_failure", "api", "config_error", "configuration", -1, -1, "app", -1),
        rec("container.start_failure_ended", "api", "config_error", "configuration", -1, -1, "app", -1),
    ]);
    assert_eq!(episode(&records)[1].3, "started");
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn an_emptydir_past_its_size_limit_gets_the_pod_evicted_one_eviction_record() {
    let s = Scenario::start("eviction");
    let spec = json!({"containers": [program("writer", &["fill", "/data/big", "8", "hang"])],
        "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "2Mi"}}]});
    let mut spec = spec;
    spec["containers"][0]["volumeMounts"] = json!([{"name": "scratch", "mountPath": "/data"}]);
    apply(cluster(), &pod(&s.ns, "writer", spec));
    wait("the pod evicted", Duration::from_secs(120), || {
        cluster().get_pod(&s.ns, "writer")["status"]["reason"] == "Evicted"
    });
    let records = s.assert_records(&[rec("pod.eviction", "", "evicted", "infrastructure", -1, -1, "", -1)]);
    let message = attr(&records[0]["attributes"], "restart_watcher.status.message");
    assert!(message.as_str().unwrap_or_default().contains("EmptyDir"), "{message}");
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn previous_logs_are_the_last_lines_of_the_crashed_instance_read_from_the_real_kubelet() {
    let s = Scenario::start_with("logs", &["--previous-logs-lines", "2"]);
    let steps = ["say", "line one", "say", "line two", "say", "connection refused: db:5432", "sleep", "1", "exit", "1"];
    apply(cluster(), &pod(&s.ns, "logger", json!({"containers": [program("app", &steps)]})));
    s.wait_restarts_then_delete("logger", "app", 1, Duration::from_secs(60));
    // The replay has no kubelet to read logs from: the same records, without them.
    let records = s.assert_records(&[rec("container.restart", "app", "app_error", "application", 1, -1, "app", 1)]);
    let logs = attr(&records[0]["attributes"], "restart_watcher.previous_logs");
    assert_eq!(logs.as_str(), Some("line two\nconnection refused: db:5432\n"), "{records:#?}");
}

/// `ctr` against the real node's containerd, in the Kubernetes namespace.
fn ctr(args: &[&str]) -> String {
    let k = cluster();
    let out = std::process::Command::new(k.var("CTR"))
        .args(["--address", k.var("CONTAINERD_ADDRESS"), "-n", "k8s.io"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "ctr {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_killed_sandbox_is_one_pod_restart_whose_containers_are_its_children() {
    let s = Scenario::start("sandbox");
    let spec = json!({"containers": [program("app", &["hang"]), program("helper", &["hang"])]});
    apply(cluster(), &pod(&s.ns, "boxed", spec));
    let uid = cluster().wait_running(&s.ns, "boxed");
    // The pod's sandbox: its containerd container labelled as the sandbox of this pod's uid.
    let filter = format!("labels.\"io.kubernetes.pod.uid\"=={uid}");
    let sandbox = ctr(&["containers", "ls", "-q", &filter])
        .lines()
        .find(|id| ctr(&["containers", "info", id]).contains("\"io.cri-containerd.kind\": \"sandbox\""))
        .expect("the pod's sandbox container")
        .to_owned();
    ctr(&["tasks", "kill", "--signal", "SIGKILL", &sandbox]);
    s.wait_restarts("boxed", "app", 1, Duration::from_secs(90));
    s.wait_restarts_then_delete("boxed", "helper", 1, Duration::from_secs(30));
    // The kubelet stops both containers (SIGKILL: the test program ignores nothing, but the pause
    // process is gone) and starts them in a new sandbox.
    s.assert_records(&[
        rec("container.restart", "app", "sandbox_changed", "infrastructure", 137, 9, "app", 1),
        rec("container.restart", "helper", "sandbox_changed", "infrastructure", 137, 9, "app", 1),
        rec("pod.restart", "", "sandbox_changed", "infrastructure", -1, -1, "", -1),
    ]);
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_restarted_kubelet_reports_no_restart() {
    let s = Scenario::start("kubelet-restart");
    apply(cluster(), &pod(&s.ns, "steady", json!({"containers": [program("app", &["hang"])]})));
    cluster().wait_running(&s.ns, "steady");
    let node_dir = cluster().var("NODE_DIR").to_owned();
    let status =
        std::process::Command::new("tests/support/real-node.sh").args(["restart-kubelet", &node_dir]).status().unwrap();
    assert!(status.success(), "real-node.sh restart-kubelet");
    // The restarted kubelet syncs the pod again and writes its status.
    wait("the node Ready again", Duration::from_secs(90), || {
        let node: Value = serde_json::from_str(&cluster().kubectl(&["get", "node", NODE, "-o", "json"])).unwrap();
        node["status"]["conditions"].as_array().into_iter().flatten().any(|c| {
            c["type"] == "Ready" && c["status"] == "True" && c["lastHeartbeatTime"].as_str() > Some(&*s.started_at)
        })
    });
    std::thread::sleep(Duration::from_secs(10));
    s.assert_records(&[]);
}

/// The agent's image, as the Dockerfile builds it (tests/support/dockerfile.py), imported into the
/// real node's containerd.
fn import_agent_image() -> &'static str {
    static IMPORTED: OnceLock<()> = OnceLock::new();
    const NAME: &str = "registry.test/restart-watcher:0.1.0";
    IMPORTED.get_or_init(|| {
        let tar = Path::new(env!("CARGO_TARGET_TMPDIR")).join("restart-watcher-image.tar");
        let built = std::process::Command::new("tests/support/dockerfile.py").arg("image").arg(&tar).arg(NAME).status();
        assert!(built.unwrap().success(), "the Dockerfile does not build (its failing step is above)");
        ctr(&["images", "import", tar.to_str().unwrap()]);
    });
    NAME
}

/// Installs the chart as release `rw` in `ns` on the real node: the agent's own image, one agent in
/// the node's network (it reaches the API server and the collector on loopback), exporting to
/// `collector`; `mode` is `deployment` or `daemonset`. Returns the agent pod once it is Ready
/// through its own probes.
fn install_chart(ns: &str, mode: &str, collector: &str) -> String {
    let k = cluster();
    let image = import_agent_image();
    let (repository, tag) = image.rsplit_once(':').unwrap();
    let port = k.var("APISERVER_URL").rsplit(':').next().unwrap().to_owned();
    let admin_port = restart_watcher_test_support::backends::free_port().to_string();
    let sets = [
        format!("mode={mode}"),
        format!("image.repository={repository}"),
        format!("image.tag={tag}"),
        "replicas=1".into(),
        "leaderElection.enabled=false".into(),
        "hostNetwork.enabled=true".into(),
        format!("hostNetwork.adminPort={admin_port}"),
        format!("otlp.endpoint={collector}"),
        "clusterName=rw-test".into(),
        format!("nodeSelector.kubernetes\\.io/hostname={NODE}"),
        "extraEnv.KUBERNETES_SERVICE_HOST=127.0.0.1".into(),
        format!("extraEnv.KUBERNETES_SERVICE_PORT={port}"),
    ];
    let mut args =
        vec!["install", "rw", "deploy/helm/restart-watcher", "--kubeconfig", k.admin(), "-n", ns, "--create-namespace"];
    if mode == "daemonset" {
        // The node's cgroups, through the chart's read-only hostPath mount.
        args.extend(["--set", "features.oomKills=true"]);
    }
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    let out = restart_watcher_test_support::cluster::helm(&args);
    assert!(out.status.success(), "helm install: {}", String::from_utf8_lossy(&out.stderr));
    let mut agent = String::new();
    wait("the agent pod Ready", Duration::from_secs(120), || {
        let pods: Value = serde_json::from_str(&k.kubectl(&["-n", ns, "get", "pods", "-o", "json"])).unwrap();
        let ready = pods["items"].as_array().into_iter().flatten().find(|p| {
            p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        agent = ready.map(|p| p["metadata"]["name"].as_str().unwrap().to_owned()).unwrap_or_default();
        !agent.is_empty()
    });
    agent
}

fn uninstall_chart(ns: &str) {
    let out = restart_watcher_test_support::cluster::helm(&[
        "uninstall",
        "rw",
        "--kubeconfig",
        cluster().admin(),
        "-n",
        ns,
        "--wait",
    ]);
    assert!(out.status.success(), "helm uninstall: {}", String::from_utf8_lossy(&out.stderr));
}

/// A crash-looping pod in `ns`; waits until the agent's restart span for it is in Jaeger.
fn crash_loop_reaches_jaeger(ns: &str, jaeger: &restart_watcher_test_support::backends::Jaeger) {
    let app = program("app", &["sleep", "1", "exit", "1"]);
    span_reaches_jaeger(ns, json!({"containers": [app]}), jaeger, "container run", "app_error");
}

/// A pod in `ns` with `spec`; waits until the agent's span `name` for it is in Jaeger, with `cause`
/// on its event.
fn span_reaches_jaeger(
    ns: &str,
    spec: Value,
    jaeger: &restart_watcher_test_support::backends::Jaeger,
    name: &str,
    cause: &str,
) {
    let k = cluster();
    k.create_namespace(ns);
    apply(k, &pod(ns, "crashy", spec));
    let uid = k.get_pod(ns, "crashy")["metadata"]["uid"].as_str().unwrap().replace('-', "");
    let spans = restart_watcher_test_support::backends::eventually(
        &format!("the span {name} in Jaeger"),
        Duration::from_secs(120),
        || {
            let spans = jaeger.trace_spans(&uid);
            if spans.is_empty() { Err("no span yet".into()) } else { Ok(spans) }
        },
    );
    let span = &spans[0];
    assert_eq!(span["operationName"], name, "{span:#}");
    // The cause is on the span's event.
    let found = restart_watcher_test_support::backends::tag(&span["logs"][0]["fields"], "restart_watcher.cause");
    assert_eq!(found.and_then(Value::as_str), Some(cause), "{span:#}");
    k.kubectl(&["delete", "namespace", ns, "--wait=false"]);
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn the_chart_runs_the_agents_image_on_the_real_node_and_its_records_reach_jaeger_in_both_modes() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("rn-chart-{}", std::process::id()));
    let stack = restart_watcher_test_support::backends::Stack::start(
        &dir,
        Path::new(cluster().admin()),
        None,
        &["otel-collector/config.yaml"],
        "",
    );
    let collector = stack.collector.grpc_endpoint.clone();
    let agent = install_chart("rw-system", "deployment", &collector);
    // It runs as the chart's ServiceAccount, from the image built from the Dockerfile.
    let pod = cluster().get_pod("rw-system", &agent);
    assert_eq!(pod["spec"]["serviceAccountName"], "rw-restart-watcher", "{pod:#}");
    assert_eq!(pod["status"]["containerStatuses"][0]["image"], import_agent_image());
    crash_loop_reaches_jaeger("rn-chart-deployment", &stack.jaeger);
    uninstall_chart("rw-system");
    install_chart("rw-node-mode", "daemonset", &collector);
    crash_loop_reaches_jaeger("rn-chart-daemonset", &stack.jaeger);
    // features.oomKills: the image, as its non-root user, reads the node's cgroups.
    let mut worker = program("worker", &["oom-child", "hang"]);
    worker["resources"] = json!({"limits": {"memory": "32Mi"}});
    let spec = json!({"containers": [worker]});
    span_reaches_jaeger("rn-chart-oom-kill", spec, &stack.jaeger, "container oom kill", "oom_killed");
    uninstall_chart("rw-node-mode");
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_child_oom_killed_while_pid_1_lives_restarts_nothing_and_is_one_oom_kill_read_from_its_cgroup() {
    // The agent in node mode reads this machine's cgroups, where the real node's are.
    let flags = [
        "--node-name",
        NODE,
        "--oom-kills-from-cgroups",
        "/sys/fs/cgroup",
        "--oom-kill-poll",
        "1s",
        "--oom-kill-kernel-log",
        "/dev/kmsg",
    ];
    let mut s = Scenario::start_with("oom-child", &flags);
    // PID 1 runs a child that allocates past the limit; the kernel kills the child only, PID 1 says
    // so and lives on: the container does not end, so nothing restarts.
    let mut c = program("worker", &["sleep", "3", "oom-child", "say", "worker lives on", "hang"]);
    c["resources"] = json!({"limits": {"memory": "32Mi"}});
    apply(cluster(), &pod(&s.ns, "worker", json!({"containers": [c]})));
    let k = cluster();
    wait("the child's end logged", Duration::from_secs(60), || {
        let out = std::process::Command::new(k.var("KUBECTL"))
            .args(["--kubeconfig", k.admin(), "-n", &s.ns, "logs", "worker"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("worker lives on")
    });
    let p = k.get_pod(&s.ns, "worker");
    assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0, "{p:#}");
    s.agent.wait_records(1, Duration::from_secs(30));
    s.delete("worker");
    let live = s.agent.settle(QUIET).to_vec();
    assert_eq!(recs(&live), [rec("container.oom_kill", "worker", "oom_killed", "resource", -1, -1, "app", -1)]);
    let a = &live[0]["attributes"];
    assert_eq!(attr(a, "restart_watcher.oom_kill.count"), json!(1), "{live:#?}");
    assert_eq!(attr(a, "restart_watcher.memory.limit"), json!(33554432), "{live:#?}");
    // The child runs as /proc/self/exe: the kernel names it `exe`.
    assert_eq!(attr(a, "restart_watcher.oom_kill.process"), json!("exe"), "{live:#?}");
    // Nothing in the pod's status or Events says it: a recording replays to nothing.
    s.assert_replayed(&[]);
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_never_container_in_an_always_pod_that_exits_1_is_one_failure() {
    let s = Scenario::start("container-never");
    let mut task = program("task", &["sleep", "1", "exit", "1"]);
    task["restartPolicy"] = json!("Never");
    apply(cluster(), &pod(&s.ns, "mixed", json!({"containers": [program("app", &["hang"]), task]})));
    wait("task terminated", Duration::from_secs(60), || {
        let p = cluster().get_pod(&s.ns, "mixed");
        p["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["name"] == "task" && c["state"]["terminated"].is_object())
    });
    std::thread::sleep(Duration::from_secs(3));
    let p = cluster().get_pod(&s.ns, "mixed");
    assert_eq!(p["status"]["phase"], "Running", "the pod runs on: {p:#}");
    s.delete("mixed");
    s.assert_records(&[rec("container.failure", "task", "app_error", "application", 1, -1, "app", -1)]);
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_rule_restarting_on_exit_42_restarts_on_42_and_not_on_1() {
    let s = Scenario::start("rule-42");
    // The first run exits 42 (the rule restarts it), the second exits 1 (the rule does not).
    let mut c = program("worker", &["fail-first", "/data/ran", "42", "sleep", "1", "exit", "1"]);
    c["restartPolicy"] = json!("Never");
    c["restartPolicyRules"] = json!([{"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}]);
    let mut spec = json!({"restartPolicy": "Never", "containers": [c]});
    scratch_volume(&mut spec, &["worker"]);
    apply(cluster(), &pod(&s.ns, "worker", spec));
    wait("pod worker Failed", Duration::from_secs(90), || {
        cluster().get_pod(&s.ns, "worker")["status"]["phase"] == "Failed"
    });
    s.assert_records(&[
        rec("container.restart", "worker", "app_error", "application", 42, -1, "app", 1),
        rec("container.failure", "worker", "app_error", "application", 1, -1, "app", -1),
    ]);
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_restart_all_rule_fired_by_exit_42_is_one_pod_restart_named_after_its_trigger() {
    let s = Scenario::start("restart-all");
    // The first run of the worker exits 42; its rule restarts every container of the pod, the
    // init container included; the second run lives on. It waits 3 s first, so that the helper has
    // started (a container that never ran keeps its count at 0). The kubelet lists the statuses by
    // name.
    let mut worker = program("worker", &["sleep", "3", "fail-first", "/data/ran", "42", "hang"]);
    worker["restartPolicy"] = json!("Never");
    worker["restartPolicyRules"] =
        json!([{"action": "RestartAllContainers", "exitCodes": {"operator": "In", "values": [42]}}]);
    let mut spec = json!({"initContainers": [program("init", &["say", "ready"])],
                          "containers": [worker, program("helper", &["hang"])]});
    scratch_volume(&mut spec, &["worker"]);
    apply(cluster(), &pod(&s.ns, "restarted", spec));
    s.wait_restarts("restarted", "helper", 1, Duration::from_secs(90));
    cluster().wait_running(&s.ns, "restarted");
    s.delete("restarted");
    let records = s.assert_records(&[
        rec("container.restart", "init", "restart_all", "application", 137, 9, "init", 1),
        rec("container.restart", "helper", "restart_all", "application", 137, 9, "app", 1),
        rec("container.restart", "worker", "app_error", "application", 42, -1, "app", 1),
        rec("pod.restart", "", "restart_all", "application", 42, -1, "", -1),
    ]);
    let pod_restart = &records[3]["attributes"];
    assert_eq!(attr(pod_restart, "restart_watcher.pod_restart.trigger.container"), json!("worker"), "{records:#?}");
    for child in &records[..3] {
        assert_eq!(
            attr(&child["attributes"], "restart_watcher.pod_restart.id"),
            attr(pod_restart, "restart_watcher.restart.id")
        );
    }
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn an_in_place_resize_with_restart_container_is_a_resize_restart_with_its_limits() {
    let s = Scenario::start("resize");
    let mut c = program("app", &["hang"]);
    c["resources"] =
        json!({"limits": {"memory": "64Mi", "cpu": "500m"}, "requests": {"memory": "32Mi", "cpu": "100m"}});
    c["resizePolicy"] = json!([{"resourceName": "memory", "restartPolicy": "RestartContainer"},
                               {"resourceName": "cpu", "restartPolicy": "NotRequired"}]);
    apply(cluster(), &pod(&s.ns, "resized", json!({"containers": [c]})));
    cluster().wait_running(&s.ns, "resized");
    let patch = json!({"spec": {"containers": [{"name": "app", "resources": {
        "limits": {"memory": "96Mi", "cpu": "500m"}, "requests": {"memory": "48Mi", "cpu": "100m"}}}]}});
    cluster().kubectl(&[
        "-n",
        &s.ns,
        "patch",
        "pod",
        "resized",
        "--subresource",
        "resize",
        "--patch",
        &patch.to_string(),
    ]);
    s.wait_restarts_then_delete("resized", "app", 1, Duration::from_secs(60));
    let records = s.assert_records(&[rec("container.restart", "app", "resize", "configuration", 137, 9, "app", 1)]);
    let a = &records[0]["attributes"];
    assert_eq!(attr(a, "restart_watcher.resize.memory.limit.before"), json!(67108864), "{records:#?}");
    assert_eq!(attr(a, "restart_watcher.resize.memory.limit.after"), json!(100663296), "{records:#?}");
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_stop_signal_on_deletion_is_silent_and_the_same_signal_outside_one_is_a_crash() {
    let s = Scenario::start("stop-signal");
    // SIGUSR1 is this container's stop signal: the program exits 138 on it.
    let stopped = |name: &str, steps: &[&str]| {
        let mut c = program(name, steps);
        c["lifecycle"] = json!({"stopSignal": "SIGUSR1"});
        json!({"os": {"name": "linux"}, "terminationGracePeriodSeconds": 30, "containers": [c]})
    };
    apply(cluster(), &pod(&s.ns, "stopped", stopped("app", &["exit-on", "10", "hang"])));
    apply(cluster(), &pod(&s.ns, "crashing", stopped("app", &["exit-on", "10", "sleep", "1", "raise", "10"])));
    cluster().wait_running(&s.ns, "stopped");
    s.wait_restarts("crashing", "app", 1, Duration::from_secs(60));
    s.delete("crashing");
    // The deletion is over well before the 30 s grace period: the kubelet sent SIGUSR1, not SIGTERM
    // (which the program does not handle) and then SIGKILL.
    let asked = std::time::Instant::now();
    s.delete("stopped");
    assert!(asked.elapsed() < Duration::from_secs(25), "the stop signal ended it");
    s.assert_records(&[rec("container.restart", "app", "signal", "application", 138, 10, "app", 1)]);
}

/// A stand-in registry on loopback (`tests/support/test-registry.py`), declared to the node's
/// containerd in `certs.d/<host:port>/hosts.toml` (plain HTTP, or HTTPS with a CA that did not sign
/// its certificate); stopped and undeclared when dropped.
struct Registry {
    child: std::process::Child,
    hosts: std::path::PathBuf,
    host: String,
}

impl Registry {
    fn start(mode: &str, tls: Option<(&Path, &Path, &Path)>) -> Registry {
        let port = restart_watcher_test_support::backends::free_port();
        let host = format!("127.0.0.1:{port}");
        let mut cmd = std::process::Command::new("python3");
        cmd.args(["tests/support/test-registry.py", &port.to_string(), mode]);
        let mut toml =
            format!("server = \"http://{host}\"\n[host.\"http://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n");
        if let Some((cert, key, other_ca)) = tls {
            cmd.args([cert, key]);
            toml = format!(
                "server = \"https://{host}\"\n[host.\"https://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"{}\"\n",
                other_ca.display()
            );
        }
        let child = cmd.spawn().expect("python3 tests/support/test-registry.py");
        let hosts = Path::new(cluster().var("NODE_DIR")).join("certs.d").join(&host);
        std::fs::create_dir_all(&hosts).unwrap();
        std::fs::write(hosts.join("hosts.toml"), toml).unwrap();
        wait(&format!("the {mode} registry listening"), Duration::from_secs(10), || {
            std::net::TcpStream::connect(&host).is_ok()
        });
        Registry { child, hosts, host }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.hosts);
    }
}

/// A certificate for 127.0.0.1 and a CA that did not sign it, in `dir`: (cert, key, the other CA).
fn untrusted_certificate(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (cert, key, ca, ca_key) =
        (dir.join("cert.pem"), dir.join("key.pem"), dir.join("other-ca.pem"), dir.join("other-ca.key"));
    for (out, out_key, subject, san) in [(&cert, &key, "/CN=127.0.0.1", true), (&ca, &ca_key, "/CN=other-ca", false)] {
        let mut args = vec!["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", subject];
        if san {
            args.extend(["-addext", "subjectAltName=IP:127.0.0.1"]);
        }
        let status = std::process::Command::new("openssl")
            .args(&args)
            .arg("-keyout")
            .arg(out_key)
            .arg("-out")
            .arg(out)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "openssl req");
    }
    (cert, key, ca)
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn image_pull_failures_say_what_the_registry_answered_and_which_registry() {
    let mut s = Scenario::start("pull-reasons");
    let certs = untrusted_certificate(
        &Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("pull-certs-{}", std::process::id())),
    );
    let registries = [
        ("unauthorized", Registry::start("401", None)),
        ("not-found", Registry::start("404", None)),
        ("rate-limited", Registry::start("429", None)),
        ("timeout", Registry::start("hang", None)),
        ("tls", Registry::start("tls", Some((&certs.0, &certs.1, &certs.2)))),
    ];
    let mut pods: Vec<(&str, String)> = registries.iter().map(|(name, r)| (*name, r.host.clone())).collect();
    // Port 1 on loopback: nothing listens.
    pods.push(("unreachable", "127.0.0.1:1".to_owned()));
    for (name, host) in &pods {
        let c = json!({"name": "app", "image": format!("{host}/team/app:1.0"), "imagePullPolicy": "Always"});
        apply(cluster(), &pod(&s.ns, name, json!({"containers": [c]})));
    }
    for (name, _) in &pods {
        // containerd waits about 30 s for the hanging registry's answer.
        wait(&format!("{name} failing to pull"), Duration::from_secs(120), || {
            let p = cluster().get_pod(&s.ns, name);
            matches!(
                p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"].as_str(),
                Some("ErrImagePull" | "ImagePullBackOff")
            )
        });
    }
    for (name, _) in &pods {
        s.delete(name);
    }
    drop(registries);
    let live = s.agent.settle(QUIET).to_vec();
    let mut found: Vec<(String, String, String)> = live
        .iter()
        .filter(|r| r["eventName"] == "restart_watcher.container.start_failure")
        .map(|r| {
            let pod = attr(&r["resource"]["attributes"], "k8s.pod.name").as_str().unwrap().to_owned();
            let reason =
                attr(&r["attributes"], "restart_watcher.image_pull.reason").as_str().unwrap_or_default().to_owned();
            let registry =
                attr(&r["attributes"], "restart_watcher.image_pull.registry").as_str().unwrap_or_default().to_owned();
            (pod, reason, registry)
        })
        .collect();
    found.sort();
    let mut want: Vec<(String, String, String)> =
        pods.iter().map(|(name, host)| (name.to_string(), name.replace('-', "_"), host.clone())).collect();
    want.sort();
    assert_eq!(found, want, "{live:#?}");
    let ended = live.iter().filter(|r| r["eventName"] == "restart_watcher.container.start_failure_ended").count();
    assert_eq!(ended, pods.len(), "each episode ends with its pod's deletion: {live:#?}");
    // Six pods fail at once: the replay gives the same records, in the recording's order.
    let path = s.recorder.stop();
    let replayed = recs(&Recorder::replay(&path));
    let (mut sorted_replay, mut sorted_live) = (replayed.clone(), recs(&live));
    sorted_replay.sort();
    sorted_live.sort();
    assert_eq!(sorted_replay, sorted_live, "replayed records of pull-reasons");
    if std::env::var_os("RW_RECORD_REAL_NODE").is_some() {
        keep_fixture(&path, s.name, &replayed);
    }
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_volume_the_kubelet_cannot_mount_is_one_pod_start_failure_found_by_a_node_mode_lookup() {
    // Node mode: the agent of the real node looks up the pod's Events when its record comes.
    let flags = ["--node-name", NODE, "--list-jitter", "0s", "--pending-threshold", "5s"];
    let mut s = Scenario::start_with("volume", &flags);
    let mut c = program("app", &["hang"]);
    c["volumeMounts"] = json!([{"name": "cfg", "mountPath": "/cfg"}]);
    let volumes = json!([{"name": "cfg", "configMap": {"name": "app-config"}}]);
    apply(cluster(), &pod(&s.ns, "app", json!({"containers": [c], "volumes": volumes})));
    s.agent.wait_records(1, Duration::from_secs(60));
    // The ConfigMap created: the kubelet mounts it at its next try, and the pod starts.
    cluster().kubectl(&["-n", &s.ns, "create", "configmap", "app-config", "--from-literal=a=1"]);
    wait("the container running", Duration::from_secs(180), || {
        cluster().get_pod(&s.ns, "app")["status"]["containerStatuses"][0]["state"]["running"].is_object()
    });
    let live = s.agent.settle(QUIET).to_vec();
    let want = [
        rec("pod.start_failure", "", "volume", "configuration", -1, -1, "", -1),
        rec("pod.start_failure_ended", "", "volume", "configuration", -1, -1, "", -1),
    ];
    assert_eq!(recs(&live), want, "live records of volume: {live:#?}");
    assert_eq!(attr(&live[0]["attributes"], "restart_watcher.start_failure.reason"), "FailedMount");
    assert_eq!(attr(&live[1]["attributes"], "restart_watcher.start_failure.outcome"), "started");
    let (_, metrics) = restart_watcher_test_support::cluster::http_get(&s.agent.admin_addr(), "/metrics");
    let looked_up =
        |l: &str| l.starts_with("restart_watcher_api_requests_total{") && l.contains("kind=\"events_list\"");
    assert!(metrics.lines().any(looked_up), "the Events were looked up: {metrics}");
    // The recorded stream holds the kubelet's Events: replayed under the same threshold, the same.
    let path = s.recorder.stop();
    assert_eq!(recs(&Recorder::replay_with(&path, &["--pending-threshold", "5s"])), want, "replayed records of volume");
}
