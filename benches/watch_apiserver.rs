//! The agent against a real Kubernetes v1.35 control plane (tests/support/cluster.sh: etcd,
//! kube-apiserver with its watch cache, controller-manager, scheduler, 50 kwok nodes) holding many
//! pods of 2 app + 1 init containers, with every watch of the agent on: time to finish the initial list,
//! resident memory after it, and the rate of restarts it reports under a burst of status updates,
//! next to a naive baseline measured in the same run: a kube-rs reflector caching full
//! `k8s_openapi` Pods (as the kube examples do), run as its own process.
//!
//! Run: `cargo bench --bench watch_apiserver` (env `BENCH_WATCH_PODS`, default `10000,100000`;
//! `BENCH_UPDATES`, default 5000). Needs the cluster of tests/support (built on first use).
//! `BENCH_WATCH_AGENTS=label=SPEC,...` also lists with other agent binaries (`label=path`, an older
//! commit's release build) or settings (`label=env:NAME=VALUE`: this build with that variable; both
//! joined with `+`; see `bench_cluster::AgentVariant`), on the
//! same cluster in the same run: their list time, RSS after the list and peak.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use serde_json::json;

use restart_watcher_test_support::bench_cluster;
use restart_watcher_test_support::pods;

use bench_cluster::{AgentVariant, BenchCluster, CONCURRENCY, agent_variants, peak_rss_mib, populate, rss_mib};

/// Simulated nodes the pods are spread over.
const NODES: usize = 50;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--baseline-reflector") {
        baseline_reflector(&args[2]);
        return;
    }
    let sizes: Vec<usize> = std::env::var("BENCH_WATCH_PODS")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("BENCH_WATCH_PODS: comma-separated pod counts"))
        .collect();
    let updates: usize = std::env::var("BENCH_UPDATES").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let others = agent_variants("BENCH_WATCH_AGENTS");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut rows = Vec::new();
    for n in sizes {
        rows.push(rt.block_on(measure(n, updates, &others)));
    }
    // For the growth plot (benches/plot_growth.py).
    let mut csv = String::from("pods,agent_list_s,agent_rss_mib,agent_peak_mib,baseline_list_s,baseline_rss_mib");
    for AgentVariant { label, .. } in &others {
        csv.push_str(&format!(",{label}_list_s,{label}_rss_mib,{label}_peak_mib"));
    }
    csv.push('\n');
    for r in &rows {
        csv.push_str(&format!(
            "{},{:.2},{:.1},{:.1},{:.2},{:.1}",
            r.pods, r.agent_list_secs, r.agent_rss_mib, r.agent_peak_mib, r.base_list_secs, r.base_rss_mib
        ));
        for o in &r.others {
            csv.push_str(&format!(",{:.2},{:.1},{:.1}", o.list_secs, o.rss_mib, o.peak_mib));
        }
        csv.push('\n');
    }
    std::fs::write("target/watch-growth.csv", csv).unwrap();
    println!();
    println!("| pods | agent | initial list | RSS after the list | peak RSS during the list |");
    println!("|---|---|---|---|---|");
    for r in &rows {
        let this = Listed { list_secs: r.agent_list_secs, rss_mib: r.agent_rss_mib, peak_mib: r.agent_peak_mib };
        for (label, o) in std::iter::once("this build")
            .chain(others.iter().map(|v| v.label.as_str()))
            .zip(std::iter::once(&this).chain(&r.others))
        {
            println!("| {} | {label} | {:.1} s | {:.1} MiB | {:.1} MiB |", r.pods, o.list_secs, o.rss_mib, o.peak_mib);
        }
    }
    println!();
    println!(
        "| pods | agent: initial list | agent: RSS after list | baseline reflector: initial list | baseline: RSS after list | RSS ratio | agent: restarts/s reported ({updates} status updates) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.1} s | {:.1} MiB | {:.1} s | {:.1} MiB | {:.0}x less | {:.0} |",
            r.pods,
            r.agent_list_secs,
            r.agent_rss_mib,
            r.base_list_secs,
            r.base_rss_mib,
            r.base_rss_mib / r.agent_rss_mib,
            r.restarts_per_sec
        );
    }
}

struct Row {
    pods: usize,
    agent_list_secs: f64,
    agent_rss_mib: f64,
    /// Peak RSS (`VmHWM`) by the end of the initial list.
    agent_peak_mib: f64,
    /// The other builds of `BENCH_WATCH_AGENTS`, in order.
    others: Vec<Listed>,
    base_list_secs: f64,
    base_rss_mib: f64,
    restarts_per_sec: f64,
}

/// What one agent's initial list cost.
struct Listed {
    list_secs: f64,
    rss_mib: f64,
    peak_mib: f64,
}

async fn measure(pods: usize, updates: usize, others: &[AgentVariant]) -> Row {
    let cluster = BenchCluster::start(&format!("watch-{pods}"), NODES, &[]);
    let kubeconfig = cluster.kubeconfig().to_owned();
    let client = cluster.client().await;
    eprintln!("populating {pods} pods...");
    let t = Instant::now();
    populate(&client, pods, NODES).await;
    eprintln!("populated in {:.0} s", t.elapsed().as_secs_f64());

    // The agent.
    let start_agent = |bin: &std::path::Path, env: &[(String, String)]| {
        Command::new(bin)
            .args(["run", "--kubeconfig", &kubeconfig, "--no-checkpoint", "--exporter", "console"])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let t = Instant::now();
    let this_build = std::path::Path::new(env!("CARGO_BIN_EXE_restart-watcher"));
    let mut agent = start_agent(this_build, &[]);
    wait_line(&mut agent, "Initial list complete", Duration::from_secs(600));
    let agent_list_secs = t.elapsed().as_secs_f64();
    let agent_peak_mib = peak_rss_mib(agent.id());
    std::thread::sleep(Duration::from_secs(2));
    let agent_rss_mib = rss_mib(agent.id());
    // Restarts under a burst of status updates.
    let reported = Arc::new(AtomicUsize::new(0));
    let stdout = agent.stdout.take().unwrap();
    let counter = reported.clone();
    std::thread::spawn(move || {
        for _ in BufReader::new(stdout).lines().map_while(Result::ok) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    let t = Instant::now();
    restart_burst(&client, updates).await;
    let deadline = Instant::now() + Duration::from_secs(600);
    while reported.load(Ordering::Relaxed) < updates && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let restarts_per_sec = reported.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64();
    let _ = agent.kill();

    // The other builds or settings, one after the other.
    let mut listed = vec![];
    for variant in others {
        let t = Instant::now();
        let mut other = start_agent(variant.bin.as_deref().unwrap_or(this_build), &variant.env);
        wait_line(&mut other, "Initial list complete", Duration::from_secs(600));
        let list_secs = t.elapsed().as_secs_f64();
        let peak_mib = peak_rss_mib(other.id());
        std::thread::sleep(Duration::from_secs(2));
        listed.push(Listed { list_secs, rss_mib: rss_mib(other.id()), peak_mib });
        let _ = other.kill();
        let _ = other.wait();
    }

    // The baseline, alone.
    let t = Instant::now();
    let mut base = Command::new(std::env::current_exe().unwrap())
        .args(["--baseline-reflector", &kubeconfig])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_line(&mut base, "InitDone", Duration::from_secs(600));
    let base_list_secs = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let base_rss_mib = rss_mib(base.id());
    let _ = base.kill();

    drop(cluster);
    Row {
        pods,
        agent_list_secs,
        agent_rss_mib,
        agent_peak_mib,
        others: listed,
        base_list_secs,
        base_rss_mib,
        restarts_per_sec,
    }
}

fn statuses(restarts: u32) -> serde_json::Value {
    let mut app = pods::c("app", restarts).id("containerd://aa").running_since("2026-11-26T00:00:00Z");
    app = app.field("imageID", "registry.example.com/app@sha256:00");
    if restarts > 0 {
        app = app.terminated(json!({"exitCode": 1, "reason": "Error", "startedAt": "2026-11-26T00:00:00Z",
            "finishedAt": "2026-11-26T00:01:00Z"}));
    }
    let envoy = pods::c("envoy", 0).id("containerd://bb").state(json!({"running": {}}));
    let envoy = envoy.field("image", "envoyproxy/envoy:v1.31.0").field("imageID", "envoyproxy/envoy@sha256:00");
    json!({"status": {"phase": "Running", "podIP": "10.0.0.1", "containerStatuses": [app.json(), envoy.json()]}})
}

async fn restart_burst(client: &Client, updates: usize) {
    let namespaces = ["bench-a", "bench-b", "bench-c", "bench-d"];
    futures::stream::iter(0..updates)
        .map(|i| {
            let ns = namespaces[i % namespaces.len()];
            let api: Api<Pod> = Api::namespaced(client.clone(), ns);
            async move {
                api.patch_status(&format!("app-{i:06}"), &PatchParams::default(), &Patch::Merge(statuses(1))).await
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
}

fn wait_line(child: &mut Child, needle: &str, timeout: Duration) {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let needle = needle.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(&needle) {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(timeout).expect("the process did not finish its initial list in time");
}

/// The naive baseline: a reflector caching full Pods, as the kube examples do.
fn baseline_reflector(kubeconfig: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
        let client = Client::try_from(config).unwrap();
        let api: Api<Pod> = Api::all(client);
        let (reader, writer) = reflector::store();
        let stream = reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            if let Ok(watcher::Event::InitDone) = ev {
                eprintln!("InitDone: {} pods cached", reader.state().len());
            }
        }
    });
}
