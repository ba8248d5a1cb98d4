//! End-to-end latency, from a container's restart written to the API server to the record being
//! queryable in each backend.
//!
//! Run: `cargo bench --bench backends` (`BENCH_RESTARTS`, default 200). The stack of
//! tests/collector_e2e.rs: the v1.35 cluster of tests/support/cluster.sh, the agent (release build
//! of this bench's profile, OTLP/gRPC), the built collector running the shipped
//! `otel-collector/config.yaml` (`k8s_attributes` on that cluster), Jaeger v2 (in-memory) and
//! VictoriaLogs. One restart at a time, rotating over 10 pods of a Deployment: the status patch
//! (`kubectl patch --subresource=status`) returns, the clock starts; the bench then polls Jaeger's
//! trace of the pod and a LogsQL count of the pod's records every 20 ms until the new restart shows
//! in each. p50 and p99 per backend.

use restart_watcher_test_support::backends;
use restart_watcher_test_support::cluster;

use std::path::Path;
use std::time::{Duration, Instant};

use backends::Stack;
use cluster::{Agent, Cluster};
use serde_json::json;

const PODS: usize = 10;
const POLL: Duration = Duration::from_millis(20);

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn main() {
    let n: usize = std::env::var("BENCH_RESTARTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let k = Cluster::start(&[]);
    let dir = k.dir.join("backends");
    let ns = "latency";
    k.create_namespace(ns);
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "shop", "namespace": ns},
        "spec": {"replicas": PODS, "selector": {"matchLabels": {"app": "shop"}},
            "template": {"metadata": {"labels": {"app": "shop"}},
                "spec": {"containers": [{"name": "app", "image": "registry.example.com/shop:1.0"}]}}}});
    k.kubectl_stdin(&["apply", "-f", "-"], Some(&deployment.to_string()));
    let pods = k.wait_pods_running(ns, "app=shop", PODS);
    let uids: Vec<String> =
        pods.iter().map(|p| k.kubectl(&["-n", ns, "get", "pod", p, "-o", "jsonpath={.metadata.uid}"])).collect();

    let Stack { jaeger, vlogs, collector } =
        Stack::start(&dir, Path::new(k.admin()), None, &["otel-collector/config.yaml"], "");
    let mut agent = Agent::start_raw(
        Path::new(k.admin()),
        &["-n", ns, "--no-checkpoint", "--otlp-endpoint", &collector.grpc_endpoint],
    );
    agent.wait_ready();

    let (mut to_jaeger, mut to_vlogs) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let (pod, uid) = (&pods[i % PODS], &uids[i % PODS]);
        let expected = i / PODS + 1;
        k.crash(ns, pod, "app", "Error", 1);
        let t0 = Instant::now();
        let query = format!(r#""k8s.pod.name":="{pod}" event_name:="restart_watcher.container.restart" | count() n"#);
        let (mut jt, mut vt) = (None, None);
        while jt.is_none() || vt.is_none() {
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "restart {i} not delivered; agent logs:\n{}",
                agent.logs_text()
            );
            if jt.is_none() && jaeger.trace_spans(&uid.replace('-', "")).len() >= expected {
                jt = Some(t0.elapsed());
            }
            if vt.is_none() {
                let rows = vlogs.query(&query);
                if rows.first().and_then(|r| r["n"].as_str()).and_then(|c| c.parse::<usize>().ok()).unwrap_or(0)
                    >= expected
                {
                    vt = Some(t0.elapsed());
                }
            }
            std::thread::sleep(POLL);
        }
        to_jaeger.push(jt.unwrap());
        to_vlogs.push(vt.unwrap());
    }
    to_jaeger.sort();
    to_vlogs.sort();
    println!();
    println!("| from the status update to queryable ({n} restarts, one at a time) | p50 | p99 |");
    println!("|---|---|---|");
    for (name, lat) in [("Jaeger (trace by pod uid)", &to_jaeger), ("VictoriaLogs (LogsQL by pod)", &to_vlogs)] {
        println!("| {name} | {} ms | {} ms |", percentile(lat, 50).as_millis(), percentile(lat, 99).as_millis());
    }
    assert_eq!(agent.terminate(), Some(0));
}
