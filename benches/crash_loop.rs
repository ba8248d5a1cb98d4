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

use restart_watcher_test_support::bench_cluster;
use restart_watcher_test_support::fake_collector;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bench_cluster::{
    BenchAgent, BenchCluster, CONCURRENCY, RssSampler, accounted, crash, env_usize, metric_sum, populated, rss_mib,
    write_rss_csv,
};
use futures::StreamExt;

#[tokio::main]
async fn main() {
    let pods_n = env_usize("BENCH_CRASH_PODS", 10_000);
    let rate = env_usize("BENCH_CRASH_RATE", 1_000);
    let secs = env_usize("BENCH_CRASH_SECS", 240);
    let down_secs = env_usize("BENCH_CRASH_DOWN_SECS", 120);
    let csv = std::env::var("BENCH_CRASH_CSV").unwrap_or_else(|_| "target/crash-loop.csv".into());
    let cluster = BenchCluster::start("crashloop", 20, &[]);
    let (client, pods) = populated(&cluster, pods_n).await;
    let fc = fake_collector::FakeCollector::start().await;
    let mut agent = BenchAgent::start(&cluster, &fc.endpoint());
    let started = Instant::now();
    let pid = agent.pid();
    let sampler = RssSampler::start(vec![pid], started, Duration::from_secs(1));
    agent.listed().await;
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
                let (ns, name) = (pods[i].0.clone(), pods[i].1.clone());
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
    let metrics = agent.metrics();
    let relisted = metric_sum(&metrics, "restart_watcher_watch_relists_total");
    let waits = metric_sum(&metrics, "restart_watcher_queue_full_waits_total");
    let resets = metric_sum(&metrics, "restart_watcher_restart_count_resets_total");
    let samples = sampler.stop();
    let relists = agent.relists.load(std::sync::atomic::Ordering::Relaxed);
    drop(agent);

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
    println!("log lines naming a relist: {}", relists);
    // A restartCount that falls (kwok, behind on its queue, rewrites a status with its pod-ready
    // stage: restartCount 0) resets the agent's count to the fallen value; the next rise counts
    // from there, so restarts accounted can exceed those written by what the resets dropped.
    println!("restartCount falls (resets): {resets}");
    println!("samples: {csv} (crash loop from {loop_at:.0} s, collector back at {:.0} s)", up_at.unwrap_or(0.0));
    assert!(accounted as usize >= written, "every restart written is accounted for: {accounted} of {written}");
}
