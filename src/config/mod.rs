//! Configuration: the command line and environment ([`cli`]), selector syntax ([`selectors`]), and
//! here, every check that can be made without a network and the conversion from flags to the
//! settings the library runs with. Each check lives once; `check-config` and `run` both call
//! [`validate`], and a bad setting is a [`ConfigError`] naming the setting and what to write.

pub mod cli;
pub mod selectors;

use std::path::{Path, PathBuf};

use cli::{ExporterKind, OutputArgs, RunArgs};

use crate::checkpoint::CheckpointStore;
use crate::export::otlp::OtlpConfig;
use crate::record::RecordKind;
use crate::watch::WatchScope;

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
    Otlp(#[from] crate::export::otlp::ConfigError),
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
    #[error(
        "no Kubernetes configuration found: set --kubeconfig or $KUBECONFIG, or run in a cluster with a service account: {0}"
    )]
    NoKubeConfig(#[source] kube::config::InferConfigError),
}

/// `--leader-elect` needs the checkpoint Lease (a standby lets go of what it covers), one agent
/// per scope (not node mode, where each node has its own agent), and a timing in which a leader
/// steps down before a standby can take over.
fn check_leader_elect(args: &RunArgs) -> Result<(), ConfigError> {
    let why = if args.node_name.is_some() {
        Some("node mode (--node-name / NODE_NAME) runs one agent per node: drop --leader-elect".to_owned())
    } else if args.no_checkpoint {
        Some("the standby relies on the leader's checkpoint: drop --no-checkpoint".to_owned())
    } else if args.checkpoint_file.is_some() {
        Some("replicas share the checkpoint through its Lease: drop --checkpoint-file".to_owned())
    } else if args.leader_elect_lease.is_empty() || args.leader_elect_lease == args.checkpoint_lease {
        Some("--leader-elect-lease must be set and differ from --checkpoint-lease".to_owned())
    } else {
        leader_timing(args).check().err()
    };
    why.map_or(Ok(()), |w| Err(ConfigError::LeaderElect(w)))
}

/// The election's timing from the flags.
pub fn leader_timing(args: &RunArgs) -> crate::leader::Timing {
    crate::leader::Timing {
        lease_duration: args.leader_elect_lease_duration,
        renew_deadline: args.leader_elect_renew_deadline,
        retry_period: args.leader_elect_retry_period,
    }
}

/// This replica's identity in Leases: the pod name (downward API), else the host name.
pub fn identity() -> String {
    std::env::var("POD_NAME").or_else(|_| std::env::var("HOSTNAME")).unwrap_or_else(|_| "restart-watcher".into())
}

/// The election, with `--leader-elect`.
pub fn election(args: &RunArgs, client: &kube::Client, namespace: &str) -> Option<crate::leader::Election> {
    args.leader_elect.then(|| crate::leader::Election {
        api: kube::Api::namespaced(client.clone(), namespace),
        namespace: namespace.to_owned(),
        name: args.leader_elect_lease.clone(),
        identity: identity(),
        timing: leader_timing(args),
    })
}

/// A checkpoint file can be written only in a directory that exists: checked before any work.
pub fn check_checkpoint_file(path: &Path) -> Result<(), ConfigError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(ConfigError::CheckpointDir { path: path.to_owned(), dir: dir.to_owned() });
    }
    Ok(())
}

/// A Kubernetes namespace name: a DNS label.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The OTLP settings of `output`, resolved for the selected signals (the spec's default endpoint
/// where none is set).
pub fn otlp_config(output: &OutputArgs) -> Result<OtlpConfig, ConfigError> {
    Ok(output.otlp.resolve(output.signals())?)
}

/// The configured exporter; OTLP settings are validated here, before anything connects. Records
/// go to stdout for the console and otlp-json exporters.
pub fn exporter(
    output: &OutputArgs,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
) -> Result<crate::export::Exporter, ConfigError> {
    use crate::export::Exporter;
    let out: Box<dyn std::io::Write + Send> = Box::new(std::io::stdout());
    Ok(match output.exporter_kind() {
        ExporterKind::Console => Exporter::Console { out },
        ExporterKind::OtlpJson => Exporter::OtlpJson { out, signals: output.signals(), mapping: output.mapping() },
        ExporterKind::Otlp => {
            let cfg = otlp_config(output)?;
            for note in &cfg.notes {
                tracing::warn!(note = note.as_str(), "OTLP exporter setting.");
            }
            tracing::info!(signals = cfg.describe(), "Exporting over OTLP.");
            let otlp = crate::export::otlp::OtlpExporter::new(cfg, output.signals(), output.mapping(), metrics)?;
            Exporter::Otlp(Box::new(otlp))
        }
    })
}

/// Where and how `--self-metrics-otlp` pushes: `--self-metrics-endpoint`
/// (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`), else the generic OTLP endpoint, with the generic OTLP
/// settings (headers, TLS, compression, timeout), resolved as for the records. gRPC only. `None`
/// when it is off.
pub fn self_metrics_config(args: &RunArgs) -> Result<Option<crate::export::otlp::SignalConfig>, ConfigError> {
    if !args.self_metrics_otlp {
        return Ok(None);
    }
    let specific =
        crate::export::otlp::RawSignalSettings { endpoint: args.self_metrics_endpoint.clone(), ..Default::default() };
    let mut warnings = Vec::new();
    let cfg = crate::export::otlp::resolve(
        &specific,
        &args.output.otlp.generic.raw(),
        "OTEL_EXPORTER_OTLP_METRICS",
        &mut warnings,
    )?
    .ok_or(ConfigError::SelfMetricsWithoutEndpoint)?;
    if cfg.protocol != crate::export::otlp::Protocol::Grpc {
        return Err(ConfigError::SelfMetricsGrpcOnly);
    }
    Ok(Some(cfg))
}

/// The client configuration as kube-rs infers it ($KUBECONFIG, ~/.kube/config, in-cluster), or
/// from `--kubeconfig` / `--context`. Every request carries the agent's `User-Agent`
/// (`restart-watcher/<version>`), so that the API server's audit log and its priority and fairness
/// can tell the agent's requests apart.
pub async fn kube_config(args: &RunArgs) -> Result<kube::Config, ConfigError> {
    let mut config = inferred_kube_config(args).await?;
    if let Ok(agent) = http::HeaderValue::from_str(&crate::export::otlp::user_agent()) {
        config.headers.push((http::header::USER_AGENT, agent));
    }
    Ok(config)
}

async fn inferred_kube_config(args: &RunArgs) -> Result<kube::Config, ConfigError> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let options = KubeConfigOptions { context: args.context.clone(), ..Default::default() };
    let unusable = |setting: String| move |source| ConfigError::KubeconfigUnusable { setting, source };
    match &args.kubeconfig {
        Some(path) => {
            let setting = format!("--kubeconfig {}", path.display());
            let kc = Kubeconfig::read_from(path).map_err(unusable(setting.clone()))?;
            kube::Config::from_custom_kubeconfig(kc, &options).await.map_err(unusable(setting))
        }
        None if args.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(unusable(format!("--context {:?} (from the default kubeconfig)", args.context))),
        None => kube::Config::infer().await.map_err(ConfigError::NoKubeConfig),
    }
}

/// The agent's own namespace, for its checkpoint Lease: the flag, else the service account's,
/// else the kubeconfig context's.
pub fn own_namespace(args: &RunArgs, config: &kube::Config) -> String {
    const SA_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
    args.checkpoint_namespace
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| std::fs::read_to_string(SA_NAMESPACE_FILE).ok().map(|s| s.trim().to_owned()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| config.default_namespace.clone())
}

/// What pods to watch.
pub fn watch_scope(args: &RunArgs) -> WatchScope {
    let non_empty = |v: &[String]| v.iter().filter(|n| !n.is_empty()).cloned().collect();
    let node_name = args.node_name.clone().filter(|n| !n.is_empty());
    let default_jitter =
        if node_name.is_some() { crate::watch::NODE_MODE_DEFAULT_JITTER } else { std::time::Duration::ZERO };
    WatchScope {
        namespaces: non_empty(&args.namespaces),
        exclude_namespaces: non_empty(&args.exclude_namespaces),
        label_selector: args.label_selector.clone(),
        field_selector: args.field_selector.clone(),
        node_name,
        detection: args
            .detection
            .detection(crate::rules::text::compile_redactions(&args.previous_logs_redact).unwrap_or_default()),
        tuning: crate::watch::WatchTuning {
            list_strategy: args.list_strategy,
            watch_timeout: args.watch_timeout,
            jitter: args.list_jitter.unwrap_or(default_jitter),
        },
    }
}

/// Where the checkpoint lives; a Lease needs the client and the agent's namespace.
pub fn checkpoint_store(args: &RunArgs, client: &kube::Client, namespace: String) -> CheckpointStore {
    if args.no_checkpoint {
        return CheckpointStore::Disabled;
    }
    if let Some(path) = &args.checkpoint_file {
        return CheckpointStore::File(path.clone());
    }
    let name = match &args.node_name {
        Some(node) => format!("{}-{node}", args.checkpoint_lease),
        None => args.checkpoint_lease.clone(),
    };
    let identity = identity();
    CheckpointStore::Lease {
        api: Box::new(kube::Api::namespaced(client.clone(), &namespace)),
        namespace,
        name,
        identity,
    }
}

/// Checks everything that can be checked without a network; returns the effective settings, as
/// `check-config` prints them.
pub fn validate(args: &RunArgs) -> Result<Vec<(&'static str, String)>, ConfigError> {
    if let Some(l) = &args.label_selector {
        selectors::check_label_selector("--label-selector / RESTART_WATCHER_LABEL_SELECTOR", l)?;
    }
    if let Some(f) = &args.field_selector {
        selectors::check_field_selector("--field-selector / RESTART_WATCHER_FIELD_SELECTOR", f)?;
    }
    if let Some(ns) = args.namespaces.iter().chain(&args.exclude_namespaces).find(|n| !n.is_empty() && !is_dns_label(n))
    {
        return Err(ConfigError::Namespace(ns.clone()));
    }
    if let Some(path) = &args.kubeconfig {
        std::fs::metadata(path).map_err(|source| ConfigError::Kubeconfig { path: path.clone(), source })?;
    }
    if let Some(path) = &args.checkpoint_file {
        check_checkpoint_file(path)?;
    }
    crate::rules::text::compile_redactions(&args.previous_logs_redact)?;
    if args.leader_elect {
        check_leader_elect(args)?;
    }
    let kind = args.output.exporter_kind();
    let mut summary = vec![("exporter", format!("{kind:?}").to_lowercase())];
    if kind == ExporterKind::Otlp {
        let cfg = otlp_config(&args.output)?;
        summary.push(("otlp", cfg.describe()));
        for note in cfg.notes {
            summary.push(("warning", note));
        }
    }
    if let Some(m) = self_metrics_config(args)? {
        summary.push(("self metrics", m.endpoint));
    }
    let scope = if args.namespaces.is_empty() { "all namespaces".to_owned() } else { args.namespaces.join(",") };
    summary.push(("scope", scope));
    if let Some(node) = &args.node_name {
        summary.push(("node mode", node.clone()));
    }
    let tuning = watch_scope(args).tuning;
    summary.push((
        "pod watch",
        format!(
            "list strategy {}, watch timeout {} s, list jitter {} ms",
            clap::ValueEnum::to_possible_value(&tuning.list_strategy)
                .map(|v| v.get_name().to_owned())
                .unwrap_or_default(),
            tuning.watch_timeout.as_secs(),
            tuning.jitter.as_millis()
        ),
    ));
    summary.push((
        "checkpoint",
        if args.no_checkpoint {
            "off".to_owned()
        } else if let Some(f) = &args.checkpoint_file {
            format!("file {}", f.display())
        } else {
            format!("Lease {}", args.checkpoint_lease)
        },
    ));
    if args.leader_elect {
        let t = leader_timing(args);
        summary.push((
            "leader election",
            format!(
                "Lease {}, lease duration {:?}, renew deadline {:?}, retry period {:?}",
                args.leader_elect_lease, t.lease_duration, t.renew_deadline, t.retry_period
            ),
        ));
    }
    let events = args.detection.record_kinds();
    let emitted: Vec<&str> = RecordKind::ALL.iter().filter(|k| events.allows(**k)).map(|k| k.as_str()).collect();
    summary.push(("records", emitted.join(", ")));
    summary.push(("admin server", args.admin_listen.to_string()));
    Ok(summary)
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
        assert_eq!(self_metrics_config(&a).unwrap().map(|c| c.endpoint).as_deref(), Some("http://c:4317"));
        let a = args(&[
            "--self-metrics-otlp",
            "--otlp-endpoint",
            "http://c:4317",
            "--self-metrics-endpoint",
            "http://m:4317",
        ]);
        assert_eq!(self_metrics_config(&a).unwrap().map(|c| c.endpoint).as_deref(), Some("http://m:4317"));
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
        let c = self_metrics_config(&a).unwrap().unwrap();
        assert_eq!(c.endpoint, "http://collector:4317");
        assert_eq!(c.headers, vec![("authorization".to_owned(), "Bearer x".to_owned())]);
        assert!(c.gzip);
        assert_eq!(c.timeout, Some(std::time::Duration::from_millis(2500)));
        let http =
            args(&["--self-metrics-otlp", "--otlp-endpoint", "http://c:4318", "--otlp-protocol", "http/protobuf"]);
        assert!(matches!(self_metrics_config(&http), Err(ConfigError::SelfMetricsGrpcOnly)));
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
        let cfg =
            otlp_config(&args(&["--otlp-endpoint", "http://c:4317", "--otlp-compression", "brotli"]).output).unwrap();
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
            Some("restart, start_failure, start_failure_ended, failure, eviction"),
            "every kind by default"
        );
        assert_eq!(get("node mode").as_deref(), Some("n1"));
        assert!(get("otlp").is_some_and(|e| e.starts_with("logs=http://c:4317 (grpc")), "{summary:?}");
    }

    #[test]
    fn node_mode_spreads_its_lists_by_default_and_cluster_mode_does_not() {
        use crate::watch::{DEFAULT_WATCH_TIMEOUT, ListStrategyChoice, NODE_MODE_DEFAULT_JITTER};
        let node = watch_scope(&args(&["--node-name", "n1"])).tuning;
        assert_eq!(node.jitter, NODE_MODE_DEFAULT_JITTER);
        assert_eq!(node.list_strategy, ListStrategyChoice::Auto);
        assert_eq!(node.watch_timeout, DEFAULT_WATCH_TIMEOUT);
        assert_eq!(watch_scope(&args(&[])).tuning.jitter, std::time::Duration::ZERO);
        let set = watch_scope(&args(&[
            "--node-name",
            "n1",
            "--list-jitter",
            "0s",
            "--watch-timeout",
            "60s",
            "--list-strategy",
            "watch-cache",
        ]))
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
        let scope = watch_scope(&args(&["-n", "a,,b", "--node-name", "n1"]));
        assert_eq!(scope.namespaces, vec!["a", "b"]);
        assert_eq!(scope.node_name.as_deref(), Some("n1"));
        assert_eq!(scope.effective_field_selector().as_deref(), Some("spec.nodeName=n1"));
    }
}
