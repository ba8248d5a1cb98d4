//! Export throughput and latency to a local OTLP/gRPC collector.
//!
//! Run: `cargo bench --bench export`. The agent side (bounded channel -> export task -> OTLP
//! exporter with tonic) runs on a single-threaded Tokio runtime: one core. Throughput goes to a real
//! local collector, `rotel-agent` with its blackhole exporter (receives, decodes, batches, drops), in
//! its own process; latency is measured at the in-process fake collector of tests/support, which
//! stamps each request on arrival.
//!
//! - Throughput: `BENCH_RECORDS` (default 200,000) restart records pushed through as fast as the
//!   channel takes them, logs and traces both on (each restart is one log record and one span),
//!   and logs only; batches of the agent's default size (`BENCH_BATCH_RECORDS` overrides it), and
//!   logs + traces in batches of 512 too, the old default, as the baseline in the same run.
//! - The same through the collector distribution the project ships (`otel-collector/build.sh`),
//!   receiving OTLP/gRPC and writing every record with its `file` exporter (zstd-compressed
//!   protobuf), in the same run.
//! - Latency: a steady 1,000 records/s for 5 s; latency = receipt at the collector minus the moment
//!   the detector handed the record to the channel; p50/p99, with the default 200 ms batch delay
//!   and with 20 ms.

use restart_watcher_test_support::backends;
use restart_watcher_test_support::fake_collector;
use restart_watcher_test_support::fixture;
use restart_watcher_test_support::rotel;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_collector::FakeCollector;
use restart_watcher::export::convert::MappingConfig;
use restart_watcher::export::otlp::{OtlpConfig, OtlpExporter, RawSignalSettings};
use restart_watcher::export::task::{self, BatchConfig};
use restart_watcher::export::{Exporter, Signals};
use restart_watcher::metrics::Metrics;
use restart_watcher::record::Record;
use tokio::sync::mpsc;

fn exporter(endpoint: &str, signals: Signals) -> Exporter {
    let generic = RawSignalSettings { endpoint: Some(endpoint.to_owned()), ..Default::default() };
    let cfg = OtlpConfig::from_generic(&generic).unwrap();
    Exporter::Otlp(Box::new(
        OtlpExporter::new(cfg, signals, MappingConfig::default(), Arc::new(Metrics::noop())).unwrap(),
    ))
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

struct Throughput {
    per_sec: f64,
    agent_cpu_per_restart_us: f64,
    collector_cpu_per_restart_us: f64,
}

/// The agent's export path: a bounded channel into the export task with the OTLP exporter.
fn pipeline(
    endpoint: &str,
    signals: Signals,
    batch: BatchConfig,
) -> (mpsc::Sender<Record>, tokio::task::JoinHandle<task::ExportReport>) {
    let (tx, rx) = mpsc::channel(4096);
    let exp = exporter(endpoint, signals);
    let handle = tokio::spawn(task::run(rx, exp, batch, Arc::default(), Arc::new(Metrics::noop())));
    (tx, handle)
}

/// The batch size the default was before it became 128: the baseline measured in the same run.
const BASELINE_BATCH_RECORDS: usize = 512;

/// Records per batch: the agent's default unless `BENCH_BATCH_RECORDS` says otherwise.
fn batch_records() -> usize {
    std::env::var("BENCH_BATCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(task::DEFAULT_BATCH_MAX_RECORDS)
}

fn throughput(endpoint: &str, n: u32, signals: Signals, collector_pid: u32, max_records: usize) -> Throughput {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let events = fixture::many_restarts(n);
    let (agent0, coll0) = (cpu_secs("self"), cpu_secs(&collector_pid.to_string()));
    let t = Instant::now();
    rt.block_on(async {
        let batch = BatchConfig { max_records, max_delay: Duration::from_millis(200) };
        let (tx, task) = pipeline(endpoint, signals, batch);
        for ev in events {
            tx.send(ev).await.unwrap();
        }
        drop(tx);
        let report = task.await.unwrap();
        assert_eq!(report.exported, n as u64);
    });
    let secs = t.elapsed().as_secs_f64();
    let (agent1, coll1) = (cpu_secs("self"), cpu_secs(&collector_pid.to_string()));
    Throughput {
        per_sec: n as f64 / secs,
        agent_cpu_per_restart_us: (agent1 - agent0) * 1e6 / n as f64,
        collector_cpu_per_restart_us: (coll1 - coll0) * 1e6 / n as f64,
    }
}

fn latency(endpoint: &str, fc: &FakeCollector, delay: Duration) -> (Duration, Duration) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let tpl = fixture::fixture_restarts().remove(0);
    let sent_at: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let start_records = fc.state.logs.lock().unwrap().len();
    const RATE_PER_SEC: u32 = 1000;
    const SECS: u32 = 5;
    rt.block_on(async {
        let batch = BatchConfig { max_records: batch_records(), max_delay: delay };
        let (tx, task) = pipeline(endpoint, Signals { logs: true, traces: false }, batch);
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE_PER_SEC as u64));
        for i in 1..=RATE_PER_SEC * SECS {
            tick.tick().await;
            sent_at.lock().unwrap().push(Instant::now());
            tx.send(Record { restart_count: 1_000_000 + i, ..tpl.clone() }).await.unwrap();
        }
        drop(tx);
        task.await.unwrap();
    });
    // Receipt time per record: the collector stamps each request on arrival (attempts).
    let attempts = fc.state.attempts.lock().unwrap().clone();
    let logs = fc.state.logs.lock().unwrap();
    let sent = sent_at.lock().unwrap();
    let arrivals: Vec<Instant> = attempts.iter().filter(|(s, _)| *s == "logs").map(|(_, t)| *t).collect();
    let mut lat = Vec::new();
    let mut idx = 0usize;
    for (k, (_, req)) in logs.iter().enumerate().skip(start_records) {
        let arrived = arrivals[arrivals.len() - (logs.len() - k)];
        let n: usize =
            req.resource_logs.iter().map(|rl| rl.scope_logs.iter().map(|s| s.log_records.len()).sum::<usize>()).sum();
        for _ in 0..n {
            lat.push(arrived.duration_since(sent[idx]));
            idx += 1;
        }
    }
    lat.sort();
    (lat[lat.len() / 2], lat[lat.len() * 99 / 100])
}

/// The pure part alone: mapping to OTLP messages and protobuf encoding, per restart.
fn mapping_only(n: u32) -> f64 {
    use prost::Message;
    let events = fixture::many_restarts(n);
    let cfg = MappingConfig::default();
    let t = Instant::now();
    let mut bytes = 0usize;
    for batch in events.chunks(batch_records()) {
        bytes += restart_watcher::export::convert::logs_request(batch, &cfg).encode_to_vec().len();
        bytes += restart_watcher::export::convert::traces_request(batch, &cfg).encode_to_vec().len();
    }
    std::hint::black_box(bytes);
    n as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let n: u32 = std::env::var("BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    if std::env::var("BENCH_MAPPING_ONLY").is_ok() {
        println!("mapping + encoding, logs + traces: {:.0} restarts/s", mapping_only(n));
        return;
    }
    let records = batch_records();
    let collector = rotel::Rotel::start_with_exporter("blackhole", None);
    let both = throughput(&collector.grpc_endpoint, n, Signals::default(), collector.pid(), records);
    let logs = throughput(&collector.grpc_endpoint, n, Signals { logs: true, traces: false }, collector.pid(), records);
    let both_baseline =
        throughput(&collector.grpc_endpoint, n, Signals::default(), collector.pid(), BASELINE_BATCH_RECORDS);
    drop(collector);
    let dir = std::env::temp_dir().join(format!("rw-bench-export-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("file-only.yaml");
    std::fs::write(
        &config,
        format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc: {{}}\n      http: {{}}\n\
             exporters:\n  file:\n    path: {}\n    format: proto\n    compression: zstd\n\
             service:\n  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [file]\n    traces:\n      receivers: [otlp]\n      exporters: [file]\n",
            dir.join("records.zst").display()
        ),
    )
    .unwrap();
    let built = backends::Collector::start(&dir, &[config.to_str().unwrap()], None, &[], "");
    let pid = built.server.pid();
    let both_built = throughput(&built.grpc_endpoint, n, Signals::default(), pid, records);
    let logs_built = throughput(&built.grpc_endpoint, n, Signals { logs: true, traces: false }, pid, records);
    drop(built);
    let _ = std::fs::remove_dir_all(&dir);
    let fc = FakeCollector::start_blocking();
    let ep = fc.endpoint();
    let (p50, p99) = latency(&ep, &fc, Duration::from_millis(200));
    let (p50s, p99s) = latency(&ep, &fc, Duration::from_millis(20));
    println!();
    println!("| measure (agent on one core, batches of {records}) | value |");
    println!("|---|---|");
    let baseline = format!("logs + traces, batches of {BASELINE_BATCH_RECORDS}");
    for (name, t) in [("logs + traces", &both), ("logs only", &logs), (baseline.as_str(), &both_baseline)] {
        println!("| {name}: restarts/s delivered to rotel ({n} restarts) | {:.0} |", t.per_sec);
        println!(
            "| {name}: agent CPU per restart / its one-core capacity | {:.1} µs / {:.0} restarts/s |",
            t.agent_cpu_per_restart_us,
            1e6 / t.agent_cpu_per_restart_us
        );
        println!("| {name}: collector (rotel) CPU per restart | {:.1} µs |", t.collector_cpu_per_restart_us);
    }
    for (name, t) in [("logs + traces", &both_built), ("logs only", &logs_built)] {
        println!(
            "| {name}: restarts/s delivered to the built collector, file exporter ({n} restarts) | {:.0} |",
            t.per_sec
        );
        println!("| {name}: agent CPU per restart (built collector) | {:.1} µs |", t.agent_cpu_per_restart_us);
        println!("| {name}: built collector CPU per restart | {:.1} µs |", t.collector_cpu_per_restart_us);
    }
    println!(
        "| throughput, batches of {records} / batches of {BASELINE_BATCH_RECORDS} (logs + traces, rotel) | {:.2} |",
        both.per_sec / both_baseline.per_sec
    );
    println!("| latency at 1,000/s, batch delay 200 ms: p50 / p99 | {} ms / {} ms |", p50.as_millis(), p99.as_millis());
    println!(
        "| latency at 1,000/s, batch delay 20 ms: p50 / p99 | {} ms / {} ms |",
        p50s.as_millis(),
        p99s.as_millis()
    );
}
