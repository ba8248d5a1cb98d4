//! What the agent's pod watches cost the control plane (a real v1.35 kube-apiserver with its watch
//! cache, and etcd), per list strategy, measured in the same run:
//!
//! - node mode: `BENCH_CP_AGENTS` node-mode watches (one per simulated node, `spec.nodeName=<node>`)
//!   start at once over `BENCH_CP_PODS` pods; then the API server is restarted under them;
//! - cluster mode: one agent (the real binary, `--list-strategy` forced) watching every pod.
//!
//! Each node-mode watch is the agent's own watcher configuration (`WatchScope::watcher_config`),
//! run in this process (one process running many scopes: 2 cores cannot host hundreds of agents),
//! started at once with no jitter (the worst case). Figures: the API server's CPU seconds and peak
//! RSS while the watches get their initial state, etcd list requests and pods read from storage for
//! lists (the API server's own metrics), the time until every watch is synced, and in cluster mode
//! the agent's peak RSS.
//!
//! - node mode at fleet scale (`fleet`): the Events and owners of N node-mode agents, watched
//!   cluster-wide (before issue 38) against looked up (now), at N = 50 and `BENCH_CP_AGENTS`,
//!   and one cluster-mode agent's watches, under one background of Events, a rollout wave and a
//!   crash loop.
//!
//! Run: `cargo bench --bench control_plane` (env `BENCH_CP_PODS`, default 100000;
//! `BENCH_CP_AGENTS`, default 200; `BENCH_CP_ONLY=fleet` or `pods` for one part;
//! `BENCH_CP_FLEET_REVERSE=1` for the fleet rows in the opposite order). Needs the cluster of
//! tests/support (built on first use).

use restart_watcher_test_support::bench_cluster;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bench_cluster::{BenchCluster, populate};
use futures::StreamExt;
use kube::runtime::utils::StreamBackoff;
use kube::runtime::watcher;
use kube::{Api, Client};
use restart_watcher::pod::SlimPod;
use restart_watcher::watch::{ListStrategy, NODE_MODE_DEFAULT_JITTER, WatchScope, WatchTuning, watch_backoff};

/// After an API server restart, how long the cost is measured.
const RESTART_WINDOW: Duration = Duration::from_secs(45);

const STRATEGIES: [ListStrategy; 3] = [ListStrategy::Streaming, ListStrategy::WatchCache, ListStrategy::PagedQuorum];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let pods = env_usize("BENCH_CP_PODS", 100_000);
    let agents = env_usize("BENCH_CP_AGENTS", 200);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let cluster = BenchCluster::start("cp", agents, &[]);
        let client = cluster.client().await;
        eprintln!("populating {pods} pods over {agents} nodes...");
        let t = Instant::now();
        populate(&client, pods, agents).await;
        eprintln!("populated in {:.0} s", t.elapsed().as_secs_f64());
        if std::env::var("BENCH_CP_ONLY").as_deref() != Ok("pods") {
            fleet_table(&cluster, &client, pods, agents).await;
        }
        if std::env::var("BENCH_CP_ONLY").as_deref() == Ok("fleet") {
            return;
        }
        println!("\n{pods} pods, {agents} nodes; API server v1.35 with its watch cache\n");
        println!("| scenario | strategy | all synced after | API server CPU | API server peak RSS | etcd list requests | pods read from storage for lists | agent peak RSS |");
        println!("|---|---|---|---|---|---|---|---|");
        // Twice, in opposite orders: the API server's heap grows over the run, and a strategy
        // must not look cheaper only for coming later.
        let order = STRATEGIES.iter().chain(STRATEGIES.iter().rev());
        for (run, strategy) in order.enumerate() {
            let scopes: Vec<WatchScope> = (0..agents).map(node_scope).collect();
            let row = measure(&cluster, &client, &scopes, *strategy, false).await;
            let scenario = format!("{agents} node-mode agents start at once (pass {})", run / STRATEGIES.len() + 1);
            print_row(&scenario, *strategy, &row);
        }
        for strategy in STRATEGIES {
            let scopes: Vec<WatchScope> = (0..agents).map(node_scope).collect();
            let row = measure(&cluster, &client, &scopes, strategy, true).await;
            print_row(&format!("API server restarted under {agents} node-mode agents"), strategy, &row);
        }
        let agent = agent_binary(&cluster);
        // A cluster-wide watch never lists at resourceVersion 0 (forced, it pages): two strategies.
        for strategy in [ListStrategy::Streaming, ListStrategy::PagedQuorum] {
            let row = measure_agent(&cluster, &client, &agent, strategy, &[]).await;
            print_row("one cluster-mode agent (the binary)", strategy, &row);
        }
        let row = measure_agent(&cluster, &client, &agent, ListStrategy::Streaming, &[("MALLOC_ARENA_MAX", "2")]).await;
        print_row("one cluster-mode agent (the binary), MALLOC_ARENA_MAX=2", ListStrategy::Streaming, &row);
    });
}

/// Node mode at fleet scale: the old watches against the lookups at N = 50 and `agents`, one
/// cluster-mode agent, and the background alone, each under the same background (`fleet`).
async fn fleet_table(cluster: &BenchCluster, client: &Client, pods: usize, agents: usize) {
    use fleet::Way;
    // The simulated kubelets settle the pods just created before anything is measured.
    tokio::time::sleep(Duration::from_secs(30)).await;
    println!(
        "\n{pods} pods, {agents} nodes; each row {} s of {} Events/s across the cluster, a rollout wave of {} ReplicaSets, \
         {} pods crash-looping on 3 nodes (API server CPU: the row's less the background's alone)\n",
        fleet::SECONDS,
        fleet::FLEET_EVENTS_PER_SEC,
        fleet::FLEET_ROLLOUT,
        fleet::FLEET_CRASHING
    );
    println!(
        "| agents | Events and owners by | API server CPU | per agent | bytes sent | per agent | lists and gets | per agent | crashes explained | median delay crash -> Event |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let sizes: Vec<usize> = [50, agents]
        .into_iter()
        .filter(|n| *n <= agents)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    // The background alone, before and after: its CPU is what the rows' less theirs leaves to the
    // agents (the lower of the two: the cluster may still be settling at the first).
    let mut middle: Vec<(usize, Way)> = Vec::new();
    for n in sizes {
        middle.push((n, Way::Watches));
        middle.push((n, Way::Lookups));
    }
    middle.push((1, Way::ClusterMode));
    // `BENCH_CP_FLEET_REVERSE=1`: the same rows in the opposite order (a row must not look cheaper
    // only for coming later, on a cluster still settling).
    if std::env::var_os("BENCH_CP_FLEET_REVERSE").is_some() {
        middle.reverse();
    }
    let runs: Vec<(usize, Way)> = [(0, Way::Nothing)].into_iter().chain(middle).chain([(0, Way::Nothing)]).collect();
    let mut rows = Vec::new();
    for (round, (n, way)) in runs.into_iter().enumerate() {
        rows.push((n, way, fleet::run(cluster, client, n, way, round).await));
    }
    let background_cpu =
        rows.iter().filter(|(_, w, _)| *w == Way::Nothing).map(|(_, _, r)| r.cpu_secs).fold(f64::MAX, f64::min);
    for (n, way, r) in rows {
        if way == Way::Nothing {
            println!(
                "| 0 | the background alone | {:.2} s | | {:.1} MB | | {:.0} | | | |",
                r.cpu_secs,
                r.bytes / 1e6,
                r.requests
            );
            continue;
        }
        let cpu = (r.cpu_secs - background_cpu).max(0.0);
        let per = |v: f64| v / n as f64;
        let name = match way {
            Way::ClusterMode => "one cluster-mode agent's watches",
            Way::Watches => "cluster-wide watches (before)",
            _ => "lookups (now)",
        };
        println!(
            "| {n} | {name} | {cpu:.2} s | {:.3} s | {:.1} MB | {:.3} MB | {:.0} | {:.1} | {}/{} | {:.0} ms |",
            per(cpu),
            r.bytes / 1e6,
            per(r.bytes) / 1e6,
            r.requests,
            per(r.requests),
            r.explained,
            r.crashes,
            r.delay_ms
        );
    }
}

/// A node-mode agent's scope, with node mode's default jitter on reconnects and relists (the
/// start-up jitter is not applied: the agents start at once, the worst case).
fn node_scope(i: usize) -> WatchScope {
    WatchScope {
        node_name: Some(format!("node-{i}")),
        tuning: WatchTuning { jitter: NODE_MODE_DEFAULT_JITTER, ..WatchTuning::default() },
        ..WatchScope::default()
    }
}

fn print_row(scenario: &str, strategy: ListStrategy, r: &Row) {
    println!(
        "| {scenario} | {} | {} | {:.2} s | {:.0} MiB | {} | {} | {} |",
        strategy.as_str(),
        if r.synced_secs.is_nan() {
            format!("({} s window)", RESTART_WINDOW.as_secs())
        } else {
            format!("{:.2} s", r.synced_secs)
        },
        r.apiserver_cpu_secs,
        r.apiserver_peak_rss_mib,
        r.etcd_lists,
        r.storage_fetched,
        r.agent_peak_rss_mib.map(|m| format!("{m:.1} MiB")).unwrap_or_else(|| "(in the bench process)".to_owned())
    );
}

struct Row {
    synced_secs: f64,
    apiserver_cpu_secs: f64,
    apiserver_peak_rss_mib: f64,
    etcd_lists: u64,
    storage_fetched: u64,
    agent_peak_rss_mib: Option<f64>,
}

impl Row {
    /// The control-plane figures between two snapshots (`after` of a restarted API server counts
    /// from zero).
    fn between(before: Option<&Snapshot>, after: &Snapshot) -> Row {
        let since = |name: &str, op: &str| after.metric(name, op) - before.map_or(0, |b| b.metric(name, op));
        Row {
            synced_secs: f64::NAN,
            apiserver_cpu_secs: after.cpu_secs - before.map_or(0.0, |b| b.cpu_secs),
            apiserver_peak_rss_mib: 0.0,
            etcd_lists: since("etcd_requests_total", "list"),
            storage_fetched: since("apiserver_storage_list_fetched_objects_total", ""),
            agent_peak_rss_mib: None,
        }
    }
}

/// The agent binary, copied into the cluster's directory (a rebuild during the bench does not change it).
fn agent_binary(cluster: &BenchCluster) -> std::path::PathBuf {
    let to = cluster.dir.join("restart-watcher");
    std::fs::copy(env!("CARGO_BIN_EXE_restart-watcher"), &to).unwrap();
    to
}

/// One cluster-mode agent (pods only: no Events, no owner watch, no checkpoint), `strategy`
/// forced, until its initial list is complete: its peak RSS and the API server's cost.
async fn measure_agent(
    cluster: &BenchCluster,
    client: &Client,
    agent: &std::path::Path,
    strategy: ListStrategy,
    agent_env: &[(&str, &str)],
) -> Row {
    use std::io::BufRead;
    let choice = match strategy {
        ListStrategy::Streaming => "streaming",
        ListStrategy::WatchCache => "watch-cache",
        ListStrategy::PagedQuorum => "paginated",
    };
    let before = Snapshot::take(cluster, client).await;
    let apiserver = RssSampler::start(cluster.pid("apiserver"));
    let t = Instant::now();
    let mut child = std::process::Command::new(agent)
        .args(["run", "--kubeconfig", cluster.kubeconfig(), "--no-checkpoint", "--no-events", "--no-owner-watch"])
        .args(["--exporter", "console", "--admin-listen", "127.0.0.1:0", "--list-strategy", choice])
        .envs(agent_env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let sampler = RssSampler::start(child.id());
    let stderr = child.stderr.take().unwrap();
    tokio::task::spawn_blocking(move || {
        let lines = std::io::BufReader::new(stderr).lines();
        for line in lines.map_while(Result::ok) {
            if line.contains("Initial list complete") {
                return;
            }
        }
        panic!("the agent ended before its initial list was complete");
    })
    .await
    .unwrap();
    let synced_secs = t.elapsed().as_secs_f64();
    let agent_peak = sampler.stop();
    let apiserver_peak = apiserver.stop();
    let after = Snapshot::take(cluster, client).await;
    let _ = child.kill();
    let _ = child.wait();
    Row {
        synced_secs,
        apiserver_peak_rss_mib: apiserver_peak,
        agent_peak_rss_mib: Some(agent_peak),
        ..Row::between(Some(&before), &after)
    }
}

/// Starts one watch per scope at once with `strategy` and waits until every one has its initial
/// state; with `restart`, first syncs them, then restarts the API server and measures the resync.
async fn measure(
    cluster: &BenchCluster,
    client: &Client,
    scopes: &[WatchScope],
    strategy: ListStrategy,
    restart: bool,
) -> Row {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let stop = tokio_util::sync::CancellationToken::new();
    let spawn_all = |client: Client| {
        for (i, scope) in scopes.iter().enumerate() {
            let api: Api<SlimPod> = Api::all(client.clone());
            let cfg = scope.watcher_config(strategy);
            let backoff = watch_backoff(scope.tuning.jitter);
            let (tx, stop) = (tx.clone(), stop.clone());
            tokio::spawn(async move {
                let stream = StreamBackoff::new(watcher::watcher(api, cfg), backoff).take_until(stop.cancelled_owned());
                let mut stream = std::pin::pin!(stream);
                while let Some(ev) = stream.next().await {
                    if let Ok(watcher::Event::InitDone) = ev {
                        let _ = tx.send(i);
                    }
                }
            });
        }
    };
    if restart {
        spawn_all(client.clone());
        wait_synced(&mut rx, scopes.len()).await;
    }
    let before = Snapshot::take(cluster, client).await;
    let t = Instant::now();
    let (synced_secs, peak) = if restart {
        // The watches reconnect on their own (jittered backoff) and resume or start over: the
        // cost is measured over a fixed window after the new API server is ready (its metrics
        // start from zero).
        restart_apiserver(cluster).await;
        let sampler = RssSampler::start(cluster.pid("apiserver"));
        while client.request_text(http::Request::get("/readyz").body(Vec::new()).unwrap()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(RESTART_WINDOW).await;
        (f64::NAN, sampler.stop())
    } else {
        let sampler = RssSampler::start(cluster.pid("apiserver"));
        spawn_all(client.clone());
        wait_synced(&mut rx, scopes.len()).await;
        (t.elapsed().as_secs_f64(), sampler.stop())
    };
    let after = Snapshot::take(cluster, client).await;
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;
    Row { synced_secs, apiserver_peak_rss_mib: peak, ..Row::between((!restart).then_some(&before), &after) }
}

/// Waits until `n` different watches have reported their initial state.
async fn wait_synced(rx: &mut tokio::sync::mpsc::UnboundedReceiver<usize>, n: usize) {
    let mut seen = std::collections::HashSet::new();
    while seen.len() < n {
        seen.insert(rx.recv().await.unwrap());
    }
}

/// The API server's CPU time and the pod-list metrics at one moment.
struct Snapshot {
    cpu_secs: f64,
    metrics: HashMap<(String, String), u64>,
}

impl Snapshot {
    async fn take(cluster: &BenchCluster, client: &Client) -> Snapshot {
        let text = client.request_text(http::Request::get("/metrics").body(Vec::new()).unwrap()).await.unwrap();
        let mut metrics = HashMap::new();
        for line in text.lines().filter(|l| l.contains("resource=\"pods\"") && l.contains("group=\"\"")) {
            let (name, rest) = line.split_once('{').unwrap_or((line, ""));
            let op = rest.split("operation=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or("").to_owned();
            let value: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
            metrics.insert((name.to_owned(), op), value as u64);
        }
        Snapshot { cpu_secs: cpu_secs(cluster.pid("apiserver")), metrics }
    }

    fn metric(&self, name: &str, operation: &str) -> u64 {
        self.metrics.get(&(name.to_owned(), operation.to_owned())).copied().unwrap_or(0)
    }
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Samples a process's RSS every 20 ms; `stop` returns the peak, in MiB.
struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<f64>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut peak: f64 = 0.0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    peak = peak.max(bench_cluster::rss_mib(pid));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        RssSampler { stop, handle }
    }

    fn stop(self) -> f64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

/// Kills the API server and starts it again with the same command line, in the same directory.
async fn restart_apiserver(cluster: &BenchCluster) {
    let pid = cluster.pid("apiserver");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<String> =
        cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::File::create(cluster.dir.join("apiserver-restarted.log")).unwrap();
    let child = std::process::Command::new(&args[0])
        .args(&args[1..])
        .current_dir(&cluster.dir)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    std::fs::write(cluster.dir.join("apiserver.pid"), child.id().to_string()).unwrap();
    // Reaped when it ends (by the next restart, or the cluster's stop), so that its pid goes away.
    std::thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
}

/// Node mode at fleet scale (issue 38): what the agents' Events and owners cost the API server,
/// with N node-mode agents watching them cluster-wide (the old way) against N node-mode agents
/// looking up their failing pods' (`enrich::lookups`), under the same background, in the same run:
/// Events at `FLEET_EVENTS_PER_SEC` about pods all over the cluster, a rollout wave of
/// `FLEET_ROLLOUT` ReplicaSets (created, then updated twice), and a crash loop of `FLEET_CRASHING`
/// pods on 3 nodes, each crash with the kubelet's `Killing` Event (a liveness probe). The one
/// cluster-mode agent's watches under the same background are the yardstick.
mod fleet {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::{Event as KubeEventObj, Pod};
    use kube::api::{ListParams, PartialObjectMeta, PostParams};
    use restart_watcher::enrich::KubeEventStore;
    use restart_watcher::enrich::lookups::Lookups;
    use restart_watcher::enrich::owners::OwnerIndex;
    use restart_watcher::record::{OwnerRef, Owners};
    use restart_watcher_test_support::bench_cluster::{crash, create_event, kubelet_event};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    pub const SECONDS: u64 = 30;
    pub const FLEET_EVENTS_PER_SEC: u64 = 50;
    pub const FLEET_ROLLOUT: usize = 30;
    pub const FLEET_CRASHING: usize = 6;
    /// How often each crashing pod crashes.
    const CRASH_EVERY: Duration = Duration::from_secs(5);

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum Way {
        /// No agent: the background alone (what the API server spends on it).
        Nothing,
        /// Every agent watches every pod Event and every ReplicaSet and Job (the old node mode).
        Watches,
        /// Every agent looks up its own failing pods' Events and owners.
        Lookups,
        /// One cluster-mode agent's watches.
        ClusterMode,
    }

    pub struct FleetRow {
        pub cpu_secs: f64,
        pub bytes: f64,
        pub requests: f64,
        /// Crashes whose Killing Event the agent of its node had (the cause: liveness_probe).
        pub explained: usize,
        pub crashes: usize,
        /// Median delay from a crash to its Event in the agent's hands, in ms.
        pub delay_ms: f64,
    }

    /// A pod the background uses: namespace, name, uid, node.
    #[derive(Clone)]
    struct PodRef(String, String, String, String);

    /// The API server's CPU seconds, and the bytes it sent (watch events and list/get responses)
    /// and the reads it served (list, get, watch) of Events, ReplicaSets and Jobs, at one moment:
    /// what the agents' Events and owners cost, not the pods' churn the other watchers see.
    async fn totals(cluster: &BenchCluster, client: &Client) -> (f64, f64, f64) {
        let text = client.request_text(http::Request::get("/metrics").body(Vec::new()).unwrap()).await.unwrap();
        let ours = |l: &str| ["events", "replicasets", "jobs"].iter().any(|r| l.contains(&format!("resource=\"{r}\"")));
        let read = |l: &str| ["LIST", "GET", "WATCH"].iter().any(|v| l.contains(&format!("verb=\"{v}\"")));
        let sum = |prefix: &str, keep: &dyn Fn(&str) -> bool| -> f64 {
            text.lines()
                .filter(|l| l.starts_with(prefix) && ours(l) && keep(l))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        let bytes = sum("apiserver_watch_events_sizes_sum", &|_| true) + sum("apiserver_response_sizes_sum", &read);
        let requests = sum("apiserver_request_total{", &read);
        (cpu_secs(cluster.pid("apiserver")), bytes, requests)
    }

    async fn sample_pods(client: &Client, nodes: usize) -> Vec<PodRef> {
        let all: Api<Pod> = Api::all(client.clone());
        let list = all.list(&ListParams::default().limit(2000)).await.unwrap();
        list.items
            .into_iter()
            .filter_map(|p| {
                let m = p.metadata;
                let node = p.spec?.node_name?;
                let i: usize = node.strip_prefix("node-")?.parse().ok()?;
                if i >= nodes {
                    return None;
                }
                Some(PodRef(m.namespace?, m.name?, m.uid?, node))
            })
            .collect()
    }

    /// Runs one way with `agents` node agents for `SECONDS` under the background; the API
    /// server's cost and what the agents saw.
    pub async fn run(cluster: &BenchCluster, client: &Client, agents: usize, way: Way, round: usize) -> FleetRow {
        let pods = sample_pods(client, agents).await;
        let crashing: Vec<PodRef> = pods
            .iter()
            .filter(|p| ["node-0", "node-1", "node-2"].contains(&p.3.as_str()))
            .take(FLEET_CRASHING)
            .cloned()
            .collect();
        let stop = tokio_util::sync::CancellationToken::new();
        let arrived: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
        // The old way's and cluster mode's watches.
        let watchers = match way {
            Way::Watches => agents,
            Way::ClusterMode => 1,
            Way::Lookups | Way::Nothing => 0,
        };
        let (synced_tx, mut synced_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        for i in 0..watchers {
            let arrived = (i < 3 || way == Way::ClusterMode).then(|| arrived.clone());
            spawn_watches(client.clone(), stop.clone(), arrived, synced_tx.clone());
        }
        // Every Events watch has its initial state: what follows is the background's cost alone.
        for _ in 0..watchers {
            synced_rx.recv().await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = totals(cluster, client).await;
        // The new way's agents: one lookup set per node with crashing pods.
        let lookups: Vec<(Arc<Lookups>, Arc<KubeEventStore>)> = (0..3)
            .map(|_| {
                let store = Arc::new(KubeEventStore::default());
                let owners = Some(Arc::new(OwnerIndex::default()));
                (Arc::new(Lookups::new(client.clone(), (5, 20), Some(store.clone()), owners, None)), store)
            })
            .collect();
        let delays: Arc<std::sync::Mutex<Vec<f64>>> = Arc::default();
        let explained = Arc::new(AtomicU64::new(0));
        let crashes = Arc::new(AtomicU64::new(0));
        let background = tokio::spawn(background(client.clone(), pods.clone(), format!("fleet-{round}"), stop.clone()));
        let mut ticks = tokio::time::interval(CRASH_EVERY);
        let deadline = Instant::now() + Duration::from_secs(SECONDS);
        let mut n = 0;
        while Instant::now() < deadline {
            ticks.tick().await;
            n += 1;
            for p in &crashing {
                let (client, p, lookups) = (client.clone(), p.clone(), lookups.clone());
                let (arrived, delays, explained, crashes) =
                    (arrived.clone(), delays.clone(), explained.clone(), crashes.clone());
                tokio::spawn(async move {
                    let t = Instant::now();
                    crash(&client, &p.0, &p.1, 1000 * round as u32 + n).await;
                    let ev = kubelet_event(
                        (&p.0, &p.1, &p.2, &p.3),
                        "Killing",
                        "Container app failed liveness probe, will be restarted".into(),
                    );
                    let _ = create_event(&client, &ev).await;
                    crashes.fetch_add(1, Ordering::Relaxed);
                    let node: usize = p.3.trim_start_matches("node-").parse().unwrap_or(0);
                    let got = match way {
                        Way::Lookups => {
                            let (l, store) = &lookups[node % 3];
                            l.events(&p.0, &p.2).await;
                            // Its ReplicaSet, one of the rollout's: one GET each, then cached.
                            let rs = format!("web-{}", node % FLEET_ROLLOUT);
                            let owners = Owners {
                                replicaset: Some(OwnerRef { name: rs.clone(), uid: Some(rs) }),
                                ..Owners::default()
                            };
                            l.owners(&p.0, &owners).await;
                            store.get(&p.2, "app").iter().any(|e| e.reason == "Killing").then(Instant::now)
                        }
                        Way::Nothing => None,
                        Way::Watches | Way::ClusterMode => {
                            let mut got = None;
                            for _ in 0..100 {
                                if let Some(at) = arrived.lock().unwrap().get(&p.2).copied().filter(|at| *at >= t) {
                                    got = Some(at);
                                    break;
                                }
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            got
                        }
                    };
                    if let Some(at) = got {
                        explained.fetch_add(1, Ordering::Relaxed);
                        delays.lock().unwrap().push(at.duration_since(t).as_secs_f64() * 1000.0);
                    }
                });
            }
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = totals(cluster, client).await;
        stop.cancel();
        let _ = background.await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut d = delays.lock().unwrap().clone();
        d.sort_by(|a, b| a.partial_cmp(b).unwrap());
        FleetRow {
            cpu_secs: after.0 - before.0,
            bytes: after.1 - before.1,
            requests: after.2 - before.2,
            explained: explained.load(Ordering::Relaxed) as usize,
            crashes: crashes.load(Ordering::Relaxed) as usize,
            delay_ms: d.get(d.len() / 2).copied().unwrap_or(f64::NAN),
        }
    }

    /// One agent's old watches: every pod Event, every ReplicaSet's and Job's metadata. With
    /// `arrived`, the time each pod's Killing Event arrives.
    fn spawn_watches(
        client: Client,
        stop: tokio_util::sync::CancellationToken,
        arrived: Option<Arc<std::sync::Mutex<HashMap<String, Instant>>>>,
        synced: tokio::sync::mpsc::UnboundedSender<()>,
    ) {
        let events: Api<KubeEventObj> = Api::all(client.clone());
        let cfg = watcher::Config::default().fields("involvedObject.kind=Pod").streaming_lists();
        let s = stop.clone();
        tokio::spawn(async move {
            let stream = watcher::watcher(events, cfg).take_until(s.cancelled_owned());
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                if let Ok(watcher::Event::InitDone) = ev {
                    let _ = synced.send(());
                    continue;
                }
                if let (Ok(watcher::Event::Apply(e)), Some(arrived)) = (ev, &arrived)
                    && e.reason.as_deref() == Some("Killing")
                    && let Some(uid) = e.involved_object.uid
                {
                    arrived.lock().unwrap().insert(uid, Instant::now());
                }
            }
        });
        for kind in ["rs", "job"] {
            let s = stop.clone();
            let client = client.clone();
            tokio::spawn(async move {
                let cfg = watcher::Config::default().streaming_lists();
                if kind == "rs" {
                    let api: Api<PartialObjectMeta<ReplicaSet>> = Api::all(client);
                    watcher::watcher(api, cfg).take_until(s.cancelled_owned()).for_each(|_| async {}).await;
                } else {
                    let api: Api<PartialObjectMeta<Job>> = Api::all(client);
                    watcher::watcher(api, cfg).take_until(s.cancelled_owned()).for_each(|_| async {}).await;
                }
            });
        }
    }

    /// Events about pods all over the cluster at a fixed rate, and a rollout wave of ReplicaSets.
    async fn background(client: Client, pods: Vec<PodRef>, ns: String, stop: tokio_util::sync::CancellationToken) {
        let nsapi: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let _ = nsapi
            .create(
                &PostParams::default(),
                &serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap(),
            )
            .await;
        let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
        let rollout = {
            let (client, rs_api, stop) = (client.clone(), rs_api.clone(), stop.clone());
            tokio::spawn(async move {
                let _ = client;
                for pass in 0..3 {
                    for i in 0..FLEET_ROLLOUT {
                        if stop.is_cancelled() {
                            return;
                        }
                        let rs = serde_json::json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                            "metadata": {"name": format!("web-{i}"), "annotations": {"deployment.kubernetes.io/revision": pass.to_string()}},
                            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": format!("web-{i}")}},
                                "template": {"metadata": {"labels": {"app": format!("web-{i}")}},
                                    "spec": {"containers": [{"name": "web", "image": format!("registry.example.com/web:{pass}")}]}}}});
                        let _ = rs_api
                            .patch(
                                &format!("web-{i}"),
                                &kube::api::PatchParams::apply("bench").force(),
                                &kube::api::Patch::Apply(&rs),
                            )
                            .await;
                    }
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            })
        };
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / FLEET_EVENTS_PER_SEC));
        let mut i = 0usize;
        while !stop.is_cancelled() && !pods.is_empty() {
            tick.tick().await;
            let p = &pods[(i * 7919) % pods.len()];
            i += 1;
            let ev = kubelet_event(
                (&p.0, &p.1, &p.2, &p.3),
                "Pulled",
                "Container image \"registry.example.com/app:1.0\" already present on machine".into(),
            );
            let client = client.clone();
            tokio::spawn(async move {
                let _ = create_event(&client, &ev).await;
            });
        }
        let _ = rollout.await;
    }
}
