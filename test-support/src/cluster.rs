//! A real Kubernetes v1.35 control plane on loopback (`tests/support/cluster.sh`: etcd, kube-apiserver,
//! controller-manager, scheduler, kwok's simulated kubelets), shared by the tests of one test binary,
//! and helpers to drive it with the real `kubectl`, to play the kubelet's crashes and to run the
//! agent as a subprocess.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Cluster {
    pub dir: PathBuf,
    pub env: HashMap<String, String>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The path of a Go-built test tool (`kubectl`, `etcd`, `kwok`...) of `group`, built and cached by
/// `tests/support/build-go-tools.sh` on first use.
pub fn go_tool(group: &str, name: &str) -> String {
    let out = Command::new("tests/support/build-go-tools.sh")
        .arg(group)
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/support/build-go-tools.sh");
    assert!(out.status.success(), "building the Go test tools of {group} failed (see stderr above)");
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = format!("{name}=");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("build-go-tools.sh {group} names no {name}"))
        .to_owned()
}

/// Runs the pinned helm (built from `helm.sh/helm/v3`) with no repositories, plugins or cache
/// outside the test's reach.
pub fn helm(args: &[&str]) -> std::process::Output {
    static HELM: OnceLock<String> = OnceLock::new();
    let bin = HELM.get_or_init(|| go_tool("helm", "helm"));
    let home = std::env::temp_dir().join(format!("rw-helm-home-{}", std::process::id()));
    Command::new(bin)
        .args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .expect("run helm")
}

/// The `kubectl` the tests use: v1.35, built from the pinned Kubernetes module.
pub fn kubectl_bin() -> &'static str {
    static KUBECTL: OnceLock<String> = OnceLock::new();
    KUBECTL.get_or_init(|| go_tool("kube", "kubectl"))
}

impl Cluster {
    /// Starts the cluster once per test binary (watch cache off, so a compaction makes old
    /// resourceVersions expire for real). It stops when the test binary exits.
    pub fn shared() -> &'static Cluster {
        CLUSTER.get_or_init(|| Cluster::start(&["--watch-cache=false"]))
    }

    /// Starts a cluster with these extra arguments to `cluster.sh start DIR` (`--nodes a,b` first,
    /// then kube-apiserver flags). It stops when the test binary exits.
    pub fn start(args: &[&str]) -> Cluster {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("rw-cluster-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new("tests/support/cluster.sh")
            .arg("start")
            .arg(&dir)
            .args(args)
            .env("RW_OWNER_PID", std::process::id().to_string())
            .stderr(Stdio::inherit())
            .output()
            .expect("run tests/support/cluster.sh");
        assert!(out.status.success(), "the test cluster did not start (see stderr above)");
        let env = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect();
        Cluster { dir, env }
    }

    pub fn var(&self, key: &str) -> &str {
        self.env.get(key).unwrap_or_else(|| panic!("cluster.sh printed no {key}"))
    }

    pub fn admin(&self) -> &str {
        self.var("ADMIN_KUBECONFIG")
    }

    /// Runs kubectl as admin; panics with its stderr on failure.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_stdin(args, None)
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut cmd = Command::new(self.var("KUBECTL"));
        cmd.arg("--kubeconfig").arg(self.admin()).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = cmd.spawn().expect("kubectl");
        if let Some(input) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates a namespace and waits for its `default` ServiceAccount (the controller-manager
    /// creates it; the ServiceAccount admission plugin rejects pods until then).
    pub fn create_namespace(&self, ns: &str) {
        self.kubectl(&["create", "namespace", ns]);
        self.wait_for(&format!("ServiceAccount {ns}/default"), || {
            !self
                .kubectl(&["-n", ns, "get", "serviceaccount", "default", "--ignore-not-found", "-o", "name"])
                .is_empty()
        });
    }

    /// Polls `ready` every 100 ms for up to 60 s; panics naming `what` if it never holds.
    pub fn wait_for(&self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready() {
            assert!(Instant::now() < deadline, "{what}: not there after 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates a pod bound to `node` (a kwok node) and returns its uid once the simulated kubelet
    /// has started it (Running, with a pod IP), so that what a test writes next comes after it.
    pub fn create_pod(&self, ns: &str, name: &str, node: &str, labels: Value, containers: &[&str]) -> String {
        let pod = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"nodeName": node, "containers": containers.iter().map(|c| serde_json::json!({"name": c, "image": format!("registry.example.com/{c}:1.0")})).collect::<Vec<_>>()}
        });
        self.kubectl_stdin(&["apply", "-f", "-"], Some(&pod.to_string()));
        self.wait_running(ns, name)
    }

    /// Waits until the simulated kubelet has started the pod; returns its uid.
    pub fn wait_running(&self, ns: &str, name: &str) -> String {
        let mut uid = String::new();
        self.wait_for(&format!("pod {ns}/{name} Running"), || {
            let out = self.kubectl(&[
                "-n",
                ns,
                "get",
                "pod",
                name,
                "-o",
                "jsonpath={.metadata.uid} {.status.phase} {.status.podIP}",
            ]);
            let parts: Vec<&str> = out.split_whitespace().collect();
            if let [u, "Running", _ip] = parts[..] {
                uid = u.to_owned();
                true
            } else {
                false
            }
        });
        uid
    }

    /// Writes container statuses the way kubelet does (the `status` subresource).
    pub fn set_status(&self, ns: &str, name: &str, statuses: Value) {
        let patch = serde_json::json!({"status": {"phase": "Running", "containerStatuses": statuses}});
        self.kubectl(&[
            "-n",
            ns,
            "patch",
            "pod",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ]);
    }

    /// The pod as JSON.
    pub fn get_pod(&self, ns: &str, name: &str) -> Value {
        serde_json::from_str(&self.kubectl(&["-n", ns, "get", "pod", name, "-o", "json"])).expect("pod JSON")
    }

    /// The names of the pods matching a label selector, sorted.
    pub fn pods(&self, ns: &str, selector: &str) -> Vec<String> {
        let out = self.kubectl(&["-n", ns, "get", "pods", "-l", selector, "-o", "jsonpath={.items[*].metadata.name}"]);
        let mut names: Vec<String> = out.split_whitespace().map(str::to_owned).collect();
        names.sort();
        names
    }

    /// Waits until exactly `n` pods match `selector` and all of them are Running; returns them.
    pub fn wait_pods_running(&self, ns: &str, selector: &str, n: usize) -> Vec<String> {
        let mut names = Vec::new();
        self.wait_for(&format!("{n} Running pods {selector} in {ns}"), || {
            let out = self.kubectl(&[
                "-n",
                ns,
                "get",
                "pods",
                "-l",
                selector,
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
            ]);
            let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
            names = rows.iter().filter_map(|r| r.first().map(|s| (*s).to_owned())).collect();
            names.sort();
            rows.len() == n && rows.iter().all(|r| r.len() == 2 && r[1] == "Running")
        });
        names
    }

    /// Plays the kubelet when a container dies and is restarted: through the `status` subresource,
    /// the dead instance goes to `lastState.terminated` (exit code, reason, start and finish, its
    /// container id), `restartCount` rises by one and a new instance runs. `Killing` and `BackOff`
    /// Events are the caller's (see `kubelet_event`). Returns the new restart count.
    pub fn crash(&self, ns: &str, pod: &str, container: &str, reason: &str, exit_code: i32) -> i64 {
        let obj = self.get_pod(ns, pod);
        let uid = obj["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
        let mut restarts = -1;
        let mut status = obj["status"].clone();
        for list in ["containerStatuses", "initContainerStatuses"] {
            let Some(items) = status.get_mut(list).and_then(Value::as_array_mut) else { continue };
            for c in items.iter_mut().filter(|c| c["name"] == container) {
                let count = c["restartCount"].as_i64().unwrap_or(0);
                let started = c["state"]["running"]["startedAt"].clone();
                let now = now_rfc3339();
                c["lastState"] = serde_json::json!({"terminated": {
                    "exitCode": exit_code, "reason": reason, "startedAt": started, "finishedAt": now,
                    "containerID": c["containerID"].clone()}});
                c["restartCount"] = Value::from(count + 1);
                c["containerID"] = Value::from(format!("containerd://{uid}-{container}-{}", count + 1));
                c["state"] = serde_json::json!({"running": {"startedAt": now}});
                restarts = count + 1;
            }
        }
        assert!(restarts > 0, "pod {ns}/{pod} has no status for container {container}: {status}");
        let patch = serde_json::json!({"status": status});
        self.kubectl(&[
            "-n",
            ns,
            "patch",
            "pod",
            pod,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ]);
        restarts
    }

    /// A kubeconfig like `base` whose server is `server` (e.g. the fault-injection proxy).
    pub fn kubeconfig_via(&self, base: &str, server: &str, name: &str) -> PathBuf {
        let text = std::fs::read_to_string(base).unwrap();
        let url = self.var("APISERVER_URL");
        let path = self.dir.join(format!("{name}.kubeconfig"));
        std::fs::write(&path, text.replace(url, server)).unwrap();
        path
    }

    /// A kubeconfig like the admin's, authenticating with `token` (a ServiceAccount's).
    pub fn token_kubeconfig(&self, name: &str, token: &str) -> PathBuf {
        let admin = std::fs::read_to_string(self.admin()).unwrap();
        let path = self.dir.join(format!("{name}.kubeconfig"));
        std::fs::write(&path, admin.replace(self.var("ADMIN_TOKEN"), token.trim())).unwrap();
        path
    }

    /// Compacts etcd to its current revision: older resourceVersions now answer 410 Gone.
    pub fn compact_etcd(&self) {
        let endpoint = self.var("ETCD_ENDPOINT");
        let out = Command::new(self.var("ETCDCTL"))
            .args(["--endpoints", endpoint, "endpoint", "status", "-w", "json"])
            .env("ETCDCTL_API", "3")
            .output()
            .unwrap();
        let status: Value = serde_json::from_slice(&out.stdout).expect("etcdctl endpoint status json");
        let rev = status[0]["Status"]["header"]["revision"].as_i64().expect("revision");
        let out = Command::new(self.var("ETCDCTL"))
            .args(["--endpoints", endpoint, "compact", &rev.to_string()])
            .env("ETCDCTL_API", "3")
            .output()
            .unwrap();
        assert!(out.status.success(), "etcdctl compact: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Cluster {
    /// A cluster a test started for itself stops when the test ends, even when it fails (the
    /// shared one lives in a static and is stopped by the watchdog when the binary exits).
    fn drop(&mut self) {
        let _ = Command::new("tests/support/cluster.sh").arg("stop").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Multi-document YAML (rendered manifests) as JSON values, read by PyYAML (installed by
/// tests/support/install-test-deps.sh).
pub fn yaml_objects(yaml: &str) -> Vec<Value> {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args(["-c", "import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "PyYAML (installed by tests/support/install-test-deps.sh) could not read the YAML");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A container status as kubelet writes it: running since now as instance `restarts`, with the
/// last termination `(reason, exit code, finished at)` of instance `restarts - 1` when given.
pub fn status(name: &str, restarts: u32, last: Option<(&str, i32, &str)>) -> Value {
    let mut c = crate::pods::c(name, restarts)
        .field("started", true)
        .field("imageID", format!("registry.example.com/{name}@sha256:0123456789abcdef"))
        .id(&format!("containerd://{name}-{restarts}"))
        .running_since(&now_rfc3339());
    if let Some((reason, exit_code, finished_at)) = last {
        c = c.terminated(serde_json::json!({"reason": reason, "exitCode": exit_code,
            "startedAt": "2026-01-01T00:00:00Z", "finishedAt": finished_at,
            "containerID": format!("containerd://{name}-{}", restarts.saturating_sub(1))}));
    }
    c.json()
}

pub fn now_rfc3339() -> String {
    // Truncated, never rounded up: a finishedAt in the future would be a clock skew.
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap().to_string()
}

/// The agent, running as a subprocess; its stdout lines (records) and stderr lines (logs) are
/// collected as they come.
pub struct Agent {
    child: Child,
    stdout: Receiver<String>,
    pub records: Vec<Value>,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    /// Runs the agent writing OTLP/JSON log records to stdout (collected as `records`).
    pub fn start(kubeconfig: &Path, args: &[&str]) -> Agent {
        let mut all = vec!["--exporter", "otlp-json", "--signals", "logs"];
        all.extend_from_slice(args);
        Agent::start_raw(kubeconfig, &all)
    }

    /// [`Agent::start`] with these environment variables too (settings as a ConfigMap gives them).
    pub fn start_env(kubeconfig: &Path, args: &[&str], env: &[(String, String)]) -> Agent {
        let mut all = vec!["--exporter", "otlp-json", "--signals", "logs"];
        all.extend_from_slice(args);
        Agent::spawn(kubeconfig, &all, env)
    }

    /// Runs the agent with exactly these flags (plus the kubeconfig and a port-0 admin server).
    pub fn start_raw(kubeconfig: &Path, args: &[&str]) -> Agent {
        Agent::spawn(kubeconfig, args, &[])
    }

    fn spawn(kubeconfig: &Path, args: &[&str], env: &[(String, String)]) -> Agent {
        let mut child = Command::new(crate::agent_binary())
            .arg("run")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--admin-listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RESTART_WATCHER_LOG", "info,restart_watcher=debug")
            .env_remove("KUBECONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start restart-watcher");
        let (tx, stdout) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let logs = Arc::new(Mutex::new(Vec::new()));
        let err = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Agent { child, stdout, records: Vec::new(), logs }
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.logs.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("agent exited ({status}) before logging {needle:?}; logs:\n{}", self.logs_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no log line with {needle:?} within {timeout:?}; logs:\n{}", self.logs_text());
    }

    pub fn wait_ready(&mut self) {
        self.wait_log("Initial list complete", Duration::from_secs(30));
    }

    /// The admin server's address, from its startup log line.
    pub fn admin_addr(&mut self) -> String {
        self.wait_log("Admin server listening", Duration::from_secs(10));
        let logs = self.logs_text();
        let line = logs.lines().find(|l| l.contains("Admin server listening")).unwrap();
        line.split("addr=").nth(1).unwrap().split_whitespace().next().unwrap().to_owned()
    }

    pub fn logs_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    fn drain(&mut self, wait: Duration) -> bool {
        match self.stdout.recv_timeout(wait) {
            Ok(line) => {
                let v: Value = serde_json::from_str(&line).expect("agent stdout is OTLP/JSON lines");
                for rl in v["resourceLogs"].as_array().into_iter().flatten() {
                    for rec in rl["scopeLogs"][0]["logRecords"].as_array().into_iter().flatten() {
                        let mut rec = rec.clone();
                        rec["resource"] = rl["resource"].clone();
                        self.records.push(rec);
                    }
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Waits until at least `n` records arrived in total; returns all of them.
    pub fn wait_records(&mut self, n: usize, timeout: Duration) -> &[Value] {
        let deadline = Instant::now() + timeout;
        while self.records.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "{} records within {timeout:?}, wanted {n}: {:#?}\nlogs:\n{}",
                    self.records.len(),
                    summaries(&self.records),
                    self.logs_text()
                );
            }
            self.drain(left.min(Duration::from_millis(200)));
        }
        &self.records
    }

    /// Collects whatever else arrives within `quiet`.
    pub fn settle(&mut self, quiet: Duration) -> &[Value] {
        let deadline = Instant::now() + quiet;
        while Instant::now() < deadline {
            self.drain(Duration::from_millis(100));
        }
        &self.records
    }

    /// Waits for the agent to exit on its own; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100)); // let the log reader finish
                return status.code();
            }
            assert!(Instant::now() < deadline, "agent still running after {timeout:?}; logs:\n{}", self.logs_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits for the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let code = self.wait_exit(Duration::from_secs(20));
        while self.drain(Duration::from_millis(50)) {}
        code
    }

    /// SIGKILL: the agent dies without any cleanup.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A resource or record attribute's value, as a plain JSON value.
pub fn attr(list: &Value, key: &str) -> Value {
    list.as_array()
        .into_iter()
        .flatten()
        .find(|a| a["key"] == key)
        .map(|a| {
            let v = &a["value"];
            v.get("stringValue")
                .cloned()
                .or_else(|| v.get("intValue").and_then(|i| i.as_str()).map(|s| Value::from(s.parse::<i64>().unwrap())))
                .or_else(|| v.get("boolValue").cloned())
                .unwrap_or(v.clone())
        })
        .unwrap_or(Value::Null)
}

/// (pod, container, new restart count, missed, detected_late) of each record.
pub fn summaries(records: &[Value]) -> Vec<(String, String, i64, i64, bool)> {
    records
        .iter()
        .map(|r| {
            let res = &r["resource"]["attributes"];
            (
                attr(res, "k8s.pod.name").as_str().unwrap_or("").to_owned(),
                attr(res, "k8s.container.name").as_str().unwrap_or("").to_owned(),
                attr(&r["attributes"], "restart_watcher.restart_count").as_i64().unwrap_or(-1),
                attr(&r["attributes"], "restart_watcher.restarts.missed").as_i64().unwrap_or(0),
                attr(&r["attributes"], "restart_watcher.detected_late").as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// The value of the series of `name` whose labels include all of `labels`, from the agent's
/// `/metrics` at `admin`.
pub fn series(admin: &str, name: &str, labels: &[(&str, &str)]) -> Option<String> {
    let (_, text) = http_get(admin, "/metrics");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .and_then(|l| l.rsplit(' ').next())
        .map(str::to_owned)
}

/// A plain HTTP/1.0 GET; returns (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let code = buf.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (code, body)
}
