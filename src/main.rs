//! The `restart-watcher` binary: parse, dispatch, map the outcome to an exit code (2 for a bad
//! configuration). Flags become settings in `restart_watcher::config`; everything else lives in
//! the library.

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use restart_watcher::accounting::WatchStats;
use restart_watcher::admin::{self, Readiness};
use restart_watcher::app::{self, ReplayOptions, RunOptions};
use restart_watcher::checkpoint::CheckpointStore;
use restart_watcher::config::cli::{Cli, Command, ReplayArgs, RunArgs};
use restart_watcher::config::{self, ConfigError};
use restart_watcher::export::Exporter;
use restart_watcher::leader::Role;
use restart_watcher::metrics::{Metrics, SelfTelemetry};
use tokio_util::sync::CancellationToken;

/// Exit code of a configuration the agent cannot run with.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    restart_watcher::memory::limit_arenas();
    let cli = Cli::parse();
    if let Err(e) = restart_watcher::logging::init(&cli.log, cli.log_format) {
        eprintln!("restart-watcher: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("restart-watcher: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Some(Command::Replay(args)) => replay(*args).await,
            Some(Command::Run(args)) => watch(*args).await,
            Some(Command::CheckConfig(args)) => Ok(check_config(&args)),
            Some(Command::ConfigReference) => {
                print!("{}", config::cli::reference());
                Ok(ExitCode::SUCCESS)
            }
            None => watch(cli.run).await,
        }
    });
    // Everything is flushed and accounted for by now. A replay reader may still be blocked
    // reading a pipe (stopped by a signal): do not wait for it.
    runtime.shutdown_background();
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("restart-watcher: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints why the configuration cannot work; returns the exit code for it.
fn invalid(e: &ConfigError) -> ExitCode {
    eprintln!("restart-watcher: invalid configuration: {e}");
    ExitCode::from(EXIT_CONFIG)
}

fn check_config(args: &RunArgs) -> ExitCode {
    match config::validate(args) {
        Ok(summary) => {
            println!("configuration OK");
            for (k, v) in summary {
                println!("  {k}: {v}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => invalid(&e),
    }
}

async fn watch(args: RunArgs) -> Result<ExitCode> {
    // Everything that can be checked without a network is checked first.
    if let Err(e) = config::validate(&args) {
        return Ok(invalid(&e));
    }
    let telemetry = Arc::new(match config::self_metrics_config(&args)? {
        Some(cfg) => SelfTelemetry::with_push(restart_watcher::export::otlp::self_metrics::push_reader(&cfg)?)?,
        None => SelfTelemetry::new()?,
    });
    let metrics = telemetry.metrics.clone();
    let mut exporter = config::exporter(&args.output, metrics.clone())?;
    if args.workload_metrics {
        metrics.enable_workload_metrics(args.workload_metrics_max_series as usize);
    }
    if let Some(name) =
        args.output.cluster_name.as_deref().filter(|n| restart_watcher::cluster::is_placeholder_cluster_name(n))
    {
        tracing::warn!(
            cluster_name = name,
            "--cluster-name is left at a placeholder: set it to this cluster's name (k8s.cluster.name), or records of several clusters look alike."
        );
    }
    let export_in_flight = match &exporter {
        Exporter::Otlp(otlp) => Some(otlp.in_flight()),
        _ => None,
    };
    let scope = config::watch_scope(&args);
    let episodes = scope.detection.episodes.clone();
    let stop = CancellationToken::new();
    let watch_stats = Arc::new(WatchStats::default());
    let initial_role = if args.leader_elect { Role::Standby } else { Role::Leader };
    let (role, _) = tokio::sync::watch::channel(initial_role);
    let leads = role.subscribe();
    metrics.observe_leader(move || *leads.borrow() == Role::Leader);
    metrics.observe_heap();
    let readiness = Readiness {
        scopes: scope.namespaces.len().max(1) as u64,
        watch: watch_stats.clone(),
        export_in_flight,
        role: args.leader_elect.then(|| role.subscribe()),
    };
    let (_, admin_task) = admin::serve(args.admin_listen, telemetry.clone(), readiness, stop.clone()).await?;

    let kube_config = config::kube_config(&args).await?;
    let server = kube_config.cluster_url.to_string();
    let namespace = config::own_namespace(&args, &kube_config);
    let client = kube::Client::try_from(kube_config).context("cannot build the Kubernetes client")?;
    if args.no_cluster_uid {
        tracing::info!(
            "The cluster uid is off (--no-cluster-uid): records carry k8s.cluster.name only, no k8s.cluster.uid."
        );
    } else {
        exporter.set_cluster_uid(restart_watcher::cluster::cluster_uid(&client).await);
    }
    let election = config::election(&args, &client, &namespace);
    if let Some(e) = &election
        && let Err(e) = e.preflight().await
    {
        eprintln!("restart-watcher: {e}");
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    let store = config::checkpoint_store(&args, &client, namespace);
    let redactions =
        restart_watcher::rules::text::compile_redactions(&args.previous_logs_redact).map_err(ConfigError::from)?;
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
            restart_watcher::enrich::prevlogs::PreviousLogs::new(
                client.clone(),
                args.previous_logs_lines,
                args.previous_logs_max_bytes as usize,
                args.previous_logs_timeout,
                redactions,
            )
        }),
        election,
        role,
    };
    tokio::spawn(app::stop_on_signal(stop.clone()));
    let result = app::run(client, opts, exporter, store, stop.clone()).await;
    stop.cancel();
    let _ = admin_task.await;
    telemetry.shutdown();
    let report = result?;
    tracing::info!(
        detected = report.restarts_detected,
        exported = report.exported,
        failed = report.failed,
        coalesced = report.coalesced,
        handed_off = report.handed_off,
        undelivered = report.undelivered,
        episode_ends_unreported = episodes.shed.load(std::sync::atomic::Ordering::Relaxed),
        "Stopped."
    );
    if report.abnormal {
        tracing::error!("A task ended abnormally (see above); the counts are those it reached.");
        return Ok(ExitCode::FAILURE);
    }
    if report.undelivered > 0 || report.failed > 0 {
        tracing::error!(undelivered = report.undelivered, failed = report.failed, "Some records were not delivered.");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

async fn replay(args: ReplayArgs) -> Result<ExitCode> {
    if let Some(path) = &args.checkpoint_file
        && let Err(e) = config::check_checkpoint_file(path)
    {
        return Ok(invalid(&e));
    }
    let (input, source_name): (Box<dyn Read + Send>, String) = if args.input == "-" {
        (Box::new(std::io::stdin()), "stdin".to_owned())
    } else {
        let file = std::fs::File::open(&args.input)
            .with_context(|| format!("cannot open the replay input {:?}", args.input))?;
        (Box::new(file), args.input.clone())
    };
    let metrics = Arc::new(Metrics::noop());
    let exporter = match config::exporter(&args.output, metrics.clone()) {
        Ok(exporter) => exporter,
        Err(e) => return Ok(invalid(&e)),
    };
    let checkpoint = args.checkpoint_file.clone().map(CheckpointStore::File);
    let catch_up_since = match &checkpoint {
        Some(store) => store.load().await?.map(restart_watcher::checkpoint::catch_up_since),
        None => None,
    };
    let opts = ReplayOptions {
        detection: args.detection.detection(Vec::new()),
        batch: args.output.batch(),
        metrics,
        catch_up_since,
        max_value_bytes: usize::try_from(args.max_value_bytes).unwrap_or(usize::MAX),
        shutdown_grace: args.shutdown_grace,
        ..ReplayOptions::default()
    };

    let stop = CancellationToken::new();
    tokio::spawn(app::stop_on_signal(stop.clone()));
    let outcome = app::replay(input, source_name, exporter, opts, stop).await;
    let (s, r) = (outcome.stats, &outcome.report);
    tracing::info!(
        values = s.values,
        pod_observations = s.pod_observations,
        lists = s.lists,
        skipped_not_pod = s.skipped_not_pod,
        pods_without_uid = s.pods_without_uid,
        error_events = s.error_events,
        detected = r.restarts_detected,
        exported = r.exported,
        failed = r.failed,
        undelivered = r.undelivered,
        episode_ends_unreported = outcome.episode_ends_unreported,
        interrupted = outcome.interrupted,
        "Replay finished."
    );
    if let Some(e) = outcome.error {
        return Err(anyhow::Error::new(e));
    }
    if r.abnormal {
        anyhow::bail!("a task of the replay ended abnormally (see the log); counts above are those it reached");
    }
    if let Some(e) = outcome.first_export_error {
        anyhow::bail!("{} records could not be exported: {e}", r.failed);
    }
    if r.undelivered > 0 {
        anyhow::bail!(
            "{} records were still undelivered at the end of the shutdown grace ({:?}); raise --shutdown-grace or check the collector",
            r.undelivered,
            args.shutdown_grace
        );
    }
    if outcome.interrupted {
        // Stopped before the input ended: the checkpoint would claim what was never read.
        return Ok(ExitCode::from(130));
    }
    if let Some(store) = checkpoint {
        // Everything the stream showed has been handed over, up to the recording's own time (a
        // later recording of the same cluster then catches up from there).
        store.save(outcome.stats.clock.now().unwrap_or_else(jiff::Timestamp::now)).await?;
    }
    Ok(ExitCode::SUCCESS)
}
