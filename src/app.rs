//! Wiring: the producer (replay or the live watch), the bounded channel and the export task.
//!
//! A live run is a sequence of named stages: [`load`] (preflight, checkpoint), [`spawn`] (watches,
//! enrichment, export), the [`checkpointer`], and [`shutdown`], which owns the shutdown order in
//! one place: stop the watches, which drops their senders; the enricher and the export task drain
//! what is queued and export it within the shutdown grace; the last checkpoint is written if
//! everything was handed over; then what could not be delivered is reported. [`Delivery`] owns the
//! counts that decide when the checkpoint may advance.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{CheckpointError, CheckpointStore, catch_up_since};
use crate::detector::{Detector, KindFilter};
use crate::export::Exporter;
use crate::export::task::{self, BatchConfig, ExportReport};
use crate::replay::{self, ReplayError, ReplayStats};

/// Settings of a replay run.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    pub kinds: KindFilter,
    pub channel_capacity_events: usize,
    pub batch: BatchConfig,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Catch-up for first sightings (from a checkpoint), if any.
    pub catch_up_since: Option<Timestamp>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            kinds: KindFilter::default(),
            channel_capacity_events: task::DEFAULT_CHANNEL_CAPACITY_EVENTS,
            batch: BatchConfig::default(),
            metrics: std::sync::Arc::new(crate::metrics::Metrics::noop()),
            catch_up_since: None,
        }
    }
}

/// The outcome of a replay: what was read, what was exported, and the error that stopped it, if any.
#[derive(Debug)]
pub struct ReplayOutcome {
    pub stats: ReplayStats,
    pub export: ExportReport,
    pub error: Option<ReplayError>,
}

/// Replays `input` through the detector and exports every restart. Reading runs on a blocking
/// thread and hands events to the bounded channel (waiting when it is full); the export task
/// drains the channel. A malformed value stops the reading; what was detected before it is still
/// exported before this returns.
pub async fn replay(
    input: Box<dyn Read + Send>,
    source_name: String,
    exporter: Exporter,
    opts: ReplayOptions,
) -> ReplayOutcome {
    let (tx, rx) = mpsc::channel(opts.channel_capacity_events.max(1));
    let exporter_task = tokio::spawn(task::run(rx, exporter, opts.batch, Default::default(), opts.metrics.clone()));
    let kinds = opts.kinds;
    let metrics = opts.metrics.clone();
    let catch_up = opts.catch_up_since;
    let reader = tokio::task::spawn_blocking(move || {
        let mut detector = Detector::new(kinds);
        detector.set_catch_up(catch_up);
        let mut stats = ReplayStats::default();
        let emit = |ev: crate::event::RestartEvent| {
            metrics.restart_detected(&ev);
            metrics.queue_in(1);
            tx.blocking_send(ev).is_ok()
        };
        let result = replay::replay(input, &source_name, &mut detector, Timestamp::now, emit, &mut stats);
        (result, stats)
        // `tx` is dropped here: the export task drains what is queued and ends.
    });
    let (result, stats) = match reader.await {
        Ok(r) => r,
        Err(join) => {
            let source = std::io::Error::other(join.to_string());
            (Err(ReplayError::Read { source_name: "replay".into(), source }), ReplayStats::default())
        }
    };
    let export = match exporter_task.await {
        Ok(report) => report,
        Err(join) => {
            tracing::error!(error = %join, "The export task ended abnormally.");
            ExportReport::default()
        }
    };
    ReplayOutcome { stats, export, error: result.err() }
}

/// How long the first pod list may take before the agent gives up at startup.
pub const STARTUP_LIST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Settings of a live run.
pub struct RunOptions {
    pub scope: crate::watch::WatchScope,
    pub channel_capacity_events: usize,
    pub batch: BatchConfig,
    /// How long the export task may take to drain and flush at shutdown.
    pub shutdown_grace: std::time::Duration,
    /// The API server's URL, for messages.
    pub server: String,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Shared with the admin server's readiness.
    pub watch_stats: std::sync::Arc<crate::watch::WatchStats>,
    /// Watch the kubelet's Events to classify causes (when RBAC allows).
    pub use_events: bool,
    /// Watch ReplicaSet and Job metadata to name Deployments and CronJobs (when RBAC allows).
    pub use_owner_watch: bool,
    /// Storm control: coalesce repeated restarts per (workload, container, cause) over this window.
    pub storm_window: Option<std::time::Duration>,
    /// Opt-in: fetch the previous instance's last log lines.
    pub previous_logs: Option<crate::enrich::prevlogs::PreviousLogs>,
}

/// What a live run did. `restarts_detected = exported + failed + undelivered`, counted in records
/// handed to the pipeline.
#[derive(Debug, Default)]
pub struct RunReport {
    pub restarts_detected: u64,
    pub exported: u64,
    pub failed: u64,
    /// Detected but neither exported nor counted as failed when the grace period ended.
    pub undelivered: u64,
}

/// The delivery accounting of a live run, in one place: how many records the watches handed to
/// the pipeline (`sent`), how many of them are settled (exported, failed and counted, or
/// represented by another record), and whether every scope's watch is live. The checkpoint may
/// advance only while [`Delivery::all_settled`] holds.
#[derive(Clone, Debug, Default)]
pub struct Delivery {
    pub sent: Arc<AtomicU64>,
    pub settled: Arc<AtomicU64>,
    scopes: Vec<Arc<crate::watch::ScopeHealth>>,
}

impl Delivery {
    /// A new scope to account for; its watch reports its health there.
    fn add_scope(&mut self) -> Arc<crate::watch::ScopeHealth> {
        let health = Arc::new(crate::watch::ScopeHealth::default());
        self.scopes.push(health.clone());
        health
    }

    /// Every watch is live and every record handed over is settled.
    pub fn all_settled(&self) -> bool {
        self.scopes.iter().all(|h| h.live.load(Ordering::Relaxed))
            && self.sent.load(Ordering::Relaxed) == self.settled.load(Ordering::Relaxed)
    }
}

/// Tasks started and stopped together: one cancellation token, one `JoinSet`.
struct Stage {
    name: &'static str,
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Stage {
    fn new(name: &'static str, parent: &CancellationToken) -> Self {
        Stage { name, stop: parent.child_token(), tasks: JoinSet::new() }
    }

    fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Resolves when every task of the stage has ended.
    async fn ended(&mut self) {
        while self.tasks.join_next().await.is_some() {}
    }

    /// Cancels the stage and waits for its tasks until `deadline`; what is still running then is
    /// aborted.
    async fn stop_by(mut self, deadline: tokio::time::Instant) {
        self.stop.cancel();
        if tokio::time::timeout_at(deadline, self.ended()).await.is_err() {
            tracing::warn!(stage = self.name, "Tasks still running at the end of the shutdown grace; aborting them.");
            self.tasks.abort_all();
        }
    }
}

/// What the load stage found: where to catch up from, and the checkpoint store to write to.
struct Loaded {
    catch_up: Option<Timestamp>,
    store: CheckpointStore,
}

/// The running pipeline: pod watches -> detected -> enricher -> export queue -> export task, with
/// the Events and owner watches beside them.
struct Pipeline {
    /// The pod watches (one per scope); stopping them closes the detected channel.
    watches: Stage,
    /// The Events and ReplicaSet/Job metadata watches that feed the enricher.
    side_watches: Stage,
    enricher: JoinHandle<()>,
    exporter: JoinHandle<ExportReport>,
    delivery: Delivery,
}

/// Watches until `stop` is cancelled, then shuts down in order. Fails only at startup (the first
/// list cannot be done); once running, errors are retried and logged. The stages, in order:
/// [`load`] (preflight, checkpoint), [`spawn`] (watches, enrichment, export), the checkpointer,
/// and [`shutdown`].
pub async fn run(
    client: kube::Client,
    opts: RunOptions,
    exporter: Exporter,
    store: CheckpointStore,
    stop: CancellationToken,
) -> Result<RunReport, crate::watch::WatchError> {
    let Some(loaded) = load(&client, &opts, store, &stop).await? else {
        return Ok(RunReport::default());
    };
    let mut pipeline = spawn(&client, &opts, exporter, loaded.catch_up, &stop).await;
    let store = Arc::new(loaded.store);
    let checkpointer =
        tokio::spawn(checkpointer(store.clone(), pipeline.delivery.clone(), pipeline.watches.stop.clone()));

    // Run until asked to stop (or every watch ended, which only happens if the exporter died).
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = pipeline.watches.ended() => {}
    }
    Ok(shutdown(pipeline, checkpointer, &store, opts.shutdown_grace, &opts.watch_stats).await)
}

/// Load: checks that every scope can be listed (bounded by [`STARTUP_LIST_TIMEOUT`]), then reads
/// the checkpoint. `None` when asked to stop meanwhile.
async fn load(
    client: &kube::Client,
    opts: &RunOptions,
    mut store: CheckpointStore,
    stop: &CancellationToken,
) -> Result<Option<Loaded>, crate::watch::WatchError> {
    tokio::select! {
        r = tokio::time::timeout(STARTUP_LIST_TIMEOUT, crate::watch::preflight(client, &opts.scope, &opts.server)) => match r {
            Ok(r) => r?,
            Err(_) => return Err(crate::watch::WatchError::StartupTimeout { server: opts.server.clone(), secs: STARTUP_LIST_TIMEOUT.as_secs() }),
        },
        _ = stop.cancelled() => return Ok(None),
    }
    let catch_up = match store.load().await {
        Ok(Some(t)) => {
            tracing::info!(checkpoint = %t, store = store.describe(), "Catching up on restarts since the checkpoint.");
            Some(catch_up_since(t))
        }
        Ok(None) => {
            tracing::info!(store = store.describe(), "No checkpoint yet: restarts before this start are not reported.");
            None
        }
        Err(e @ CheckpointError::Forbidden { .. }) => {
            tracing::warn!(error = %e, "Catch-up is off.");
            store = CheckpointStore::Disabled;
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "Cannot read the checkpoint; starting without catch-up.");
            None
        }
    };
    Ok(Some(Loaded { catch_up, store }))
}

/// Spawn: the export task, the Events and owner watches the RBAC allows, the enricher, and one
/// pod watch per scope.
async fn spawn(
    client: &kube::Client,
    opts: &RunOptions,
    exporter: Exporter,
    catch_up: Option<Timestamp>,
    stop: &CancellationToken,
) -> Pipeline {
    let (export_tx, export_rx) = mpsc::channel(opts.channel_capacity_events.max(1));
    let (detected_tx, detected_rx) = mpsc::channel(opts.channel_capacity_events.max(1));
    let mut delivery = Delivery::default();
    let exporter =
        tokio::spawn(task::run(export_rx, exporter, opts.batch, delivery.settled.clone(), opts.metrics.clone()));

    let mut side_watches = Stage::new("side watches", stop);
    let event_apis = crate::watch::scoped_apis(client, &opts.scope.namespaces);
    let event_store = if opts.use_events && crate::enrich::events::events_allowed(&event_apis).await {
        let store = Arc::new(crate::enrich::EventStore::default());
        for (api, _) in event_apis {
            let node = opts.scope.node_name.clone();
            side_watches.spawn(crate::enrich::events::watch_events(
                api,
                node,
                store.clone(),
                side_watches.stop.clone(),
            ));
        }
        Some(store)
    } else {
        None
    };
    let owner_index = if opts.use_owner_watch && crate::enrich::owners::allowed(client).await {
        let index = Arc::new(crate::enrich::owners::OwnerIndex::default());
        side_watches.spawn(crate::enrich::owners::watch(client.clone(), index.clone(), side_watches.stop.clone()));
        Some(index)
    } else {
        None
    };
    let enrichment = crate::enrich::Enrichment {
        events: event_store,
        owners: owner_index,
        storm: opts.storm_window.map(crate::enrich::storm::StormControl::new),
        previous_logs: opts.previous_logs.clone(),
        settled: delivery.settled.clone(),
        metrics: Some(opts.metrics.clone()),
    };
    let enricher = tokio::spawn(crate::enrich::run(detected_rx, export_tx, enrichment));

    let mut watches = Stage::new("pod watches", stop);
    for (api, description) in opts.scope.apis(client) {
        let task = crate::watch::WatchTask {
            api,
            description,
            scope: opts.scope.clone(),
            server: opts.server.clone(),
            catch_up_since: catch_up,
            tx: detected_tx.clone(),
            sent: delivery.sent.clone(),
            stats: opts.watch_stats.clone(),
            health: delivery.add_scope(),
            metrics: opts.metrics.clone(),
        };
        watches.spawn(crate::watch::run(task, watches.stop.clone()));
    }
    Pipeline { watches, side_watches, enricher, exporter, delivery }
}

/// The checkpointer: every [`crate::checkpoint::CHECKPOINT_INTERVAL`], while every record handed
/// over is settled and every watch is live, writes the time up to which nothing is in flight.
async fn checkpointer(store: Arc<CheckpointStore>, delivery: Delivery, stop: CancellationToken) {
    if matches!(*store, CheckpointStore::Disabled) {
        return;
    }
    let mut tick = tokio::time::interval(crate::checkpoint::CHECKPOINT_INTERVAL);
    let mut warned = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = Timestamp::now();
        if !delivery.all_settled() {
            continue;
        }
        match store.save(now).await {
            Ok(()) => warned = false,
            Err(e @ CheckpointError::Forbidden { .. }) => {
                tracing::warn!(error = %e, "Catch-up is off.");
                break;
            }
            Err(e) if !warned => {
                warned = true;
                tracing::warn!(error = %e, "Cannot write the checkpoint; will retry.");
            }
            Err(e) => tracing::debug!(error = %e, "Cannot write the checkpoint."),
        }
    }
}

/// Shutdown, in order, within `grace`: stop the watches (closing the detected channel), let the
/// enricher forward what waits, let the export task drain and flush, write the last checkpoint if
/// everything was settled, and report what was undelivered.
async fn shutdown(
    pipeline: Pipeline,
    checkpointer: JoinHandle<()>,
    store: &CheckpointStore,
    grace: std::time::Duration,
    stats: &crate::watch::WatchStats,
) -> RunReport {
    tracing::info!(grace_secs = grace.as_secs_f64(), "Shutting down: stopping the watch, draining the queue.");
    let Pipeline { watches, side_watches, enricher, exporter, delivery } = pipeline;
    let deadline = tokio::time::Instant::now() + grace;
    side_watches.stop.cancel();
    watches.stop_by(deadline).await;
    let _ = tokio::time::timeout_at(deadline, enricher).await;
    side_watches.stop_by(deadline).await;
    let _ = checkpointer.await;
    let mut exporter = exporter;
    let export = match tokio::time::timeout_at(deadline, &mut exporter).await {
        Ok(Ok(report)) => report,
        Ok(Err(join)) => {
            tracing::error!(error = %join, "The export task ended abnormally.");
            ExportReport::default()
        }
        Err(_) => {
            exporter.abort();
            ExportReport::default()
        }
    };
    if delivery.all_settled()
        && let Err(e) = store.save(Timestamp::now()).await
    {
        tracing::warn!(error = %e, "Cannot write the final checkpoint.");
    }
    let detected = stats.restarts.load(Ordering::Relaxed);
    RunReport {
        restarts_detected: detected,
        exported: export.exported,
        failed: export.failed,
        undelivered: detected.saturating_sub(delivery.settled.load(Ordering::Relaxed)),
    }
}

/// Cancels `stop` on SIGTERM or SIGINT.
pub async fn stop_on_signal(stop: CancellationToken) {
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
