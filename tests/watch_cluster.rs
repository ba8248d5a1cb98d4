//! `restart-watcher run` against the Kubernetes v1.35 cluster of tests/support/cluster.sh, driven by
//! the real kubectl: restarts are written through the pods/status subresource the way kubelet does.

use restart_watcher_test_support::cluster;
use restart_watcher_test_support::proxy;

use std::path::Path;
use std::time::Duration;

use cluster::{Agent, Cluster, attr, now_rfc3339, status, summaries};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
const QUIET: Duration = Duration::from_secs(2);

fn s(pod: &str, c: &str, n: i64, missed: i64, late: bool) -> (String, String, i64, i64, bool) {
    (pod.to_owned(), c.to_owned(), n, missed, late)
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn restart_patched_with_kubectl_is_reported_once_with_the_right_fields() {
    let k = Cluster::shared();
    let ns = "t-basic";
    k.create_namespace(ns);
    let uid = k.create_pod(ns, "web-1", "node-a", json!({"app": "web"}), &["web", "envoy"]);
    k.set_status(ns, "web-1", json!([status("web", 0, None), status("envoy", 0, None)]));
    let mut agent = Agent::start(Path::new(k.admin()), &["-n", ns, "--no-checkpoint"]);
    agent.wait_ready();
    let finished = now_rfc3339();
    k.set_status(ns, "web-1", json!([status("web", 1, Some(("OOMKilled", 137, &finished))), status("envoy", 0, None)]));
    let rec = agent.wait_records(1, WAIT)[0].clone();
    // status noise afterwards: readiness flips, no count change
    let mut noisy = status("web", 1, Some(("OOMKilled", 137, &finished)));
    noisy["ready"] = json!(false);
    k.set_status(ns, "web-1", json!([noisy, status("envoy", 0, None)]));
    assert_eq!(agent.settle(QUIET).len(), 1, "reported once");
    let res = &rec["resource"]["attributes"];
    assert_eq!(attr(res, "k8s.namespace.name"), ns);
    assert_eq!(attr(res, "k8s.pod.name"), "web-1");
    assert_eq!(attr(res, "k8s.pod.uid"), uid.as_str());
    assert_eq!(attr(res, "k8s.node.name"), "node-a");
    assert_eq!(attr(res, "k8s.container.name"), "web");
    assert_eq!(attr(res, "k8s.container.restart_count"), 0, "the terminated instance's attempt");
    assert_eq!(attr(res, "container.id"), "web-0");
    let a = &rec["attributes"];
    assert_eq!(attr(a, "k8s.container.status.last_terminated_reason"), "OOMKilled");
    assert_eq!(attr(a, "process.exit.code"), 137);
    assert_eq!(attr(a, "restart_watcher.cause"), "oom_killed");
    assert_eq!(attr(a, "restart_watcher.restart_count"), 1);
    assert_eq!(rec["eventName"], "restart_watcher.container.restart");
    assert_eq!(rec["traceId"], uid.replace('-', ""));
    assert_eq!(agent.terminate(), Some(0), "clean exit after SIGTERM: everything delivered");
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_watch_cut_mid_stream_resumes_without_loss_or_duplicates() {
    let k = Cluster::shared();
    let ns = "t-cut";
    k.create_namespace(ns);
    k.create_pod(ns, "api-1", "node-a", json!({}), &["api"]);
    k.set_status(ns, "api-1", json!([status("api", 0, None)]));
    let upstream = k.var("APISERVER_URL").trim_start_matches("https://").parse().unwrap();
    let proxy = proxy::Proxy::start(upstream);
    let kc = k.kubeconfig_via(k.admin(), &proxy.url(), "cut");
    let mut agent = Agent::start(&kc, &["-n", ns, "--no-checkpoint"]);
    agent.wait_ready();
    k.set_status(ns, "api-1", json!([status("api", 1, Some(("Error", 1, &now_rfc3339())))]));
    agent.wait_records(1, WAIT);
    proxy.cut();
    k.set_status(ns, "api-1", json!([status("api", 2, Some(("Error", 2, &now_rfc3339())))]));
    agent.wait_records(2, WAIT);
    proxy.cut();
    std::thread::sleep(Duration::from_millis(300));
    proxy.cut();
    k.set_status(ns, "api-1", json!([status("api", 3, Some(("Error", 3, &now_rfc3339())))]));
    agent.wait_records(3, WAIT);
    assert_eq!(
        summaries(agent.settle(QUIET)),
        vec![s("api-1", "api", 1, 0, false), s("api-1", "api", 2, 0, false), s("api-1", "api", 3, 0, false)]
    );
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_real_410_relists_without_duplicates_and_reports_the_gap_restart_with_its_missed_count() {
    let k = Cluster::shared();
    let ns = "t-expired";
    k.create_namespace(ns);
    k.create_pod(ns, "db-0", "node-a", json!({}), &["db"]);
    k.create_pod(ns, "gone-0", "node-a", json!({}), &["gone"]);
    k.set_status(ns, "db-0", json!([status("db", 1, Some(("Error", 1, "2026-01-01T00:00:00Z")))]));
    k.set_status(ns, "gone-0", json!([status("gone", 0, None)]));
    let upstream = k.var("APISERVER_URL").trim_start_matches("https://").parse().unwrap();
    let proxy = proxy::Proxy::start(upstream);
    let kc = k.kubeconfig_via(k.admin(), &proxy.url(), "expired");
    let mut agent = Agent::start(&kc, &["-n", ns, "--no-checkpoint"]);
    agent.wait_ready();
    std::thread::sleep(Duration::from_millis(500));

    // Outage: the agent cannot reach the server while two restarts happen, a pod is deleted and
    // etcd is compacted past the agent's resourceVersion.
    proxy.block();
    k.set_status(ns, "db-0", json!([status("db", 2, Some(("Error", 2, &now_rfc3339())))]));
    k.set_status(ns, "db-0", json!([status("db", 3, Some(("OOMKilled", 137, &now_rfc3339())))]));
    k.kubectl(&["-n", ns, "delete", "pod", "gone-0", "--grace-period=0", "--force"]);
    k.compact_etcd();
    std::thread::sleep(Duration::from_secs(2));
    proxy.restore();

    agent.wait_log("Relist complete", WAIT);
    agent.wait_records(1, WAIT);
    assert_eq!(
        summaries(agent.settle(QUIET)),
        vec![s("db-0", "db", 3, 1, false)],
        "one record, one missed, no duplicate"
    );
    let logs = agent.logs_text();
    assert!(logs.contains("expired") || logs.contains("410"), "the 410 was real: {logs}");
    assert!(logs.contains("dropped=1"), "the pod deleted during the gap was dropped: {logs}");
    // After the relist, the watch goes on normally.
    k.set_status(ns, "db-0", json!([status("db", 4, Some(("Error", 1, &now_rfc3339())))]));
    agent.wait_records(2, WAIT);
    assert_eq!(summaries(agent.settle(QUIET)).len(), 2);
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn the_agent_killed_and_restarted_reports_restarts_from_its_downtime_once_and_none_from_before() {
    let k = Cluster::shared();
    let ns = "t-catchup";
    k.create_namespace(ns);
    k.create_pod(ns, "old-1", "node-a", json!({}), &["old"]);
    k.set_status(ns, "old-1", json!([status("old", 4, Some(("Error", 1, "2026-01-01T00:00:00Z")))]));
    k.create_pod(ns, "job-1", "node-a", json!({}), &["job"]);
    k.set_status(ns, "job-1", json!([status("job", 0, None)]));
    let lease_args = ["-n", ns, "--checkpoint-namespace", ns, "--checkpoint-lease", "rw-checkpoint"];

    let mut first = Agent::start(Path::new(k.admin()), &lease_args);
    first.wait_ready();
    k.set_status(ns, "job-1", json!([status("job", 1, Some(("Error", 1, &now_rfc3339())))]));
    first.wait_records(1, WAIT);
    // Wait for a checkpoint written after that restart was exported.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let lease = k.kubectl(&["-n", ns, "get", "lease", "rw-checkpoint", "-o", "json", "--ignore-not-found"]);
        let written = serde_json::from_str::<serde_json::Value>(&lease)
            .is_ok_and(|v| v["metadata"]["annotations"]["restart-watcher.io/checkpoint"].is_string());
        if written {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no checkpoint Lease written; logs:\n{}", first.logs_text());
        std::thread::sleep(Duration::from_millis(500));
    }
    first.kill();

    // While the agent is down: one restart.
    k.set_status(ns, "job-1", json!([status("job", 2, Some(("Error", 2, &now_rfc3339())))]));

    let mut second = Agent::start(Path::new(k.admin()), &lease_args);
    second.wait_ready();
    second.wait_records(1, WAIT);
    assert_eq!(summaries(second.settle(QUIET)), vec![s("job-1", "job", 2, 0, true)]);
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn node_mode_sees_only_its_node() {
    let k = Cluster::shared();
    let ns = "t-node";
    k.create_namespace(ns);
    for (pod, node) in [("a-1", "node-a"), ("b-1", "node-b")] {
        k.create_pod(ns, pod, node, json!({}), &["app"]);
        k.set_status(ns, pod, json!([status("app", 0, None)]));
    }
    let mut agent =
        Agent::start(Path::new(k.admin()), &["--node-name", "node-b", "--no-checkpoint", "--label-selector", ""]);
    agent.wait_ready();
    for pod in ["a-1", "b-1"] {
        k.set_status(ns, pod, json!([status("app", 1, Some(("Error", 1, &now_rfc3339())))]));
    }
    agent.wait_records(1, WAIT);
    let got: Vec<_> = summaries(agent.settle(QUIET)).into_iter().filter(|r| r.0.ends_with("-1")).collect();
    assert_eq!(got, vec![s("b-1", "app", 1, 0, false)]);
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn namespace_label_and_exclusion_scoping_work() {
    let k = Cluster::shared();
    for ns in ["t-scope-in", "t-scope-out"] {
        k.create_namespace(ns);
        for (pod, team) in [("pay-1", "pay"), ("ads-1", "ads")] {
            k.create_pod(ns, pod, "node-a", json!({"scope-test": team}), &["app"]);
            k.set_status(ns, pod, json!([status("app", 0, None)]));
        }
    }
    // all namespaces but t-scope-out, label scope-test=pay
    let mut agent = Agent::start(
        Path::new(k.admin()),
        &["--exclude-namespace", "t-scope-out", "--label-selector", "scope-test=pay", "--no-checkpoint"],
    );
    // one namespace, no label selector
    let mut one_ns = Agent::start(Path::new(k.admin()), &["-n", "t-scope-out", "--no-checkpoint"]);
    agent.wait_ready();
    one_ns.wait_ready();
    for ns in ["t-scope-in", "t-scope-out"] {
        for pod in ["pay-1", "ads-1"] {
            k.set_status(ns, pod, json!([status("app", 1, Some(("Error", 1, &now_rfc3339())))]));
        }
    }
    agent.wait_records(1, WAIT);
    let got: Vec<_> = agent
        .settle(QUIET)
        .iter()
        .map(|r| {
            (
                attr(&r["resource"]["attributes"], "k8s.namespace.name"),
                attr(&r["resource"]["attributes"], "k8s.pod.name"),
            )
        })
        .collect();
    assert_eq!(got, vec![(json!("t-scope-in"), json!("pay-1"))]);
    one_ns.wait_records(2, WAIT);
    let mut pods: Vec<_> = summaries(one_ns.settle(QUIET)).into_iter().map(|r| r.0).collect();
    pods.sort();
    assert_eq!(pods, vec!["ads-1", "pay-1"]);
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_bad_token_gets_a_clear_401_message_and_a_non_zero_exit() {
    let k = Cluster::shared();
    let mut agent = Agent::start(Path::new(k.var("BADTOKEN_KUBECONFIG")), &["--no-checkpoint"]);
    assert_ne!(agent.wait_exit(WAIT), Some(0));
    let logs = agent.logs_text();
    assert!(logs.contains("401 Unauthorized") && logs.contains("credentials"), "{logs}");
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_user_without_rbac_gets_the_exact_verbs_and_resources_it_needs() {
    let k = Cluster::shared();
    let mut agent = Agent::start(Path::new(k.var("WATCHER_KUBECONFIG")), &["--no-checkpoint"]);
    assert_ne!(agent.wait_exit(WAIT), Some(0));
    let logs = agent.logs_text();
    assert!(logs.contains("403 Forbidden"), "{logs}");
    assert!(logs.contains("verbs [get,list,watch] on resource \"pods\""), "{logs}");
    assert!(logs.contains("all namespaces"), "{logs}");
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn an_unreachable_server_is_named_and_the_agent_exits_non_zero() {
    let k = Cluster::shared();
    let kc = k.kubeconfig_via(k.admin(), "https://127.0.0.1:1", "unreachable");
    let mut agent = Agent::start(&kc, &["--no-checkpoint"]);
    assert_ne!(agent.wait_exit(WAIT), Some(0));
    let logs = agent.logs_text();
    assert!(logs.contains("cannot reach the Kubernetes API server at https://127.0.0.1:1"), "{logs}");
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn without_rbac_for_leases_the_agent_says_so_once_and_runs_without_catch_up() {
    let k = Cluster::shared();
    let ns = "t-nolease";
    k.create_namespace(ns);
    k.kubectl(&["-n", ns, "create", "role", "pods-only", "--verb=get,list,watch", "--resource=pods"]);
    k.kubectl(&["-n", ns, "create", "rolebinding", "pods-only", "--role=pods-only", "--user=podreader"]);
    k.create_pod(ns, "w-1", "node-a", json!({}), &["w"]);
    k.set_status(ns, "w-1", json!([status("w", 0, None)]));
    let mut agent = Agent::start(Path::new(k.var("PODREADER_KUBECONFIG")), &["-n", ns, "--checkpoint-namespace", ns]);
    agent.wait_ready();
    k.set_status(ns, "w-1", json!([status("w", 1, Some(("Error", 1, &now_rfc3339())))]));
    agent.wait_records(1, WAIT);
    // Past one checkpoint interval: the agent tried to write the Lease and was refused.
    std::thread::sleep(restart_watcher::checkpoint::CHECKPOINT_INTERVAL + Duration::from_secs(1));
    let logs = agent.logs_text();
    assert_eq!(logs.matches("no RBAC access to Lease").count(), 1, "{logs}");
    assert!(logs.contains("running without catch-up"), "{logs}");
    assert_eq!(agent.terminate(), Some(0));
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_server_without_streaming_lists_is_listed_instead_and_nothing_is_missed() {
    // v1.35 with the WatchList gate off answers a streaming list (sendInitialEvents) with 422, as
    // servers before 1.34 (and 1.33 by default) do: cluster mode falls back to pages; node mode
    // lists at resourceVersion 0 anyway (the kubelet's list), so it never asked.
    let k = Cluster::start(&["--feature-gates=WatchList=false"]);
    let ns = "t-nostream";
    k.create_namespace(ns);
    k.create_pod(ns, "web-1", "node-a", json!({}), &["web"]);
    k.set_status(ns, "web-1", json!([status("web", 0, None)]));
    let mut node_agent = Agent::start(Path::new(k.admin()), &["--node-name", "node-a", "--no-checkpoint"]);
    let mut cluster_agent = Agent::start(Path::new(k.admin()), &["-n", ns, "--no-checkpoint"]);
    node_agent.wait_ready();
    cluster_agent.wait_ready();
    cluster_agent.wait_log("does not serve streaming lists", WAIT);
    cluster_agent.wait_log("paginated quorum list", WAIT);
    k.set_status(ns, "web-1", json!([status("web", 1, Some(("Error", 1, &now_rfc3339())))]));
    for agent in [&mut node_agent, &mut cluster_agent] {
        agent.wait_records(1, WAIT);
        assert_eq!(summaries(agent.settle(QUIET)), vec![s("web-1", "web", 1, 0, false)]);
    }
    // (Its Event and owner watches are cluster-wide: they do fall back.)
    let logs = node_agent.logs_text();
    let pod_fallback =
        logs.lines().any(|l| l.contains("does not serve streaming lists") && l.contains("all namespaces"));
    assert!(!pod_fallback, "{logs}");
    assert!(logs.contains("does not serve streaming lists"), "the Event watch falls back: {logs}");
}

/// WATCH requests for pods the API server has served (its `apiserver_request_total`).
fn pod_watch_requests(k: &Cluster) -> f64 {
    k.kubectl(&["get", "--raw", "/metrics"])
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_request_total{") && l.contains("verb=\"WATCH\"") && l.contains("resource=\"pods\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn a_watch_that_times_out_resumes_where_it_was_without_a_relist() {
    // Its own cluster (with the watch cache, as shipped): the API server's WATCH count is then
    // this agent's, plus the few long watches of the controllers.
    let k = Cluster::start(&[]);
    let ns = "t-timeout";
    k.create_namespace(ns);
    k.create_pod(ns, "web-1", "node-a", json!({}), &["web"]);
    k.set_status(ns, "web-1", json!([status("web", 0, None)]));
    let mut agent = Agent::start(Path::new(k.admin()), &["-n", ns, "--no-checkpoint", "--watch-timeout", "1s"]);
    agent.wait_ready();
    let addr = agent.admin_addr();
    let before = pod_watch_requests(&k);
    std::thread::sleep(Duration::from_secs(6));
    let watches = pod_watch_requests(&k) - before;
    assert!(watches >= 4.0, "the server ended the 1 s watches and the agent watched again: {watches} watches in 6 s");
    k.set_status(ns, "web-1", json!([status("web", 1, Some(("Error", 1, &now_rfc3339())))]));
    agent.wait_records(1, WAIT);
    assert_eq!(summaries(agent.settle(QUIET)), vec![s("web-1", "web", 1, 0, false)]);
    let (_, metrics) = cluster::http_get(&addr, "/metrics");
    let relists = metrics.lines().find(|l| l.starts_with("restart_watcher_watch_relists_total"));
    assert!(relists.is_none_or(|l| l.ends_with(" 0")), "no relist after a timeout: {relists:?}");
    assert!(!agent.logs_text().contains("Relisting"), "{}", agent.logs_text());
}
