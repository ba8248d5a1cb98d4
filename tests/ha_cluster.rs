//! High availability on the real control plane: two replicas with `--leader-elect`, the leader
//! SIGKILLed during a crash loop. Every restart is delivered (by one replica or the other), the
//! standby takes over within the lease duration plus 2 s, and a restart delivered twice carries the
//! same `restart_watcher.restart.id` both times.

use restart_watcher_test_support::cluster;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cluster::{Agent, Cluster, attr, http_get};
use serde_json::Value;

const LEASE_DURATION_SECS: u64 = 6;
const WAIT: Duration = Duration::from_secs(60);

fn replica(k: &Cluster, ns: &str, identity: &str) -> Agent {
    let duration = format!("{LEASE_DURATION_SECS}s");
    let args = [
        "-n",
        ns,
        "--checkpoint-namespace",
        ns,
        "--leader-elect",
        "--leader-elect-lease-duration",
        &duration,
        "--leader-elect-renew-deadline",
        "4s",
        "--leader-elect-retry-period",
        "1s",
    ];
    Agent::start_env(Path::new(k.admin()), &args, &[("POD_NAME".to_owned(), identity.to_owned())])
}

/// The value of an unlabelled gauge in `/metrics`.
fn gauge(admin: &str, name: &str) -> u64 {
    let (_, metrics) = http_get(admin, "/metrics");
    let line = metrics.lines().find(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")));
    let line = line.unwrap_or_else(|| panic!("{name} not in /metrics:\n{metrics}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn lease(k: &Cluster, ns: &str) -> Value {
    serde_json::from_str(&k.kubectl(&["-n", ns, "get", "lease", "restart-watcher-leader", "-o", "json"])).unwrap()
}

/// (pod, restart count) of every restart a record stands for, with its restart id.
fn delivered(records: &[Value]) -> Vec<((String, i64), String)> {
    let mut out = Vec::new();
    for r in records {
        let pod = attr(&r["resource"]["attributes"], "k8s.pod.name").as_str().unwrap().to_owned();
        let count = attr(&r["attributes"], "restart_watcher.restart_count").as_i64().unwrap();
        let missed = attr(&r["attributes"], "restart_watcher.restarts.missed").as_i64().unwrap_or(0);
        let id = attr(&r["attributes"], "restart_watcher.restart.id").as_str().unwrap().to_owned();
        for c in count - missed..=count {
            out.push(((pod.clone(), c), id.clone()));
        }
    }
    out
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn the_standby_takes_over_from_a_killed_leader_and_every_restart_is_delivered() {
    let k = Cluster::shared();
    let ns = "ha-kill";
    k.create_namespace(ns);
    k.kubectl(&["-n", ns, "create", "deployment", "api", "--replicas=4", "--image=registry.example.com/api:1.0"]);
    let pods = k.wait_pods_running(ns, "app=api", 4);

    let mut a = replica(k, ns, "agent-a");
    a.wait_log("Became the leader", WAIT);
    a.wait_ready();
    let mut b = replica(k, ns, "agent-b");
    b.wait_log("Standing by", WAIT);
    b.wait_ready();
    let (admin_a, admin_b) = (a.admin_addr(), b.admin_addr());
    let (code, body) = http_get(&admin_b, "/readyz");
    assert_eq!((code, body.trim()), (200, "ready (standby: the leader exports)"), "a standby is a hot standby");
    assert_eq!(http_get(&admin_a, "/readyz").1.trim(), "ready (leader)");
    assert_eq!((gauge(&admin_a, "restart_watcher_leader"), gauge(&admin_b, "restart_watcher_leader")), (1, 0));

    // The crash loop: the pods restart in turn until told to stop; the last count of each is kept.
    let running = Arc::new(AtomicBool::new(true));
    let looper = {
        let (running, pods) = (running.clone(), pods.clone());
        std::thread::spawn(move || {
            let mut last = BTreeMap::new();
            while running.load(Ordering::Relaxed) {
                for p in &pods {
                    last.insert(p.clone(), Cluster::shared().crash(ns, p, "api", "Error", 1));
                }
            }
            last
        })
    };
    a.wait_records(8, WAIT);
    // Long enough for the leader's checkpoint to cover some restarts beyond the hand-off margin.
    let margin = restart_watcher::leader::HANDOFF_MARGIN + restart_watcher::checkpoint::CHECKPOINT_INTERVAL;
    std::thread::sleep(margin + Duration::from_secs(2));
    assert!(b.settle(Duration::from_millis(200)).is_empty(), "the standby exported: {:?}", b.records);
    assert!(gauge(&admin_b, "restart_watcher_standby_buffer_usage_bytes") > 0, "the standby keeps what it detects");

    let killed_at = jiff::Timestamp::now();
    a.kill();
    b.wait_log("Became the leader", WAIT);
    let l = lease(k, ns);
    assert_eq!(l["spec"]["holderIdentity"], "agent-b");
    let acquired: jiff::Timestamp = l["spec"]["acquireTime"].as_str().unwrap().parse().unwrap();
    let takeover = acquired.duration_since(killed_at);
    assert!(
        takeover <= jiff::SignedDuration::from_secs(LEASE_DURATION_SECS as i64 + 2),
        "takeover took {takeover:?}, more than the lease duration ({LEASE_DURATION_SECS} s) plus 2 s"
    );
    assert_eq!(l["spec"]["leaseTransitions"], 1);
    b.wait_log("Taking over: exporting the records", WAIT);
    assert_eq!(gauge(&admin_b, "restart_watcher_leader"), 1);

    // The crash loop goes on under the new leader, then stops.
    std::thread::sleep(Duration::from_secs(3));
    running.store(false, Ordering::Relaxed);
    let last = looper.join().unwrap();
    let expected: BTreeSet<(String, i64)> =
        last.iter().flat_map(|(pod, n)| (1..=*n).map(move |c| (pod.clone(), c))).collect();
    let from_a = delivered(a.settle(Duration::from_millis(500)));
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let got: BTreeSet<_> = delivered(b.settle(Duration::from_millis(500))).into_iter().map(|(k, _)| k).collect();
        let all: BTreeSet<_> = got.union(&from_a.iter().map(|(k, _)| k.clone()).collect()).cloned().collect();
        if expected.is_subset(&all) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "restarts never delivered: {:?}\nlogs of b:\n{}",
            expected.difference(&all).collect::<Vec<_>>(),
            b.logs_text()
        );
    }
    // A restart delivered by both carries one id.
    let mut ids: BTreeMap<(String, i64), BTreeSet<String>> = BTreeMap::new();
    let mut copies: BTreeMap<(String, i64), usize> = BTreeMap::new();
    let from_b = delivered(&b.records);
    for (key, id) in from_a.iter().chain(&from_b) {
        ids.entry(key.clone()).or_default().insert(id.clone());
        *copies.entry(key.clone()).or_default() += 1;
    }
    assert!(ids.values().all(|s| s.len() == 1), "a restart with two ids: {ids:?}");
    let duplicates = copies.values().filter(|n| **n > 1).count();
    eprintln!(
        "{} restarts; delivered by the killed leader {}, by the new leader {}; {duplicates} delivered twice, with the same id",
        expected.len(),
        from_a.len(),
        from_b.len()
    );
    assert!(copies.values().all(|n| *n <= 2));
    assert!(!from_a.is_empty() && !from_b.is_empty());
    let only_a = copies.len() - from_b.iter().map(|(k, _)| k).collect::<BTreeSet<_>>().len();
    assert!(only_a > 0, "the old leader's checkpoint covered nothing: the new leader re-exported everything");

    // A graceful stop releases the Lease: a third replica, standing by, takes over without
    // waiting for it to expire.
    let mut c = replica(k, ns, "agent-c");
    c.wait_log("Standing by", WAIT);
    assert_eq!(b.terminate(), Some(0), "the leader delivered everything:\n{}", b.logs_text());
    assert!(b.logs_text().contains("Released the leadership"));
    c.wait_log("Became the leader", WAIT);
    assert_eq!(lease(k, ns)["spec"]["holderIdentity"], "agent-c");
    // A standby that stops leaves what it kept to the leader: nothing undelivered, exit 0.
    let mut d = replica(k, ns, "agent-d");
    d.wait_log("Standing by", WAIT);
    d.wait_ready();
    let before = c.settle(Duration::from_millis(500)).len();
    k.crash(ns, &pods[0], "api", "Error", 1);
    c.wait_records(before + 1, WAIT);
    let admin_d = d.admin_addr();
    k.wait_for("the standby keeps the restart", || gauge(&admin_d, "restart_watcher_standby_buffer_usage_bytes") > 0);
    assert_eq!(d.terminate(), Some(0), "{}", d.logs_text());
    assert!(d.records.is_empty(), "a standby exports nothing");
    assert!(d.logs_text().contains("Stopping as a standby"), "{}", d.logs_text());
    assert_eq!(c.terminate(), Some(0));
}
