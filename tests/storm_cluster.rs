//! Storm control on the real control plane: a Deployment whose every pod crash-loops at once.

use restart_watcher_test_support::cluster;

use std::path::Path;
use std::time::Duration;

use cluster::{Agent, Cluster, attr, http_get};

const WAIT: Duration = Duration::from_secs(30);

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn storm_control_turns_a_crash_loop_of_many_pods_into_one_record_per_window() {
    let k = Cluster::shared();
    let ns = "st-storm";
    k.create_namespace(ns);
    k.kubectl(&["-n", ns, "create", "deployment", "api", "--replicas=5", "--image=registry.example.com/api:1.0"]);
    let pods = k.wait_pods_running(ns, "app=api", 5);
    let mut agent = Agent::start(Path::new(k.admin()), &["-n", ns, "--no-checkpoint", "--storm-window", "4s"]);
    let admin = agent.admin_addr();
    agent.wait_ready();
    for p in &pods {
        k.crash(ns, p, "api", "Error", 1);
    }
    let first = agent.wait_records(1, WAIT)[0].clone();
    assert_eq!(
        attr(&first["attributes"], "restart_watcher.restarts.coalesced"),
        serde_json::Value::Null,
        "the first at once"
    );
    agent.wait_records(2, WAIT);
    let all = agent.settle(Duration::from_secs(2)).to_vec();
    assert_eq!(all.len(), 2, "one record for the rest of the storm");
    assert_eq!(attr(&all[1]["attributes"], "restart_watcher.restarts.coalesced"), 4);
    // Its state against its byte budget, in /metrics.
    let (_, metrics) = http_get(&admin, "/metrics");
    let value = |name: &str| {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .unwrap_or_else(|| panic!("{name}: {metrics}"));
        line.rsplit(' ').next().unwrap().parse::<u64>().unwrap()
    };
    let budget = restart_watcher::enrich::storm::STORM_BUDGET_BYTES as u64;
    assert_eq!(value("restart_watcher_storm_state_limit_bytes"), budget);
    assert!(value("restart_watcher_storm_state_usage_bytes") > 0, "the storm's window is still open: {metrics}");
    assert!(value("restart_watcher_storm_state_usage_bytes") < budget);
    assert_eq!(value("restart_watcher_storm_over_budget_total"), 0);
    assert_eq!(agent.terminate(), Some(0), "held records are accounted for: nothing undelivered");
}
