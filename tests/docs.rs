//! Docs that must not drift from the code, and `check-config`.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_restart-watcher"))
}

#[test]
fn configuration_reference_matches_the_cli_definition() {
    let out = bin().arg("config-reference").output().unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let file = std::fs::read_to_string("docs/configuration.md").unwrap();
    assert!(
        generated == file,
        "docs/configuration.md is stale: regenerate it with `cargo run -- config-reference > docs/configuration.md`"
    );
    for env in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
        "NODE_NAME",
        "POD_NAMESPACE",
    ] {
        assert!(file.contains(env), "{env} documented");
    }
}

#[test]
fn every_attribute_key_is_documented_in_events_md() {
    let events = std::fs::read_to_string("docs/events.md").unwrap();
    let keys = std::fs::read_to_string("src/keys.rs").unwrap();
    // every `pub const X: &str = semconv::...` or literal key in keys.rs
    let literal_keys: Vec<&str> = keys
        .lines()
        .filter(|l| l.starts_with("pub const") && l.contains("\"restart_watcher."))
        .filter_map(|l| l.split('"').nth(1))
        .collect();
    assert!(literal_keys.len() >= 10);
    for k in literal_keys {
        assert!(events.contains(k), "docs/events.md does not mention {k}");
    }
    for k in [
        restart_watcher::keys::SERVICE_NAME,
        restart_watcher::keys::K8S_CONTAINER_RESTART_COUNT,
        restart_watcher::keys::CONTAINER_ID,
        restart_watcher::keys::PROCESS_EXIT_CODE,
        restart_watcher::keys::K8S_CONTAINER_STATUS_LAST_TERMINATED_REASON,
    ] {
        assert!(events.contains(k), "docs/events.md does not mention {k}");
    }
}

#[test]
fn check_config_accepts_a_good_configuration_and_says_what_it_will_do() {
    let out = bin()
        .args([
            "check-config",
            "--namespace",
            "shop",
            "--container-kinds",
            "app,init",
            "--checkpoint-file",
            "/tmp/rw.checkpoint",
        ])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector:4317")
        .env("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("configuration OK"));
    assert!(stdout.contains("otlp: logs=http://otel-collector:4317 (grpc, gzip true, timeout 10s)"), "{stdout}");
    assert!(stdout.contains("scope: shop"));
}

#[test]
fn bad_settings_are_rejected_naming_the_setting_and_the_expected_form() {
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec![], vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://c")], "OTEL_EXPORTER_OTLP_ENDPOINT"),
        (
            vec!["--otlp-endpoint", "http://c", "--otlp-certificate", "/nonexistent/ca.pem"],
            vec![],
            "--otlp-certificate",
        ),
        (
            vec![],
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem"),
            ],
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
        ),
        (
            vec![],
            vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"), ("OTEL_EXPORTER_OTLP_TIMEOUT", "ten")],
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ),
        (vec!["--label-selector", "app in prod"], vec![], "--label-selector"),
        (vec!["--field-selector", "spec.nodeName"], vec![], "--field-selector"),
        (vec!["--namespace", "Shop_1"], vec![], "--namespace"),
        (vec!["--otlp-endpoint", "http://h:99999"], vec![], "--otlp-endpoint"),
        (
            vec!["--otlp-endpoint", "https://c", "--otlp-certificate", "Cargo.toml"],
            vec![],
            "--otlp-certificate: Cargo.toml is not PEM",
        ),
        (vec!["--otlp-endpoint", "http://c", "--otlp-timeout", "99999999999"], vec![], "--otlp-timeout"),
        (vec!["--batch-max-delay", "18446744073709549568s"], vec![], "--batch-max-delay"),
        (vec!["--shutdown-grace", "100000h"], vec![], "--shutdown-grace"),
        (vec!["--storm-window", "1e30s"], vec![], "--storm-window"),
        (vec!["--previous-logs-timeout", "0s"], vec![], "--previous-logs-timeout"),
        (vec!["--queue-capacity", "-1"], vec![], "--queue-capacity"),
        (vec!["--batch-max-records", "4294967295"], vec![], "--batch-max-records"),
        (vec!["--container-kinds", "app,ephemeral"], vec![], "--container-kinds"),
        (vec!["--admin-listen", "localhost"], vec![], "--admin-listen"),
        (vec!["--shutdown-grace", "ten"], vec![], "--shutdown-grace"),
        (vec!["--watch-timeout", "0s"], vec![], "--watch-timeout"),
        (vec!["--watch-timeout", "2h"], vec![], "--watch-timeout"),
        (vec!["--list-jitter", "1h"], vec![], "--list-jitter"),
        (vec!["--list-strategy", "etcd"], vec![], "--list-strategy"),
        (vec!["--leader-elect", "--node-name", "node-1"], vec![], "--leader-elect: node mode"),
        (vec!["--leader-elect", "--no-checkpoint"], vec![], "drop --no-checkpoint"),
        (vec!["--leader-elect", "--checkpoint-file", "/tmp/rw.checkpoint"], vec![], "drop --checkpoint-file"),
        (
            vec!["--leader-elect", "--leader-elect-lease", "restart-watcher-checkpoint"],
            vec![],
            "differ from --checkpoint-lease",
        ),
        (
            vec!["--leader-elect", "--leader-elect-renew-deadline", "14s"],
            vec![],
            "renew deadline < lease duration - retry period",
        ),
        (vec![], vec![("RESTART_WATCHER_LEADER_ELECT", "true"), ("NODE_NAME", "node-1")], "--leader-elect: node mode"),
        (vec!["--leader-elect-lease-duration", "1h"], vec![], "--leader-elect-lease-duration"),
        (vec!["--oom-kills-from-cgroups", "/sys/fs/cgroup"], vec![], "needs node mode (--node-name"),
        (
            vec!["--oom-kills-from-cgroups", "/nonexistent/cgroup", "--node-name", "node-1"],
            vec![],
            "--oom-kills-from-cgroups /nonexistent/cgroup: no memory cgroup hierarchy there",
        ),
        (vec!["--oom-kill-poll", "0s"], vec![], "--oom-kill-poll"),
        (
            vec![
                "--oom-kills-from-cgroups",
                "/sys/fs/cgroup",
                "--node-name",
                "n",
                "--oom-kill-kernel-log",
                "/nonexistent/kmsg",
            ],
            vec![],
            "--oom-kill-kernel-log /nonexistent/kmsg: cannot read it",
        ),
    ];
    for (args, env, setting) in cases {
        for sub in ["check-config", "run"] {
            let mut cmd = bin();
            cmd.arg(sub).args(&args).env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
            for (k, v) in &env {
                cmd.env(k, v);
            }
            let out = cmd.output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{sub} {args:?} {env:?}: {err}");
            assert!(err.contains(setting), "{sub} {args:?} {env:?} names {setting}: {err}");
        }
    }
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn the_local_cluster_walkthrough_in_operations_md_runs_as_written() {
    let doc = std::fs::read_to_string("docs/operations.md").unwrap();
    let section = doc.split("### Try it on a local cluster").nth(1).expect("the walkthrough section");
    let script = section.split("```sh\n").nth(1).and_then(|s| s.split("```").next()).expect("its sh block");
    assert!(script.contains("cargo run --release --") && script.contains("/tmp/rw-cluster"), "{script}");
    // The same commands, with the binary under test and a private folder instead of /tmp/rw-cluster.
    let dir = tempfile::tempdir().unwrap();
    let cluster_dir = dir.path().join("cluster");
    let script = script
        .replace("cargo run --release --", env!("CARGO_BIN_EXE_restart-watcher"))
        .replace("/tmp/rw-cluster", cluster_dir.to_str().unwrap())
        .replace("127.0.0.1:9090", &format!("127.0.0.1:{}", free_port()));
    // The agent runs in the background: whatever happens, the script's exit stops it, so that its
    // stdout closes.
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &format!("set -m\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{script}")])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("bash");
    // Whatever happened, nothing of the cluster may outlive the test.
    let _ = Command::new("tests/support/cluster.sh").arg("stop").arg(&cluster_dir).status();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the walkthrough failed; stdout:\n{stdout}");
    let restarts: Vec<&str> = stdout.lines().filter(|l| l.contains(" restarted #")).collect();
    assert_eq!(restarts.len(), 1, "one restart line; stdout:\n{stdout}");
    assert!(restarts[0].contains(" web restarted #1: Error (exit code 1)"), "{}", restarts[0]);
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn the_module_map_in_lib_rs_names_every_module_file() {
    let lib = std::fs::read_to_string("src/lib.rs").unwrap();
    let map: String = lib.lines().filter(|l| l.starts_with("//! |")).collect::<Vec<_>>().join("\n");
    let mut missing = Vec::new();
    let mut stack = vec![std::path::PathBuf::from("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix("src").unwrap().to_string_lossy().into_owned();
            if rel == "lib.rs" || rel == "main.rs" || !rel.ends_with(".rs") {
                continue;
            }
            // A top-level file is named as its module ([`watch`]); a file in a folder as the
            // folder and its files (`export/otlp/{mod,config,http}.rs`).
            let named = match rel.rsplit_once('/') {
                None => map.contains(&format!("[`{}`]", rel.trim_end_matches(".rs"))),
                Some((folder, file)) => {
                    let stem = file.trim_end_matches(".rs");
                    map.contains(&format!("`{folder}/{{"))
                        && map.lines().any(|l| {
                            l.contains(&format!("`{folder}/{{"))
                                && l.split(&format!("`{folder}/{{")).nth(1).is_some_and(|rest| {
                                    rest.split('}').next().is_some_and(|list| list.split(',').any(|f| f == stem))
                                })
                        })
                }
            };
            if !named {
                missing.push(rel);
            }
        }
    }
    missing.sort();
    assert!(missing.is_empty(), "src/lib.rs's module map does not name: {missing:?}");
    // And README points to it rather than keeping a list of its own.
    let readme = std::fs::read_to_string("README.md").unwrap();
    assert!(readme.contains("src/lib.rs"), "README points to the module map");
}
