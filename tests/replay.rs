//! End to end: recorded streams through the binary's replay, with the expected restarts written by hand.

use restart_watcher_test_support::pods as support;

use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_restart-watcher"))
}

fn replay(args: &[&str]) -> Output {
    bin().arg("replay").args(args).output().expect("run restart-watcher")
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

/// (pod, container, restart_count, reason, exit code) of every restart record in OTLP/JSON output.
fn records(out: &Output) -> Vec<(String, String, i64, String, i64)> {
    let mut recs = Vec::new();
    for line in stdout_lines(out) {
        let v: serde_json::Value = serde_json::from_str(&line).expect("each line is JSON");
        let Some(rls) = v.get("resourceLogs") else {
            continue;
        };
        for rl in rls.as_array().unwrap() {
            let restarts: Vec<&serde_json::Value> = rl["scopeLogs"][0]["logRecords"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["eventName"] == restart_watcher::keys::EVENT_NAME)
                .collect();
            if restarts.is_empty() {
                continue;
            }
            let attr = |list: &serde_json::Value, key: &str| -> serde_json::Value {
                list.as_array()
                    .unwrap()
                    .iter()
                    .find(|a| a["key"] == key)
                    .map(|a| a["value"].clone())
                    .unwrap_or(serde_json::Value::Null)
            };
            let res = &rl["resource"]["attributes"];
            let pod = format!(
                "{}/{}",
                attr(res, "k8s.namespace.name")["stringValue"].as_str().unwrap(),
                attr(res, "k8s.pod.name")["stringValue"].as_str().unwrap()
            );
            let container = attr(res, "k8s.container.name")["stringValue"].as_str().unwrap().to_owned();
            let instance: i64 = attr(res, "k8s.container.restart_count")["intValue"].as_str().unwrap().parse().unwrap();
            for rec in restarts {
                let a = &rec["attributes"];
                let count: i64 =
                    attr(a, "restart_watcher.restart_count")["intValue"].as_str().unwrap().parse().unwrap();
                assert_eq!(instance, count - 1, "the resource describes the terminated instance");
                let reason = attr(a, "k8s.container.status.last_terminated_reason")["stringValue"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                let code: i64 = attr(a, "process.exit.code")["intValue"].as_str().unwrap_or("-1").parse().unwrap();
                recs.push((pod.clone(), container.clone(), count, reason, code));
            }
        }
    }
    recs
}

/// Runs `stream` through the library's replay with `detector`: what `map` makes of each record, and
/// the stats.
fn replay_lib<T>(
    mut detector: restart_watcher::detector::Detector,
    stream: &str,
    map: impl Fn(&restart_watcher::record::Record) -> T,
) -> (Vec<T>, restart_watcher::replay::ReplayStats) {
    let mut got = Vec::new();
    let mut stats = Default::default();
    restart_watcher::replay::replay(
        stream.as_bytes(),
        "t",
        &mut detector,
        jiff::Timestamp::now,
        |e| {
            got.push(map(&e));
            true
        },
        &mut stats,
    )
    .unwrap();
    (got, stats)
}

fn r(pod: &str, c: &str, n: i64, reason: &str, code: i64) -> (String, String, i64, String, i64) {
    (pod.to_owned(), c.to_owned(), n, reason.to_owned(), code)
}

#[test]
fn real_apiserver_recording_yields_exactly_its_four_restarts() {
    let out = replay(&["tests/fixtures/real-apiserver-watch.json", "--exporter", "otlp-json", "--signals", "logs"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        records(&out),
        vec![
            r("shop/checkout-6b7f9c8d5-x2x4q", "checkout", 1, "OOMKilled", 137),
            r("shop/checkout-6b7f9c8d5-x2x4q", "checkout", 2, "Error", 2),
            r("shop/checkout-6b7f9c8d5-x2x4q", "envoy", 1, "Error", 143),
            r("batch/report-28371-9kq2x", "report", 1, "Error", 1),
        ]
    );
}

#[test]
fn shipped_example_yields_the_restarts_and_failures_its_story_tells() {
    let out = replay(&["examples/shop-cluster.watch.json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        stdout_lines(&out),
        vec![
            "2026-11-20T10:01:00Z shop/checkout-6c9d7f5b8-q2x7m checkout restarted #1: Error (exit code 2), now CrashLoopBackOff",
            "2026-11-20T10:01:15Z shop/checkout-6c9d7f5b8-q2x7m checkout restarted #2: Error (exit code 2), now CrashLoopBackOff",
            "2026-11-20T10:02:10Z shop/cart-7f8b9c6d4-m4k2p cart restarted #1: OOMKilled (exit code 137, SIGKILL)",
            "2026-11-20T10:02:20Z batch/nightly-report-28871520-7xk4d report restarted #1: Error (exit code 1)",
            "2026-11-20T10:02:30Z shop/frontend-5d4c8b7a9-h8j3n envoy (sidecar) restarted #1: Error (exit code 143, SIGTERM)",
            "2026-11-20T10:03:15Z shop/checkout-6c9d7f5b8-q2x7m checkout restarted #4: Error (exit code 2), 1 missed, now CrashLoopBackOff",
            "2026-11-20T10:05:00Z shop/db-0 postgres restarted #1: Error (exit code 137, SIGKILL)",
            "2026-11-20T10:05:12Z shop/search-7b5d9c4f6-k8r2v search failed to start: ErrImagePull: failed to pull and unpack image \"registry.example.com/shop/search:3.1.0-typo\": not found",
            "2026-11-20T10:05:22Z shop/payments-84f6d7c9b-w6n4t payments failed to start: CreateContainerConfigError: couldn't find key STRIPE_URL in ConfigMap shop/payments-config",
            "2026-11-20T10:05:40Z shop/payments-84f6d7c9b-w6n4t payments started after CreateContainerConfigError for 18s (1 attempt observed)",
            "2026-11-20T10:06:02Z batch/db-migrate-5n2xq migrate failed, not restarted: Error (exit code 3)",
            "2026-11-20T10:06:20Z shop/cache-6f9b8d7c5-p3m8x was evicted (TerminationByKubelet): The node was low on resource: memory. Threshold quantity: 100Mi, available: 84Mi. Container redis was using 1.9Gi, request is 512Mi.",
        ]
    );
    let restarts_only = replay(&["examples/shop-cluster.watch.json", "--events", "restart"]);
    assert_eq!(stdout_lines(&restarts_only).len(), 7, "--events restart keeps to the seven restarts");
}

#[test]
fn otlp_json_writes_one_logs_and_one_traces_request_per_batch() {
    let out = replay(&["examples/shop-cluster.watch.json", "--exporter", "otlp-json"]);
    assert!(out.status.success());
    let lines = stdout_lines(&out);
    let logs = lines.iter().filter(|l| l.starts_with("{\"resourceLogs\"")).count();
    let traces = lines.iter().filter(|l| l.starts_with("{\"resourceSpans\"")).count();
    assert!(logs >= 1 && logs == traces, "logs {logs} traces {traces}");
    assert_eq!(records(&out).len(), 7);
    let only_traces = replay(&["examples/shop-cluster.watch.json", "--exporter", "otlp-json", "--signals", "traces"]);
    assert!(stdout_lines(&only_traces).iter().all(|l| l.starts_with("{\"resourceSpans\"")));
}

#[test]
fn replay_reads_standard_input_and_pretty_or_compact_json() {
    use std::io::Write;
    let compact: String = std::fs::read_to_string("examples/shop-cluster.watch.json")
        .unwrap()
        .split("\n}\n")
        .filter(|s| !s.trim().is_empty())
        .map(|s| serde_json::from_str::<serde_json::Value>(&format!("{s}\n}}")).unwrap().to_string() + "\n")
        .collect();
    let mut child = bin()
        .args(["replay", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(compact.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(stdout_lines(&out).len(), 12);
}

#[test]
fn pod_lists_are_snapshots_and_plain_pods_are_updates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lists.json");
    let pod = |uid: &str, name: &str, n: u32| {
        let app = support::c("app", n).without_state();
        let app = app.terminated(serde_json::json!({"exitCode": 1, "reason": "Error",
            "finishedAt": "2026-11-20T10:00:00Z"}));
        support::pod(uid).named("ns", name).bare().app(app).json()
    };
    let a = "aaaaaaaa-0000-0000-0000-000000000000";
    let b = "bbbbbbbb-0000-0000-0000-000000000000";
    let stream = [
        serde_json::json!({"kind": "List", "apiVersion": "v1", "items": [pod(a, "a", 0), pod(b, "b", 0)]}),
        pod(a, "a", 1), // -w -o json: a plain Pod update: a restart
        serde_json::json!({"kind": "PodList", "apiVersion": "v1", "items": [pod(a, "a", 1)]}), // b gone
        pod(b, "b", 5), // b seen again: its state was dropped, so this is a new baseline
    ]
    .map(|v| v.to_string())
    .join("\n");
    std::fs::write(&path, stream).unwrap();
    let out = replay(&[path.to_str().unwrap()]);
    assert!(out.status.success());
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("ns/a app restarted #1"));
}

/// A reader that hands out a few bytes at a time, like a slow pipe.
struct Trickle<'a>(&'a [u8], usize);

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.1.min(buf.len()).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn values_split_across_reads_are_decoded_once_complete() {
    use restart_watcher::detector::Detector;
    use restart_watcher::replay::{ReplayError, ReplayStats, replay};
    let data = std::fs::read("tests/fixtures/real-apiserver-watch.json").unwrap();
    for chunk in [1, 7, 4096] {
        let (got, stats, r) = support::replay_counts(Trickle(&data, chunk));
        r.unwrap();
        assert_eq!((got, stats.values), (vec![1, 2, 1, 1], 16), "chunk {chunk}");
    }
    // an error is placed the same way whatever the read sizes
    let mut bad = data.clone();
    bad.extend_from_slice(b"\n{\"type\": nope}\n");
    let err = replay(
        Trickle(&bad, 13),
        "t",
        &mut Detector::default(),
        jiff::Timestamp::now,
        |_| true,
        &mut ReplayStats::default(),
    )
    .unwrap_err();
    let ReplayError::Malformed { line, column, byte_offset, .. } = err else { panic!("{err}") };
    // `nope` on line 18, after the blank line 17 (the parser stops at its `o`, expecting `null`):
    // offset, line and column name the same byte.
    assert_eq!((line, column, byte_offset), (18, 11, data.len() + 1 + 10), "{err}");
    assert_eq!(bad[byte_offset], b'o');
}

#[test]
fn replay_with_a_checkpoint_file_catches_up_on_first_sightings_and_writes_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("rw.checkpoint");
    let input = dir.path().join("in.json");
    let pod = |uid: &str, name: &str, finished: &str| {
        let app = support::c("app", 3).without_state();
        let app = app.terminated(serde_json::json!({"exitCode": 1, "reason": "Error", "finishedAt": finished}));
        support::pod(uid).named("ns", name).bare().app(app).event("ADDED").to_string()
    };
    std::fs::write(
        &input,
        [
            pod("aaaaaaaa-0000-0000-0000-000000000001", "before", "2026-11-20T09:00:00Z"),
            pod("aaaaaaaa-0000-0000-0000-000000000002", "after", "2026-11-20T11:00:00Z"),
        ]
        .join("\n"),
    )
    .unwrap();
    std::fs::write(&checkpoint, "2026-11-20T10:00:00Z\n").unwrap();
    let out = replay(&[input.to_str().unwrap(), "--checkpoint-file", checkpoint.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("ns/after app restarted #3") && lines[0].contains("detected late"), "{lines:?}");
    let written: jiff::Timestamp = std::fs::read_to_string(&checkpoint).unwrap().trim().parse().unwrap();
    assert!(written > "2026-11-20T10:00:00Z".parse().unwrap(), "the checkpoint advanced to the end of the replay");
    assert!(written < "2026-11-26T00:00:00Z".parse().unwrap(), "the recording's time, not the replay's: {written}");
    // Without a checkpoint, first sightings are silent.
    let out = replay(&[input.to_str().unwrap()]);
    assert!(stdout_lines(&out).is_empty());
    // A malformed checkpoint is named, with what to do.
    std::fs::write(&checkpoint, "yesterday\n").unwrap();
    let out = replay(&[input.to_str().unwrap(), "--checkpoint-file", checkpoint.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an RFC 3339 timestamp"));
}

#[test]
fn a_first_sighting_baselined_from_the_probe_alone_behaves_like_a_full_decode() {
    use restart_watcher::detector::{Detector, KindFilter};
    use restart_watcher::record::ContainerKind;
    let pod = |sidecar: u32, init: u32, app: u32| {
        let st = |name: &str, n: u32| {
            support::c(name, n).without_state().terminated(serde_json::json!({"exitCode": 1, "reason": "Error",
                "finishedAt": "2026-11-20T10:00:00Z"}))
        };
        let pod = support::pod("bbbbbbbb-0000-0000-0000-000000000001").named("ns", "p").bare();
        let pod = pod.sidecar(st("envoy", sidecar)).init(st("migrate", init)).app(st("web", app));
        pod.event("MODIFIED").to_string()
    };
    // first sighting with counts > 0 (silent baseline, from the probe), then one rise per container
    let stream = [pod(2, 1, 5), pod(3, 1, 5), pod(3, 2, 5), pod(3, 2, 7)].join("\n");
    for (kinds, want) in [
        (
            KindFilter::default(),
            vec![(ContainerKind::Sidecar, 3, 0), (ContainerKind::Init, 2, 0), (ContainerKind::App, 7, 1)],
        ),
        (
            KindFilter { app: true, init: false, sidecar: true },
            vec![(ContainerKind::Sidecar, 3, 0), (ContainerKind::App, 7, 1)],
        ),
    ] {
        let (got, stats) =
            replay_lib(Detector::new(kinds), &stream, |e| (e.container_kind(), e.restart_count, e.missed));
        assert_eq!(got, want, "{kinds:?}");
        assert_eq!(stats.pod_observations, 4);
    }
}

#[test]
fn replay_fast_paths_never_skip_a_start_failure_its_end_a_failure_or_an_eviction() {
    use restart_watcher::detector::Detector;
    use serde_json::json;
    let ev = |uid: &str, policy: &str, state: serde_json::Value, status: serde_json::Value| {
        let pod = support::pod(uid).named("ns", &format!("p-{uid}")).bare().restart_policy(policy);
        let pod = pod.status(json!({"phase": "Running"})).status(status).app(support::c("web", 0).state(state));
        pod.event("MODIFIED").to_string()
    };
    let (a, b, c) = (
        "eeeeeeee-0000-0000-0000-000000000001",
        "eeeeeeee-0000-0000-0000-000000000002",
        "eeeeeeee-0000-0000-0000-000000000003",
    );
    let running = json!({"running": {}});
    let pulling = |r: &str| json!({"waiting": {"reason": r, "message": "pull failed"}});
    let failed = json!({"terminated": {"exitCode": 3, "reason": "Error", "finishedAt": "2026-11-20T10:00:00Z"}});
    let none = json!({});
    let stream = [
        ev(a, "Always", json!({"waiting": {"reason": "ContainerCreating"}}), none.clone()),
        ev(a, "Always", pulling("ErrImagePull"), none.clone()),
        ev(a, "Always", pulling("ImagePullBackOff"), none.clone()),
        ev(a, "Always", running.clone(), none.clone()),
        ev(a, "Always", running.clone(), none.clone()),
        ev(b, "Never", running.clone(), none.clone()),
        ev(b, "Never", failed.clone(), json!({"phase": "Failed"})),
        ev(b, "Never", failed.clone(), json!({"phase": "Failed"})),
        ev(c, "Always", running.clone(), none.clone()),
        ev(c, "Always", running.clone(), json!({"phase": "Failed", "reason": "Evicted", "message": "disk"})),
    ]
    .join("\n");
    let (got, _) = replay_lib(Detector::default(), &stream, |e| e.kind.as_str());
    assert_eq!(got, vec!["start_failure", "start_failure_ended", "failure", "eviction"]);
}

#[test]
fn a_v1_35_recording_of_failures_yields_exactly_its_start_failures_failures_and_eviction() {
    let out = replay(&["tests/fixtures/failures-v1.35-watch.json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        stdout_lines(&out),
        vec![
            "2026-11-27T03:46:08Z f-config/api api failed to start: CreateContainerConfigError: couldn't find key db-url in ConfigMap f-config/app-config",
            "2026-11-27T03:46:09Z f-config/api api started after CreateContainerConfigError for 1s (1 attempt observed)",
            "2026-11-27T03:46:08Z f-image/search-b579db6fd-c5pwc search failed to start: ErrImagePull: failed to pull and unpack image \"registry.example.com/search:does-not-exist\": not found",
            "2026-11-27T03:46:09Z f-image/search-b579db6fd-xsdsr search failed to start: ErrImagePull: failed to pull and unpack image \"registry.example.com/search:does-not-exist\": not found",
            "2026-11-27T03:46:09Z f-image/search-b579db6fd-c5pwc search stopped failing to start: its pod was deleted after ErrImagePull for 1s (2 attempts observed)",
            "2026-11-27T03:46:09Z f-image/search-b579db6fd-xsdsr search stopped failing to start: its pod was deleted after ErrImagePull for 0s (2 attempts observed)",
            "2026-11-27T03:46:14Z f-job/migrate-btfzh migrate failed, not restarted: Error (exit code 3)",
            "2026-11-27T03:46:19Z f-oom/batch batch failed, not restarted: OOMKilled (exit code 137, SIGKILL)",
            "2026-11-27T03:46:14Z f-evict/cache-84c9487f-swrbk was evicted (TerminationByKubelet): The node was low on resource: memory. Threshold quantity: 100Mi, available: 80Mi.",
        ]
    );
}

#[test]
fn a_v1_35_recording_of_a_pod_no_node_fits_yields_its_pod_start_failure_and_its_end() {
    let fixture = "tests/fixtures/pending-v1.35-watch.json";
    let out = replay(&["--pending-threshold", "3s", fixture]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        stdout_lines(&out),
        vec![
            "2026-12-07T03:11:23Z f-pending/big-5c5b6db449-nv8x9 has not started in 3s: Unschedulable: 0/2 nodes are available: 2 Insufficient memory. no new claims to deallocate, preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.",
            "2026-12-07T03:11:27Z f-pending/big-5c5b6db449-nv8x9 was deleted before it started, after 4s waiting (Unschedulable)",
        ]
    );
    // Under the default threshold of 5 minutes the pod waited too little to be reported.
    let out = replay(&[fixture]);
    assert!(out.status.success() && out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn a_v1_35_recording_of_two_rollouts_yields_the_crashing_ones_restarts_and_one_regression() {
    let out = replay(&["tests/fixtures/rollout-v1.35-watch.json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pod = "f-rollout/web-d7f8f8dd9-blr7x";
    assert_eq!(
        stdout_lines(&out),
        vec![
            format!("2026-12-07T03:21:56Z {pod} web restarted #1: Error (exit code 1)"),
            format!("2026-12-07T03:21:56Z {pod} web restarted #2: Error (exit code 1)"),
            format!("2026-12-07T03:21:56Z {pod} web restarted #3: Error (exit code 1)"),
            format!(
                "2026-12-07T03:21:56Z deployment f-rollout/web regressed at revision d7f8f8dd9 (rolled out at \
                 2026-12-07T03:21:56Z): 3 failures from 1 pod within 900s of the rollout, where the previous revision \
                 had 0 failing pods in the 900s before it; the latest: app_error in pod {pod}"
            ),
        ]
    );
}

#[test]
fn episodes_past_their_budget_have_their_missing_ends_counted_in_the_log_and_the_summary() {
    use std::io::Write;
    // 2 MiB of kept episodes hold 32,768; 33,000 pods fail to pull, then start.
    let pods = 33_000u32;
    let mut input = tempfile::NamedTempFile::new().unwrap();
    for state in [
        serde_json::json!({"waiting": {"reason": "ContainerCreating"}}),
        serde_json::json!({"waiting": {"reason": "ErrImagePull", "message": "not found"}}),
        serde_json::json!({"running": {"startedAt": "2026-11-20T10:01:00Z"}}),
    ] {
        for i in 0..pods {
            let pod = support::pod(&format!("00000000-0000-0000-0000-{i:012}")).named("ns", &format!("p-{i}")).bare();
            let pod = pod.meta(serde_json::json!({"creationTimestamp": "2026-11-20T10:00:00Z"}));
            writeln!(input, "{}", pod.app(support::c("web", 0).state(state.clone())).event("MODIFIED")).unwrap();
        }
    }
    let out = replay(&[input.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = stdout_lines(&out);
    let opened = lines.iter().filter(|l| l.contains("failed to start")).count();
    let ended = lines.iter().filter(|l| l.contains(" started after ")).count();
    assert_eq!((opened, ended), (33_000, 32_768));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reached their budget"), "the log says so: {err}");
    assert!(err.contains("episode_ends_unreported=232"), "the summary counts them: {err}");
}
