//! Bad input to `replay`: clear messages, non-zero exits, and nothing detected before is lost.

use std::process::{Command, Output};

fn replay_bytes(bytes: &[u8], extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.json");
    std::fs::write(&path, bytes).unwrap();
    Command::new(env!("CARGO_BIN_EXE_restart-watcher")).arg("replay").arg(&path).args(extra).output().unwrap()
}

fn fixture() -> Vec<u8> {
    std::fs::read("tests/fixtures/real-apiserver-watch.json").unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn truncated_stream_fails_after_writing_what_was_detected() {
    let data = fixture();
    // Cut inside the 16th (last) event: all four restarts come before it.
    let cut = data.len() - 200;
    let out = replay_bytes(&data[..cut], &[]);
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 4, "the four restarts before the cut are written");
    let err = stderr(&out);
    assert!(err.contains("malformed JSON value at byte"), "{err}");
    assert!(err.contains("cut short"), "{err}");
}

#[test]
fn garbage_in_the_middle_names_its_position_and_what_was_expected() {
    let data = String::from_utf8(fixture()).unwrap();
    // The fixture is one event per line; put garbage after the 6th line (2 restarts so far).
    let mut lines: Vec<&str> = data.lines().collect();
    lines.insert(6, "{\"type\": \"MODIFIED\", \"object\": {\"kind\": \"Pod\" \"oops\"}}");
    let out = replay_bytes(lines.join("\n").as_bytes(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let err = stderr(&out);
    assert!(err.contains("line 7"), "{err}");
    assert!(err.contains("expected `,` or `}`"), "{err}");
}

#[test]
fn non_pod_objects_are_skipped_with_a_warning_and_counted() {
    let mut data = br#"{"type":"ADDED","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"cm","namespace":"x","uid":"c"}}}
{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"d","namespace":"x","uid":"d"}}
{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version: 1 (20)","reason":"Expired","code":410}}
[1, 2, 3]
"#
    .to_vec();
    data.extend(fixture());
    let out = replay_bytes(&data, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 4);
    let err = stderr(&out);
    assert!(err.contains("not about a Pod"), "{err}");
    assert!(err.contains("not a Pod"), "{err}");
    assert!(err.contains("skipped_not_pod=3"), "{err}");
    assert!(err.contains("error_events=1"), "{err}");
}

#[test]
fn empty_stream_is_fine() {
    for input in [&b""[..], b"\n  \n"] {
        let out = replay_bytes(input, &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn pod_without_status_is_fine() {
    let out =
        replay_bytes(br#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","namespace":"n","uid":"u"}}"#, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn missing_input_file_is_named() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_restart-watcher")).args(["replay", "/nonexistent/rec.json"]).output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/nonexistent/rec.json"));
}

#[test]
fn unknown_container_kind_is_rejected_with_the_expected_values() {
    let out = replay_bytes(b"", &["--container-kinds", "app,ephemeral"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("--container-kinds") && err.contains("app, init, sidecar"), "{err}");
}

#[test]
fn unknown_event_kind_is_rejected_with_the_expected_values() {
    let out = replay_bytes(b"", &["--events", "restart,crash"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("--events") && err.contains("restart, start_failure, start_failure_ended, failure, eviction"),
        "{err}"
    );
}
