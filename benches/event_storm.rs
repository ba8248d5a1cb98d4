//! Event storm: the agent's memory while the kubelets flood the API server with probe Events.
//!
//! Run: `cargo bench --bench event_storm`. On the v1.35 cluster of tests/support (kwok nodes),
//! `BENCH_STORM_PODS` pods (default 100,000; 3 containers each) get 8 Events each with 1 KB
//! messages: 6 `Unhealthy` probe failures (half readiness, half liveness) and 2 liveness `Killing`
//! Events, the ones the agent keeps. Then the agent starts (the release binary, cluster mode, every
//! watch on: pods, Events, owners) and, once it has listed, `BENCH_STORM_RATE` new Events per second
//! (default 2,000, same mix) arrive for `BENCH_STORM_SECS` (default 600). The agent's RSS is
//! sampled every second; the bench prints its peak and the samples as CSV (`BENCH_STORM_CSV`,
//! default target/event-storm.csv) for `benches/plot_rss.py`.

use restart_watcher_test_support::bench_cluster;

use std::io::BufRead;
use std::time::{Duration, Instant};

use bench_cluster::{
    BenchCluster, CONCURRENCY, PodRef, RssSampler, create_event, env_usize, kubelet_event, populated, rss_mib,
    write_rss_csv,
};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Event;
use kube::Client;

/// The `k`th Event of a storm about `pod`: 1 KB of probe output in each message.
fn event(pod: &PodRef, k: usize) -> Event {
    let output = "x".repeat(1000);
    let (reason, message) = match k % 8 {
        0..=2 => ("Unhealthy", format!("Readiness probe failed: HTTP probe failed with statuscode: 503 {output}")),
        3..=5 => ("Unhealthy", format!("Liveness probe failed: Get \"http://10.0.0.1:8080/healthz\": {output}")),
        _ => ("Killing", format!("Container app failed liveness probe, will be restarted {output}")),
    };
    kubelet_event((&pod.0, &pod.1, &pod.2, &pod.3), reason, message)
}

async fn create_events(client: &Client, pods: &[PodRef], from: usize, n: usize) {
    futures::stream::iter(from..from + n)
        .map(|k| async move { create_event(client, &event(&pods[k % pods.len()], k / pods.len())).await })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
}

#[tokio::main]
async fn main() {
    let pods_n = env_usize("BENCH_STORM_PODS", 100_000);
    let rate = env_usize("BENCH_STORM_RATE", 2_000);
    let secs = env_usize("BENCH_STORM_SECS", 600);
    let csv = std::env::var("BENCH_STORM_CSV").unwrap_or_else(|_| "target/event-storm.csv".into());
    let cluster = BenchCluster::start("storm", 50, &[]);
    let (client, pods) = populated(&cluster, pods_n).await;
    let t = Instant::now();
    create_events(&client, &pods, 0, pods.len() * 8).await;
    eprintln!("{} Events created in {:.0} s", pods.len() * 8, t.elapsed().as_secs_f64());

    // This build, and with BENCH_STORM_BASELINE another agent binary beside it (an older commit's
    // release build), through the same storm.
    let mut agents = vec![("this build".to_owned(), cluster.dir.join("restart-watcher"))];
    std::fs::copy(env!("CARGO_BIN_EXE_restart-watcher"), &agents[0].1).unwrap();
    if let Ok(baseline) = std::env::var("BENCH_STORM_BASELINE") {
        agents.push(("baseline".to_owned(), baseline.into()));
    }
    let started = Instant::now();
    let mut children = vec![];
    for (_, path) in &agents {
        let mut child = std::process::Command::new(path)
            .args(["run", "--kubeconfig", cluster.kubeconfig(), "--no-checkpoint", "--exporter", "console"])
            .args(["--admin-listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (listed_tx, listed) = tokio::sync::oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let mut lines = std::io::BufReader::new(stderr).lines();
            for line in lines.by_ref().map_while(Result::ok) {
                if line.contains("Initial list complete") {
                    let _ = listed_tx.send(());
                    break;
                }
            }
            for _ in lines {} // keep draining the agent's log
        });
        children.push((child, listed));
    }
    let pids: Vec<u32> = children.iter().map(|(c, _)| c.id()).collect();
    let sampler = RssSampler::start(pids.clone(), started, Duration::from_secs(1));
    let mut after_list = vec![];
    for ((_, listed), pid) in children.iter_mut().zip(&pids) {
        listed.await.expect("an agent ended before its initial list was complete");
        after_list.push((started.elapsed().as_secs_f64(), rss_mib(*pid)));
    }

    // The storm: `rate` Events a second for `secs` seconds.
    tokio::time::sleep(Duration::from_secs(5)).await; // the Event and owner watches list too
    let storm_start = Instant::now();
    let mut sent = pods.len() * 8;
    for s in 0..secs {
        create_events(&client, &pods, sent, rate).await;
        sent += rate;
        let due = storm_start + Duration::from_secs(s as u64 + 1);
        tokio::time::sleep_until(due.into()).await;
    }
    let achieved = (sent - pods.len() * 8) as f64 / storm_start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let samples = sampler.stop();
    for (mut child, _) in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let labels: Vec<&str> = agents.iter().map(|(l, _)| l.as_str()).collect();
    write_rss_csv(&csv, &labels, &samples);
    println!();
    println!("| agent | pods | Events before | storm | RSS after its list | peak RSS |");
    println!("|---|---|---|---|---|---|");
    for (i, (label, _)) in agents.iter().enumerate() {
        let peak = samples.iter().map(|s| s.1[i]).fold(0.0, f64::max);
        let (listed_at, rss) = after_list[i];
        println!(
            "| {label} | {pods_n} | {} (8 per pod, 1 KB messages) | {achieved:.0} Events/s for {secs} s | {rss:.1} MiB (at {listed_at:.0} s) | {peak:.1} MiB |",
            pods.len() * 8
        );
    }
    println!("samples: {csv}");
}
