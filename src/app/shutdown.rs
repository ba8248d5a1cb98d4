//! The end of a live run, owned in one place: the checkpointer that writes the watermark while
//! the run lasts, the ordered shutdown within the grace, and the signals that start it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use jiff::Timestamp;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::pipeline::{Pipeline, RunOptions};
use crate::accounting::{Delivery, RunReport};
use crate::checkpoint::{CheckpointError, CheckpointStore};

/// The checkpointer: every [`crate::checkpoint::CHECKPOINT_INTERVAL`], while this replica leads
/// and every watch is live, writes the time before which every record handed over is settled
/// ([`Delivery::watermark`]) when it has moved on. A sustained crash loop keeps records in flight
/// at every instant; the watermark still advances behind them.
pub(super) async fn checkpointer(
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
pub(super) async fn shutdown(
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
    let (_, export_panicked) = crate::export::task::finish(exporter, deadline).await;
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
