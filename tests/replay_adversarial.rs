//! Replay under adversarial input: each test is a defect found by fuzzing and hand-built edge
//! cases, named after the behaviour that now holds.

use restart_watcher_test_support::pods as support;
use restart_watcher_test_support::process;

use std::io::{Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use process::wait_or_kill;
use restart_watcher::detector::Detector;
use restart_watcher::replay::{ReplayError, ReplayStats, replay_bounded};
use serde_json::json;
use support::{c, pod};

const T0: &str = "2026-11-20T10:00:00Z";

/// One watch event of a pod whose container `app` has restarted `n` times.
fn restarted(uid: &str, n: u32) -> String {
    let p = pod(uid).named("ns", "web").app(c("app", n).died("Error", 1, T0)).json();
    json!({"type": "MODIFIED", "object": p}).to_string()
}

fn run(input: impl Read) -> (Vec<u32>, ReplayStats, Result<(), ReplayError>) {
    support::replay_counts(input)
}

const UID: &str = "aaaaaaaa-0000-0000-0000-000000000001";

#[test]
fn input_that_cannot_start_a_json_value_fails_at_once_naming_what_it_found() {
    // `kubectl get pods -w` without `-o json`, through a pipe that stays open: it must fail on the
    // first bytes, not buffer forever waiting for a `}`.
    let mut child = agent(&["replay", "-"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"NAME    READY   STATUS    RESTARTS   AGE\nweb-1   1/1     Running   0          5s\n").unwrap();
    let out = wait_or_kill(child, Duration::from_secs(60));
    drop(stdin);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("at byte 0 (line 1, column 1)") && err.contains("found \"NAME"), "{err}");
    assert!(err.contains("without `-o json`"), "{err}");
}

/// Bytes that never close a JSON value: `{"a":"xxxxxxxx...` forever.
struct Endless(bool);

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let prefix: &[u8] = if std::mem::replace(&mut self.0, true) { b"" } else { b"{\"a\":\"" };
        buf[..prefix.len()].copy_from_slice(prefix);
        buf[prefix.len()..].fill(b'x');
        Ok(buf.len())
    }
}

#[test]
fn a_value_larger_than_the_limit_stops_the_replay_with_the_limit_named() {
    let mut stats = ReplayStats::default();
    let r = replay_bounded(
        Endless(false),
        "t",
        4 << 20,
        &mut Detector::default(),
        jiff::Timestamp::now,
        |_| true,
        &mut stats,
    );
    let err = r.unwrap_err();
    assert!(
        matches!(err, ReplayError::ValueTooLarge { byte_offset: 0, max_value_bytes, .. } if max_value_bytes == 4 << 20)
    );
    assert!(err.to_string().contains("--max-value-bytes"), "{err}");
}

#[test]
fn invalid_utf8_inside_a_pod_is_malformed_input_at_its_file_position() {
    let good = restarted(UID, 1);
    let first = restarted(UID, 0);
    let mut bad = restarted("aaaaaaaa-0000-0000-0000-000000000002", 1).into_bytes();
    let at = bad.windows(5).position(|w| w == b"\"web\"").unwrap() + 2;
    bad[at] = 0xff;
    let mut stream = format!("{first}\n{good}\n").into_bytes();
    let bad_at = stream.len() + at;
    stream.extend_from_slice(&bad);
    let (got, _, r) = run(stream.as_slice());
    assert_eq!(got, vec![1], "the restart before the bad bytes is emitted");
    let Err(ReplayError::Malformed { byte_offset, line, column, detail, .. }) = r else { panic!("{r:?}") };
    assert_eq!((byte_offset, line, column), (bad_at, 3, at + 1));
    assert!(detail.contains("invalid UTF-8"), "{detail}");
}

#[test]
fn a_number_out_of_range_skips_only_that_value() {
    let huge = restarted(UID, 2).replace("\"restartCount\":2", "\"restartCount\":1e400");
    assert!(huge.contains("1e400"));
    let stream = [restarted(UID, 0), restarted(UID, 1), huge, restarted(UID, 3)].join("\n");
    let (got, stats, r) = run(stream.as_bytes());
    r.unwrap();
    assert_eq!(got, vec![1, 3]);
    assert_eq!((stats.values, stats.skipped_not_pod), (4, 1));
}

#[test]
fn a_restart_count_above_int32_skips_that_observation_and_counts_it() {
    let huge = restarted(UID, 2).replace("\"restartCount\":2", "\"restartCount\":4294967297");
    let stream = [restarted(UID, 0), huge, restarted(UID, 1)].join("\n");
    let (got, stats, r) = run(stream.as_bytes());
    r.unwrap();
    assert_eq!((got, stats.skipped_not_pod), (vec![1], 1));
}

#[test]
fn a_wrongly_typed_field_the_agent_does_not_need_keeps_the_restart() {
    let mut v: serde_json::Value = serde_json::from_str(&restarted(UID, 1)).unwrap();
    let status = &mut v["object"]["status"]["containerStatuses"][0];
    status["imageID"] = json!(-5);
    status["image"] = json!({});
    status["state"] = json!("running");
    let odd = v.to_string();
    let (got, stats, r) = run([restarted(UID, 0), odd].join("\n").as_bytes());
    r.unwrap();
    assert_eq!((got, stats.skipped_not_pod), (vec![1], 0));
}

#[test]
fn a_pod_without_a_uid_is_counted_not_ignored() {
    let mut p = pod(UID).app(c("app", 1)).json();
    p["metadata"].as_object_mut().unwrap().remove("uid");
    let (got, stats, r) = run(p.to_string().as_bytes());
    r.unwrap();
    assert_eq!((got.len(), stats.pods_without_uid, stats.pod_observations), (0, 1, 1));
}

#[test]
fn uids_that_differ_only_in_case_are_different_pods() {
    let upper = UID.to_uppercase();
    let stream = [restarted(UID, 0), restarted(&upper, 1)].join("\n");
    let (got, _, r) = run(stream.as_bytes());
    r.unwrap();
    assert!(got.is_empty(), "the second uid is a first sighting, not a rise of the first: {got:?}");
}

#[test]
fn a_kubernetes_event_object_is_named_as_an_event() {
    let ev = json!({"kind": "Event", "type": "Warning", "reason": "BackOff",
                    "metadata": {"namespace": "ns", "name": "web.1"}});
    let out = agent_output(&["replay", "-"], ev.to_string().as_bytes());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("Event ns/web.1") && !err.contains("without an object"), "{err}");
}

#[test]
fn a_byte_order_mark_is_named_and_skipped() {
    let mut input = b"\xEF\xBB\xBF".to_vec();
    input.extend_from_slice([restarted(UID, 0), restarted(UID, 1)].join("\n").as_bytes());
    let (got, _, r) = run(input.as_slice());
    r.unwrap();
    assert_eq!(got, vec![1]);
    let out = agent_output(&["replay", "-"], &input);
    assert!(String::from_utf8_lossy(&out.stderr).contains("byte-order mark"));
}

#[test]
fn an_io_error_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent_output(&["replay", dir.path().to_str().unwrap()], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.matches("Is a directory").count(), 1, "{err}");
}

#[test]
fn a_checkpoint_file_in_a_missing_directory_fails_before_reading() {
    // stdin stays open: the check must come first.
    let child = agent(&["replay", "-", "--checkpoint-file", "/nonexistent-dir/rw.checkpoint"]);
    let out = wait_or_kill(child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--checkpoint-file /nonexistent-dir/rw.checkpoint"));
}

#[test]
fn a_pipe_split_into_tiny_writes_is_decoded_once_per_value() {
    // Every value complete only after many reads: the scanner must carry its state across them.
    let stream =
        [restarted(UID, 0), restarted(UID, 1), "{\"s\":\"a \\\" } ] { [\"}".into(), restarted(UID, 2)].join(" ");
    struct Bytewise<'a>(&'a [u8]);
    impl Read for Bytewise<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let Some((first, rest)) = self.0.split_first() else { return Ok(0) };
            buf[0] = *first;
            self.0 = rest;
            Ok(1)
        }
    }
    let (got, stats, r) = run(Bytewise(stream.as_bytes()));
    r.unwrap();
    assert_eq!((got, stats.values, stats.skipped_not_pod), (vec![1, 2], 4, 1));
}

fn agent(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_restart-watcher"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn agent_output(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = agent(args);
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn duplicate_container_names_do_not_repeat_a_restart_on_each_delivery() {
    let dup = |first: u32, second: u32| {
        let p = pod(UID).named("ns", "web").app(c("app", first).died("Error", 1, T0)).app(c("app", second)).json();
        json!({"type": "MODIFIED", "object": p}).to_string()
    };
    let stream = [dup(3, 5), dup(3, 5), dup(3, 5), dup(4, 5), dup(4, 5)].join("\n");
    let (got, _, r) = run(stream.as_bytes());
    r.unwrap();
    assert_eq!(got, vec![4], "the first status of the name counts; re-deliveries are silent");
}
