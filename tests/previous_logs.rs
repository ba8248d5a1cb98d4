//! Previous logs, against an in-process stand-in for the API server's `pods/log` endpoint (the real
//! API server proxies it to the node's kubelet, which these machines do not run): a working, a
//! slow, a failing and a forbidden pod; redaction, byte cap, concurrency cap; and through the
//! enrichment stage, where a failed fetch never blocks or loses the record.

use restart_watcher_test_support::fixture;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use restart_watcher::enrich::prevlogs::{FetchError, PREVIOUS_LOGS_CONCURRENCY, PreviousLogs};
use restart_watcher::enrich::{self, Enrichment};
use restart_watcher::metrics::SelfTelemetry;
use restart_watcher::record::Record;
use restart_watcher::rules::text::compile_redactions;
use tokio::sync::mpsc;

#[derive(Default)]
struct Seen {
    queries: Mutex<Vec<HashMap<String, String>>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

async fn log(
    State(seen): State<Arc<Seen>>,
    Path((_ns, pod)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> (StatusCode, String) {
    seen.queries.lock().unwrap().push(q);
    let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    seen.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let status = |code: u16, reason: &str| {
        format!(
            r#"{{"kind":"Status","apiVersion":"v1","status":"Failure","message":"{reason}","reason":"{reason}","code":{code}}}"#
        )
    };
    let out = match pod.as_str() {
        "slow" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            (StatusCode::OK, "late\n".into())
        }
        "busy" => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            (StatusCode::OK, "ok\n".into())
        }
        "fail" => (StatusCode::INTERNAL_SERVER_ERROR, status(500, "InternalError")),
        "denied" => (StatusCode::FORBIDDEN, status(403, "Forbidden")),
        _ => (StatusCode::OK, "starting\nconnecting to db with password=hunter2\npanic: connection refused\n".into()),
    };
    seen.in_flight.fetch_sub(1, Ordering::SeqCst);
    out
}

async fn fake_api_server() -> (kube::Client, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = axum::Router::new().route("/api/v1/namespaces/{ns}/pods/{pod}/log", get(log)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    (kube::Client::try_from(config).unwrap(), seen)
}

fn fetcher(client: kube::Client, timeout: Duration) -> PreviousLogs {
    PreviousLogs::new(client, 50, 1024, timeout, compile_redactions(&["password=\\S+".into()]).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_instance_logs_are_fetched_with_the_right_query_and_redacted() {
    let (client, seen) = fake_api_server().await;
    let text = fetcher(client, Duration::from_secs(2)).fetch("shop", "web-1", "web").await.unwrap();
    assert_eq!(text, "starting\nconnecting to db with [REDACTED]\npanic: connection refused\n");
    let q = seen.queries.lock().unwrap()[0].clone();
    assert_eq!(q["container"], "web");
    assert_eq!(q["previous"], "true");
    assert_eq!(q["tailLines"], "50");
    assert_eq!(q["limitBytes"], "1024");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_failing_and_forbidden_fetches_end_in_a_counted_error() {
    let (client, _) = fake_api_server().await;
    let f = fetcher(client, Duration::from_millis(500));
    assert!(matches!(f.fetch("shop", "slow", "web").await, Err(FetchError::Timeout(_))));
    assert_eq!(f.fetch("shop", "fail", "web").await.unwrap_err().outcome(), "error");
    let denied = f.fetch("shop", "denied", "web").await.unwrap_err();
    assert_eq!(denied.outcome(), "forbidden");
    assert!(denied.to_string().contains("pods/log"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_are_capped_in_concurrency() {
    let (client, seen) = fake_api_server().await;
    let f = fetcher(client, Duration::from_secs(10));
    let all: Vec<_> = (0..12)
        .map(|_| {
            let f = f.clone();
            tokio::spawn(async move { f.fetch("shop", "busy", "web").await })
        })
        .collect();
    for h in all {
        h.await.unwrap().unwrap();
    }
    assert!(seen.max_in_flight.load(Ordering::SeqCst) <= PREVIOUS_LOGS_CONCURRENCY);
}

fn restart_of(pod: &str) -> Record {
    let mut ev = fixture::fixture_restarts().remove(1); // exit 2: the status decides, no wait for Events
    ev.pod.name = pod.to_owned();
    ev
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fetch_never_blocks_or_loses_the_record_and_is_counted() {
    let (client, _) = fake_api_server().await;
    let telemetry = SelfTelemetry::new().unwrap();
    let (in_tx, in_rx) = mpsc::channel(16);
    let (out_tx, mut out_rx) = mpsc::channel(16);
    let opts = Enrichment {
        previous_logs: Some(fetcher(client, Duration::from_millis(800))),
        metrics: Some(telemetry.metrics.clone()),
        ..Default::default()
    };
    let stage = tokio::spawn(enrich::run(in_rx, out_tx, opts));
    for pod in ["web-1", "slow", "fail"] {
        in_tx.send(restart_of(pod)).await.unwrap();
    }
    let mut got = HashMap::new();
    for _ in 0..3 {
        let ev = tokio::time::timeout(Duration::from_secs(5), out_rx.recv()).await.unwrap().unwrap();
        got.insert(ev.pod.name.clone(), ev.previous_logs.clone());
    }
    assert!(got["web-1"].as_deref().unwrap().contains("[REDACTED]"));
    assert_eq!(got["slow"], None);
    assert_eq!(got["fail"], None);
    drop(in_tx);
    stage.await.unwrap();
    let text = telemetry.prometheus_text().unwrap();
    for outcome in ["ok", "timeout", "error"] {
        let line = format!("restart_watcher_previous_logs_fetches_total{{outcome=\"{outcome}\"");
        assert!(text.lines().any(|l| l.starts_with(&line) && l.ends_with(" 1")), "{outcome}:\n{text}");
    }
}
