//! What the benches against a real control plane share: a cluster of kwok nodes
//! (tests/support/cluster.sh), its client, many pods on it, and process measures.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

/// Requests in flight while populating.
pub const CONCURRENCY: usize = 64;
/// The namespaces the pods are spread over.
pub const NAMESPACES: [&str; 4] = ["bench-a", "bench-b", "bench-c", "bench-d"];

/// A running bench cluster; stopped on drop.
pub struct BenchCluster {
    pub dir: PathBuf,
    pub env: HashMap<String, String>,
    pub nodes: usize,
}

impl BenchCluster {
    /// Starts a cluster with `nodes` kwok nodes (`node-0` ...), with `apiserver_args`.
    pub fn start(name: &str, nodes: usize, apiserver_args: &[&str]) -> BenchCluster {
        let dir = std::env::temp_dir().join(format!("rw-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let names: Vec<String> = (0..nodes).map(|i| format!("node-{i}")).collect();
        let out = Command::new("tests/support/cluster.sh")
            .arg("start")
            .arg(&dir)
            .args(["--nodes", &names.join(",")])
            .args(apiserver_args)
            .env("RW_OWNER_PID", std::process::id().to_string())
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "the bench cluster did not start");
        let env = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect();
        BenchCluster { dir, env, nodes }
    }

    pub fn kubeconfig(&self) -> &str {
        &self.env["ADMIN_KUBECONFIG"]
    }

    pub async fn client(&self) -> Client {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig()).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
        Client::try_from(config).unwrap()
    }

    /// The pid of a component (`apiserver`, `etcd`, ...).
    pub fn pid(&self, component: &str) -> u32 {
        std::fs::read_to_string(self.dir.join(format!("{component}.pid"))).unwrap().trim().parse().unwrap()
    }
}

impl Drop for BenchCluster {
    fn drop(&mut self) {
        let _ = Command::new("tests/support/cluster.sh").arg("stop").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn pod_json(ns: &str, i: usize, owner_uid: &str, nodes: usize) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("app-{i:06}"), "namespace": ns,
            "labels": {"app.kubernetes.io/name": "app", "pod-template-hash": "5d4c8b7a9", "team": "payments"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x".repeat(600)},
            // A real owner (the garbage collector deletes pods whose owner does not exist) that no
            // controller acts on: the pods keep their size and nothing else touches them.
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "app-owner",
                                 "uid": owner_uid, "controller": false}]},
        "spec": {"nodeName": format!("node-{}", i % nodes),
            "initContainers": [{"name": "migrate", "image": "registry.example.com/migrate:1.0"}],
            "containers": [
            {"name": "app", "image": "registry.example.com/app:1.0", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}},
            {"name": "envoy", "image": "envoyproxy/envoy:v1.31.0"}]}
    }))
    .unwrap()
}

/// Creates `pods` pods spread over the namespaces and `nodes` nodes; returns once kwok runs them all.
pub async fn populate(client: &Client, pods: usize, nodes: usize) {
    let namespaces = NAMESPACES;
    let nsapi: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let mut owners = std::collections::HashMap::new();
    for ns in namespaces {
        let obj = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        nsapi.create(&PostParams::default(), &obj).await.unwrap();
        // The namespace's default ServiceAccount comes from the controller-manager; pods wait for it.
        let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), ns);
        while sa.get_opt("default").await.unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let cm: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), ns);
        let obj = serde_json::from_value(json!({"metadata": {"name": "app-owner"}})).unwrap();
        let uid = cm.create(&PostParams::default(), &obj).await.unwrap().metadata.uid.unwrap();
        owners.insert(ns, uid);
    }
    let owners = &owners;
    futures::stream::iter(0..pods)
        .map(|i| {
            let ns = namespaces[i % namespaces.len()];
            let api: Api<Pod> = Api::namespaced(client.clone(), ns);
            async move {
                let pod = pod_json(ns, i, &owners[ns], nodes);
                api.create(&PostParams::default(), &pod).await?;
                Ok::<_, kube::Error>(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    // The simulated kubelets start every pod (Pending -> Running) before anything is measured.
    let all: Api<Pod> = Api::all(client.clone());
    let pending = kube::api::ListParams::default().fields("status.phase=Pending").limit(1);
    while !all.list(&pending).await.unwrap().items.is_empty() {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Resident memory of a process, in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    proc_status_mib(pid, "VmRSS:")
}

/// The process's peak RSS so far (`VmHWM`), in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    proc_status_mib(pid, "VmHWM:")
}

fn proc_status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 =
        status.lines().find(|l| l.starts_with(field)).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    kb / 1024.0
}

/// A number from the environment, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// RSS samples: (seconds since the start, MiB per process).
pub type RssSamples = Vec<(f64, Vec<f64>)>;

/// Samples the RSS of processes every `every` on a thread of its own, from `started`.
pub struct RssSampler {
    samples: std::sync::Arc<std::sync::Mutex<RssSamples>>,
    sampling: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pids: Vec<u32>, started: std::time::Instant, every: Duration) -> RssSampler {
        let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let thread = {
            let (samples, sampling) = (samples.clone(), sampling.clone());
            std::thread::spawn(move || {
                while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                    let rss = pids.iter().map(|p| rss_mib(*p)).collect();
                    samples.lock().unwrap().push((started.elapsed().as_secs_f64(), rss));
                    std::thread::sleep(every);
                }
            })
        };
        RssSampler { samples, sampling, thread: Some(thread) }
    }

    /// The samples so far: (seconds since `started`, MiB per process).
    pub fn samples(&self) -> RssSamples {
        self.samples.lock().unwrap().clone()
    }

    /// Stops sampling; returns every sample.
    pub fn stop(mut self) -> RssSamples {
        self.sampling.store(false, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.samples()
    }
}

/// Writes samples as the CSV `benches/plot_rss.py` reads: `seconds`, then a column per label.
pub fn write_rss_csv(path: &str, labels: &[&str], samples: &[(f64, Vec<f64>)]) {
    let mut out = String::from("seconds");
    for label in labels {
        out.push_str(&format!(",{}", label.replace(' ', "_")));
    }
    out.push('\n');
    for (t, rss) in samples {
        out.push_str(&format!("{t:.1}"));
        for r in rss {
            out.push_str(&format!(",{r:.1}"));
        }
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

/// Plays the kubelet restarting the `app` container of `pod` for the `n`th time: one status
/// write raising its `restartCount`, with a new `lastState.terminated`. Retried 5 times.
pub async fn crash(client: &Client, ns: &str, pod: &str, n: u32) -> bool {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let now = jiff::Timestamp::now().to_string();
    let running = |name: &str, image: &str, restarts: u32| {
        crate::pods::c(name, restarts)
            .field("image", image)
            .field("imageID", "")
            .field("started", true)
            .id(&format!("containerd://{pod}-{name}-{restarts}"))
            .running_since(&now)
    };
    let app = running("app", "registry.example.com/app:1.0", n).terminated(json!({"exitCode": 1, "reason": "Error",
        "startedAt": now, "finishedAt": now, "containerID": format!("containerd://{pod}-app-{}", n - 1)}));
    let envoy = running("envoy", "envoyproxy/envoy:v1.31.0", 0);
    let patch = json!({"status": {"containerStatuses": [app.json(), envoy.json()]}});
    for _ in 0..5 {
        if api.patch_status(pod, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// A kubelet Event about container `app` of a pod (namespace, name, uid, node).
pub fn kubelet_event(
    pod: (&str, &str, &str, &str),
    reason: &str,
    message: String,
) -> k8s_openapi::api::core::v1::Event {
    let (ns, name, uid, node) = pod;
    let now = jiff::Timestamp::now().to_string();
    serde_json::from_value(json!({
        "metadata": {"generateName": format!("{name}."), "namespace": ns},
        "involvedObject": {"kind": "Pod", "namespace": ns, "name": name, "uid": uid, "fieldPath": "spec.containers{app}"},
        "reason": reason, "message": message, "type": "Warning", "count": 1,
        "source": {"component": "kubelet", "host": node},
        "firstTimestamp": now, "lastTimestamp": now,
    }))
    .unwrap()
}

/// Creates an Event; a connection the server closes under load (hyper's IncompleteMessage) is
/// retried, 5 times.
pub async fn create_event(client: &Client, ev: &k8s_openapi::api::core::v1::Event) -> Result<(), kube::Error> {
    let api: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(client.clone(), ev.metadata.namespace.as_deref().unwrap_or("default"));
    let mut tries = 0;
    loop {
        match api.create(&PostParams::default(), ev).await {
            Ok(_) => return Ok(()),
            Err(e) if tries < 5 => {
                tries += 1;
                eprintln!("creating an Event failed ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A counter's or gauge's total over its series, from an agent's `/metrics`.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The body of a plain HTTP GET (empty when nothing answers).
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return String::new() };
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf
}

/// Restarts accounted for by delivered records: each distinct restart id counts itself and its
/// `restarts.missed`. Returns (restarts accounted, distinct records).
pub fn accounted(records: &[opentelemetry_proto::tonic::logs::v1::LogRecord]) -> (i64, usize) {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    let attr = |r: &opentelemetry_proto::tonic::logs::v1::LogRecord, key: &str| {
        r.attributes.iter().find(|a| a.key == key).and_then(|a| a.value.as_ref()?.value.clone())
    };
    let mut by_id: HashMap<String, i64> = HashMap::new();
    for r in records {
        let id = match attr(r, restart_watcher::keys::RESTART_ID) {
            Some(Value::StringValue(s)) => s,
            _ => String::new(),
        };
        let missed = match attr(r, restart_watcher::keys::RESTARTS_MISSED) {
            Some(Value::IntValue(i)) => i,
            _ => 0,
        };
        by_id.insert(id, 1 + missed);
    }
    (by_id.values().sum(), by_id.len())
}

/// (namespace, name, uid, node) of a pod.
pub type PodRef = (String, String, String, String);

/// Creates `pods` pods on the cluster (see [`populate`]) and lists them back.
pub async fn populated(cluster: &BenchCluster, pods: usize) -> (Client, Vec<PodRef>) {
    let client = cluster.client().await;
    let t = std::time::Instant::now();
    populate(&client, pods, cluster.nodes).await;
    eprintln!("{pods} pods running after {:.0} s", t.elapsed().as_secs_f64());
    let all: Api<Pod> = Api::all(client.clone());
    let refs = all
        .list(&kube::api::ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| {
            let m = p.metadata;
            let node = p.spec.and_then(|s| s.node_name).unwrap_or_default();
            (m.namespace.unwrap(), m.name.unwrap(), m.uid.unwrap(), node)
        })
        .collect();
    (client, refs)
}

/// The agent under a bench: the release binary, cluster mode, every watch on, exporting over
/// OTLP/gRPC to `endpoint`, its admin server on a free loopback port. Killed on drop.
///
/// `BENCH_AGENT_WRAP` runs it under a profiler, e.g. `BENCH_AGENT_WRAP="heaptrack -o /tmp/agent"`
/// for what holds its heap over time; the RSS a bench then reads is the wrapper's, not the agent's.
pub struct BenchAgent {
    pub child: std::process::Child,
    pub admin: String,
    /// Log lines that named a relist.
    pub relists: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    listed: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// Another agent to run beside this build in a bench: `label=SPEC`, where SPEC joins with `+` a
/// binary's path (an older commit's release build; this build when none) and `env:NAME=VALUE`
/// settings, e.g. `old=/tmp/rw-old`, `arenas16=env:MALLOC_ARENA_MAX=16`,
/// `old1=/tmp/rw-old+env:MALLOC_ARENA_MAX=1`.
#[derive(Clone, Debug, Default)]
pub struct AgentVariant {
    pub label: String,
    pub bin: Option<std::path::PathBuf>,
    pub env: Vec<(String, String)>,
}

/// The variants listed in the environment variable `var` (comma-separated).
pub fn agent_variants(var: &str) -> Vec<AgentVariant> {
    let list = std::env::var(var).unwrap_or_default();
    let parse = |item: &str| {
        let (label, spec) = item.split_once('=').unwrap_or_else(|| panic!("{var}: label=SPEC,..., not {item}"));
        let mut v = AgentVariant { label: label.trim().replace(' ', "_"), ..AgentVariant::default() };
        for part in spec.split('+').map(str::trim) {
            match part.strip_prefix("env:").and_then(|kv| kv.split_once('=')) {
                Some((k, val)) => v.env.push((k.to_owned(), val.to_owned())),
                None => v.bin = Some(part.into()),
            }
        }
        v
    };
    list.split(',').filter(|s| !s.trim().is_empty()).map(parse).collect()
}

impl BenchAgent {
    pub fn start(cluster: &BenchCluster, endpoint: &str) -> BenchAgent {
        BenchAgent::start_variant(cluster, endpoint, &AgentVariant { label: "this".into(), ..AgentVariant::default() })
    }

    /// [`BenchAgent::start`] for another binary or settings.
    pub fn start_variant(cluster: &BenchCluster, endpoint: &str, variant: &AgentVariant) -> BenchAgent {
        let admin = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let bin = cluster.dir.join(format!("restart-watcher-{}", variant.label));
        let source = variant.bin.clone().unwrap_or_else(crate::agent_binary);
        std::fs::copy(&source, &bin).unwrap_or_else(|e| panic!("copying the agent {}: {e}", source.display()));
        let wrap: Vec<String> =
            std::env::var("BENCH_AGENT_WRAP").unwrap_or_default().split_whitespace().map(str::to_owned).collect();
        let mut cmd = match wrap.split_first() {
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let mut child = cmd
            .envs(variant.env.iter().map(|(k, v)| (k, v)))
            .args(["run", "--kubeconfig", cluster.kubeconfig(), "--no-checkpoint", "--otlp-endpoint", endpoint])
            .args(["--admin-listen", &admin])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (listed_tx, listed) = tokio::sync::oneshot::channel();
        let relists = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = relists.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let mut listed_tx = Some(listed_tx);
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Initial list complete") {
                    if let Some(tx) = listed_tx.take() {
                        let _ = tx.send(());
                    }
                } else if line.contains("elist") {
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        BenchAgent { child, admin, relists, listed: Some(listed) }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the agent's initial list of pods.
    pub async fn listed(&mut self) {
        if let Some(listed) = self.listed.take() {
            listed.await.expect("the agent ended before its initial list was complete");
        }
    }

    /// The agent's `/metrics` text.
    pub fn metrics(&self) -> String {
        http_get(&self.admin, "/metrics")
    }
}

impl Drop for BenchAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
