//! The OTLP/gRPC export path against an in-process fake collector: exact mapping on the wire,
//! backpressure through an outage, RetryInfo, permanent rejections, gzip and headers.

use restart_watcher_test_support::fake_collector;
use restart_watcher_test_support::fake_http_receiver;
use restart_watcher_test_support::fixture;
use restart_watcher_test_support::pods::{self, C};
use restart_watcher_test_support::process;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fake_collector::{FakeCollector, str_attr};
use fixture::{fixture_restarts, many_restarts};
use restart_watcher::export::convert::{self, MappingConfig};
use restart_watcher::export::otlp::{OtlpConfig, OtlpExporter, RawSignalSettings, resolve};
use restart_watcher::export::task::{self, BatchConfig};
use restart_watcher::export::{ExportError, Exporter, Signals};
use restart_watcher::keys;
use restart_watcher::metrics::Metrics;
use restart_watcher::record::Record;
use tokio::sync::mpsc;
use tonic::Code;

fn exporter(fc: &FakeCollector, signals: Signals, extra: impl FnOnce(&mut RawSignalSettings)) -> OtlpExporter {
    let mut generic =
        RawSignalSettings { endpoint: Some(fc.endpoint()), timeout_ms: Some("2000".into()), ..Default::default() };
    extra(&mut generic);
    let cfg = OtlpConfig::from_generic(&generic).unwrap();
    OtlpExporter::new(cfg, signals, MappingConfig::default(), Arc::new(Metrics::noop())).unwrap()
}

const LOGS_ONLY: Signals = Signals { logs: true, traces: false };

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_arrives_exactly_as_the_mapping_says() {
    let fc = FakeCollector::start().await;
    let events = fixture_restarts();
    let exp = exporter(&fc, Signals::default(), |_| {});
    exp.export(&events).await.unwrap();
    let got = fc.records_with_resource();
    assert_eq!(got.len(), events.len());
    for ev in &events {
        let want = convert::log_record(ev);
        let (res, rec) =
            got.iter().find(|(_, r)| r.span_id == want.span_id).expect("the record of each restart arrives");
        assert_eq!(rec, &want);
        assert_eq!(res, &convert::resource_attributes(ev, &MappingConfig::default()));
        assert_eq!(rec.event_name, keys::EVENT_NAME);
    }
    assert_eq!(fc.span_count(), events.len(), "one span per restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_across_an_outage_longer_than_the_channel_holds() {
    let fc = FakeCollector::start().await;
    fc.set_down(true);
    const CAPACITY: usize = 4;
    const BATCH: usize = 2;
    let (tx, rx) = mpsc::channel(CAPACITY);
    let handled = Arc::new(restart_watcher::accounting::ExportProgress::default());
    let exp = Exporter::Otlp(Box::new(exporter(&fc, LOGS_ONLY, |_| {})));
    let batch = BatchConfig { max_records: BATCH, max_delay: Duration::from_millis(10) };
    let task = tokio::spawn(task::run(rx, exp, batch, handled.clone(), Arc::new(Metrics::noop())));
    let events = many_restarts(40);
    let sent = Arc::new(AtomicU64::new(0));
    let producer = {
        let (events, sent) = (events.clone(), sent.clone());
        tokio::spawn(async move {
            for ev in events {
                tx.send(ev).await.unwrap();
                sent.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent_during_outage = sent.load(Ordering::SeqCst) as usize;
    // the channel, the batches in flight (retrying), and the batch being filled
    let bound = CAPACITY + BATCH * (task::MAX_BATCHES_IN_FLIGHT + 1);
    assert!(
        sent_during_outage <= bound,
        "the producer is held back: {sent_during_outage} sent during the outage (bound {bound})"
    );
    assert!(!producer.is_finished());
    assert!(fc.state.attempts.lock().unwrap().len() >= 2, "the exporter kept retrying");
    fc.set_down(false);
    producer.await.unwrap();
    let report = task.await.unwrap();
    assert_eq!((report.exported, report.failed), (40, 0));
    let mut ids: Vec<_> = fc.log_records().iter().map(|r| str_attr(&r.attributes, keys::RESTART_ID).unwrap()).collect();
    let mut want: Vec<_> = events.iter().map(Record::restart_id).collect();
    ids.sort();
    want.sort();
    assert_eq!(ids, want, "every record once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_delays_honour_retry_info() {
    use tonic_types::{ErrorDetails, StatusExt};
    let fc = FakeCollector::start().await;
    fc.fail_next("logs", 1, || {
        tonic::Status::with_error_details(
            Code::ResourceExhausted,
            "slow down",
            ErrorDetails::with_retry_info(Some(Duration::from_millis(1200))),
        )
    });
    let exp = exporter(&fc, LOGS_ONLY, |_| {});
    exp.export(&many_restarts(3)).await.unwrap();
    let attempts = fc.state.attempts.lock().unwrap().clone();
    assert_eq!(attempts.len(), 2);
    let waited = attempts[1].1 - attempts[0].1;
    assert!(waited >= Duration::from_millis(1200), "the retry waited as RetryInfo said: {waited:?}");
    assert_eq!(fc.log_records().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_is_retried_with_backoff_until_it_succeeds() {
    let fc = FakeCollector::start().await;
    fc.fail_next("logs", 3, || tonic::Status::unavailable("restarting"));
    let exp = exporter(&fc, LOGS_ONLY, |_| {});
    let t = Instant::now();
    exp.export(&many_restarts(2)).await.unwrap();
    assert_eq!(fc.state.attempts.lock().unwrap().len(), 4);
    assert!(
        t.elapsed() >= Duration::from_millis(125 + 250 + 500),
        "backoff with jitter in [0.5, 1]: {:?}",
        t.elapsed()
    );
    assert_eq!(fc.log_records().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_collector_times_out_and_the_batch_is_retried() {
    let fc = FakeCollector::start().await;
    fc.stall_next("logs", Duration::from_secs(5));
    let exp = exporter(&fc, LOGS_ONLY, |s| s.timeout_ms = Some("300".into()));
    exp.export(&many_restarts(1)).await.unwrap();
    let attempts = fc.state.attempts.lock().unwrap().len();
    assert!(attempts >= 2, "{attempts} attempts");
    assert!(!fc.log_records().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_argument_drops_the_batch_counts_it_and_goes_on() {
    let fc = FakeCollector::start().await;
    fc.fail_next("logs", 1, || tonic::Status::invalid_argument("bad record"));
    let exp = exporter(&fc, LOGS_ONLY, |_| {});
    let err = exp.export(&many_restarts(3)).await.unwrap_err();
    match &err {
        ExportError::Rejected { code, endpoint, .. } => {
            assert_eq!(*code, "invalid_argument");
            assert_eq!(endpoint, &fc.endpoint());
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains(&fc.endpoint()), "the message names the endpoint: {err}");
    exp.export(&many_restarts(2)).await.unwrap();
    assert_eq!(fc.log_records().len(), 2, "the next batch goes through");
    assert_eq!(fc.state.attempts.lock().unwrap().len(), 2, "no retry of the rejected batch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_and_headers_reach_the_server() {
    let fc = FakeCollector::start().await;
    let exp = exporter(&fc, Signals::default(), |s| {
        s.headers = Some("x-tenant=acme, authorization=Bearer%20t0k".into());
        s.compression = Some("gzip".into());
    });
    exp.export(&many_restarts(1)).await.unwrap();
    for meta in fc
        .state
        .logs
        .lock()
        .unwrap()
        .iter()
        .map(|(m, _)| m.clone())
        .chain(fc.state.traces.lock().unwrap().iter().map(|(m, _)| m.clone()))
    {
        assert_eq!(meta.get("x-tenant").unwrap(), "acme");
        assert_eq!(meta.get("authorization").unwrap(), "Bearer t0k");
        assert_eq!(meta.get("grpc-encoding").unwrap(), "gzip");
    }
}

#[test]
fn settings_follow_the_exporter_spec_and_bad_values_name_their_variable() {
    use restart_watcher::export::otlp::Protocol;
    let r = |endpoint: Option<&str>| RawSignalSettings { endpoint: endpoint.map(str::to_owned), ..Default::default() };
    let none = RawSignalSettings::default();
    let logs = |specific: &RawSignalSettings, generic: &RawSignalSettings| {
        let mut warnings = Vec::new();
        let c = resolve(specific, generic, "OTEL_EXPORTER_OTLP_LOGS", &mut warnings);
        (c, warnings)
    };
    let ok = |specific: &RawSignalSettings, generic: &RawSignalSettings| logs(specific, generic).0.unwrap().unwrap();
    // a signal's own endpoint wins over the generic one
    assert_eq!(ok(&r(Some("http://logs:4317")), &r(Some("http://all:4317"))).endpoint, "http://logs:4317");
    // no scheme: https, or http when insecure (any case); a non-boolean is false, with a warning
    assert_eq!(ok(&none, &r(Some("collector:4317"))).endpoint, "https://collector:4317");
    let insecure = RawSignalSettings { insecure: Some("TRUE".into()), ..r(Some("collector:4317")) };
    assert_eq!(ok(&none, &insecure).endpoint, "http://collector:4317");
    let yes = RawSignalSettings { insecure: Some("yes".into()), ..r(Some("collector:4317")) };
    let (c, warnings) = logs(&none, &yes);
    assert_eq!(c.unwrap().unwrap().endpoint, "https://collector:4317");
    assert!(warnings[0].starts_with("OTEL_EXPORTER_OTLP_INSECURE: \"yes\" is not true"), "{warnings:?}");
    assert_eq!(logs(&none, &none).0.unwrap().map(|c| c.endpoint), None, "no endpoint here: the caller defaults");
    // timeout: default 10 s, 0 = no limit
    assert_eq!(ok(&none, &r(Some("http://c:4317"))).timeout, Some(Duration::from_secs(10)));
    let no_limit = RawSignalSettings { timeout_ms: Some("0".into()), ..r(Some("http://c:4317")) };
    assert_eq!(ok(&none, &no_limit).timeout, None);
    // enums are case-insensitive; unknown values are warned about and ignored
    let gzip = RawSignalSettings { compression: Some("GZIP".into()), ..r(Some("http://c:4317")) };
    assert!(ok(&none, &gzip).gzip);
    let zstd = RawSignalSettings { compression: Some("zstd".into()), ..none.clone() };
    let (c, warnings) = logs(&zstd, &r(Some("http://c:4317")));
    assert!(!c.unwrap().unwrap().gzip);
    assert!(warnings[0].starts_with("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION: unknown compression"), "{warnings:?}");
    // http/protobuf: the generic endpoint gets the signal's path, a signal's own endpoint does not
    let http = RawSignalSettings { protocol: Some("HTTP/PROTOBUF".into()), ..r(Some("http://c:4318/")) };
    let c = ok(&none, &http);
    assert_eq!((c.protocol, c.endpoint.as_str()), (Protocol::HttpProtobuf, "http://c:4318/v1/logs"));
    let own = RawSignalSettings { protocol: Some("http/protobuf".into()), ..r(Some("http://c:4318/custom")) };
    assert_eq!(ok(&own, &none).endpoint, "http://c:4318/custom");
    // the spec's default endpoints, per protocol
    let d = OtlpConfig::from_generic(&none).unwrap();
    assert_eq!(d.logs.unwrap().endpoint, "http://localhost:4317");
    let d = OtlpConfig::from_generic(&RawSignalSettings { protocol: Some("http/protobuf".into()), ..none.clone() })
        .unwrap();
    assert_eq!(d.traces.unwrap().endpoint, "http://localhost:4318/v1/traces");
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.crt");
    std::fs::write(&not_pem, "this is not a certificate").unwrap();
    let cases: Vec<(RawSignalSettings, RawSignalSettings, &str)> = vec![
        (none.clone(), r(Some("ftp://c:21")), "OTEL_EXPORTER_OTLP_ENDPOINT"),
        (none.clone(), r(Some("http://h:99999")), "OTEL_EXPORTER_OTLP_ENDPOINT"),
        (r(Some("http://bad host")), none.clone(), "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"),
        (
            none.clone(),
            RawSignalSettings { headers: Some("novalue".into()), ..r(Some("http://c")) },
            "OTEL_EXPORTER_OTLP_HEADERS",
        ),
        (
            none.clone(),
            RawSignalSettings { timeout_ms: Some("10s".into()), ..r(Some("http://c")) },
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ),
        (
            none.clone(),
            RawSignalSettings { timeout_ms: Some("18446744073709551615".into()), ..r(Some("http://c")) },
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ),
        (
            none.clone(),
            RawSignalSettings { certificate: Some("/nonexistent/ca.pem".into()), ..r(Some("https://c")) },
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
        ),
        (
            none.clone(),
            RawSignalSettings { certificate: Some(not_pem.clone()), ..r(Some("https://c")) },
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
        ),
        (
            none.clone(),
            RawSignalSettings { client_key: Some("/nonexistent/k.pem".into()), ..r(Some("https://c")) },
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
        ),
    ];
    for (specific, generic, setting) in cases {
        let err = logs(&specific, &generic).0.map(|_| ()).unwrap_err().to_string();
        assert!(err.starts_with(setting), "{setting}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_survive_an_abort_at_the_end_of_the_grace() {
    // 80 records confirmed, then the collector goes down with 20 more queued: the grace runs out,
    // the export task is aborted, and the report still says 80 exported, 20 undelivered.
    let fc = FakeCollector::start().await;
    let (tx, rx) = mpsc::channel(128);
    let progress = Arc::new(restart_watcher::accounting::ExportProgress::default());
    let exp = Exporter::Otlp(Box::new(exporter(&fc, LOGS_ONLY, |_| {})));
    let batch = BatchConfig { max_records: 10, max_delay: Duration::from_millis(10) };
    let handle = tokio::spawn(task::run(rx, exp, batch, progress.clone(), Arc::new(Metrics::noop())));
    let events = many_restarts(100);
    for ev in &events[..80] {
        tx.send(ev.clone()).await.unwrap();
    }
    while progress.exported.load(Ordering::SeqCst) < 80 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fc.set_down(true);
    for ev in &events[80..] {
        tx.send(ev.clone()).await.unwrap();
    }
    drop(tx);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    let (report, abnormal) = restart_watcher::export::task::finish(handle, deadline).await;
    assert!(report.is_none() && !abnormal, "aborted, not panicked");
    let r = restart_watcher::accounting::RunReport::from_progress(100, &progress, abnormal);
    assert_eq!((r.restarts_detected, r.exported, r.failed, r.undelivered), (100, 80, 0, 20));
}

/// The agent binary replaying the fixture (4 restarts) to `endpoint`, with `extra` flags.
fn replay_to(endpoint: &str, extra: &[&str], stdin: std::process::Stdio) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_restart-watcher"))
        .args(["replay", "-", "--exporter", "otlp", "--otlp-endpoint", endpoint, "--otlp-timeout", "500"])
        .args(extra)
        .stdin(stdin)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn replay_to_a_collector_that_is_down_ends_after_the_grace_and_reports_undelivered() {
    let fc = FakeCollector::start_blocking();
    fc.set_down(true);
    let input = std::fs::File::open("tests/fixtures/real-apiserver-watch.json").unwrap();
    let child = replay_to(&fc.endpoint(), &["--shutdown-grace", "1s"], input.into());
    let out = process::wait_or_kill(child, Duration::from_secs(120));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("detected=4 exported=0 failed=0 undelivered=4"), "{err}");
    assert!(err.contains("4 records were still undelivered"), "{err}");
}

#[test]
fn replay_stops_on_sigterm_and_reports_what_it_delivered() {
    use std::io::Write;
    let fc = FakeCollector::start_blocking();
    let mut child = replay_to(&fc.endpoint(), &["--shutdown-grace", "5s"], std::process::Stdio::piped());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&std::fs::read("tests/fixtures/real-apiserver-watch.json").unwrap()).unwrap();
    stdin.flush().unwrap();
    // The pipe stays open (as `kubectl get -w` would); the records arrive, then SIGTERM.
    let records = fc.wait_log_records(4, Duration::from_secs(60));
    assert_eq!(records.len(), 4);
    let kill = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = process::wait_or_kill(child, Duration::from_secs(120));
    drop(stdin);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "interrupted before the input ended: {err}");
    assert!(err.contains("detected=4 exported=4 failed=0 undelivered=0") && err.contains("interrupted=true"), "{err}");
    // The reader, blocked on the open pipe, still reports what it read.
    assert!(err.contains("values=16 pod_observations=16"), "{err}");
}

/// The number after `key=` in the agent's log.
fn logged(err: &str, key: &str) -> u64 {
    let at = err.rfind(&format!(" {key}=")).unwrap_or_else(|| panic!("no {key}= in {err}")) + key.len() + 2;
    err[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

#[test]
fn a_replay_stopped_while_its_records_wait_for_the_collector_reports_what_it_read_and_detected() {
    use std::io::Write;
    let fc = FakeCollector::start_blocking();
    fc.set_down(true);
    // 10,000 pods, each seen running and then restarted: 10,000 records, more than the queue holds.
    let mut input = tempfile::NamedTempFile::new().unwrap();
    for i in 0..10_000u32 {
        let running = pods::c("web", 0).state(serde_json::json!({"running": {}}));
        let restarted = running.clone().terminated(serde_json::json!({"exitCode": 1, "reason": "Error",
            "finishedAt": "2026-11-20T10:00:00Z", "containerID": format!("containerd://{i}")}));
        for web in [running, C { restarts: 1, ..restarted }] {
            let pod = pods::pod(&format!("00000000-0000-0000-0000-{i:012}")).named("ns", &format!("p-{i}"));
            writeln!(input, "{}", pod.bare().app(web).event("MODIFIED")).unwrap();
        }
    }
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_restart-watcher"))
        .args(["replay", input.path().to_str().unwrap(), "--exporter", "otlp", "--otlp-endpoint", &fc.endpoint()])
        .args(["--otlp-timeout", "500", "--shutdown-grace", "1s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The queue is full and the reader waits on it.
    std::thread::sleep(Duration::from_secs(3));
    let kill = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = process::wait_or_kill(child, Duration::from_secs(120));
    let err = String::from_utf8_lossy(&out.stderr);
    let (values, observations, detected) =
        (logged(&err, "values"), logged(&err, "pod_observations"), logged(&err, "detected"));
    assert!(detected > 0 && detected < 10_000, "{err}");
    // Each record came from the second observation of its pod: the counts add up.
    assert!(observations >= 2 * detected && values == observations, "{err}");
    assert!(err.contains(&format!("undelivered={detected}")), "{err}");
}

/// `n` restarts, each carrying `log_bytes` of previous logs (big records).
fn big_restarts(n: u32, log_bytes: usize) -> Vec<Record> {
    many_restarts(n)
        .into_iter()
        .map(|mut ev| {
            ev.previous_logs = Some("x".repeat(log_bytes));
            ev
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_exceeds_the_cap_so_big_batches_arrive_whole() {
    use restart_watcher::export::otlp::MAX_REQUEST_BYTES;
    let fc = FakeCollector::start().await;
    let events = big_restarts(10, 1 << 20);
    let exp = exporter(&fc, LOGS_ONLY, |_| {});
    exp.export(&events).await.unwrap();
    let sizes: Vec<usize> =
        fc.state.logs.lock().unwrap().iter().map(|(_, req)| prost::Message::encoded_len(req)).collect();
    assert!(sizes.len() > 2, "a 10 MiB batch goes as several requests: {sizes:?}");
    assert!(sizes.iter().all(|s| *s <= MAX_REQUEST_BYTES), "{sizes:?}");
    assert_eq!(fc.log_records().len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_refused_as_too_large_is_split_and_retried_never_dropped() {
    let fc = FakeCollector::start().await;
    fc.set_max_request_bytes(Some(64 * 1024));
    let events = big_restarts(40, 8 * 1024);
    let metrics = Arc::new(Metrics::noop());
    let cfg =
        OtlpConfig::from_generic(&RawSignalSettings { endpoint: Some(fc.endpoint()), ..Default::default() }).unwrap();
    let exp = OtlpExporter::new(cfg, Signals::default(), MappingConfig::default(), metrics).unwrap();
    exp.export(&events).await.unwrap();
    let mut got: Vec<_> = fc.log_records().iter().map(|r| r.span_id.clone()).collect();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 40, "every record arrives once");
    assert_eq!(fc.span_count(), 40);
    // A single record over the receiver's limit cannot be split: dropped, counted, named.
    fc.set_max_request_bytes(Some(1024));
    let err = exp.export(&events[..1]).await.unwrap_err();
    assert!(matches!(err, ExportError::Rejected { code: "too_large", .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_without_retry_info_is_retried_not_dropped() {
    let fc = FakeCollector::start().await;
    fc.fail_next("logs", 2, || tonic::Status::resource_exhausted("memory limiter: data refused"));
    let exp = exporter(&fc, LOGS_ONLY, |_| {});
    exp.export(&many_restarts(3)).await.unwrap();
    assert_eq!(fc.log_records().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_export_says_who_sends_it() {
    let fc = FakeCollector::start().await;
    exporter(&fc, LOGS_ONLY, |_| {}).export(&many_restarts(1)).await.unwrap();
    let logs = fc.state.logs.lock().unwrap();
    let ua = logs[0].0.get("user-agent").unwrap().to_str().unwrap().to_owned();
    assert!(ua.starts_with(&format!("restart-watcher/{}", env!("CARGO_PKG_VERSION"))), "{ua}");
}

/// Runs `events` through the export task to `exporter`, in batches of 128: the report.
async fn through_the_task(exporter: OtlpExporter, events: Vec<Record>) -> task::ExportReport {
    let (tx, rx) = mpsc::channel(events.len().max(1));
    let progress = Arc::new(restart_watcher::accounting::ExportProgress::default());
    let batch = BatchConfig { max_records: 128, max_delay: Duration::from_millis(20) };
    let run =
        tokio::spawn(task::run(rx, Exporter::Otlp(Box::new(exporter)), batch, progress, Arc::new(Metrics::noop())));
    for ev in events {
        tx.send(ev).await.unwrap();
    }
    drop(tx);
    run.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_too_large_for_the_receiver_fails_alone_and_the_rest_of_its_batch_is_delivered() {
    let fc = FakeCollector::start().await;
    fc.set_max_request_bytes(Some(4 * 1024 * 1024));
    let mut events = many_restarts(11);
    events[5].previous_logs = Some("x".repeat(5 * 1024 * 1024));
    let report = through_the_task(exporter(&fc, LOGS_ONLY, |_| {}), events).await;
    assert_eq!((report.exported, report.failed), (10, 1), "{report:?}");
    assert_eq!(fc.log_records().len(), 10, "what the receiver stored is what counts as exported");
    assert!(matches!(report.first_error, Some(ExportError::Rejected { code: "too_large", .. })));
}

fn http_exporter(endpoint: &str) -> OtlpExporter {
    let generic = RawSignalSettings {
        endpoint: Some(endpoint.to_owned()),
        protocol: Some("http/protobuf".into()),
        timeout_ms: Some("2000".into()),
        ..Default::default()
    };
    let cfg = OtlpConfig::from_generic(&generic).unwrap();
    OtlpExporter::new(cfg, LOGS_ONLY, MappingConfig::default(), Arc::new(Metrics::noop())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_whose_body_is_not_protobuf_is_a_delivery() {
    use fake_http_receiver::{Body, FakeHttpReceiver};
    for body in [Body::Json, Body::Garbage] {
        let rx = FakeHttpReceiver::start().await;
        *rx.state.body.lock().unwrap() = body;
        let report = through_the_task(http_exporter(&rx.endpoint()), many_restarts(300)).await;
        assert_eq!((report.exported, report.failed), (300, 0), "{body:?}: {report:?}");
        assert_eq!(rx.records_taken("logs"), 300);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_takes_only_small_requests_is_sent_requests_of_the_size_it_takes() {
    use fake_http_receiver::FakeHttpReceiver;
    let rx = FakeHttpReceiver::start().await;
    *rx.state.max_records.lock().unwrap() = Some(5);
    let report = through_the_task(http_exporter(&rx.endpoint()), many_restarts(10_000)).await;
    assert_eq!((report.exported, report.failed), (10_000, 0), "{report:?}");
    assert_eq!(rx.records_taken("logs"), 10_000);
    let refused = rx.state.requests.lock().unwrap().iter().filter(|(_, _, status)| *status == 413).count();
    // The first batches find the limit (a few refusals while the requests halve); every later
    // batch is split before it goes. Before, each of the 79 batches was refused and split anew:
    // 7,365 requests for these 10,000 records.
    eprintln!("10,000 records to a receiver taking 5 a request: {} requests, {refused} refused", rx.requests("logs"));
    assert!(refused <= 4 * 8, "{refused} refusals");
    assert!(rx.requests("logs") <= 10_000 / 4 + 4 * 8 + 79, "{} requests", rx.requests("logs"));
}
