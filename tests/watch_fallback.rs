//! A server that ignores `sendInitialEvents` (an older API server, or a proxy that drops the
//! parameter) streams a plain watch: the streaming list never ends. The agent says so, lists
//! instead, becomes ready and reports what happens next.

use restart_watcher_test_support::cluster;
use restart_watcher_test_support::stand_in_apiserver;

use std::time::Duration;

use cluster::Agent;
use stand_in_apiserver::{LIST_RESOURCE_VERSION, StandInApiServer};

#[test]
fn a_streaming_list_that_never_ends_falls_back_to_a_list_said_in_the_log() {
    let server = StandInApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = server.kubeconfig(dir.path());
    let mut agent = Agent::start(
        &kubeconfig,
        &["--no-checkpoint", "--no-events", "--no-owner-watch", "--no-cluster-uid", "--list-jitter", "0s"],
    );
    agent.wait_log("does not serve streaming lists", Duration::from_secs(60));
    agent.wait_ready();
    let records = agent.wait_records(1, Duration::from_secs(30)).to_vec();
    assert_eq!(records.len(), 1, "the restart after the list is reported");
    assert_eq!(records[0]["eventName"], "restart_watcher.container.restart");
    let requests = server.requests();
    let watches: Vec<&String> = requests.iter().filter(|r| r.contains("watch=true")).collect();
    assert!(watches[0].contains("sendInitialEvents=true"), "{requests:#?}");
    let list = requests.iter().position(|r| !r.contains("watch=true") && !r.contains("limit=1"));
    let resumed = requests.iter().position(|r| r.contains(&format!("resourceVersion={LIST_RESOURCE_VERSION}")));
    assert!(list.is_some() && resumed > list, "a list, then a watch from it: {requests:#?}");
    assert_eq!(agent.terminate(), Some(0));
}
