//! Owner attribution on the real control plane: the Deployment behind a ReplicaSet's pod when the
//! agent may not read ReplicaSets. (With that RBAC, the uids the real controllers wrote are checked
//! in scenarios_cluster.rs.)

use restart_watcher_test_support::cluster;

use std::path::Path;
use std::time::Duration;

use cluster::{Agent, Cluster, attr};

const WAIT: Duration = Duration::from_secs(30);

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn without_rbac_for_replicasets_the_deployment_is_named_by_the_naming_rule() {
    let k = Cluster::shared();
    let ns = "o-norbac";
    k.create_namespace(ns);
    k.kubectl(&["-n", ns, "create", "role", "pods-events", "--verb=get,list,watch", "--resource=pods,events"]);
    k.kubectl(&["-n", ns, "create", "rolebinding", "pods-events", "--role=pods-events", "--user=podreader"]);
    k.kubectl(&["-n", ns, "create", "deployment", "web", "--image=registry.example.com/web:1.0"]);
    let pod = k.wait_pods_running(ns, "app=web", 1).remove(0);
    let mut agent = Agent::start(Path::new(k.var("PODREADER_KUBECONFIG")), &["-n", ns, "--no-checkpoint"]);
    agent.wait_ready();
    k.crash(ns, &pod, "web", "Error", 1);
    let res = agent.wait_records(1, WAIT)[0]["resource"]["attributes"].clone();
    assert_eq!(attr(&res, "k8s.deployment.name"), "web");
    assert_eq!(attr(&res, "k8s.deployment.uid"), serde_json::Value::Null);
    let logs = agent.logs_text();
    assert_eq!(logs.matches("No RBAC access to replicasets.apps or jobs.batch").count(), 1, "{logs}");
}
