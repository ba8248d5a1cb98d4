//! The whole pipeline, live: a restart written with kubectl on the real API server, detected by the
//! agent, exported over OTLP/gRPC to a collector; outages longer than the queue; shutdown.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/fake_collector.rs"]
mod fake_collector;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use cluster::{Agent, Cluster, http_get, now_rfc3339, status};
use fake_collector::{FakeCollector, str_attr};
use restart_watcher::keys;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn a_kubectl_patch_arrives_at_the_collector_and_shows_in_the_metrics() {
    let k = Cluster::shared();
    let fc = FakeCollector::start_blocking();
    let ns = "e2e-live";
    k.create_namespace(ns);
    let uid = k.create_pod(ns, "pay-1", "node-a", json!({}), &["pay"]);
    k.set_status(ns, "pay-1", json!([status("pay", 0, None)]));
    let mut agent =
        Agent::start_raw(Path::new(k.admin()), &["-n", ns, "--no-checkpoint", "--otlp-endpoint", &fc.endpoint()]);
    let admin = agent.admin_addr();
    agent.wait_ready();
    assert_eq!(http_get(&admin, "/readyz").0, 200);
    assert_eq!(http_get(&admin, "/livez").0, 200);
    k.set_status(ns, "pay-1", json!([status("pay", 1, Some(("OOMKilled", 137, &now_rfc3339())))]));
    let recs = fc.wait_log_records(1, WAIT);
    assert_eq!(recs.len(), 1, "logs:\n{}", agent.logs_text());
    let (res, rec) = fc.records_with_resource().remove(0);
    assert_eq!(str_attr(&res, keys::K8S_POD_UID).unwrap(), uid);
    assert_eq!(str_attr(&rec.attributes, keys::CAUSE).unwrap(), "oom_killed");
    assert_eq!(rec.event_name, keys::EVENT_NAME);
    let deadline = std::time::Instant::now() + WAIT;
    while fc.span_count() < 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(fc.span_count(), 1);
    // The collector stores a record before the agent has read the response: poll the counters.
    let has = |metrics: &str, name: &str, labels: &str| {
        metrics.lines().any(|l| l.starts_with(name) && l.contains(labels) && l.ends_with(" 1"))
    };
    let deadline = std::time::Instant::now() + WAIT;
    let metrics = loop {
        let (code, metrics) = http_get(&admin, "/metrics");
        assert_eq!(code, 200);
        let done = has(&metrics, "restart_watcher_restarts_detected_total", "cause=\"oom_killed\",kind=\"app\"")
            && has(&metrics, "restart_watcher_records_exported_total", "signal=\"logs\"")
            && has(&metrics, "restart_watcher_records_exported_total", "signal=\"traces\"");
        if done {
            break metrics;
        }
        assert!(std::time::Instant::now() < deadline, "{metrics}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(metrics.contains("restart_watcher_export_duration_seconds_bucket"), "{metrics}");
    assert!(metrics.contains("restart_watcher_detection_latency_seconds_count"), "{metrics}");
    // The Event store's use against its budget, and its evictions.
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    };
    let budget = restart_watcher::enrich::events::EVENT_STORE_BUDGET_BYTES.to_string();
    assert_eq!(value("restart_watcher_events_store_limit_bytes"), Some(budget), "{metrics}");
    assert!(value("restart_watcher_events_store_usage_bytes").is_some(), "{metrics}");
    assert_eq!(value("restart_watcher_events_evicted_total").as_deref(), Some("0"), "{metrics}");
    // The records waiting for Events, against their budget.
    let budget = restart_watcher::enrich::PENDING_BUDGET_BYTES.to_string();
    assert_eq!(value("restart_watcher_pending_limit_bytes"), Some(budget), "{metrics}");
    assert_eq!(value("restart_watcher_pending_usage_bytes").as_deref(), Some("0"), "{metrics}");
    assert_eq!(value("restart_watcher_pending_released_early_total").as_deref(), Some("0"), "{metrics}");
    // The export queue in bytes: its budget, and nothing left in it once the record is exported.
    let budget = restart_watcher::export::task::DEFAULT_QUEUE_BUDGET_BYTES.to_string();
    assert_eq!(value("restart_watcher_queue_limit_bytes"), Some(budget), "{metrics}");
    assert_eq!(value("restart_watcher_queue_usage_bytes").as_deref(), Some("0"), "{metrics}");
    assert_eq!(value("restart_watcher_queue_full_waits_total").as_deref(), Some("0"), "{metrics}");
    // The owner index, against its budget.
    let budget = restart_watcher::enrich::owners::OWNER_INDEX_BUDGET_BYTES.to_string();
    assert_eq!(value("restart_watcher_owners_index_limit_bytes"), Some(budget), "{metrics}");
    assert!(value("restart_watcher_owners_index_usage_bytes").is_some(), "{metrics}");
    assert_eq!(value("restart_watcher_owners_unindexed_total").as_deref(), Some("0"), "{metrics}");
    assert!(!metrics.contains(ns), "no namespace or pod names in metric labels");
    assert_eq!(agent.terminate(), Some(0));
}

#[test]
fn every_restart_arrives_after_an_outage_longer_than_the_queue_holds() {
    let k = Cluster::shared();
    let fc = FakeCollector::start_blocking();
    let ns = "e2e-outage";
    k.create_namespace(ns);
    let pods: Vec<String> = (0..8).map(|i| format!("w-{i}")).collect();
    for p in &pods {
        k.create_pod(ns, p, "node-a", json!({}), &["w"]);
        k.set_status(ns, p, json!([status("w", 0, None)]));
    }
    let mut agent = Agent::start_raw(
        Path::new(k.admin()),
        &[
            "-n",
            ns,
            "--no-checkpoint",
            "--otlp-endpoint",
            &fc.endpoint(),
            "--queue-capacity",
            "2",
            "--batch-max-records",
            "1",
            "--signals",
            "logs",
        ],
    );
    agent.wait_ready();
    fc.set_down(true);
    for round in 1..=2 {
        for p in &pods {
            k.set_status(ns, p, json!([status("w", round, Some(("Error", 1, &now_rfc3339())))]));
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(fc.log_records().is_empty());
    fc.set_down(false);
    // Each pod restarted twice; whether the agent saw each rise on its own or both at once
    // (count 0 -> 2, one record with one missed), every restart is accounted for, once.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let recs = fc.log_records();
        let accounted: i64 = recs
            .iter()
            .map(|r| 1 + str_attr(&r.attributes, keys::RESTARTS_MISSED).map_or(0, |m| m.parse::<i64>().unwrap()))
            .sum();
        if accounted >= 16 || std::time::Instant::now() > deadline {
            let ids: BTreeSet<_> = recs.iter().map(|r| str_attr(&r.attributes, keys::RESTART_ID).unwrap()).collect();
            assert_eq!(ids.len(), recs.len(), "no duplicates");
            assert_eq!(accounted, 16, "logs:\n{}", agent.logs_text());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(agent.terminate(), Some(0));
}

#[test]
fn shutdown_reports_what_could_not_be_delivered_and_exits_non_zero() {
    let k = Cluster::shared();
    let fc = FakeCollector::start_blocking();
    fc.set_down(true);
    let ns = "e2e-shutdown";
    k.create_namespace(ns);
    k.create_pod(ns, "s-1", "node-a", json!({}), &["s"]);
    k.set_status(ns, "s-1", json!([status("s", 0, None)]));
    let mut agent = Agent::start_raw(
        Path::new(k.admin()),
        &["-n", ns, "--no-checkpoint", "--otlp-endpoint", &fc.endpoint(), "--shutdown-grace", "1s"],
    );
    agent.wait_ready();
    k.set_status(ns, "s-1", json!([status("s", 1, Some(("Error", 1, &now_rfc3339())))]));
    agent.wait_log("Export failed; retrying", WAIT);
    assert_eq!(agent.terminate(), Some(1));
    let logs = agent.logs_text();
    assert!(logs.contains("undelivered=1"), "{logs}");
    assert!(logs.contains("Some restart records were not delivered"), "{logs}");
}

#[test]
fn self_metrics_are_pushed_over_otlp_to_the_same_collector() {
    let k = Cluster::shared();
    let fc = FakeCollector::start_blocking();
    let ns = "e2e-selfmetrics";
    k.create_namespace(ns);
    k.create_pod(ns, "m-1", "node-a", json!({}), &["m"]);
    k.set_status(ns, "m-1", json!([status("m", 0, None)]));
    let mut agent = Agent::start_raw(
        Path::new(k.admin()),
        &[
            "-n",
            ns,
            "--no-checkpoint",
            "--otlp-endpoint",
            &fc.endpoint(),
            "--otlp-headers",
            "x-tenant=t1",
            "--self-metrics-otlp",
        ],
    );
    agent.wait_ready();
    k.set_status(ns, "m-1", json!([status("m", 1, Some(("Error", 1, &now_rfc3339())))]));
    fc.wait_log_records(1, WAIT);
    // The periodic push is every 30 s; shutdown flushes it.
    assert_eq!(agent.terminate(), Some(0));
    let names = fc.metric_names();
    for name in ["restart_watcher.restarts.detected", "restart_watcher.records.exported", "restart_watcher.queue.in"] {
        assert!(names.iter().any(|n| n == name), "{name} pushed over OTLP: {names:?}");
    }
    // With the records' resolved settings (the headers here) and the agent's own service.name.
    let pushes = fc.metric_pushes("x-tenant");
    assert!(!pushes.is_empty());
    assert!(pushes.iter().all(|p| p == &(Some("restart-watcher".into()), Some("t1".into()))), "{pushes:?}");
    // The agent's own logs never go through its OTLP path: only restart records arrived as logs.
    assert!(fc.log_records().iter().all(|r| r.event_name == keys::EVENT_NAME));
}
