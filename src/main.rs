//! The `restart-watcher` binary: parse the configuration, set up logging, run, map the outcome to
//! an exit code. Everything else lives in the library.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use restart_watcher::admin::{self, Readiness};
use restart_watcher::app::{self, ReplayOptions, RunOptions};
use restart_watcher::checkpoint::CheckpointStore;
use restart_watcher::cli::{Cli, Command, ExporterKind, LogFormat, OutputArgs, ReplayArgs, RunArgs};
use restart_watcher::export::Exporter;
use restart_watcher::export::otlp::OtlpExporter;
use restart_watcher::metrics::{Metrics, SelfTelemetry};
use restart_watcher::watch::{WatchScope, WatchStats};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli) {
        eprintln!("restart-watcher: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("restart-watcher: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("restart-watcher: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(cli: &Cli) -> Result<()> {
    // The agent's own logs go to stderr, never through its own export path; the network stacks
    // are kept quiet so their chatter does not drown the agent's messages.
    let filter = EnvFilter::try_new(format!(
        "{},h2=warn,hyper=warn,tonic=warn,tower=warn,rustls=warn,kube_client::client::builder=off,opentelemetry_sdk=warn,opentelemetry_otlp=warn",
        cli.log
    ))
    .with_context(|| {
        format!(
            "--log / RESTART_WATCHER_LOG: invalid log filter {:?}; expected e.g. `info` or `restart_watcher=debug`",
            cli.log
        )
    })?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Some(Command::Replay(args)) => replay(*args).await,
        Some(Command::Run(args)) => watch(*args).await,
        Some(Command::CheckConfig(args)) => check_config(&args),
        Some(Command::ConfigReference) => {
            print!("{}", restart_watcher::cli::reference());
            Ok(ExitCode::SUCCESS)
        }
        None => watch(cli.run).await,
    }
}

/// Builds the client configuration as kube-rs infers it, or from the flags.
async fn kube_config(args: &RunArgs) -> Result<kube::Config> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let options = KubeConfigOptions { context: args.context.clone(), ..Default::default() };
    match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).with_context(|| format!("--kubeconfig {}: cannot read it", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .with_context(|| format!("--kubeconfig {}: cannot use it", path.display()))
        }
        None if args.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .with_context(|| format!("--context {:?}: not usable from the default kubeconfig", args.context)),
        None => kube::Config::infer().await.context(
            "no Kubernetes configuration found: set --kubeconfig or $KUBECONFIG, or run in a cluster with a service account",
        ),
    }
}

/// The agent's own namespace, for its checkpoint Lease.
fn own_namespace(args: &RunArgs, config: &kube::Config) -> String {
    const SA_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
    args.checkpoint_namespace
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| std::fs::read_to_string(SA_NAMESPACE_FILE).ok().map(|s| s.trim().to_owned()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| config.default_namespace.clone())
}

/// Checks everything that can be checked without a network; returns the effective settings.
fn validate(args: &RunArgs) -> Result<Vec<(&'static str, String)>> {
    use restart_watcher::selectors::{check_field_selector, check_label_selector};
    if let Some(l) = &args.label_selector {
        check_label_selector("--label-selector / RESTART_WATCHER_LABEL_SELECTOR", l)?;
    }
    if let Some(f) = &args.field_selector {
        check_field_selector("--field-selector / RESTART_WATCHER_FIELD_SELECTOR", f)?;
    }
    let dns_label = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    for ns in args.namespaces.iter().chain(&args.exclude_namespaces).filter(|n| !n.is_empty()) {
        if !dns_label(ns) {
            anyhow::bail!(
                "--namespace / --exclude-namespace: {ns:?} is not a namespace name; expected a DNS label (lowercase letters, digits, '-')"
            );
        }
    }
    if let Some(path) = &args.kubeconfig {
        std::fs::metadata(path).with_context(|| format!("--kubeconfig {}: cannot read it", path.display()))?;
    }
    if let Some(path) = &args.checkpoint_file {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        anyhow::ensure!(
            dir.is_dir(),
            "--checkpoint-file {}: the directory {} does not exist",
            path.display(),
            dir.display()
        );
    }
    restart_watcher::prevlogs::compile_redactions(&args.previous_logs_redact)?;
    let kind = args.output.exporter_kind();
    let mut summary = vec![("exporter", format!("{kind:?}").to_lowercase())];
    if kind == ExporterKind::Otlp {
        let cfg = args.output.otlp.resolve()?;
        anyhow::ensure!(
            cfg.logs.is_some() || cfg.traces.is_some(),
            "--exporter otlp needs an endpoint: set OTEL_EXPORTER_OTLP_ENDPOINT (or --otlp-endpoint), e.g. http://otel-collector:4317"
        );
        if let Some(l) = &cfg.logs {
            summary.push(("logs endpoint", format!("{} (gzip: {}, timeout: {:?})", l.endpoint, l.gzip, l.timeout)));
        }
        if let Some(t) = &cfg.traces {
            summary.push(("traces endpoint", format!("{} (gzip: {}, timeout: {:?})", t.endpoint, t.gzip, t.timeout)));
        }
    }
    if args.self_metrics_otlp {
        anyhow::ensure!(
            args.self_metrics_endpoint.is_some() || args.output.otlp.endpoint.is_some(),
            "--self-metrics-otlp needs an endpoint: set OTEL_EXPORTER_OTLP_ENDPOINT or --self-metrics-endpoint"
        );
    }
    let scope = if args.namespaces.is_empty() { "all namespaces".to_owned() } else { args.namespaces.join(",") };
    summary.push(("scope", scope));
    if let Some(node) = &args.node_name {
        summary.push(("node mode", node.clone()));
    }
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
    summary.push(("admin server", args.admin_listen.to_string()));
    Ok(summary)
}

fn check_config(args: &RunArgs) -> Result<ExitCode> {
    match validate(args) {
        Ok(summary) => {
            println!("configuration OK");
            for (k, v) in summary {
                println!("  {k}: {v}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("restart-watcher: invalid configuration: {e:#}");
            Ok(ExitCode::from(2))
        }
    }
}

async fn watch(args: RunArgs) -> Result<ExitCode> {
    // Everything that can be checked without a network is checked first.
    if let Err(e) = validate(&args) {
        eprintln!("restart-watcher: invalid configuration: {e:#}");
        return Ok(ExitCode::from(2));
    }
    let self_metrics_endpoint = args
        .self_metrics_otlp
        .then(|| args.self_metrics_endpoint.clone().or_else(|| args.output.otlp.endpoint.clone()))
        .flatten();
    if args.self_metrics_otlp && self_metrics_endpoint.is_none() {
        anyhow::bail!(
            "--self-metrics-otlp needs an endpoint: set OTEL_EXPORTER_OTLP_ENDPOINT or --self-metrics-endpoint"
        );
    }
    let telemetry = Arc::new(SelfTelemetry::new(self_metrics_endpoint.as_deref())?);
    let metrics = telemetry.metrics.clone();
    let exporter = build_exporter(&args.output, metrics.clone())?;
    let export_in_flight = match &exporter {
        Exporter::Otlp(otlp) => Some(otlp.in_flight()),
        _ => None,
    };
    let scope = WatchScope {
        namespaces: args.namespaces.iter().filter(|n| !n.is_empty()).cloned().collect(),
        exclude_namespaces: args.exclude_namespaces.iter().filter(|n| !n.is_empty()).cloned().collect(),
        label_selector: args.label_selector.clone(),
        field_selector: args.field_selector.clone(),
        node_name: args.node_name.clone().filter(|n| !n.is_empty()),
        kinds: args.detection.kind_filter(),
    };
    let stop = CancellationToken::new();
    let watch_stats = Arc::new(WatchStats::default());
    let readiness =
        Readiness { scopes: scope.namespaces.len().max(1) as u64, watch: watch_stats.clone(), export_in_flight };
    let (_, admin_task) = admin::serve(args.admin_listen, telemetry.clone(), readiness, stop.clone()).await?;

    let redactions = restart_watcher::prevlogs::compile_redactions(&args.previous_logs_redact)?;
    let config = kube_config(&args).await?;
    let server = config.cluster_url.to_string();
    let namespace = own_namespace(&args, &config);
    let client = kube::Client::try_from(config.clone()).context("cannot build the Kubernetes client")?;
    let store = if args.no_checkpoint {
        CheckpointStore::Disabled
    } else if let Some(path) = &args.checkpoint_file {
        CheckpointStore::File(path.clone())
    } else {
        let name = match &args.node_name {
            Some(node) => format!("{}-{node}", args.checkpoint_lease),
            None => args.checkpoint_lease.clone(),
        };
        let identity = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "restart-watcher".into());
        CheckpointStore::Lease {
            api: Box::new(kube::Api::namespaced(client.clone(), &namespace)),
            namespace,
            name,
            identity,
        }
    };
    let opts = RunOptions {
        scope,
        channel_capacity_events: args.queue_capacity as usize,
        batch: args.output.batch(),
        shutdown_grace: args.shutdown_grace,
        server,
        metrics,
        watch_stats,
        use_events: !args.no_events,
        use_owner_watch: !args.no_owner_watch,
        storm_window: args.storm_window.filter(|w| !w.is_zero()),
        previous_logs: (args.previous_logs_lines > 0).then(|| {
            restart_watcher::prevlogs::PreviousLogs::new(
                client.clone(),
                args.previous_logs_lines,
                args.previous_logs_max_bytes as usize,
                args.previous_logs_timeout,
                redactions.clone(),
            )
        }),
    };
    tokio::spawn(stop_on_signal(stop.clone()));
    let result = app::run(client, opts, exporter, store, stop.clone()).await;
    stop.cancel();
    let _ = admin_task.await;
    telemetry.shutdown();
    let report = result?;
    tracing::info!(
        detected = report.restarts_detected,
        exported = report.exported,
        failed = report.failed,
        undelivered = report.undelivered,
        "Stopped."
    );
    if report.undelivered > 0 || report.failed > 0 {
        tracing::error!(
            undelivered = report.undelivered,
            failed = report.failed,
            "Some restart records were not delivered."
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Cancels `stop` on SIGTERM or SIGINT.
async fn stop_on_signal(stop: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot listen for SIGTERM; only SIGINT stops the agent cleanly.");
                let _ = ctrl_c.await;
                stop.cancel();
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => tracing::info!("SIGINT received."),
            _ = term.recv() => tracing::info!("SIGTERM received."),
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    stop.cancel();
}

/// Builds the configured exporter; OTLP settings are validated here, before anything connects.
fn build_exporter(output: &OutputArgs, metrics: Arc<Metrics>) -> Result<Exporter> {
    let out: Box<dyn std::io::Write + Send> = Box::new(std::io::stdout());
    Ok(match output.exporter_kind() {
        ExporterKind::Console => Exporter::Console { out },
        ExporterKind::OtlpJson => Exporter::OtlpJson { out, signals: output.signals(), mapping: output.mapping() },
        ExporterKind::Otlp => {
            let cfg = output.otlp.resolve()?;
            if cfg.logs.is_none() && cfg.traces.is_none() {
                anyhow::bail!(
                    "--exporter otlp needs an endpoint: set OTEL_EXPORTER_OTLP_ENDPOINT (or --otlp-endpoint), e.g. http://otel-collector:4317"
                );
            }
            let otlp = OtlpExporter::new(cfg, output.signals(), output.mapping(), metrics)?;
            tracing::info!(endpoints = otlp.endpoints(), "Exporting over OTLP/gRPC.");
            Exporter::Otlp(Box::new(otlp))
        }
    })
}

async fn replay(args: ReplayArgs) -> Result<ExitCode> {
    let (input, source_name): (Box<dyn Read + Send>, String) = if args.input == "-" {
        (Box::new(std::io::stdin()), "stdin".to_owned())
    } else {
        let file = std::fs::File::open(&args.input)
            .with_context(|| format!("cannot open the replay input {:?}", args.input))?;
        (Box::new(file), args.input.clone())
    };
    let metrics = Arc::new(Metrics::noop());
    let exporter = build_exporter(&args.output, metrics.clone())?;
    let checkpoint = args.checkpoint_file.clone().map(CheckpointStore::File);
    let catch_up_since = match &checkpoint {
        Some(store) => store.load().await?.map(restart_watcher::checkpoint::catch_up_since),
        None => None,
    };
    let opts = ReplayOptions {
        kinds: args.detection.kind_filter(),
        batch: args.output.batch(),
        metrics,
        catch_up_since,
        ..ReplayOptions::default()
    };

    let outcome = app::replay(input, source_name, exporter, opts).await;
    let s = outcome.stats;
    tracing::info!(
        values = s.values,
        pod_observations = s.pod_observations,
        lists = s.lists,
        skipped_not_pod = s.skipped_not_pod,
        error_events = s.error_events,
        restarts = s.restarts,
        exported = outcome.export.exported,
        failed = outcome.export.failed,
        "Replay finished."
    );
    if let Some(e) = outcome.error {
        anyhow::bail!(e);
    }
    if let Some(e) = outcome.export.first_error {
        anyhow::bail!("{} restart records could not be exported: {e}", outcome.export.failed);
    }
    if let Some(store) = checkpoint {
        // Everything the stream showed has been handed over.
        store.save(jiff::Timestamp::now()).await?;
    }
    Ok(ExitCode::SUCCESS)
}
