//! What the SRE looks at, end to end: the agent on the real control plane (Kubernetes v1.35 with
//! kwok), the built collector distribution running the shipped `otel-collector/config.yaml`
//! (`k8s_attributes` pointed at that cluster), Jaeger v2 and VictoriaLogs, all real processes on
//! loopback. Every check goes through the backends' query APIs, with the queries docs/operations.md
//! gives.

use restart_watcher_test_support::backends;
use restart_watcher_test_support::cluster;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use backends::{Jaeger, Stack, VictoriaLogs, eventually, tag};
use cluster::{Agent, Cluster, attr};
use serde_json::{Value, json};

/// How long a delivery may take before the test fails (a hang guard, not a latency bound).
const WAIT: Duration = Duration::from_secs(90);

fn apply(k: &Cluster, obj: Value) {
    k.kubectl_stdin(&["apply", "-f", "-"], Some(&obj.to_string()));
}

fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rw-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A Deployment `name` of one pod whose template carries `app.kubernetes.io/part-of` (which only the
/// collector's `k8s_attributes` turns into a resource attribute, so the test sees that it ran).
fn deployment(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name, "app.kubernetes.io/part-of": "shop"}},
                "spec": {"containers": [{"name": "app", "image": format!("registry.example.com/{name}:1.0")}]}}}})
}

/// A Deployment `name` of one pod in a new namespace `ns`, once running: (pod name, pod uid).
fn one_pod_deployment(k: &Cluster, ns: &str, name: &str) -> (String, String) {
    k.create_namespace(ns);
    apply(k, deployment(ns, name));
    let pod = k.wait_pods_running(ns, &format!("app={name}"), 1).remove(0);
    let uid = k.kubectl(&["-n", ns, "get", "pod", &pod, "-o", "jsonpath={.metadata.uid}"]);
    (pod, uid)
}

/// The resource attributes of the records the `file/raw` exporter wrote: what the agent sent,
/// before any processor.
fn raw_records(path: &Path) -> Vec<(BTreeMap<String, Value>, Value)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = vec![];
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap();
        for rl in v["resourceLogs"].as_array().into_iter().flatten() {
            let res: BTreeMap<String, Value> = rl["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    (
                        a["key"].as_str().unwrap().to_owned(),
                        attr(&rl["resource"]["attributes"], a["key"].as_str().unwrap()),
                    )
                })
                .collect();
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for rec in sl["logRecords"].as_array().into_iter().flatten() {
                    out.push((res.clone(), rec.clone()));
                }
            }
        }
    }
    out
}

/// A value as VictoriaLogs stores it: every field is a string.
fn as_field(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) if o.contains_key("arrayValue") => {
            let items = o["arrayValue"]["values"].as_array().unwrap();
            serde_json::to_string(&items.iter().map(|i| i["stringValue"].clone()).collect::<Vec<_>>()).unwrap()
        }
        other => other.to_string(),
    }
}

/// The attribute keys docs/events.md lists (first column of its tables, in backticks), read as the
/// doc writes them: `k8s.deployment.name` / `.uid` is two keys, `k8s.job.*` a prefix.
fn documented_keys() -> BTreeSet<String> {
    let doc = std::fs::read_to_string("docs/events.md").unwrap();
    let mut keys = BTreeSet::new();
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let first = line.split('|').nth(1).unwrap_or("");
        let mut previous = String::new();
        for part in first.split('`').skip(1).step_by(2) {
            let key = match part.strip_prefix('.') {
                Some(suffix) => format!("{}.{suffix}", previous.rsplit_once('.').map_or("", |(stem, _)| stem)),
                None => part.to_owned(),
            };
            if key.contains('.') && !key.contains(' ') && !key.contains('<') {
                keys.insert(key.clone());
                previous = key;
            }
        }
    }
    keys
}

fn is_documented(documented: &BTreeSet<String>, key: &str) -> bool {
    documented.contains(key)
        || documented.iter().any(|d| d.strip_suffix('*').is_some_and(|prefix| key.starts_with(prefix)))
}

/// The queries of a fenced block of docs/operations.md (```LANG), one per line, without comments.
fn documented_queries(lang: &str) -> Vec<String> {
    let doc = std::fs::read_to_string("docs/operations.md").unwrap();
    let start = doc.find(&format!("```{lang}\n")).unwrap_or_else(|| panic!("no {lang} block in docs/operations.md"));
    let block = &doc[start + lang.len() + 4..];
    let block = &block[..block.find("```").unwrap()];
    block.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned).collect()
}

/// Sends one span of an app (scope `checkout-http`) to the collector over OTLP/HTTP JSON.
fn post_app_span(collector_http: &str, service: &str) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "checkout-http"}, "spans": [{
            "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
            "name": "GET /cart", "kind": 2,
            "startTimeUnixNano": (now - 20_000_000).to_string(), "endTimeUnixNano": now.to_string()}]}]}]});
    post_otlp_json(collector_http, "/v1/traces", &body);
}

/// Sends one log record `body` to the collector over OTLP/HTTP JSON, its resource naming only the
/// pod `uid` (what k8s_attributes associates by).
fn post_pod_log(collector_http: &str, uid: &str, body: &str) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let logs = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "k8s.pod.uid", "value": {"stringValue": uid}}]},
        "scopeLogs": [{"scope": {"name": "probe"}, "logRecords": [{
            "timeUnixNano": now.to_string(), "body": {"stringValue": body}}]}]}]});
    post_otlp_json(collector_http, "/v1/logs", &logs);
}

fn post_otlp_json(collector_http: &str, path: &str, body: &Value) {
    use std::io::{Read, Write};
    let body = body.to_string();
    let addr = collector_http.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.0 200") || resp.starts_with("HTTP/1.1 200"), "{resp}");
}

/// The `span.name` of every data point of the span metrics the `file/metrics` exporter wrote,
/// with the service of its resource.
fn span_metric_points(path: &Path) -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap();
        for rm in v["resourceMetrics"].as_array().into_iter().flatten() {
            let service = attr(&rm["resource"]["attributes"], "service.name").as_str().unwrap_or("").to_owned();
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    for kind in ["sum", "histogram"] {
                        for dp in m[kind]["dataPoints"].as_array().into_iter().flatten() {
                            let span = attr(&dp["attributes"], "span.name").as_str().unwrap_or("").to_owned();
                            out.insert((service.clone(), span));
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_restart_is_queryable_in_jaeger_and_victorialogs_through_the_shipped_collector_config() {
    let k = Cluster::shared();
    let dir = test_dir("collector-e2e");
    let ns = "shop";
    let (pod, uid) = one_pod_deployment(k, ns, "checkout");
    let raw = dir.join("raw-logs.json");
    let metrics = dir.join("span-metrics.json");
    // Beside the shipped pipelines: the records as the agent sent them (no processor), and the span
    // metrics of spanmetrics.yaml written to a file, flushed every second.
    let extra = format!(
        "exporters:\n  file/raw:\n    path: {}\n    flush_interval: 100ms\n  file/metrics:\n    path: {}\n    flush_interval: 100ms\n\
         connectors:\n  span_metrics:\n    metrics_flush_interval: 1s\n\
         service:\n  pipelines:\n    logs/raw:\n      receivers: [otlp]\n      exporters: [file/raw]\n    metrics/spanmetrics:\n      exporters: [file/metrics]\n",
        raw.display(),
        metrics.display()
    );
    let Stack { jaeger, vlogs, collector } = Stack::start(
        &dir,
        Path::new(k.admin()),
        None,
        &["otel-collector/config.yaml", "otel-collector/spanmetrics.yaml"],
        &extra,
    );

    let mut agent = Agent::start_raw(
        Path::new(k.admin()),
        &["-n", ns, "--no-checkpoint", "--otlp-endpoint", &collector.grpc_endpoint],
    );
    agent.wait_ready();
    k.crash(ns, &pod, "app", "Error", 1);

    // Jaeger: the app's service is listed, and the pod's trace (id = the pod uid without dashes)
    // holds the restart span, its event and the cause.
    let trace_id = uid.replace('-', "");
    let spans = eventually("the restart span in Jaeger", WAIT, || {
        let spans = jaeger.trace_spans(&trace_id);
        if spans.is_empty() { Err(format!("no span; agent logs:\n{}", agent.logs_text())) } else { Ok(spans) }
    });
    assert_eq!(spans.len(), 1, "{spans:#?}");
    let span = &spans[0];
    assert_eq!(span["operationName"], "container run");
    assert_eq!(span["serviceName"], "checkout");
    assert!(jaeger.services().contains(&"checkout".to_owned()), "{:?}", jaeger.services());
    // semconv's recording of errors: `error.type` on the span itself, the status without a
    // description that repeats it.
    assert_eq!(tag(&span["tags"], "error.type"), Some(&json!("app_error")), "{span:#}");
    assert_eq!(tag(&span["tags"], "otel.status_code"), Some(&json!("ERROR")), "{span:#}");
    assert_eq!(tag(&span["tags"], "otel.status_description"), None, "{span:#}");
    let event = &span["logs"][0]["fields"];
    assert_eq!(tag(event, "event"), Some(&json!("restart_watcher.container.restart")), "{event:#}");
    assert_eq!(
        tag(&span["tags"], "restart_watcher.cause").or_else(|| tag(event, "restart_watcher.cause")),
        Some(&json!("app_error"))
    );
    assert_eq!(tag(&span["tags"], "otel.scope.name"), Some(&json!("restart-watcher")), "{:#}", span["tags"]);

    // Every Jaeger API query of docs/operations.md finds the span.
    let jaeger_queries = documented_queries("jaeger-api");
    assert_eq!(jaeger_queries.len(), 3, "{jaeger_queries:?}");
    for q in &jaeger_queries {
        let path = q.strip_prefix("GET ").unwrap().replace("0af7651916cd43dd8448eb211c80319c", &trace_id);
        let answer = jaeger.get(&path).unwrap_or_else(|| panic!("{path}: 404"));
        let text = answer.to_string();
        let expected = if path == "/api/services" { "\"checkout\"" } else { &trace_id };
        assert!(text.contains(expected), "{path}: {text}");
    }

    // VictoriaLogs: every LogsQL query of docs/operations.md returns the record; the one by
    // namespace, pod, service and event name returns it alone.
    let logsql = documented_queries("logsql");
    assert_eq!(logsql.len(), 4, "{logsql:?}");
    let queries: Vec<String> = logsql.iter().map(|q| q.replace("checkout-7d9f8-x2x4q", &pod)).collect();
    let hits = eventually("the restart record in VictoriaLogs", WAIT, || {
        let hits = vlogs.query(&queries[1]);
        if hits.is_empty() { Err(format!("{:?}", vlogs.query("*"))) } else { Ok(hits) }
    });
    assert_eq!(hits.len(), 1, "{hits:#?}");
    let stored = hits[0].as_object().unwrap();
    for q in [&queries[0], &queries[2]] {
        let found = vlogs.query(q);
        assert!(found.iter().any(|r| r["k8s.pod.uid"] == uid.as_str()), "{q}: {found:#?}");
    }
    let per_workload = vlogs.query(&queries[3]);
    assert!(
        per_workload.iter().any(|r| r["k8s.namespace.name"] == ns
            && r["k8s.deployment.name"] == "checkout"
            && r["restart_watcher.cause"] == "app_error"
            && r["restarts"] == "1"),
        "{}: {per_workload:#?}",
        queries[3]
    );

    // The Grafana dashboard's logs panel: its LogsQL finds the record, with the fields it shows.
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("deploy/grafana/restart-watcher.json").unwrap()).unwrap();
    let logs_queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["datasource"]["type"] == "victoriametrics-logs-datasource")
        .flat_map(|p| p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(logs_queries.len(), 1, "the dashboard's logs panel");
    for q in &logs_queries {
        let found = vlogs.query(q);
        let rec = found.iter().find(|r| r["k8s.pod.name"] == pod.as_str()).unwrap_or_else(|| panic!("{q}: {found:#?}"));
        assert_eq!(rec["restart_watcher.cause"], "app_error", "{q}: {rec:#?}");
        assert!(rec["trace_id"].as_str().is_some_and(|t| !t.is_empty()), "{q}: {rec:#?}");
    }

    // The collector's k8s_attributes, given only the same pod's uid, sets the k8s.* keys as the
    // agent does: same value, same spelling.
    post_pod_log(&collector.http_endpoint, &uid, "k8s-attributes-probe");
    let probe = eventually("the probe log in VictoriaLogs", WAIT, || {
        let hits = vlogs.query("\"k8s-attributes-probe\"");
        hits.into_iter().next().ok_or_else(|| "not yet".to_owned())
    });
    let processor: BTreeMap<&str, &Value> = probe
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("k8s."))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    assert!(processor.len() >= 4, "k8s_attributes set its keys: {probe:#}");
    let mut agreed = 0;
    for (key, value) in &processor {
        if let Some(ours) = stored.get(*key) {
            assert_eq!(ours, *value, "{key}: the agent and k8s_attributes agree");
            agreed += 1;
        }
    }
    assert!(agreed >= 4, "k8s.namespace.name, k8s.pod.name, k8s.pod.uid, k8s.deployment.name at least: {processor:#?}");

    // What the agent sent, every documented attribute of it stored as sent: k8s_attributes added its
    // own (part-of) but changed nothing the agent set.
    // (The probe log above went through the same pipeline: only the agent's records have an event name.)
    let sent: Vec<_> = raw_records(&raw).into_iter().filter(|(_, rec)| rec.get("eventName").is_some()).collect();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    let (res, rec) = &sent[0];
    let documented = documented_keys();
    let mut checked = 0;
    for (key, value) in res {
        assert!(is_documented(&documented, key), "the agent sent {key}, which docs/events.md does not list");
        assert_eq!(
            stored.get(key).map(|v| v.as_str().unwrap().to_owned()),
            Some(as_field(value)),
            "resource attribute {key}"
        );
        checked += 1;
    }
    for a in rec["attributes"].as_array().unwrap() {
        let key = a["key"].as_str().unwrap();
        assert!(is_documented(&documented, key), "the agent sent {key}, which docs/events.md does not list");
        assert_eq!(
            stored.get(key).map(|v| v.as_str().unwrap().to_owned()),
            Some(as_field(&attr(&rec["attributes"], key))),
            "attribute {key}"
        );
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} attributes");
    for key in [
        "k8s.deployment.name",
        "k8s.replicaset.name",
        "k8s.pod.uid",
        "restart_watcher.cause",
        "restart_watcher.restart.id",
    ] {
        assert!(stored.contains_key(key), "{key} missing: {stored:#?}");
    }
    assert_eq!(stored["k8s.deployment.name"], "checkout");
    assert_eq!(
        stored.get("app.kubernetes.io/part-of").and_then(Value::as_str),
        Some("shop"),
        "k8s_attributes did not run: {stored:#?}"
    );
    assert_eq!(stored["trace_id"], trace_id.as_str());

    // The span metrics count the app's request, never the restart span.
    post_app_span(&collector.http_endpoint, "checkout");
    let points = eventually("the app's span metrics", WAIT, || {
        let p = span_metric_points(&metrics);
        if p.contains(&("checkout".to_owned(), "GET /cart".to_owned())) { Ok(p) } else { Err(format!("{p:?}")) }
    });
    assert!(points.iter().all(|(_, span)| span != "container run"), "{points:?}");

    // The collector started without a deprecation warning.
    let log = collector.server.log_text();
    assert!(!log.to_lowercase().contains("deprecated"), "{log}");
    assert_eq!(agent.terminate(), Some(0));
    let _ = std::fs::remove_dir_all(&dir); // kept when the test fails, for its logs
}

/// The restart ids of the records VictoriaLogs holds for `pod`, with repeats.
fn stored_restart_ids(vlogs: &VictoriaLogs, pod: &str) -> Vec<String> {
    vlogs
        .query(&format!(r#""k8s.pod.name":="{pod}" event_name:="restart_watcher.container.restart""#))
        .iter()
        .map(|r| r["restart_watcher.restart.id"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn restarts_during_backend_and_collector_outages_all_arrive_once_they_are_back() {
    let k = Cluster::shared();
    let dir = test_dir("collector-outage");
    let ns = "outage";
    let (pod, uid) = one_pod_deployment(k, ns, "cart");
    let trace_id = uid.replace('-', "");

    // Badger on disk: Jaeger's spans survive its stop (memory storage would lose them).
    let Stack { mut jaeger, mut vlogs, mut collector } =
        Stack::start(&dir, Path::new(k.admin()), Some(&dir.join("badger")), &["otel-collector/config.yaml"], "");
    let mut agent = Agent::start_raw(
        Path::new(k.admin()),
        &["-n", ns, "--no-checkpoint", "--otlp-endpoint", &collector.grpc_endpoint],
    );
    agent.wait_ready();

    let mut restarts = 0;
    let mut crash = |k: &Cluster| {
        restarts = k.crash(ns, &pod, "app", "Error", 1);
        restarts
    };
    let delivered = |jaeger: &Jaeger, vlogs: &VictoriaLogs, n: usize| {
        let spans = jaeger.trace_spans(&trace_id);
        let ids = stored_restart_ids(vlogs, &pod);
        if spans.len() >= n && ids.len() >= n {
            Ok((spans, ids))
        } else {
            Err(format!("{} spans, {} records of {n}", spans.len(), ids.len()))
        }
    };
    crash(k);
    eventually("the first restart in both backends", WAIT, || delivered(&jaeger, &vlogs, 1));

    // Each outage lasts 15 s, twice the collector's retry window (2 s per attempt, 4 s of retries),
    // with a restart every 4 s during it.
    let outage = |k: &Cluster, crash: &mut dyn FnMut(&Cluster) -> i64| {
        for _ in 0..3 {
            crash(k);
            std::thread::sleep(Duration::from_secs(5));
        }
    };
    jaeger.server.stop();
    outage(k, &mut crash);
    jaeger.server.start();
    vlogs.server.stop();
    outage(k, &mut crash);
    vlogs.server.start();
    collector.server.stop();
    outage(k, &mut crash);
    collector.server.start();

    let n = 10;
    assert_eq!(restarts, n as i64);
    let (spans, ids) = eventually("every restart in both backends", WAIT * 2, || delivered(&jaeger, &vlogs, n));
    let span_ids: BTreeSet<&str> = spans.iter().map(|s| s["spanID"].as_str().unwrap()).collect();
    assert_eq!(span_ids.len(), n, "distinct span ids: {span_ids:?}");
    assert_eq!(spans.len(), n, "a span stored twice: {spans:#?}");
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), n, "{ids:?}");
    assert_eq!(ids.len(), n, "a record stored twice: {ids:?}");
    assert_eq!(agent.terminate(), Some(0), "{}", agent.logs_text());
    let _ = std::fs::remove_dir_all(&dir); // kept when the test fails, for its logs
}
