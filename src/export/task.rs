//! The export task: takes restart events off the bounded channel in batches and exports them.
//!
//! A batch closes when it holds `max_records` events or `max_delay` has passed since its first
//! event, whichever comes first; when the channel closes (every sender dropped), what is left is
//! exported and the task ends. The channel's bound is the backpressure: a producer that finds it
//! full waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{ExportError, Exporter};
use crate::event::RestartEvent;

/// Default capacity of the channel between the detector and the exporter, in events.
pub const DEFAULT_CHANNEL_CAPACITY_EVENTS: usize = 4_096;
/// Default largest batch, in events.
pub const DEFAULT_BATCH_MAX_RECORDS: usize = 512;
/// Default longest wait between a batch's first event and its export.
pub const DEFAULT_BATCH_MAX_DELAY: Duration = Duration::from_millis(200);

/// Batching settings.
#[derive(Clone, Copy, Debug)]
pub struct BatchConfig {
    pub max_records: usize,
    pub max_delay: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_records: DEFAULT_BATCH_MAX_RECORDS, max_delay: DEFAULT_BATCH_MAX_DELAY }
    }
}

/// What the export task did.
#[derive(Debug, Default)]
pub struct ExportReport {
    pub exported: u64,
    pub failed: u64,
    pub batches: u64,
    /// The first error met, if any (the rest are logged).
    pub first_error: Option<ExportError>,
}

/// Runs until the channel closes; returns what was exported and what failed. `handled` counts
/// every event taken off the channel whose fate is settled (exported, or failed and counted): the
/// checkpoint advances only when it equals the number sent.
pub async fn run(
    mut rx: mpsc::Receiver<RestartEvent>,
    mut exporter: Exporter,
    cfg: BatchConfig,
    handled: Arc<AtomicU64>,
    metrics: Arc<crate::metrics::Metrics>,
) -> ExportReport {
    let mut report = ExportReport::default();
    let max_records = cfg.max_records.max(1);
    let mut batch: Vec<RestartEvent> = Vec::with_capacity(max_records);
    let mut open = true;
    while open {
        match rx.recv().await {
            Some(ev) => batch.push(ev),
            None => break,
        }
        let deadline = Instant::now() + cfg.max_delay;
        while batch.len() < max_records {
            tokio::select! {
                item = rx.recv() => match item {
                    Some(ev) => batch.push(ev),
                    None => { open = false; break; }
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let n = batch.len() as u64;
        metrics.queue_out(n);
        match exporter.export(&batch).await {
            Ok(()) => report.exported += n,
            Err(e) => {
                report.failed += n;
                tracing::error!(exporter = exporter.name(), records = n, error = %e, "Records could not be exported.");
                report.first_error.get_or_insert(e);
            }
        }
        report.batches += 1;
        handled.fetch_add(n, Ordering::Relaxed);
        batch.clear();
    }
    report
}
