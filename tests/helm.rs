//! The Helm chart (`deploy/helm/restart-watcher`), with real helm (built from the pinned
//! `helm.sh/helm/v3` module): lint, the schema's refusals, the same objects as `deploy/base` with
//! default values, valid objects for Kubernetes 1.31 and 1.35 in every toggle combination, and
//! `helm install` on the v1.35 cluster with the agent running as the chart's ServiceAccount.

use restart_watcher_test_support::cluster;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cluster::{Agent, Cluster, attr, helm, kubectl_bin, now_rfc3339, status};
use serde_json::{Value, json};

const CHART: &str = "deploy/helm/restart-watcher";
/// The Kubernetes version helm renders for offline (that of the test cluster).
const KUBE_VERSION: &str = "1.35.0";

/// `helm template` of the chart with `--set` values, as YAML.
fn template(release: &str, namespace: &str, set: &[&str]) -> String {
    let mut args = vec!["template", release, CHART, "--namespace", namespace, "--kube-version", KUBE_VERSION];
    for s in set {
        args.extend(["--set", s]);
    }
    let out = helm(&args);
    assert!(out.status.success(), "helm template {set:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn objects(yaml: &str) -> Vec<Value> {
    cluster::yaml_objects(yaml)
}

/// The toggle combinations the tests render and install: every feature on, every feature off, and
/// the opt-in ones on; each in both modes.
fn combinations() -> Vec<(&'static str, Vec<&'static str>)> {
    let all_off = vec![
        "features.events=false",
        "features.owners=false",
        "features.clusterUid=false",
        "features.nodeUid=false",
        "features.checkpoint=false",
        "leaderElection.enabled=false",
        "replicas=1",
        "hostNetwork.enabled=true",
        "hostNetwork.adminPort=19090",
    ];
    let opt_in = vec![
        "features.previousLogs.lines=20",
        "features.previousLogs.redact[0]=password=\\S+",
        "features.stormWindow=60s",
        "features.workloadMetrics=true",
        "podDisruptionBudget.enabled=true",
        "networkPolicy.enabled=true",
        "serviceMonitor.enabled=true",
        "otlp.headersSecret.name=otlp-auth",
        "otlp.tls.secretName=otlp-tls",
        "otlp.tls.clientCertificate=true",
        "events=restart\\,failure",
    ];
    let mut out = Vec::new();
    for mode in ["deployment", "daemonset"] {
        for (name, set) in [("defaults", vec![]), ("all-off", all_off.clone()), ("opt-in", opt_in.clone())] {
            let mut set = set.clone();
            set.push(if mode == "deployment" { "mode=deployment" } else { "mode=daemonset" });
            if mode == "daemonset" && name == "opt-in" {
                set.push("features.oomKills=true");
            }
            out.push((if mode == "deployment" { name } else { leak(format!("{name}-daemonset")) }, set));
        }
    }
    out
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn the_chart_passes_helm_lint_and_its_schema_refuses_bad_values_by_name() {
    let out = helm(&["lint", "--strict", "--kube-version", KUBE_VERSION, CHART]);
    assert!(
        out.status.success(),
        "helm lint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for (set, names) in [
        ("mode=cronjob", "mode"),
        ("features.previousLogs.lines=-1", "lines"),
        ("otlp.endpoint=otel-collector:4317", "endpoint"),
        ("features.stormWindow=a minute", "stormWindow"),
        ("events=restarts", "events"),
        ("featurez.events=false", "featurez"),
        ("clusterName=my cluster", "clusterName"),
        ("replicas=0", "replicas"),
        ("leaderElection.leaseDuration=soon", "leaseDuration"),
    ] {
        let out = helm(&["template", "rw", CHART, "--kube-version", KUBE_VERSION, "--set", set]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{set} was accepted");
        assert!(
            err.contains("values don't meet the specifications of the schema") && err.contains(names),
            "{set}: {err}"
        );
    }
    // What the schema cannot say, the templates refuse with what to change.
    for (set, says) in [
        (vec!["features.checkpoint=false"], "leaderElection.enabled needs features.checkpoint"),
        (vec!["leaderElection.enabled=false"], "replicas > 1 needs leaderElection.enabled"),
        (vec!["features.oomKills=true"], "features.oomKills reads each node's cgroups: it needs mode=daemonset"),
    ] {
        let mut args = vec!["template", "rw", CHART, "--kube-version", KUBE_VERSION];
        for s in &set {
            args.extend(["--set", s]);
        }
        let out = helm(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{set:?}: {err}");
    }
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn the_chart_with_default_values_renders_the_objects_of_deploy_base() {
    let base = Command::new(kubectl_bin()).args(["kustomize", "deploy/base"]).output().unwrap();
    assert!(base.status.success());
    let normalize = |objs: Vec<Value>| {
        let mut objs: Vec<Value> = objs
            .into_iter()
            // helm install creates (or is given) the namespace; the kustomize tree declares it.
            .filter(|o| o["kind"] != "Namespace")
            .map(|o| {
                // Both name the settings by a hash of their content, each its own way.
                let text = o.to_string();
                let re = regex::Regex::new(r"restart-watcher-settings-[a-z0-9]+").unwrap();
                serde_json::from_str(&re.replace_all(&text, "restart-watcher-settings-HASH")).unwrap()
            })
            .collect();
        objs.sort_by_key(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]));
        objs
    };
    let want = normalize(objects(&String::from_utf8_lossy(&base.stdout)));
    let got = normalize(objects(&template("restart-watcher", "restart-watcher", &[])));
    assert_eq!(got.len(), want.len(), "the same objects: {got:#?}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "{} {}", w["kind"], w["metadata"]["name"]);
    }
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn every_toggle_combination_renders_objects_valid_for_kubernetes_1_31_and_1_35() {
    for (name, set) in combinations() {
        let objs = objects(&template("rw", "rw", &set));
        // ServiceMonitor is the Prometheus Operator's CRD: no schema of Kubernetes' own.
        let (crds, core): (Vec<Value>, Vec<Value>) = objs.into_iter().partition(|o| o["kind"] == "ServiceMonitor");
        assert_eq!(crds.len(), usize::from(name.starts_with("opt-in")), "{name}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, json!({"apiVersion": "v1", "kind": "List", "items": core}).to_string()).unwrap();
        for version in ["1.31.0", "1.35.0"] {
            let out = Command::new("kubernetes-validate")
                .args(["--strict", "--quiet", "-k", version, path.to_str().unwrap()])
                .output()
                .expect("kubernetes-validate (installed by tests/support/install-test-deps.sh)");
            assert!(
                out.status.success(),
                "{name} does not validate against Kubernetes {version}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Each toggle adds exactly its rules.
        let rules: Vec<String> = core
            .iter()
            .filter(|o| o["kind"] == "ClusterRole")
            .flat_map(|o| o["rules"].as_array().unwrap().iter().map(|r| r["resources"][0].as_str().unwrap().to_owned()))
            .collect();
        let want: &[&str] = if name.starts_with("all-off") {
            &["pods"]
        } else if name.starts_with("opt-in") {
            &["pods", "events", "replicasets", "jobs", "namespaces", "nodes", "pods/log"]
        } else {
            &["pods", "events", "replicasets", "jobs", "namespaces", "nodes"]
        };
        assert_eq!(rules, want, "{name}");
        assert_eq!(
            core.iter().any(|o| o["kind"] == "Role"),
            !name.starts_with("all-off"),
            "{name}: the checkpoint Role"
        );
    }
}

/// The agent as a chart's ServiceAccount: a kubeconfig with that account's token.
fn sa_kubeconfig(k: &Cluster, ns: &str, sa: &str) -> std::path::PathBuf {
    let token = k.kubectl(&["-n", ns, "create", "token", sa, "--duration", "1h"]);
    k.token_kubeconfig(&format!("{ns}-{sa}"), &token)
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn helm_install_runs_the_agent_as_the_charts_service_account_without_a_403_in_each_combination() {
    let k = Cluster::shared();
    let app = "helm-app";
    k.create_namespace(app);
    k.create_pod(app, "api-1", "node-a", json!({}), &["api"]);
    k.set_status(app, "api-1", json!([status("api", 0, None)]));
    let mut restarts = 0;
    for (i, (name, set)) in combinations().into_iter().enumerate() {
        let ns = format!("rw-{i}");
        let release = format!("rw{i}");
        let mut args = vec!["install", &release, CHART, "--namespace", &ns, "--create-namespace", "--wait=false"];
        args.extend(["--kubeconfig", k.admin()]);
        let set: Vec<&str> = set.into_iter().filter(|s| !s.starts_with("serviceMonitor")).collect();
        for s in &set {
            args.extend(["--set", s]);
        }
        let out = helm(&args);
        assert!(out.status.success(), "helm install {name}: {}", String::from_utf8_lossy(&out.stderr));
        // The agent runs here, as the chart's ServiceAccount, with the chart's settings.
        let sa = format!("{release}-restart-watcher");
        let kc = sa_kubeconfig(k, &ns, &sa);
        let cm = k.kubectl(&[
            "-n",
            &ns,
            "get",
            "configmap",
            "-l",
            "app.kubernetes.io/name=restart-watcher",
            "-o",
            "jsonpath={.items[0].data}",
        ]);
        let settings: serde_json::Map<String, Value> = serde_json::from_str(&cm).unwrap();
        let mut env: Vec<(String, String)> = settings
            .into_iter()
            .filter(|(k, _)| !k.starts_with("OTEL_EXPORTER_OTLP") && k != "RESTART_WATCHER_LOG_FORMAT")
            .map(|(k, v)| (k, v.as_str().unwrap().to_owned()))
            .collect();
        env.push(("POD_NAMESPACE".into(), ns.clone()));
        // The chart mounts the node's /sys/fs/cgroup there; here the agent runs on this machine.
        for (key, value) in &mut env {
            if key == "RESTART_WATCHER_OOM_KILLS_FROM_CGROUPS" {
                assert_eq!(value, "/host/sys/fs/cgroup", "{name}");
                *value = "/sys/fs/cgroup".into();
            }
        }
        if name.contains("daemonset") {
            env.push(("NODE_NAME".into(), "node-a".into()));
        }
        let mut agent = Agent::start_env(&kc, &["-n", app], &env);
        agent.wait_ready();
        restarts += 1;
        k.set_status(app, "api-1", json!([status("api", restarts, Some(("Error", 1, &now_rfc3339())))]));
        agent.wait_records(1, Duration::from_secs(30));
        assert_eq!(agent.terminate(), Some(0), "{name}: {}", agent.logs_text());
        let logs = agent.logs_text();
        assert!(!logs.contains("Forbidden"), "{name}: no 403 with the chart's RBAC:\n{logs}");
        if !name.contains("all-off") && !name.contains("daemonset") {
            assert!(logs.contains("Became the leader"), "{name}: the chart's default elects a leader\n{logs}");
        }
        let uid = attr(&agent.records[0]["resource"]["attributes"], "k8s.cluster.uid");
        if name.starts_with("all-off") {
            assert_eq!(logs.matches("Events are off").count(), 1, "{name}: said once\n{logs}");
            assert_eq!(logs.matches("The owner watch is off").count(), 1, "{name}: said once\n{logs}");
            assert_eq!(logs.matches("The cluster uid is off").count(), 1, "{name}: said once\n{logs}");
            assert_eq!(logs.matches("The node watch is off").count(), 1, "{name}: said once\n{logs}");
            assert_eq!(logs.matches("Catch-up is off").count(), 1, "{name}: said once\n{logs}");
            assert!(uid.is_null(), "{name}");
        } else {
            assert!(uid.is_string(), "{name}: k8s.cluster.uid");
        }
        let out = helm(&["uninstall", &release, "--namespace", &ns, "--kubeconfig", k.admin()]);
        assert!(out.status.success(), "helm uninstall {name}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let _ = Path::new(CHART);
}
