//! Mass crash loop with the collector down: the agent's memory and what it delivers.
//!
//! Run: `cargo bench --bench crash_loop`. On the v1.35 cluster of tests/support (kwok nodes),
//! `BENCH_CRASH_PODS` pods (default 10,000; 3 containers each) run; the agent (the release binary,
//! cluster mode, every watch on) lists them and exports over OTLP/gRPC to a collector (the tests'
//! fake OTLP server, which answers `unavailable` while down). Then the bench plays the kubelets of a
//! crash loop: rounds of `BENCH_CRASH_RATE` restarts (default 1,000: every pod every 10 rounds at
//! 10,000 pods), each a status write raising `restartCount` with a new `lastState.terminated`, one
//! round a second at most (slower when the API server cannot take them), for `BENCH_CRASH_SECS`
//! rounds (default 240), the collector down for the first `BENCH_CRASH_DOWN_SECS` rounds
//! (default 120). The table gives the durations as they were. The agent's RSS is sampled every second (CSV in
//! `BENCH_CRASH_CSV`, default target/crash-loop.csv, for `benches/plot_rss.py`). At the end the
//! bench waits for the deliveries to settle and counts: every restart written must be accounted for
//! by a delivered record (itself plus its `restarts.missed`), copies counted once by restart id.

#[path = "support/bench_cluster.rs"]
mod bench_cluster;
#[path = "../tests/support/fake_collector.rs"]
mod fake_collector;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bench_cluster::{
    BenchCluster, CONCURRENCY, RssSampler, accounted, crash, env_usize, http_get, metric_sum, populate, rss_mib,
    write_rss_csv,
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;

#[tokio::main]
async fn main() {
    let pods_n = env_usize("BENCH_CRASH_PODS", 10_000);
    let rate = env_usize("BENCH_CRASH_RATE", 1_000);
    let secs = env_usize("BENCH_CRASH_SECS", 240);
    let down_secs = env_usize("BENCH_CRASH_DOWN_SECS", 120);
    let csv = std::env::var("BENCH_CRASH_CSV").unwrap_or_else(|_| "target/crash-loop.csv".into());
    let cluster = BenchCluster::start("crashloop", 20, &[]);
    let client = cluster.client().await;
    let t = Instant::now();
    populate(&client, pods_n, cluster.nodes).await;
    eprintln!("{pods_n} pods running after {:.0} s", t.elapsed().as_secs_f64());
    let all: Api<Pod> = Api::all(client.clone());
    let pods: Vec<(String, String)> = all
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| (p.metadata.namespace.unwrap(), p.metadata.name.unwrap()))
        .collect();

    let fc = fake_collector::FakeCollector::start().await;
    let admin = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let agent_bin = cluster.dir.join("restart-watcher");
    std::fs::copy(env!("CARGO_BIN_EXE_restart-watcher"), &agent_bin).unwrap();
    let mut agent = std::process::Command::new(&agent_bin)
        .args(["run", "--kubeconfig", cluster.kubeconfig(), "--no-checkpoint", "--otlp-endpoint", &fc.endpoint()])
        .args(["--admin-listen", &admin])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = agent.stderr.take().unwrap();
    let (listed_tx, listed) = tokio::sync::oneshot::channel();
    let relists = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let relists = relists.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let mut listed_tx = Some(listed_tx);
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Initial list complete") {
                    if let Some(tx) = listed_tx.take() {
                        let _ = tx.send(());
                    }
                } else if line.contains("elist") {
                    relists.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    }
    let started = Instant::now();
    let pid = agent.id();
    let sampler = RssSampler::start(vec![pid], started, Duration::from_secs(1));
    listed.await.expect("the agent ended before its initial list was complete");
    let after_list = rss_mib(pid);
    tokio::time::sleep(Duration::from_secs(5)).await; // the Event and owner watches list too

    // The crash loop, the collector down for its first `down_secs`.
    fc.set_down(true);
    let loop_start = Instant::now();
    let loop_at = started.elapsed().as_secs_f64();
    let mut counts: HashMap<usize, u32> = HashMap::new();
    let mut written = 0usize;
    let mut next = 0usize;
    let mut up_at = None;
    for s in 0..secs {
        if s == down_secs {
            fc.set_down(false);
            up_at = Some(started.elapsed().as_secs_f64());
        }
        let batch: Vec<(usize, u32)> = (0..rate)
            .map(|k| {
                let i = (next + k) % pods.len();
                let n = counts.entry(i).or_insert(0);
                *n += 1;
                (i, *n)
            })
            .collect();
        next = (next + rate) % pods.len();
        let ok = futures::stream::iter(batch)
            .map(|(i, n)| {
                let client = client.clone();
                let (ns, name) = pods[i].clone();
                async move { crash(&client, &ns, &name, n).await }
            })
            .buffer_unordered(CONCURRENCY)
            .filter(|ok| futures::future::ready(*ok))
            .count()
            .await;
        written += ok;
        tokio::time::sleep_until((loop_start + Duration::from_secs(s as u64 + 1)).into()).await;
    }
    let loop_secs = loop_start.elapsed().as_secs_f64();
    let achieved = written as f64 / loop_secs;
    fc.set_down(false);

    // Settle: every restart written accounted for by a delivered record, or 5 minutes.
    let deadline = Instant::now() + Duration::from_secs(300);
    let accounted = loop {
        let records = fc.log_records();
        let (accounted, distinct) = accounted(&records);
        if accounted as usize >= written || Instant::now() > deadline {
            break (accounted, distinct, records.len());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let metrics = http_get(&admin, "/metrics");
    let relisted = metric_sum(&metrics, "restart_watcher_watch_relists_total");
    let waits = metric_sum(&metrics, "restart_watcher_queue_full_waits_total");
    let samples = sampler.stop();
    let _ = agent.kill();
    let _ = agent.wait();

    write_rss_csv(&csv, &["this build"], &samples);
    let peak = samples.iter().map(|s| s.1[0]).fold(0.0, f64::max);
    let peak_down =
        samples.iter().filter(|s| s.0 >= loop_at && up_at.is_none_or(|u| s.0 <= u)).map(|s| s.1[0]).fold(0.0, f64::max);
    let (accounted, distinct, received) = accounted;
    println!();
    let down_for = up_at.map_or(loop_secs, |u| u - loop_at);
    println!(
        "| pods | restarts written | collector down | RSS after list | peak RSS (collector down) | peak RSS | relists | queue-full waits | restarts accounted (distinct records / received) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {pods_n} | {written} in {loop_secs:.0} s ({achieved:.0}/s) | the first {down_for:.0} s | {after_list:.1} MiB | {peak_down:.1} MiB | {peak:.1} MiB | {relisted} | {waits} | {accounted} ({distinct} / {received}) |"
    );
    println!("log lines naming a relist: {}", relists.load(std::sync::atomic::Ordering::Relaxed));
    println!("samples: {csv} (crash loop from {loop_at:.0} s, collector back at {:.0} s)", up_at.unwrap_or(0.0));
    assert!(accounted as usize >= written, "every restart written is accounted for: {accounted} of {written}");
}
