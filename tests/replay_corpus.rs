//! The checked-in adversarial corpus (`tests/fixtures/adversarial/`): each input once broke
//! `replay`; each row says what must happen to it now.

use std::collections::HashSet;
use std::process::Command;

/// (file, exit code, records, restart counts in order, text the log must contain)
type Row = (&'static str, i32, &'static [i64], &'static str);

const CORPUS: &[Row] = &[
    (
        "kubectl-table-output.txt",
        1,
        &[],
        "at byte 0 (line 1, column 1): found \"NAME    READY   \" where a JSON value must start",
    ),
    ("number-out-of-range.json", 0, &[1, 3], "skipped_not_pod=1"),
    ("restart-count-above-int32.json", 0, &[1], "restartCount 4294967297 is above the int32 range"),
    ("invalid-utf8.json", 1, &[1], "invalid UTF-8"),
    ("bom.json", 0, &[1], "byte-order mark"),
    ("event-object.json", 0, &[], "Skipped an object that is not a Pod. byte_offset=0 object=\"Event shop/web-1.1\""),
    ("duplicate-container-names.json", 0, &[4], "lists a container name twice"),
    ("pod-without-uid.json", 0, &[], "pods_without_uid=2"),
    ("count-reset-same-count.json", 0, &[1, 1], "detected=2"),
    ("wrong-type-unused-field.json", 0, &[1], "skipped_not_pod=0"),
    ("truncated.json", 1, &[1], "the stream ends inside a JSON value"),
];

#[test]
fn every_corpus_input_has_its_stated_outcome() {
    for (file, code, counts, log) in CORPUS {
        let path = format!("tests/fixtures/adversarial/{file}");
        let out = Command::new(env!("CARGO_BIN_EXE_restart-watcher"))
            .args(["replay", &path, "--exporter", "otlp-json", "--signals", "logs"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{file}: {err}");
        assert!(err.contains(log), "{file}: the log says {log:?}: {err}");
        let mut got = Vec::new();
        let mut ids = HashSet::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            for rl in v["resourceLogs"].as_array().unwrap() {
                for rec in rl["scopeLogs"][0]["logRecords"].as_array().unwrap() {
                    let attr = |k: &str| {
                        rec["attributes"].as_array().unwrap().iter().find(|a| a["key"] == k).unwrap()["value"].clone()
                    };
                    got.push(
                        attr("restart_watcher.restart_count")["intValue"].as_str().unwrap().parse::<i64>().unwrap(),
                    );
                    assert!(ids.insert(attr("restart_watcher.restart.id").to_string()), "{file}: a restart id repeats");
                }
            }
        }
        assert_eq!(got, *counts, "{file}");
    }
    let listed: HashSet<&str> = CORPUS.iter().map(|r| r.0).collect();
    for entry in std::fs::read_dir("tests/fixtures/adversarial").unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(name == "README.md" || listed.contains(name.as_str()), "{name} has no row in CORPUS");
    }
}
