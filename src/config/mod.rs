//! Configuration: the command line and environment ([`cli`]), selector syntax ([`selectors`]), and
//! here, every check that can be made without a network and the conversion from flags to the
//! settings the library runs with. Each check lives once; `check-config` and `run` both call
//! [`validate`], and a bad setting is a [`ConfigError`] naming the setting and what to write.

pub mod cli;
pub mod reference;
pub(crate) mod selectors;
mod settings;

pub use settings::{Checkpoint, ElectionSettings, KubeSource, OomKillSettings, ReplaySettings, Settings};
pub use settings::{Output, output, replay_settings, settings};

use std::path::{Path, PathBuf};

use cli::RunArgs;

/// A setting that cannot work. The message says which setting and what it expects.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Selector(#[from] selectors::SelectorError),
    #[error(
        "--namespace / --exclude-namespace: {0:?} is not a namespace name; expected a DNS label (lowercase letters, digits, '-')"
    )]
    Namespace(String),
    #[error("--kubeconfig {}: cannot read it: {source}", path.display())]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--checkpoint-file {}: the directory {} does not exist", path.display(), dir.display())]
    CheckpointDir { path: PathBuf, dir: PathBuf },
    #[error(transparent)]
    Redaction(#[from] crate::rules::text::RedactError),
    #[error(transparent)]
    Otlp(#[from] crate::export::otlp::SettingError),
    #[error("the OTLP exporter cannot be set up: {0}")]
    OtlpClient(#[from] crate::export::ExportError),
    #[error("--self-metrics-otlp needs an endpoint: set OTEL_EXPORTER_OTLP_ENDPOINT or --self-metrics-endpoint")]
    SelfMetricsWithoutEndpoint,
    #[error(
        "--self-metrics-otlp pushes over gRPC only: set OTEL_EXPORTER_OTLP_PROTOCOL=grpc, or scrape /metrics instead"
    )]
    SelfMetricsGrpcOnly,
    #[error("{setting}: cannot use it: {source}")]
    KubeconfigUnusable {
        setting: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("--leader-elect: {0}")]
    LeaderElect(String),
    #[error("--oom-kills-from-cgroups reads this node's cgroups: it needs node mode (--node-name / NODE_NAME)")]
    OomKillsWithoutNode,
    #[error(transparent)]
    OomKills(#[from] crate::node_oom::NodeOomError),
    #[error("--oom-kill-kernel-log {}: cannot read it ({source}): give the agent CAP_SYSLOG (or kernel.dmesg_restrict=0) and the device, or leave it out", path.display())]
    KernelLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no Kubernetes configuration found: set --kubeconfig or $KUBECONFIG, or run in a cluster with a service account: {0}"
    )]
    NoKubeConfig(#[source] kube::config::InferConfigError),
}

/// A checkpoint file can be written only in a directory that exists: checked before any work.
pub(crate) fn check_checkpoint_file(path: &Path) -> Result<(), ConfigError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(ConfigError::CheckpointDir { path: path.to_owned(), dir: dir.to_owned() });
    }
    Ok(())
}

/// A Kubernetes namespace name: a DNS label.
pub(super) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Checks everything that can be checked without a network; returns the effective settings, as
/// `check-config` prints them.
pub fn validate(args: &RunArgs) -> Result<Vec<(&'static str, String)>, ConfigError> {
    settings(args).map(|s| s.summary())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::cli::{Cli, Command};

    /// The `run` flags of a command line (the environment is not read for what is set here).
    fn args(line: &[&str]) -> RunArgs {
        let mut argv = vec!["restart-watcher", "check-config"];
        argv.extend_from_slice(line);
        match Cli::try_parse_from(argv).expect("parses").command {
            Some(Command::CheckConfig(a)) => *a,
            other => panic!("not check-config: {other:?}"),
        }
    }

    #[test]
    fn a_bad_namespace_name_is_named() {
        let e = validate(&args(&["-n", "Shop_1"])).unwrap_err();
        assert!(matches!(&e, ConfigError::Namespace(n) if n == "Shop_1"), "{e}");
        assert!(e.to_string().contains("DNS label"));
    }

    #[test]
    fn a_bad_label_selector_names_its_setting() {
        let e = validate(&args(&["--label-selector", "app in (a"])).unwrap_err();
        assert!(e.to_string().contains("--label-selector"), "{e}");
    }

    #[test]
    fn a_checkpoint_file_in_a_missing_directory_is_refused() {
        let e = validate(&args(&["--checkpoint-file", "/nonexistent-dir/rw.checkpoint"])).unwrap_err();
        assert!(matches!(e, ConfigError::CheckpointDir { .. }), "{e}");
    }

    #[test]
    fn a_missing_kubeconfig_is_refused() {
        let e = validate(&args(&["--kubeconfig", "/nonexistent/kubeconfig"])).unwrap_err();
        assert!(e.to_string().starts_with("--kubeconfig /nonexistent/kubeconfig"), "{e}");
    }

    #[test]
    fn the_otlp_exporter_without_an_endpoint_uses_the_spec_default() {
        let summary = validate(&args(&["--exporter", "otlp"])).unwrap();
        let otlp = &summary.iter().find(|(k, _)| *k == "otlp").unwrap().1;
        assert!(
            otlp.contains("logs=http://localhost:4317 (grpc") && otlp.contains("traces=http://localhost:4317"),
            "{otlp}"
        );
    }

    #[test]
    fn an_endpoint_for_logs_only_sends_traces_to_the_default_and_says_so() {
        let summary = validate(&args(&["--otlp-logs-endpoint", "http://c:4317"])).unwrap();
        let warning = &summary.iter().find(|(k, _)| *k == "warning").unwrap().1;
        assert!(warning.starts_with("traces go to the default endpoint http://localhost:4317"), "{warning}");
        let only_logs = validate(&args(&["--otlp-logs-endpoint", "http://c:4317", "--signals", "logs"])).unwrap();
        assert!(only_logs.iter().all(|(k, _)| *k != "warning"));
    }

    #[test]
    fn self_metrics_need_an_endpoint_and_fall_back_to_the_otlp_one() {
        let e = validate(&args(&["--self-metrics-otlp", "--exporter", "console"])).unwrap_err();
        assert!(matches!(e, ConfigError::SelfMetricsWithoutEndpoint), "{e}");
        let a = args(&["--self-metrics-otlp", "--otlp-endpoint", "http://c:4317"]);
        assert_eq!(settings(&a).map(|s| s.self_metrics).unwrap().map(|c| c.endpoint).as_deref(), Some("http://c:4317"));
        let a = args(&[
            "--self-metrics-otlp",
            "--otlp-endpoint",
            "http://c:4317",
            "--self-metrics-endpoint",
            "http://m:4317",
        ]);
        assert_eq!(settings(&a).map(|s| s.self_metrics).unwrap().map(|c| c.endpoint).as_deref(), Some("http://m:4317"));
    }

    #[test]
    fn self_metrics_use_the_resolved_otlp_settings() {
        let a = args(&[
            "--self-metrics-otlp",
            "--otlp-endpoint",
            "collector:4317",
            "--otlp-insecure",
            "true",
            "--otlp-headers",
            "authorization=Bearer%20x",
            "--otlp-compression",
            "gzip",
            "--otlp-timeout",
            "2500",
        ]);
        let c = settings(&a).map(|s| s.self_metrics).unwrap().unwrap();
        assert_eq!(c.endpoint, "http://collector:4317");
        assert_eq!(c.headers, vec![("authorization".to_owned(), "Bearer x".to_owned())]);
        assert!(c.gzip);
        assert_eq!(c.timeout, Some(std::time::Duration::from_millis(2500)));
        let http =
            args(&["--self-metrics-otlp", "--otlp-endpoint", "http://c:4318", "--otlp-protocol", "http/protobuf"]);
        assert!(matches!(settings(&http).map(|s| s.self_metrics), Err(ConfigError::SelfMetricsGrpcOnly)));
    }

    #[test]
    fn a_bad_otlp_setting_given_as_a_flag_is_named_by_the_flag() {
        let e = validate(&args(&["--otlp-endpoint", "http://c:4317", "--otlp-timeout", "ten"])).unwrap_err();
        assert!(e.to_string().starts_with("--otlp-timeout: \"ten\" is not a timeout"), "{e}");
        let e = validate(&args(&["--otlp-logs-endpoint", "http://c:99999"])).unwrap_err();
        assert!(e.to_string().starts_with("--otlp-logs-endpoint:"), "{e}");
    }

    #[test]
    fn a_warning_about_a_setting_both_signals_read_is_said_once() {
        let cfg = output(&args(&["--otlp-endpoint", "http://c:4317", "--otlp-compression", "brotli"]).output)
            .unwrap()
            .otlp
            .unwrap();
        let about = cfg.notes.iter().filter(|n| n.contains("unknown compression")).count();
        assert_eq!(about, 1, "{:?}", cfg.notes);
    }

    #[test]
    fn durations_take_the_units_the_docs_write_their_bounds_in() {
        let a = args(&["--storm-window", "24h", "--watch-timeout", "1h"]);
        assert_eq!(a.storm_window, Some(std::time::Duration::from_secs(24 * 3600)));
        assert_eq!(a.watch_timeout, std::time::Duration::from_secs(3600));
        let e = cli::parse_duration_in("25h", std::time::Duration::ZERO, cli::MAX_STORM_WINDOW).unwrap_err();
        assert_eq!(e, "\"25h\" is out of range; expected 0s to 24h");
        assert!(cli::parse_duration("1d").unwrap_err().contains("expected ms, s, m or h"));
    }

    #[test]
    fn a_bad_redaction_is_refused() {
        let e = validate(&args(&["--previous-logs-redact", "a(b"])).unwrap_err();
        assert!(matches!(e, ConfigError::Redaction(_)), "{e}");
    }

    #[test]
    fn a_good_configuration_is_summarised() {
        let summary =
            validate(&args(&["-n", "shop", "--otlp-endpoint", "http://c:4317", "--node-name", "n1"])).unwrap();
        let get = |k: &str| summary.iter().find(|(key, _)| *key == k).map(|(_, v)| v.clone());
        assert_eq!(get("exporter").as_deref(), Some("otlp"));
        assert_eq!(get("scope").as_deref(), Some("shop"));
        assert_eq!(
            get("records").as_deref(),
            Some(
                "restart, start_failure, start_failure_ended, failure, eviction, pod_restart, oom_kill, pod_start_failure, pod_start_failure_ended, rollout_regression"
            ),
            "every kind by default"
        );
        assert_eq!(get("node mode").as_deref(), Some("n1"));
        assert!(get("otlp").is_some_and(|e| e.starts_with("logs=http://c:4317 (grpc")), "{summary:?}");
    }

    #[test]
    fn node_mode_spreads_its_lists_by_default_and_cluster_mode_does_not() {
        use crate::watch::{DEFAULT_WATCH_TIMEOUT, ListStrategyChoice, NODE_MODE_DEFAULT_JITTER};
        let node = settings(&args(&["--node-name", "n1"])).unwrap().scope.tuning;
        assert_eq!(node.jitter, NODE_MODE_DEFAULT_JITTER);
        assert_eq!(node.list_strategy, ListStrategyChoice::Auto);
        assert_eq!(node.watch_timeout, DEFAULT_WATCH_TIMEOUT);
        assert_eq!(settings(&args(&[])).unwrap().scope.tuning.jitter, std::time::Duration::ZERO);
        let set = settings(&args(&[
            "--node-name",
            "n1",
            "--list-jitter",
            "0s",
            "--watch-timeout",
            "60s",
            "--list-strategy",
            "watch-cache",
        ]))
        .unwrap()
        .scope
        .tuning;
        assert_eq!(set.jitter, std::time::Duration::ZERO);
        assert_eq!(set.watch_timeout, std::time::Duration::from_secs(60));
        assert_eq!(set.list_strategy, ListStrategyChoice::WatchCache);
        let summary = validate(&args(&["--node-name", "n1"])).unwrap();
        let watch = summary.iter().find(|(k, _)| *k == "pod watch").map(|(_, v)| v.as_str());
        assert_eq!(watch, Some("list strategy auto, watch timeout 290 s, list jitter 10000 ms"));
    }

    #[test]
    fn the_scope_drops_empty_names_and_keeps_the_node() {
        let scope = settings(&args(&["-n", "a,,b", "--node-name", "n1"])).unwrap().scope;
        assert_eq!(scope.namespaces, vec!["a", "b"]);
        assert_eq!(scope.node_name.as_deref(), Some("n1"));
        assert_eq!(scope.effective_field_selector().as_deref(), Some("spec.nodeName=n1"));
    }
}
