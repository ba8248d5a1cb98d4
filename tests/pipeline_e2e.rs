//! The whole pipeline, live: a restart written with kubectl on the real API server, detected by the
//! agent, exported over OTLP/gRPC to a collector; outages longer than the queue; shutdown.

use restart_watcher_test_support::cluster;
use restart_watcher_test_support::fake_collector;
use restart_watcher_test_support::pods;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use cluster::{Agent, Cluster, http_get, now_rfc3339, status};
use fake_collector::{FakeCollector, str_attr};
use restart_watcher::keys;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// The agent on namespace `ns` (no checkpoint), exporting to the fake collector, with `extra` flags.
fn agent_to(k: &Cluster, ns: &str, fc: &FakeCollector, extra: &[&str]) -> Agent {
    let endpoint = fc.endpoint();
    let mut args = vec!["-n", ns, "--no-checkpoint", "--otlp-endpoint", &endpoint];
    args.extend_from_slice(extra);
    Agent::start_raw(Path::new(k.admin()), &args)
}

/// The shared cluster, a fake collector, and in a new namespace `ns` a running pod with one
/// container (restart count 0); returns the pod's uid too.
fn cluster_collector_and_pod(ns: &str, pod: &str, container: &str) -> (&'static Cluster, FakeCollector, String) {
    let k = Cluster::shared();
    let fc = FakeCollector::start_blocking();
    k.create_namespace(ns);
    let uid = k.create_pod(ns, pod, "node-a", json!({}), &[container]);
    k.set_status(ns, pod, json!([status(container, 0, None)]));
    (k, fc, uid)
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_kubectl_patch_arrives_at_the_collector_and_shows_in_the_metrics() {
    let (k, fc, uid) = cluster_collector_and_pod("e2e-live", "pay-1", "pay");
    let ns = "e2e-live";
    let mut agent = agent_to(k, ns, &fc, &[]);
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
    let budget = restart_watcher::enrich::kube_events::EVENT_STORE_BUDGET_BYTES.to_string();
    assert_eq!(value("restart_watcher_events_store_limit_bytes"), Some(budget), "{metrics}");
    assert!(value("restart_watcher_events_store_usage_bytes").is_some(), "{metrics}");
    assert_eq!(value("restart_watcher_events_evicted_total").as_deref(), Some("0"), "{metrics}");
    // The heap: some in use, and mapped at least as much as in use.
    let bytes = |name: &str| value(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let (in_use, mapped) = (bytes("restart_watcher_heap_in_use_bytes"), bytes("restart_watcher_heap_mapped_bytes"));
    assert!(in_use > 0 && mapped >= in_use, "{metrics}");
    // The records waiting for Events, against their budget.
    let budget = restart_watcher::enrich::PENDING_BUDGET_BYTES.to_string();
    assert_eq!(value("restart_watcher_pending_limit_bytes"), Some(budget), "{metrics}");
    assert_eq!(value("restart_watcher_pending_usage_bytes").as_deref(), Some("0"), "{metrics}");
    assert_eq!(value("restart_watcher_pending_released_early_total").as_deref(), Some("0"), "{metrics}");
    // The export queue in bytes: its budget, and nothing left in it once the record is exported.
    let budget = restart_watcher::accounting::DEFAULT_QUEUE_BUDGET_BYTES.to_string();
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
#[ignore = "needs the loopback cluster: tests/run.sh"]
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
    let mut agent = agent_to(k, ns, &fc, &["--queue-capacity", "2", "--batch-max-records", "1", "--signals", "logs"]);
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
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn shutdown_reports_what_could_not_be_delivered_and_exits_non_zero() {
    let (k, fc, _) = cluster_collector_and_pod("e2e-shutdown", "s-1", "s");
    fc.set_down(true);
    let ns = "e2e-shutdown";
    let mut agent = agent_to(k, ns, &fc, &["--shutdown-grace", "1s"]);
    agent.wait_ready();
    k.set_status(ns, "s-1", json!([status("s", 1, Some(("Error", 1, &now_rfc3339())))]));
    agent.wait_log("Export failed; retrying", WAIT);
    assert_eq!(agent.terminate(), Some(1));
    let logs = agent.logs_text();
    assert!(logs.contains("undelivered=1"), "{logs}");
    assert!(logs.contains("Some records were not delivered"), "{logs}");
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn self_metrics_are_pushed_over_otlp_to_the_same_collector() {
    let (k, fc, _) = cluster_collector_and_pod("e2e-selfmetrics", "m-1", "m");
    let ns = "e2e-selfmetrics";
    let mut agent = agent_to(k, ns, &fc, &["--otlp-headers", "x-tenant=t1", "--self-metrics-otlp"]);
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

/// Every metric and every label the Grafana dashboard (`deploy/grafana/restart-watcher.json`)
/// queries, checked against the `/metrics` of an agent that exported (once with a retry, once
/// dropped by the collector), counted restarts and a failure per workload, and watched.
#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn the_grafana_dashboard_queries_only_metrics_and_labels_the_agent_exposes() {
    let (k, fc, _) = cluster_collector_and_pod("e2e-dashboard", "api-1", "api");
    let ns = "e2e-dashboard";
    k.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(
            &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "once", "namespace": ns},
                "spec": {"nodeName": "node-a", "restartPolicy": "Never",
                         "containers": [{"name": "task", "image": "registry.example.com/task:1.0"}]}})
            .to_string(),
        ),
    );
    k.wait_running(ns, "once");
    let mut agent =
        agent_to(k, ns, &fc, &["--workload-metrics", "--batch-max-records", "1", "--pending-threshold", "2s"]);
    let admin = agent.admin_addr();
    agent.wait_ready();
    k.set_status(ns, "api-1", json!([status("api", 1, Some(("OOMKilled", 137, &now_rfc3339())))]));
    fc.wait_log_records(1, WAIT);
    fc.fail_next("logs", 1, || tonic::Status::unavailable("collector restarting"));
    k.set_status(ns, "api-1", json!([status("api", 2, Some(("Error", 1, &now_rfc3339())))]));
    fc.wait_log_records(2, WAIT);
    fc.fail_next("logs", 1, || tonic::Status::invalid_argument("bad record"));
    k.set_status(ns, "api-1", json!([status("api", 3, Some(("Error", 1, &now_rfc3339())))]));
    let ended = pods::c("task", 0).bare().field("image", "registry.example.com/task:1.0");
    let ended = json!([ended
        .state(json!({"terminated": {"exitCode": 2, "reason": "Error", "finishedAt": now_rfc3339()}}))
        .json()]);
    k.kubectl(&[
        "-n",
        ns,
        "patch",
        "pod",
        "once",
        "--subresource=status",
        "--type=merge",
        "-p",
        &json!({"status": {"phase": "Failed", "containerStatuses": ended}}).to_string(),
    ]);
    fc.wait_log_records(3, WAIT);
    // A pod no node fits, after the others (no fault injected): one pod start failure, the series of
    // the "pods not starting" panel.
    k.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(
            &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "big", "namespace": ns},
                "spec": {"containers": [{"name": "big", "image": "registry.example.com/big:1.0",
                    "resources": {"requests": {"memory": "100Ti"}}}]}})
            .to_string(),
        ),
    );
    fc.wait_log_records(4, WAIT);

    let metrics = {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let (_, text) = http_get(&admin, "/metrics");
            if text.contains("restart_watcher_records_dropped_total{")
                && text.contains("event=\"pod_start_failure\"")
                && text.contains("event=\"failure\"")
            {
                break text;
            }
            assert!(std::time::Instant::now() < deadline, "{text}\nlogs:\n{}", agent.logs_text());
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("deploy/grafana/restart-watcher.json").unwrap()).unwrap();
    let mut queries: Vec<(String, String)> = Vec::new();
    // The Prometheus panels (the logs panel's LogsQL is run by tests/collector_e2e.rs).
    for panel in dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["datasource"]["type"] != "victoriametrics-logs-datasource")
    {
        for t in panel["targets"].as_array().into_iter().flatten() {
            queries.push((t["expr"].as_str().unwrap().to_owned(), t["legendFormat"].as_str().unwrap_or("").to_owned()));
        }
    }
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["definition"].as_str() {
            queries.push((q.to_owned(), String::new()));
        }
    }
    assert!(queries.len() >= 15, "{queries:?}");
    let metric_re = regex::Regex::new(r"restart_watcher_[a-z_]+").unwrap();
    let by_re = regex::Regex::new(r"by \(([^)]*)\)").unwrap();
    let matcher_re = regex::Regex::new(r"\{([a-z_]+)=").unwrap();
    let legend_re = regex::Regex::new(r"\{\{([a-z_]+)\}\}").unwrap();
    let label_values_re = regex::Regex::new(r"label_values\([a-z_]+, ([a-z_]+)\)").unwrap();
    let exact_re = regex::Regex::new(r#"[{,] *([a-z_]+)="([^"$]+)""#).unwrap();
    let mut checked = BTreeSet::new();
    for (expr, legend) in &queries {
        let names: Vec<&str> = metric_re.find_iter(expr).map(|m| m.as_str()).collect();
        assert!(!names.is_empty(), "a panel query reads no restart_watcher metric: {expr}");
        for name in &names {
            assert!(
                metrics.lines().any(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} "))),
                "the dashboard queries {name}, which /metrics does not have:\n{metrics}"
            );
        }
        let mut labels: Vec<String> = by_re
            .captures_iter(expr)
            .flat_map(|c| c[1].split(',').map(|l| l.trim().to_owned()).collect::<Vec<_>>())
            .collect();
        labels.extend(matcher_re.captures_iter(expr).map(|c| c[1].to_owned()));
        labels.extend(legend_re.captures_iter(legend).map(|c| c[1].to_owned()));
        labels.extend(label_values_re.captures_iter(expr).map(|c| c[1].to_owned()));
        // An exact matcher selects series that exist: `event="pod_start_failure"`.
        for m in exact_re.captures_iter(expr) {
            let (label, value) = (&m[1], &m[2]);
            let found = names.iter().any(|name| {
                metrics
                    .lines()
                    .any(|l| l.starts_with(&format!("{name}{{")) && l.contains(&format!("{label}=\"{value}\"")))
            });
            assert!(found, "the dashboard selects {names:?} with {label}=\"{value}\", which none has:\n{metrics}");
        }
        for label in labels.iter().filter(|l| !l.is_empty()) {
            let found = names.iter().any(|name| {
                metrics.lines().any(|l| l.starts_with(&format!("{name}{{")) && l.contains(&format!("{label}=\"")))
            });
            assert!(found, "the dashboard groups {names:?} by {label}, which none of their series has:\n{metrics}");
            checked.insert(label.clone());
        }
    }
    for label in
        ["namespace", "workload_kind", "workload", "container", "cause", "event", "signal", "reason", "failure"]
    {
        assert!(checked.contains(label), "the dashboard uses {label}");
    }
    documented_promql_and_rules_hold_on(&metrics);
}

/// Runs the shipped alerting rules and every ```promql query of docs/operations.md with promtool on
/// the per-workload series of `metrics` (a real agent's `/metrics`): each series is 0 for 10
/// minutes, then its scraped value for 10 more; the rules and queries are evaluated at 20 minutes,
/// and their results must be what the scraped values give.
fn documented_promql_and_rules_hold_on(metrics: &str) {
    use std::collections::BTreeMap;
    let promtool = cluster::go_tool("prometheus", "promtool");
    let rules = std::fs::canonicalize("deploy/prometheus/restart-watcher-rules.yaml").unwrap();
    let out = std::process::Command::new(&promtool).args(["check", "rules"]).arg(&rules).output().unwrap();
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The scraped series: (metric, labels, value).
    let series_re =
        regex::Regex::new(r#"^(restart_watcher_container_(?:restarts|failures)_total)\{(.*)\} (\S+)$"#).unwrap();
    let label_re = regex::Regex::new(r#"([a-z_]+)="([^"]*)""#).unwrap();
    let scraped: Vec<(String, BTreeMap<String, String>, f64)> = metrics
        .lines()
        .filter_map(|l| series_re.captures(l))
        .map(|c| {
            let labels = label_re.captures_iter(&c[2]).map(|l| (l[1].to_owned(), l[2].to_owned())).collect();
            (c[1].to_owned(), labels, c[3].parse().unwrap())
        })
        .collect();
    assert!(scraped.len() >= 3, "{metrics}");
    let selector = |metric: &str, labels: &BTreeMap<String, String>| {
        let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        format!("{metric}{{{}}}", l.join(","))
    };
    // `sum by (L...) (increase(M[range]))` over the scraped series: one sample per group.
    let grouped = |metric: &str, by: &[&str], keep: &dyn Fn(&BTreeMap<String, String>) -> bool| {
        let mut groups: BTreeMap<BTreeMap<String, String>, f64> = BTreeMap::new();
        for (_, labels, value) in scraped.iter().filter(|(m, l, _)| m == metric && keep(l)) {
            let key = by.iter().map(|b| ((*b).to_owned(), labels[*b].clone())).collect();
            *groups.entry(key).or_default() += value;
        }
        groups
    };
    let docs = std::fs::read_to_string("docs/operations.md").unwrap();
    let shape = regex::Regex::new(r"^sum by \(([a-z_, ]+)\) \(increase\((restart_watcher_[a-z_]+)\[1h\]\)\)$").unwrap();
    let mut expr_tests = Vec::new();
    for block in docs.split("```promql\n").skip(1) {
        let query = block.split("```").next().unwrap().trim();
        let c = shape.captures(query).unwrap_or_else(|| {
            panic!("a documented query of another shape needs its expected result in this test: {query}")
        });
        let by: Vec<&str> = c.get(1).unwrap().as_str().split(", ").collect();
        let samples: Vec<serde_json::Value> = grouped(&c[2], &by, &|_| true)
            .into_iter()
            .map(|(labels, value)| json!({"labels": selector("", &labels), "value": value}))
            .collect();
        assert!(!samples.is_empty(), "the scraped series give {query} no result: {metrics}");
        expr_tests.push(json!({"expr": query, "eval_time": "20m", "exp_samples": samples}));
    }
    assert_eq!(expr_tests.len(), 2, "the two documented queries");
    // The alerts the rules must raise on those series.
    let restarting: Vec<serde_json::Value> = grouped(
        "restart_watcher_container_restarts_total",
        &["namespace", "workload_kind", "workload", "container"],
        &|_| true,
    )
    .into_iter()
    .filter(|(_, v)| *v >= 3.0)
    .map(|(l, v)| {
        let summary = format!(
            "{}/{}: container {} restarted {v} times in 15 minutes",
            l["namespace"], l["workload"], l["container"]
        );
        let mut labels: serde_json::Map<String, serde_json::Value> =
            l.into_iter().map(|(k, v)| (k, v.into())).collect();
        labels.insert("severity".into(), "warning".into());
        json!({"exp_labels": labels, "exp_annotations": {"summary": summary}})
    })
    .collect();
    assert!(!restarting.is_empty(), "a container restarted three times: {metrics}");
    let failing: Vec<serde_json::Value> = grouped(
        "restart_watcher_container_failures_total",
        &["namespace", "workload_kind", "workload", "container", "event"],
        &|l| l["event"] == "start_failure" || l["event"] == "failure",
    )
    .into_keys()
    .map(|l| {
        let summary = format!("{}/{}: container {}: {}", l["namespace"], l["workload"], l["container"], l["event"]);
        let mut labels: serde_json::Map<String, serde_json::Value> =
            l.into_iter().map(|(k, v)| (k, v.into())).collect();
        labels.insert("severity".into(), "warning".into());
        json!({"exp_labels": labels, "exp_annotations": {"summary": summary}})
    })
    .collect();
    assert!(!failing.is_empty(), "a container failed: {metrics}");
    let input: Vec<serde_json::Value> =
        scraped.iter().map(|(m, l, v)| json!({"series": selector(m, l), "values": format!("0x10 {v}x10")})).collect();
    let test = json!({
        "rule_files": [rules],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": input,
            "alert_rule_test": [
                {"eval_time": "20m", "alertname": "ContainerRestartingOften", "exp_alerts": restarting},
                {"eval_time": "20m", "alertname": "ContainerFailing", "exp_alerts": failing},
            ],
            "promql_expr_test": expr_tests,
        }],
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("promql-test.yaml");
    std::fs::write(&file, test.to_string()).unwrap();
    let out = std::process::Command::new(&promtool).args(["test", "rules"]).arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}\ntest file: {test:#}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
