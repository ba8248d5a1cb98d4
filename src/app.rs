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

use crate::accounting::{Delivery, ExportProgress, RunReport};
use crate::checkpoint::{CheckpointError, CheckpointStore, catch_up_since};
use crate::detector::{Detection, Detector};
use crate::export::Exporter;
use crate::export::task::{self, BatchConfig, ExportReport};
use crate::replay::{self, ReplayError, ReplayStats};

/// Settings of a replay run.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    pub detection: Detection,
    pub channel_capacity_events: usize,
    pub batch: BatchConfig,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Catch-up for first sightings (from a checkpoint), if any.
    pub catch_up_since: Option<Timestamp>,
    /// Largest single JSON value of the input.
    pub max_value_bytes: usize,
    /// Time allowed to export what was detected once the input ends or `stop` is cancelled.
    pub shutdown_grace: std::time::Duration,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            detection: Detection::default(),
            channel_capacity_events: task::DEFAULT_CHANNEL_CAPACITY_EVENTS,
            batch: BatchConfig::default(),
            metrics: std::sync::Arc::new(crate::metrics::Metrics::noop()),
            catch_up_since: None,
            max_value_bytes: replay::DEFAULT_MAX_VALUE_BYTES,
            shutdown_grace: std::time::Duration::from_secs(10),
        }
    }
}

/// The outcome of a replay: what was read, the delivery counts (which add up:
/// `detected = exported + failed + undelivered`), the first export error, and the error that
/// stopped the reading, if any.
#[derive(Debug)]
pub struct ReplayOutcome {
    /// What the reader saw (up to its last read when it was still blocked reading at a signal).
    pub stats: ReplayStats,
    /// Start-failure episodes opened past their budget: their ends were not reported.
    pub episode_ends_unreported: u64,
    pub report: RunReport,
    pub first_export_error: Option<crate::export::ExportError>,
    pub error: Option<ReplayError>,
    /// A signal stopped the replay before the input ended.
    pub interrupted: bool,
}

/// Replays `input` through the detector and exports every restart. Reading runs on a blocking
/// thread and hands events to the bounded channel (waiting when it is full); the export task
/// drains the channel. When the input ends (or is malformed), or `stop` is cancelled (SIGTERM,
/// SIGINT), what was detected gets `shutdown_grace` to be exported; what is not is reported as
/// undelivered. A reader blocked on a pipe is left behind at a signal (the process exits).
pub async fn replay(
    input: Box<dyn Read + Send>,
    source_name: String,
    exporter: Exporter,
    opts: ReplayOptions,
    stop: CancellationToken,
) -> ReplayOutcome {
    let (tx, rx) = mpsc::channel(opts.channel_capacity_events.max(1));
    let progress = Arc::new(ExportProgress::default());
    let close = CancellationToken::new();
    let exporter_task =
        tokio::spawn(task::run_until(rx, exporter, opts.batch, progress.clone(), opts.metrics.clone(), close.clone()));
    let detected = Arc::new(AtomicU64::new(0));
    // What the reader has read so far, before each read of the input: a reader blocked on a pipe
    // at a signal still has its counts reported. `stopping` ends it at its next read.
    let read_so_far = Arc::new(std::sync::Mutex::new(ReplayStats::default()));
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut reader = {
        let (metrics, detected, opts) = (opts.metrics.clone(), detected.clone(), opts.clone());
        let (read_so_far, stopping) = (read_so_far.clone(), stopping.clone());
        tokio::task::spawn_blocking(move || {
            let mut detector = Detector::with(&opts.detection);
            detector.set_catch_up(opts.catch_up_since);
            let mut stats = ReplayStats::default();
            let emit = |ev: crate::record::Record| {
                metrics.restart_detected(&ev);
                metrics.queue_in(1);
                let sent = tx.blocking_send(ev).is_ok();
                detected.fetch_add(u64::from(sent), Ordering::Relaxed);
                sent
            };
            let before_read = |s: &ReplayStats| {
                *read_so_far.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = *s;
                !stopping.load(Ordering::Relaxed)
            };
            let result = replay::replay_with(
                input,
                &source_name,
                opts.max_value_bytes,
                &mut detector,
                Timestamp::now,
                emit,
                &mut stats,
                before_read,
            );
            (result, stats)
            // `tx` is dropped here: the export task drains what is queued and ends.
        })
    };
    let (read, interrupted) = tokio::select! {
        read = &mut reader => (Some(read), false),
        _ = stop.cancelled() => {
            tracing::info!("Stopping the replay: exporting what was detected.");
            stopping.store(true, Ordering::Relaxed);
            close.cancel();
            (None, true)
        }
    };
    let deadline = tokio::time::Instant::now() + opts.shutdown_grace;
    let (export, abnormal) = finish_export(exporter_task, deadline).await;
    // Interrupted: the reader stops at its next read, or at its next record once the export task
    // has let go of the channel; its counts are those it reached (from its last read, if it stays
    // blocked on a pipe).
    let read = match read {
        Some(read) => Some(read),
        None => tokio::time::timeout(READER_STOP_WAIT, &mut reader).await.ok(),
    };
    let (result, stats, reader_panicked) = match read {
        Some(Ok((result, stats))) => (result, stats, false),
        Some(Err(join)) => {
            tracing::error!(error = %join, "The replay reader ended abnormally.");
            (Ok(()), ReplayStats::default(), join.is_panic())
        }
        None => (Ok(()), *read_so_far.lock().unwrap_or_else(std::sync::PoisonError::into_inner), false),
    };
    // Records sent after the channel closed were refused and are not counted as detected.
    let error = result.err().filter(|e| !(interrupted && matches!(e, ReplayError::SinkClosed)));
    ReplayOutcome {
        stats,
        episode_ends_unreported: opts.detection.episodes.shed.load(Ordering::Relaxed),
        report: RunReport::from_progress(detected.load(Ordering::Relaxed), &progress, abnormal || reader_panicked),
        first_export_error: export.and_then(|r| r.first_error),
        error,
        interrupted,
    }
}

/// How long an interrupted replay waits, once the export has ended, for its reader to stop (a
/// reader blocked reading a pipe is left behind: the process exits).
pub const READER_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

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
    pub watch_stats: std::sync::Arc<crate::accounting::WatchStats>,
    /// Watch the kubelet's Events to classify causes (when RBAC allows).
    pub use_events: bool,
    /// Watch ReplicaSet and Job metadata to name Deployments and CronJobs (when RBAC allows).
    pub use_owner_watch: bool,
    /// Storm control: coalesce repeated restarts per (workload, container, cause) over this window.
    pub storm_window: Option<std::time::Duration>,
    /// Opt-in: fetch the previous instance's last log lines.
    pub previous_logs: Option<crate::enrich::prevlogs::PreviousLogs>,
    /// `--leader-elect`: the election Lease. Without it, this replica always leads.
    pub election: Option<crate::leader::Election>,
    /// This replica's role, published for readiness and metrics (set by the election).
    pub role: tokio::sync::watch::Sender<crate::leader::Role>,
}

/// Waits for the export task until `deadline`, then aborts it. Returns its report, if it ended
/// normally, and whether it ended abnormally (panicked or was aborted). The counts live in
/// [`ExportProgress`], so nothing exported before an abort or a panic is forgotten.
pub async fn finish_export(
    mut exporter: JoinHandle<ExportReport>,
    deadline: tokio::time::Instant,
) -> (Option<ExportReport>, bool) {
    match tokio::time::timeout_at(deadline, &mut exporter).await {
        Ok(Ok(report)) => (Some(report), false),
        Ok(Err(join)) => {
            tracing::error!(error = %join, "The export task ended abnormally; the counts are those it reached.");
            (None, true)
        }
        Err(_) => {
            tracing::warn!("The export task did not finish within the shutdown grace; aborting it.");
            exporter.abort();
            (None, false)
        }
    }
}

/// Tasks started and stopped together: one cancellation token, one `JoinSet`.
struct Stage {
    name: &'static str,
    stop: CancellationToken,
    tasks: JoinSet<()>,
    /// A task of the stage panicked.
    panicked: bool,
}

impl Stage {
    fn new(name: &'static str, parent: &CancellationToken) -> Self {
        Stage { name, stop: parent.child_token(), tasks: JoinSet::new(), panicked: false }
    }

    fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Resolves when every task of the stage has ended.
    async fn ended(&mut self) {
        while let Some(result) = self.tasks.join_next().await {
            if let Err(e) = result
                && e.is_panic()
            {
                self.panicked = true;
                tracing::error!(stage = self.name, error = %e, "A task panicked.");
            }
        }
    }

    /// Cancels the stage and waits for its tasks until `deadline`; what is still running then is
    /// aborted. Returns whether a task of the stage panicked.
    async fn stop_by(mut self, deadline: tokio::time::Instant) -> bool {
        self.stop.cancel();
        if tokio::time::timeout_at(deadline, self.ended()).await.is_err() {
            tracing::warn!(stage = self.name, "Tasks still running at the end of the shutdown grace; aborting them.");
            self.tasks.abort_all();
        }
        self.panicked
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
    let store = Arc::new(loaded.store);
    // The election outlives the shutdown: a leader releases the Lease only once it has exported
    // what it holds and written its last checkpoint.
    let election_stop = CancellationToken::new();
    let election =
        opts.election.clone().map(|e| tokio::spawn(crate::leader::run(e, opts.role.clone(), election_stop.clone())));
    let mut pipeline = spawn(&client, &opts, exporter, loaded.catch_up, store.clone(), &stop).await;
    let checkpointer = tokio::spawn(checkpointer(
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
    let report = shutdown(pipeline, checkpointer, &store, &opts).await;
    trim_stop.cancel();
    let _ = trimmer.await;
    election_stop.cancel();
    if let Some(task) = election {
        let _ = task.await;
    }
    Ok(report)
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
    if matches!(store, CheckpointStore::Disabled) {
        tracing::info!("Catch-up is off (--no-checkpoint): restarts during the agent's own downtime are not reported.");
        return Ok(Some(Loaded { catch_up: None, store }));
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
    checkpoint: Arc<CheckpointStore>,
    stop: &CancellationToken,
) -> Pipeline {
    let (export_tx, export_rx) = mpsc::channel(opts.channel_capacity_events.max(1));
    let (detected_tx, detected_rx) = mpsc::channel(opts.channel_capacity_events.max(1));
    let mut delivery = Delivery::default();
    opts.metrics.observe_export_queue(delivery.progress.queue.usage());
    let exporter =
        tokio::spawn(task::run(export_rx, exporter, opts.batch, delivery.progress.clone(), opts.metrics.clone()));

    let mut side_watches = Stage::new("side watches", stop);
    if !opts.use_events {
        tracing::info!(
            "Events are off (--no-events): causes come from the container status alone (no liveness_probe, startup_probe, or Event-based evicted and preempted)."
        );
    }
    if !opts.use_owner_watch {
        tracing::info!(
            "The owner watch is off (--no-owner-watch): Deployments are named by the ReplicaSet naming rule, without uid, and CronJobs are not named."
        );
    }
    let event_apis = crate::watch::scoped_apis(client, &opts.scope.namespaces);
    let event_store = if opts.use_events && crate::enrich::kube_events::events_allowed(&event_apis).await {
        let store = Arc::new(crate::enrich::KubeEventStore::default());
        opts.metrics.observe_event_store(store.usage());
        for (api, _) in event_apis {
            let node = opts.scope.node_name.clone();
            side_watches.spawn(crate::enrich::kube_events::watch_events(
                api,
                node,
                store.clone(),
                opts.scope.tuning,
                side_watches.stop.clone(),
            ));
        }
        let node_events = kube::Api::namespaced(client.clone(), crate::enrich::kube_events::NODE_EVENTS_NAMESPACE);
        if crate::enrich::kube_events::node_events_allowed(&node_events).await {
            side_watches.spawn(crate::enrich::kube_events::watch_node_events(
                node_events,
                opts.scope.node_name.clone(),
                store.clone(),
                opts.scope.tuning,
                side_watches.stop.clone(),
            ));
        }
        Some(store)
    } else {
        None
    };
    let episodes = &opts.scope.detection.episodes;
    if episodes.budget_bytes.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        episodes.budget_bytes.store(crate::detector::EPISODE_BUDGET_BYTES as u64, std::sync::atomic::Ordering::Relaxed);
    }
    opts.metrics.observe_episodes(episodes.clone());
    let owner_index = if opts.use_owner_watch && crate::enrich::owners::allowed(client).await {
        let index = Arc::new(crate::enrich::owners::OwnerIndex::default());
        opts.metrics.observe_owner_index(index.usage());
        side_watches.spawn(crate::enrich::owners::watch(
            client.clone(),
            index.clone(),
            opts.scope.tuning,
            side_watches.stop.clone(),
        ));
        Some(index)
    } else {
        None
    };
    let enrichment = crate::enrich::Enrichment {
        kube_events: event_store,
        owners: owner_index,
        storm: opts.storm_window.map(|window| {
            let storm = crate::enrich::storm::StormControl::new(window);
            opts.metrics.observe_storm(storm.usage());
            storm
        }),
        previous_logs: opts.previous_logs.clone(),
        progress: delivery.progress.clone(),
        metrics: Some(opts.metrics.clone()),
        pending_budget_bytes: crate::enrich::PENDING_BUDGET_BYTES,
        pending_usage: {
            let usage = Arc::new(crate::accounting::BudgetUsage::default());
            opts.metrics.observe_pending(usage.clone());
            usage
        },
    };
    // With leader election, the gate between enrichment and export lets only the leader export.
    let enricher = match opts.election {
        None => tokio::spawn(crate::enrich::run(detected_rx, export_tx, enrichment)),
        Some(_) => {
            let (gate_tx, gate_rx) = mpsc::channel(GATE_CAPACITY_EVENTS);
            let usage = Arc::new(crate::accounting::BudgetUsage::default());
            opts.metrics.observe_standby_buffer(usage.clone());
            let gate = crate::leader::Gate {
                role: opts.role.subscribe(),
                checkpoint,
                progress: delivery.progress.clone(),
                usage,
                budget_bytes: crate::leader::STANDBY_BUFFER_BUDGET_BYTES,
            };
            tokio::spawn(async move {
                let gate = tokio::spawn(crate::leader::gate(gate_rx, export_tx, gate));
                crate::enrich::run(detected_rx, gate_tx, enrichment).await;
                if let Err(e) = gate.await
                    && e.is_panic()
                {
                    std::panic::resume_unwind(e.into_panic());
                }
            })
        }
    };

    let mut watches = Stage::new("pod watches", stop);
    for (api, description) in opts.scope.apis(client) {
        let task = crate::watch::WatchTask {
            api,
            description,
            scope: opts.scope.clone(),
            server: opts.server.clone(),
            catch_up_since: catch_up,
            tx: detected_tx.clone(),
            progress: delivery.progress.clone(),
            stats: opts.watch_stats.clone(),
            health: delivery.add_scope(),
            metrics: opts.metrics.clone(),
        };
        watches.spawn(crate::watch::run(task, watches.stop.clone()));
    }
    Pipeline { watches, side_watches, enricher, exporter, delivery }
}

/// Capacity of the channel between enrichment and the leader gate, in records (the export queue
/// behind it holds the rest).
const GATE_CAPACITY_EVENTS: usize = 64;

/// The checkpointer: every [`crate::checkpoint::CHECKPOINT_INTERVAL`], while this replica leads
/// and every watch is live, writes the time before which every record handed over is settled
/// ([`Delivery::watermark`]) when it has moved on. A sustained crash loop keeps records in flight
/// at every instant; the watermark still advances behind them.
async fn checkpointer(
    store: Arc<CheckpointStore>,
    delivery: Delivery,
    role: tokio::sync::watch::Receiver<crate::leader::Role>,
    stop: CancellationToken,
) {
    if matches!(*store, CheckpointStore::Disabled) {
        return;
    }
    let mut tick = tokio::time::interval(crate::checkpoint::CHECKPOINT_INTERVAL);
    let mut warned = false;
    let mut written: Option<Timestamp> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        if *role.borrow() != crate::leader::Role::Leader {
            continue;
        }
        let Some(mark) = delivery.watermark(Timestamp::now()).filter(|m| written.is_none_or(|w| *m > w)) else {
            continue;
        };
        match store.save(mark).await {
            Ok(()) => {
                warned = false;
                written = Some(mark);
            }
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
    opts: &RunOptions,
) -> RunReport {
    let (grace, stats) = (opts.shutdown_grace, &opts.watch_stats);
    tracing::info!(grace_secs = grace.as_secs_f64(), "Shutting down: stopping the watch, draining the queue.");
    let Pipeline { watches, side_watches, enricher, exporter, delivery } = pipeline;
    let deadline = tokio::time::Instant::now() + grace;
    side_watches.stop.cancel();
    let mut panicked = watches.stop_by(deadline).await;
    if let Ok(Err(e)) = tokio::time::timeout_at(deadline, enricher).await {
        tracing::error!(error = %e, "The enrichment task ended abnormally.");
        panicked |= e.is_panic();
    }
    panicked |= side_watches.stop_by(deadline).await;
    let _ = checkpointer.await;
    let (_, export_panicked) = finish_export(exporter, deadline).await;
    let abnormal = panicked || export_panicked;
    if *opts.role.borrow() == crate::leader::Role::Leader
        && let Some(mark) = delivery.watermark(Timestamp::now())
        && let Err(e) = store.save(mark).await
    {
        tracing::warn!(error = %e, "Cannot write the final checkpoint.");
    }
    RunReport::from_progress(stats.restarts.load(Ordering::Relaxed), &delivery.progress, abnormal)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_in_the_export_task_keeps_its_counts_and_is_reported_as_abnormal() {
        let progress = Arc::new(ExportProgress::default());
        let task = {
            let progress = progress.clone();
            tokio::spawn(async move {
                progress.exported.fetch_add(80, Ordering::Relaxed);
                if progress.exported.load(Ordering::Relaxed) == 80 {
                    panic!("the export task fails");
                }
                ExportReport::default()
            })
        };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let (report, abnormal) = finish_export(task, deadline).await;
        assert!(report.is_none() && abnormal);
        let r = RunReport::from_progress(100, &progress, abnormal);
        assert_eq!((r.exported, r.failed, r.undelivered, r.abnormal), (80, 0, 20, true));
    }
}
