//! Wiring: the producer (replay or the live watch), the bounded channel and the export task.
//!
//! Shutdown order is owned here, in one place ([`run`]'s tail): stop the watches, which drops their
//! senders; the export task drains what is queued and exports it within the shutdown grace; the
//! last checkpoint is written if everything was handed over; then what could not be delivered is
//! reported.

use std::io::Read;

use jiff::Timestamp;
use tokio::sync::mpsc;

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
    pub previous_logs: Option<crate::prevlogs::PreviousLogs>,
}

/// What a live run did.
#[derive(Debug, Default)]
pub struct RunReport {
    pub restarts_detected: u64,
    pub exported: u64,
    pub failed: u64,
    /// Detected but neither exported nor counted as failed when the grace period ended.
    pub undelivered: u64,
}

/// Watches until `stop` is cancelled, then shuts down in order. Fails only at startup (the first
/// list cannot be done); once running, errors are retried and logged.
pub async fn run(
    client: kube::Client,
    opts: RunOptions,
    exporter: Exporter,
    store: crate::checkpoint::CheckpointStore,
    stop: tokio_util::sync::CancellationToken,
) -> Result<RunReport, crate::watch::WatchError> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use crate::checkpoint::{CheckpointError, CheckpointStore, catch_up_since};
    use crate::watch::{self, ScopeHealth, WatchTask};

    tokio::select! {
        r = tokio::time::timeout(STARTUP_LIST_TIMEOUT, watch::preflight(&client, &opts.scope, &opts.server)) => match r {
            Ok(r) => r?,
            Err(_) => return Err(crate::watch::WatchError::StartupTimeout { server: opts.server.clone(), secs: STARTUP_LIST_TIMEOUT.as_secs() }),
        },
        _ = stop.cancelled() => return Ok(RunReport::default()),
    }

    let mut store = store;
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

    // watch tasks -> detected -> enricher (causes from Events) -> export queue -> export task
    let (export_tx, export_rx) = mpsc::channel(opts.channel_capacity_events.max(1));
    let (tx, detected_rx) = mpsc::channel(opts.channel_capacity_events.max(1));
    let sent = Arc::new(AtomicU64::new(0));
    let handled = Arc::new(AtomicU64::new(0));
    let exporter_task = tokio::spawn(task::run(export_rx, exporter, opts.batch, handled.clone(), opts.metrics.clone()));
    let event_apis = crate::enrich::event_apis(&client, &opts.scope.namespaces);
    let event_store = if opts.use_events && crate::enrich::events_allowed(&event_apis).await {
        Some(Arc::new(crate::enrich::EventStore::default()))
    } else {
        None
    };
    let watch_stop_events = stop.child_token();
    let mut event_watches = Vec::new();
    if let Some(event_store) = &event_store {
        for (api, _) in event_apis {
            let task = crate::enrich::watch_events(
                api,
                opts.scope.node_name.clone(),
                event_store.clone(),
                watch_stop_events.clone(),
            );
            event_watches.push(tokio::spawn(task));
        }
    }
    let owner_index = if opts.use_owner_watch && crate::owners::allowed(&client).await {
        let index = Arc::new(crate::owners::OwnerIndex::default());
        event_watches.push(tokio::spawn(crate::owners::watch(
            client.clone(),
            index.clone(),
            watch_stop_events.clone(),
        )));
        Some(index)
    } else {
        None
    };
    let enrichment = crate::enrich::Enrichment {
        events: event_store,
        owners: owner_index,
        storm: opts.storm_window.map(crate::storm::StormControl::new),
        previous_logs: opts.previous_logs.clone(),
        settled: handled.clone(),
        metrics: Some(opts.metrics.clone()),
    };
    let enricher = tokio::spawn(crate::enrich::run(detected_rx, export_tx, enrichment));
    let stats = opts.watch_stats.clone();
    let watch_stop = stop.child_token();
    let mut watches = Vec::new();
    let mut healths = Vec::new();
    for (api, description) in opts.scope.apis(&client) {
        let health = Arc::new(ScopeHealth::default());
        healths.push(health.clone());
        let task = WatchTask {
            api,
            description,
            scope: opts.scope.clone(),
            server: opts.server.clone(),
            catch_up_since: catch_up,
            tx: tx.clone(),
            sent: sent.clone(),
            stats: stats.clone(),
            health,
            metrics: opts.metrics.clone(),
        };
        watches.push(tokio::spawn(watch::run(task, watch_stop.clone())));
    }
    drop(tx);

    // The checkpoint: the time up to which every detected restart was handed over. It advances
    // only while every watch is live and nothing is in flight.
    let settled = {
        let (sent, handled, healths) = (sent.clone(), handled.clone(), healths.clone());
        move || {
            healths.iter().all(|h| h.live.load(Ordering::Relaxed))
                && sent.load(Ordering::Relaxed) == handled.load(Ordering::Relaxed)
        }
    };
    let store = Arc::new(store);
    let checkpointer = {
        let (store, stop, settled) = (store.clone(), watch_stop.clone(), settled.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::checkpoint::CHECKPOINT_INTERVAL);
            let mut warned = false;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let now = Timestamp::now();
                if matches!(*store, CheckpointStore::Disabled) || !settled() {
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
        })
    };

    // Run until asked to stop (or every watch ended, which only happens if the exporter died).
    let all_watches = futures::future::join_all(watches);
    let mut all_watches = std::pin::pin!(all_watches);
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = &mut all_watches => {}
    }

    // Ordered shutdown: stop watching (dropping the senders), drain and flush within the grace.
    tracing::info!(
        grace_secs = opts.shutdown_grace.as_secs_f64(),
        "Shutting down: stopping the watch, draining the queue."
    );
    watch_stop.cancel();
    watch_stop_events.cancel();
    let deadline = tokio::time::Instant::now() + opts.shutdown_grace;
    let _ = tokio::time::timeout_at(deadline, &mut all_watches).await;
    let _ = tokio::time::timeout_at(deadline, enricher).await;
    for w in event_watches {
        let _ = tokio::time::timeout_at(deadline, w).await;
    }
    let _ = checkpointer.await;
    let mut exporter_task = exporter_task;
    let export = match tokio::time::timeout_at(deadline, &mut exporter_task).await {
        Ok(Ok(report)) => report,
        Ok(Err(join)) => {
            tracing::error!(error = %join, "The export task ended abnormally.");
            ExportReport::default()
        }
        Err(_) => {
            exporter_task.abort();
            ExportReport::default()
        }
    };
    let sent_n = sent.load(Ordering::Relaxed);
    let handled_n = handled.load(Ordering::Relaxed);
    let all_live = healths.iter().all(|h| h.live.load(Ordering::Relaxed));
    if sent_n == handled_n
        && all_live
        && let Err(e) = store.save(Timestamp::now()).await
    {
        tracing::warn!(error = %e, "Cannot write the final checkpoint.");
    }
    let report = RunReport {
        restarts_detected: stats.restarts.load(Ordering::Relaxed),
        exported: export.exported,
        failed: export.failed,
        undelivered: stats.restarts.load(Ordering::Relaxed).saturating_sub(handled_n),
    };
    Ok(report)
}
