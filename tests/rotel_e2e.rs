//! Against a real collector: restarts replayed by the agent go over OTLP/gRPC to rotel, which
//! exports them over OTLP to a fake collector; they arrive with their attributes intact.

use restart_watcher_test_support::fake_collector;
use restart_watcher_test_support::rotel;

use std::process::Command;
use std::time::Duration;

use fake_collector::{FakeCollector, str_attr};
use restart_watcher::keys;

#[test]
#[ignore = "needs rotel from PyPI: tests/run.sh"]
fn replayed_restarts_reach_a_real_collector_with_their_attributes_intact() {
    let sink = FakeCollector::start_blocking();
    let collector = rotel::Rotel::start(&sink.endpoint());
    let out = Command::new(env!("CARGO_BIN_EXE_restart-watcher"))
        .args(["replay", "tests/fixtures/real-apiserver-watch.json", "--otlp-endpoint", &collector.grpc_endpoint])
        .args(["--otlp-compression", "gzip", "--cluster-name", "e2e"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let records = sink.wait_log_records(4, Duration::from_secs(20));
    assert_eq!(records.len(), 4, "four restarts through rotel");
    let got = sink.records_with_resource();
    let mut rows: Vec<_> = got
        .iter()
        .map(|(res, rec)| {
            (
                str_attr(res, keys::K8S_POD_NAME).unwrap(),
                str_attr(res, keys::K8S_CONTAINER_NAME).unwrap(),
                str_attr(&rec.attributes, keys::RESTART_COUNT).unwrap(),
                str_attr(&rec.attributes, keys::K8S_CONTAINER_STATUS_LAST_TERMINATED_REASON).unwrap(),
                str_attr(&rec.attributes, keys::PROCESS_EXIT_CODE).unwrap(),
                rec.event_name.clone(),
                str_attr(res, keys::K8S_CLUSTER_NAME).unwrap(),
            )
        })
        .collect();
    rows.sort();
    let row = |p: &str, c: &str, n: &str, r: &str, x: &str| {
        (
            p.to_owned(),
            c.to_owned(),
            n.to_owned(),
            r.to_owned(),
            x.to_owned(),
            keys::EVENT_NAME.to_owned(),
            "e2e".to_owned(),
        )
    };
    assert_eq!(
        rows,
        vec![
            row("checkout-6b7f9c8d5-x2x4q", "checkout", "1", "OOMKilled", "137"),
            row("checkout-6b7f9c8d5-x2x4q", "checkout", "2", "Error", "2"),
            row("checkout-6b7f9c8d5-x2x4q", "envoy", "1", "Error", "143"),
            row("report-28371-9kq2x", "report", "1", "Error", "1"),
        ]
    );
    for (_, rec) in &got {
        assert_eq!(rec.trace_id.len(), 16);
        assert!(str_attr(&rec.attributes, keys::RESTART_ID).is_some());
    }
    // spans too
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sink.span_count() < 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sink.span_count(), 4);
}

#[test]
#[ignore = "needs rotel from PyPI: tests/run.sh"]
fn otlp_http_protobuf_reaches_a_real_collector() {
    // Some vendor endpoints take only OTLP/HTTP: the same records over http/protobuf, gzip.
    let sink = FakeCollector::start_blocking();
    let collector = rotel::Rotel::start(&sink.endpoint());
    let out = Command::new(env!("CARGO_BIN_EXE_restart-watcher"))
        .args(["replay", "tests/fixtures/real-apiserver-watch.json", "--exporter", "otlp"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("logs={}/v1/logs (http/protobuf", collector.http_endpoint)), "{err}");
    let records = sink.wait_log_records(4, Duration::from_secs(20));
    assert_eq!(records.len(), 4, "four restarts through rotel's OTLP/HTTP receiver");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sink.span_count() < 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sink.span_count(), 4);
    // A receiver that is not there: retried (UNAVAILABLE), then undelivered at the end of the grace.
    let out = Command::new(env!("CARGO_BIN_EXE_restart-watcher"))
        .args(["replay", "tests/fixtures/real-apiserver-watch.json", "--exporter", "otlp", "--shutdown-grace", "1s"])
        .args(["--otlp-protocol", "http/protobuf", "--otlp-endpoint", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("undelivered=4") && err.contains("code=\"unavailable\""), "{err}");
}
