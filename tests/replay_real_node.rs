//! The real node's recordings (`tests/fixtures/real-node/`, what the API server streamed while a
//! real kubelet went through each scenario of `tests/real_node.rs`: pods and kube events) replayed
//! to exactly the records the live agent made of them. They are the project's ground truth for what
//! the kubelet writes; `RW_RECORD_REAL_NODE=1 tests/run.sh --test real_node` records them again.

use restart_watcher_test_support::recorder::{REAL_NODE_FIXTURES, Recorder, Summary, summarise};

#[test]
fn every_real_node_recording_replays_to_the_records_the_live_agent_made() {
    let mut names: Vec<String> = std::fs::read_dir(REAL_NODE_FIXTURES)
        .expect("the real node's fixtures")
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_suffix(".watch.json").map(str::to_owned))
        .collect();
    names.sort();
    assert!(names.len() >= 19, "the scenarios' recordings: {names:?}");
    for name in names {
        let recording = std::path::Path::new(REAL_NODE_FIXTURES).join(format!("{name}.watch.json"));
        let want: Vec<Summary> = serde_json::from_str(
            &std::fs::read_to_string(format!("{REAL_NODE_FIXTURES}/{name}.records.json")).expect("its records"),
        )
        .expect("the records' summary");
        assert_eq!(summarise(&Recorder::replay(&recording)), want, "the replay of {name}");
    }
}
