//! deploy/: every variant renders offline and validates against the Kubernetes schemas; the pod
//! security is what the docs promise; the collector config is wired right; and the RBAC in deploy/
//! is exactly what the agent needs, checked by running the agent as the rendered ServiceAccount
//! against a real API server.

use restart_watcher_test_support::cluster;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cluster::{Agent, Cluster, attr, kubectl_bin, now_rfc3339, status};
use serde_json::{Value, json};

/// The pinned Kubernetes version of the schema validation.
const SCHEMA_VERSION: &str = "1.31.0";
const VARIANTS: [&str; 3] = ["base", "daemonset", "with-collector"];

fn render(variant: &str) -> String {
    let out = Command::new(kubectl_bin()).args(["kustomize", &format!("deploy/{variant}")]).output().expect("kubectl");
    assert!(out.status.success(), "kubectl kustomize deploy/{variant}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The rendered objects as JSON values.
fn objects(yaml: &str) -> Vec<Value> {
    cluster::yaml_objects(yaml)
}

#[test]
#[ignore = "needs the test tools (Go-built kubectl and collector, kubernetes-validate from PyPI): tests/run.sh"]
fn every_variant_renders_offline_and_validates_against_the_kubernetes_schemas() {
    for variant in VARIANTS {
        let yaml = render(variant);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("{variant}.yaml"));
        std::fs::write(&path, &yaml).unwrap();
        let out = Command::new("kubernetes-validate")
            .args(["--strict", "--quiet", "-k", SCHEMA_VERSION, path.to_str().unwrap()])
            .output()
            .expect("kubernetes-validate (installed by tests/support/install-test-deps.sh)");
        assert!(
            out.status.success(),
            "deploy/{variant} does not validate against Kubernetes {SCHEMA_VERSION}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
#[ignore = "needs the test tools (Go-built kubectl and collector, kubernetes-validate from PyPI): tests/run.sh"]
fn the_agent_pods_are_hardened_and_probed() {
    for (variant, kind) in [("base", "Deployment"), ("daemonset", "DaemonSet")] {
        let objs = objects(&render(variant));
        let w = objs.iter().find(|o| o["kind"] == kind && o["metadata"]["name"] == "restart-watcher").unwrap();
        if kind == "Deployment" {
            // Two replicas with leader election: a new standby is up before an old replica stops.
            assert_eq!(w["spec"]["strategy"]["type"], "RollingUpdate");
            assert_eq!(w["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
            assert_eq!(w["spec"]["replicas"], 2);
        }
        assert!(
            !objs.iter().any(|o| o["kind"] == if kind == "Deployment" { "DaemonSet" } else { "Deployment" }),
            "{variant}"
        );
        let pod = &w["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
        let c = &pod["containers"][0];
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/livez");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert!(c["resources"]["limits"]["memory"].is_string());
        let sa =
            objs.iter().find(|o| o["kind"] == "ServiceAccount" && o["metadata"]["name"] == "restart-watcher").unwrap();
        assert_eq!(sa["automountServiceAccountToken"], false, "no token beyond the agent pod's own");
        let env: Vec<&str> = c["env"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
        assert!(env.contains(&"POD_NAMESPACE"));
        if kind == "DaemonSet" {
            let node = c["env"].as_array().unwrap().iter().find(|e| e["name"] == "NODE_NAME").unwrap();
            assert_eq!(node["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
        }
        let settings = objs
            .iter()
            .find(|o| {
                o["kind"] == "ConfigMap"
                    && o["metadata"]["name"].as_str().unwrap().starts_with("restart-watcher-settings")
            })
            .unwrap();
        assert_eq!(settings["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://otel-collector:4317");
        // Node mode runs one agent per node: no election (the agent refuses both at once).
        let elect = if kind == "Deployment" { "true" } else { "false" };
        assert_eq!(settings["data"]["RESTART_WATCHER_LEADER_ELECT"], elect, "{variant}");
        assert!(env.contains(&"POD_NAME"), "the identity in the Leases");
    }
}

#[test]
#[ignore = "needs the test tools (Go-built kubectl and collector, kubernetes-validate from PyPI): tests/run.sh"]
fn every_shipped_collector_config_passes_the_built_collectors_validation() {
    let top = std::fs::read("otel-collector/config.yaml").unwrap();
    let copy = std::fs::read("deploy/with-collector/otel-collector-config.yaml").unwrap();
    assert!(
        top == copy,
        "deploy/with-collector/otel-collector-config.yaml differs from otel-collector/config.yaml: copy it over"
    );
    let build = Command::new("otel-collector/build.sh").stderr(std::process::Stdio::inherit()).output().unwrap();
    assert!(build.status.success(), "building the collector failed (see stderr above)");
    let collector = String::from_utf8(build.stdout).unwrap().trim().to_owned();
    for configs in [
        &["otel-collector/config.yaml"][..],
        &["deploy/with-collector/otel-collector-config.yaml"],
        &["otel-collector/config.yaml", "otel-collector/spanmetrics.yaml"],
    ] {
        let out = Command::new(&collector)
            .arg("validate")
            .args(configs.iter().map(|c| format!("--config={c}")))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "otelcol validate {configs:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // And a config that names a component the distribution lacks is refused (validate is not a no-op).
    let bad = std::env::temp_dir().join(format!("rw-bad-collector-{}.yaml", std::process::id()));
    std::fs::write(&bad, String::from_utf8(top).unwrap().replace("memory_limiter]", "memory_limiter, batch]")).unwrap();
    let out = Command::new(&collector).arg("validate").arg(format!("--config={}", bad.display())).output().unwrap();
    let _ = std::fs::remove_file(&bad);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("batch"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Removes rule `index` of a Role (in namespace restart-watcher) or ClusterRole, as an admin would.
fn remove_rule(k: &Cluster, kind: &str, name: &str, index: usize) {
    let patch = format!(r#"[{{"op":"remove","path":"/rules/{index}"}}]"#);
    let mut args = vec!["patch", kind, name, "--type=json", "-p", &patch];
    if kind == "role" {
        args.splice(0..0, ["-n", "restart-watcher"]);
    }
    k.kubectl(&args);
}

fn sa_kubeconfig(k: &Cluster, name: &str, token: &str) -> std::path::PathBuf {
    k.token_kubeconfig(name, token)
}

#[test]
#[ignore = "needs the test tools (Go-built kubectl and collector, kubernetes-validate from PyPI): tests/run.sh"]
fn the_rbac_in_deploy_is_exactly_what_the_agent_needs() {
    let k = Cluster::shared();
    let dir = tempfile::tempdir().unwrap();
    let rendered = dir.path().join("base.yaml");
    std::fs::write(&rendered, render("base")).unwrap();
    k.kubectl(&["apply", "-f", rendered.to_str().unwrap()]);
    let token = k.kubectl(&["-n", "restart-watcher", "create", "token", "restart-watcher", "--duration", "1h"]);
    let kc = sa_kubeconfig(k, "sa", token.trim());

    let ns = "rbac-app";
    k.create_namespace(ns);
    k.create_pod(ns, "api-1", "node-a", json!({}), &["api"]);
    k.set_status(ns, "api-1", json!([status("api", 0, None)]));
    let as_sa = |extra: &[&str]| {
        let mut args = vec!["--checkpoint-namespace", "restart-watcher"];
        args.extend_from_slice(extra);
        Agent::start(&kc, &args)
    };

    // Every feature with the rendered rules: all-namespace watch, checkpoint Lease, node mode.
    let mut agent = as_sa(&[]);
    let mut node_agent = as_sa(&["--node-name", "node-a"]);
    agent.wait_ready();
    node_agent.wait_ready();
    // The cluster-mode agent's node index has every node (its watch's initial list: at least a
    // uid, a map entry and its hash, 92 bytes, each); node mode's has its own Node from the start.
    let admin = agent.admin_addr();
    let nodes = k.kubectl(&["get", "nodes", "-o", "name"]).lines().count();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !restart_watcher_test_support::cluster::http_get(&admin, "/metrics").1.lines().any(|l| {
        l.starts_with("restart_watcher_nodes_index_usage_bytes")
            && l.split_whitespace().last().and_then(|v| v.parse::<f64>().ok()).is_some_and(|b| b >= 92.0 * nodes as f64)
    }) {
        assert!(std::time::Instant::now() < deadline, "the node index filled:\n{}", agent.logs_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    k.set_status(ns, "api-1", json!([status("api", 1, Some(("Error", 1, &now_rfc3339())))]));
    agent.wait_records(1, Duration::from_secs(30));
    node_agent.wait_records(1, Duration::from_secs(30));
    for lease in ["restart-watcher-checkpoint", "restart-watcher-checkpoint-node-a"] {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while k
            .kubectl(&["-n", "restart-watcher", "get", "lease", lease, "--ignore-not-found", "-o", "name"])
            .trim()
            .is_empty()
        {
            assert!(std::time::Instant::now() < deadline, "Lease {lease} not written:\n{}", agent.logs_text());
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    assert_eq!(agent.terminate(), Some(0));
    assert_eq!(node_agent.terminate(), Some(0));
    for a in [&agent, &node_agent] {
        let logs = a.logs_text();
        assert!(
            !logs.contains("403 Forbidden") && !logs.contains("Forbidden"),
            "no 403 with the rendered RBAC:\n{logs}"
        );
        assert!(!logs.contains("No RBAC access to events"), "{logs}");
        assert!(!logs.contains("No RBAC access to replicasets"), "{logs}");
        assert!(!logs.contains("No RBAC access to namespace kube-system"), "{logs}");
    }
    let cluster_uid = k.kubectl(&["get", "namespace", "kube-system", "-o", "jsonpath={.metadata.uid}"]);
    for rec in agent.records.iter().chain(&node_agent.records) {
        assert_eq!(attr(&rec["resource"]["attributes"], "k8s.cluster.uid"), cluster_uid.as_str(), "{rec}");
        let node = attr(&rec["resource"]["attributes"], "k8s.node.name");
        let node_uid = k.kubectl(&["get", "node", node.as_str().unwrap(), "-o", "jsonpath={.metadata.uid}"]);
        assert_eq!(attr(&rec["resource"]["attributes"], "k8s.node.uid"), node_uid.as_str(), "{rec}");
    }

    // Without the leases rule: catch-up is off, said once, restarts still reported.
    remove_rule(k, "role", "restart-watcher-checkpoint", 0);
    let mut no_lease = as_sa(&[]);
    no_lease.wait_ready();
    k.set_status(ns, "api-1", json!([status("api", 2, Some(("Error", 1, &now_rfc3339())))]));
    no_lease.wait_records(1, Duration::from_secs(30));
    let logs = no_lease.logs_text();
    assert!(
        logs.contains("no RBAC access to Lease restart-watcher/restart-watcher-checkpoint")
            && logs.contains("403 Forbidden"),
        "{logs}"
    );
    drop(no_lease);

    // Without the kube-system namespace rule: no k8s.cluster.uid, said once, restarts still reported.
    remove_rule(k, "clusterrole", "restart-watcher", 4);
    let mut no_uid = as_sa(&["--no-checkpoint"]);
    no_uid.wait_ready();
    k.set_status(ns, "api-1", json!([status("api", 3, Some(("Error", 1, &now_rfc3339())))]));
    no_uid.wait_records(1, Duration::from_secs(30));
    assert_eq!(
        no_uid.logs_text().matches("No RBAC access to namespace kube-system").count(),
        1,
        "{}",
        no_uid.logs_text()
    );
    assert!(no_uid.records.iter().all(|r| attr(&r["resource"]["attributes"], "k8s.cluster.uid").is_null()));
    drop(no_uid);

    // Without the pods rule: the agent cannot start, and says which rule it needs.
    remove_rule(k, "clusterrole", "restart-watcher", 0);
    let mut no_pods = as_sa(&["--no-checkpoint"]);
    assert_ne!(no_pods.wait_exit(Duration::from_secs(30)), Some(0));
    let logs = no_pods.logs_text();
    assert!(logs.contains("403 Forbidden") && logs.contains("verbs [get,list,watch] on resource \"pods\""), "{logs}");
    let _ = Path::new(k.admin());
}
