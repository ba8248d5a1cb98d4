//! What the API server streams of a namespace, recorded as a user would record it (`kubectl get
//! pods --watch --output-watch-events -o json`, and the same for its kube events), merged in the
//! order it arrives, one watch event per line; and its replay through the agent's `replay`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{Cluster, attr};

/// Records pods and kube events of a namespace into one file; stopped (its watches killed) when
/// dropped.
pub struct Recorder {
    children: Vec<Child>,
    threads: Vec<JoinHandle<()>>,
    path: PathBuf,
}

impl Recorder {
    /// Starts recording `ns` into `DIR/recordings/<ns>.watch.json` once its initial lists are in.
    pub fn start(k: &Cluster, ns: &str, dir: &Path) -> Recorder {
        let dir = dir.join("recordings");
        std::fs::create_dir_all(&dir).expect("the recordings folder");
        let path = dir.join(format!("{ns}.watch.json"));
        let file = Arc::new(Mutex::new(std::fs::File::create(&path).expect("the recording")));
        let mut recorder = Recorder { children: Vec::new(), threads: Vec::new(), path };
        for resource in ["pods", "events"] {
            let mut child = Command::new(k.var("KUBECTL"))
                .arg("--kubeconfig")
                .arg(k.admin())
                .args(["-n", ns, "get", resource, "--watch", "--output-watch-events", "-o", "json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("kubectl get --watch");
            let out = child.stdout.take().expect("kubectl's stdout");
            let file = file.clone();
            recorder.threads.push(std::thread::spawn(move || {
                // kubectl prints each watch event as indented JSON; each is written as one line.
                for value in serde_json::Deserializer::from_reader(out).into_iter::<Value>() {
                    let Ok(value) = value else { break };
                    let mut f = file.lock().expect("the recording's lock");
                    let _ = writeln!(f, "{value}");
                }
            }));
            recorder.children.push(child);
        }
        // The initial lists come first: give them time (an empty namespace prints nothing).
        std::thread::sleep(Duration::from_millis(500));
        recorder
    }

    /// Stops recording; returns the recording's path.
    pub fn stop(&mut self) -> PathBuf {
        std::thread::sleep(Duration::from_millis(500));
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.path.clone()
    }

    /// Stops recording and replays it: [`Recorder::stop`], then [`Recorder::replay`].
    pub fn stop_and_replay(mut self) -> Vec<Value> {
        let path = self.stop();
        Recorder::replay(&path)
    }

    /// The records `restart-watcher replay` makes of a recording (OTLP/JSON log records, each
    /// with its resource).
    pub fn replay(path: &Path) -> Vec<Value> {
        Recorder::replay_with(path, &[])
    }

    /// [`Recorder::replay`] with more flags (`--pending-threshold 3s`).
    pub fn replay_with(path: &Path, args: &[&str]) -> Vec<Value> {
        let out = Command::new(crate::agent_binary())
            .args(["replay", "--exporter", "otlp-json", "--signals", "logs"])
            .args(args)
            .arg(path)
            .output()
            .expect("run restart-watcher replay");
        assert!(out.status.success(), "replay failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut records = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let v: Value = serde_json::from_str(line).expect("OTLP/JSON line");
            for rl in v["resourceLogs"].as_array().into_iter().flatten() {
                for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                    for r in sl["logRecords"].as_array().into_iter().flatten() {
                        let mut r = r.clone();
                        r["resource"] = rl["resource"].clone();
                        records.push(r);
                    }
                }
            }
        }
        records
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the real-node scenarios assert of each record: (event name without its prefix, container,
/// cause, category, exit code, signal, container kind, restart count, missed); -1 where the record
/// has none (a failure's restart count, a start failure's exit code).
pub type Summary = (String, String, String, String, i64, i64, String, i64, i64);

/// The [`Summary`] of each record.
pub fn summarise(records: &[Value]) -> Vec<Summary> {
    records
        .iter()
        .map(|r| {
            let (a, res) = (&r["attributes"], &r["resource"]["attributes"]);
            let s = |v: Value| v.as_str().unwrap_or_default().to_owned();
            let n = |v: Value| v.as_i64().unwrap_or(-1);
            (
                r["eventName"].as_str().unwrap_or_default().trim_start_matches("restart_watcher.").to_owned(),
                s(attr(res, "k8s.container.name")),
                s(attr(a, "restart_watcher.cause")),
                s(attr(a, "restart_watcher.cause.category")),
                n(attr(a, "process.exit.code")),
                n(attr(a, "restart_watcher.termination.signal")),
                s(attr(a, "restart_watcher.container.kind")),
                n(attr(a, "restart_watcher.restart_count")),
                attr(a, "restart_watcher.restarts.missed").as_i64().unwrap_or(0),
            )
        })
        .collect()
}

/// Where the real node's recordings are committed: `<name>.watch.json` (what the API server
/// streamed: pods and kube events) and `<name>.records.json` (the [`Summary`] of the records).
pub const REAL_NODE_FIXTURES: &str = "tests/fixtures/real-node";

/// Keeps a recording and the summary of its records as a committed fixture.
pub fn keep_fixture(recording: &Path, name: &str, records: &[Summary]) {
    std::fs::create_dir_all(REAL_NODE_FIXTURES).expect("the fixtures folder");
    std::fs::copy(recording, format!("{REAL_NODE_FIXTURES}/{name}.watch.json")).expect("write the recording");
    let text = serde_json::to_string_pretty(records).expect("the summary as JSON");
    std::fs::write(format!("{REAL_NODE_FIXTURES}/{name}.records.json"), text + "\n").expect("write the summary");
}
