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
//! Run: `cargo bench --bench control_plane` (env `BENCH_CP_PODS`, default 100000;
//! `BENCH_CP_AGENTS`, default 200). Needs the cluster of tests/support (built on first use).

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
