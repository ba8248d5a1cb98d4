//! Wiring, for a live run: the settings in, the stages started in order, each by a function of its
//! own, and the run's counts out.
//!
//! [`run`]: the agent's own telemetry and the exporter ([`connect`]), the admin server, the
//! Kubernetes client, the election's preflight, then the pipeline ([`pipeline`]: preflight and
//! checkpoint, export task, side watches, enricher, pod watches, checkpointer) until `stop`, and
//! its ordered shutdown (`shutdown.rs`). Replay's wiring is `replay`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::accounting::{RunReport, WatchStats};
use crate::admin::Readiness;
use crate::config::Settings;
use crate::export::Exporter;
use crate::leader::Role;
use crate::metrics::SelfTelemetry;

pub mod connect;
mod pipeline;
mod shutdown;

pub use shutdown::stop_on_signal;

/// Why a live run could not start. Once running, errors are retried and logged.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A setting that only shows its fault when used (a kubeconfig that cannot be used): the
    /// process exits 2, as for any bad configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// `--leader-elect` without access to its Lease: exit 2, with what RBAC to grant.
    #[error(transparent)]
    Election(#[from] crate::leader::LeaderError),
    #[error("cannot set up the agent's own metrics: {0}")]
    Telemetry(#[from] connect::TelemetryError),
    #[error(transparent)]
    Export(#[from] crate::export::ExportError),
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[from] kube::Error),
    #[error(transparent)]
    Watch(#[from] crate::watch::WatchError),
}

/// Runs the agent until `stop` is cancelled; returns what it did (the counts add up).
pub async fn run(settings: Settings, stop: CancellationToken) -> Result<RunReport, AppError> {
    for warning in &settings.warnings {
        tracing::warn!(warning = warning.as_str(), "Setting.");
    }
    let telemetry = connect::telemetry(&settings)?;
    let exporter = connect::exporter(&settings.output, telemetry.metrics.clone())?;
    let initial_role = if settings.election.is_some() { Role::Standby } else { Role::Leader };
    let (role, _) = tokio::sync::watch::channel(initial_role);
    let watch_stats = Arc::new(WatchStats::default());
    let admin = start_admin(&settings, &telemetry, &exporter, &role, &watch_stats, &stop).await?;
    let episodes = settings.scope.detection.episodes.clone();
    let result = run_connected(settings, exporter, &telemetry, role, watch_stats, stop.clone()).await;
    stop.cancel();
    let _ = admin.await;
    telemetry.shutdown();
    let report = result?;
    tracing::info!(
        detected = report.restarts_detected,
        exported = report.exported,
        failed = report.failed,
        coalesced = report.coalesced,
        handed_off = report.handed_off,
        undelivered = report.undelivered,
        episode_ends_unreported = episodes.shed.load(Ordering::Relaxed),
        "Stopped."
    );
    Ok(report)
}

/// The admin server, with the readiness it reports and the metrics observed from outside the
/// pipeline (the role, the heap).
async fn start_admin(
    settings: &Settings,
    telemetry: &Arc<SelfTelemetry>,
    exporter: &Exporter,
    role: &tokio::sync::watch::Sender<Role>,
    watch_stats: &Arc<WatchStats>,
    stop: &CancellationToken,
) -> Result<JoinHandle<()>, AppError> {
    let leads = role.subscribe();
    telemetry.metrics.observe_leader(move || *leads.borrow() == Role::Leader);
    telemetry.metrics.observe_heap();
    let readiness = Readiness {
        scopes: settings.scope.namespaces.len().max(1) as u64,
        watch: watch_stats.clone(),
        export_in_flight: match exporter {
            Exporter::Otlp(otlp) => Some(otlp.in_flight()),
            _ => None,
        },
        role: settings.election.is_some().then(|| role.subscribe()),
    };
    let (_, task) = crate::admin::serve(settings.admin_listen, telemetry.clone(), readiness, stop.clone()).await?;
    Ok(task)
}

/// The client, the cluster's uid, the election's preflight, then the pipeline until `stop`.
async fn run_connected(
    settings: Settings,
    mut exporter: Exporter,
    telemetry: &SelfTelemetry,
    role: tokio::sync::watch::Sender<Role>,
    watch_stats: Arc<WatchStats>,
    stop: CancellationToken,
) -> Result<RunReport, AppError> {
    let kube_config = connect::kube_config(&settings.kube).await?;
    let server = kube_config.cluster_url.to_string();
    let namespace = connect::own_namespace(&settings.checkpoint, &kube_config);
    let client = kube::Client::try_from(kube_config)?;
    if settings.cluster_uid {
        exporter.set_cluster_uid(crate::cluster::cluster_uid(&client).await);
    } else {
        tracing::info!(
            "The cluster uid is off (--no-cluster-uid): records carry k8s.cluster.name only, no k8s.cluster.uid."
        );
    }
    let election = settings.election.as_ref().map(|e| connect::election(e, &client, &namespace));
    if let Some(e) = &election {
        e.preflight().await?;
    }
    let store = connect::checkpoint_store(&settings.checkpoint, &client, namespace);
    let opts = pipeline::RunOptions {
        channel_capacity_events: settings.queue_capacity_records,
        batch: settings.output.batch,
        shutdown_grace: settings.shutdown_grace,
        server,
        metrics: telemetry.metrics.clone(),
        watch_stats,
        use_events: settings.kube_events,
        use_owner_watch: settings.owner_watch,
        lookup_rate: settings.lookup_rate,
        use_node_watch: settings.node_watch,
        storm_window: settings.storm_window,
        previous_logs: settings.previous_logs.map(|p| {
            crate::enrich::prevlogs::PreviousLogs::new(
                client.clone(),
                p.lines,
                p.max_bytes,
                p.timeout,
                settings.scope.detection.redactions.clone(),
            )
        }),
        oom_kills: settings.oom_kills,
        scope: settings.scope,
        election,
        role,
    };
    Ok(run_pipeline(client, opts, exporter, store, stop).await?)
}

/// Watches until `stop` is cancelled, then shuts down in order. Fails only at startup (the first
/// list cannot be done); once running, errors are retried and logged. The stages, in order:
/// `load` (preflight, checkpoint), `spawn` (watches, enrichment, export), the checkpointer,
/// and `shutdown`.
async fn run_pipeline(
    client: kube::Client,
    opts: pipeline::RunOptions,
    exporter: Exporter,
    store: crate::checkpoint::CheckpointStore,
    stop: CancellationToken,
) -> Result<RunReport, crate::watch::WatchError> {
    let Some(loaded) = pipeline::load(&client, &opts, store, &stop).await? else {
        return Ok(RunReport::default());
    };
    let store = Arc::new(loaded.store);
    // The election outlives the shutdown: a leader releases the Lease only once it has exported
    // what it holds and written its last checkpoint.
    let election_stop = CancellationToken::new();
    let election =
        opts.election.clone().map(|e| tokio::spawn(crate::leader::run(e, opts.role.clone(), election_stop.clone())));
    let mut pipeline = pipeline::spawn(&client, &opts, exporter, loaded.catch_up, store.clone(), &stop).await;
    let checkpointer = tokio::spawn(shutdown::checkpointer(
        store.clone(),
        pipeline.delivery.clone(),
        opts.role.subscribe(),
        pipeline.watches.stop.clone(),
    ));

    let trim_stop = CancellationToken::new();
    let trimmer = tokio::spawn(crate::memory::trim_heap_every(crate::memory::HEAP_TRIM_INTERVAL, trim_stop.clone()));

    // Run until asked to stop (or every watch ended, which only happens if the exporter died).
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = pipeline.watches.ended() => {}
    }
    let report = shutdown::shutdown(pipeline, checkpointer, &store, &opts).await;
    trim_stop.cancel();
    let _ = trimmer.await;
    election_stop.cancel();
    if let Some(task) = election {
        let _ = task.await;
    }
    Ok(report)
}
