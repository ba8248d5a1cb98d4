//! The export task: takes restart events off the bounded channel in batches and exports them.
//!
//! A batch closes when it holds `max_records` events or `max_delay` has passed since its first
//! event, whichever comes first; when the channel closes (every sender dropped), what is left is
//! exported and the task ends. The channel's bound is the backpressure: a producer that finds it
//! full waits.
//!
//! The OTLP exporter keeps up to [`MAX_BATCHES_IN_FLIGHT`] batches in flight (a round trip to the
//! collector would otherwise bound the throughput); records of different batches may therefore
//! arrive out of order. While that many batches are in flight (e.g. retrying through an outage),
//! nothing more is taken off the channel, so it fills and the producer waits.

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

/// Batches the OTLP exporter may have in flight at once.
pub const MAX_BATCHES_IN_FLIGHT: usize = 4;

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

/// Runs until the channel closes; returns what was exported and what failed. `settled` counts
/// every event taken off the channel whose fate is settled (exported, or failed and counted): the
/// checkpoint advances only when it equals the number sent.
pub async fn run(
    rx: mpsc::Receiver<RestartEvent>,
    exporter: Exporter,
    cfg: BatchConfig,
    settled: Arc<AtomicU64>,
    metrics: Arc<crate::metrics::Metrics>,
) -> ExportReport {
    match exporter {
        Exporter::Otlp(otlp) => run_concurrent(rx, Arc::from(otlp), cfg, settled, metrics).await,
        other => run_sequential(rx, other, cfg, settled, metrics).await,
    }
}

fn settle(report: &mut ExportReport, name: &'static str, n: u64, result: Result<(), ExportError>, settled: &AtomicU64) {
    match result {
        Ok(()) => report.exported += n,
        Err(e) => {
            report.failed += n;
            tracing::error!(exporter = name, records = n, error = %e, "Records could not be exported.");
            report.first_error.get_or_insert(e);
        }
    }
    report.batches += 1;
    settled.fetch_add(n, Ordering::Relaxed);
}

/// Text exporters: one batch at a time, in order.
async fn run_sequential(
    mut rx: mpsc::Receiver<RestartEvent>,
    mut exporter: Exporter,
    cfg: BatchConfig,
    settled: Arc<AtomicU64>,
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
        let result = exporter.export(&batch).await;
        settle(&mut report, exporter.name(), n, result, &settled);
        batch.clear();
    }
    report
}

/// The OTLP exporter: up to `MAX_BATCHES_IN_FLIGHT` batches at once. The batch being filled lives
/// outside the `select!`, so a completion never loses what was collected.
async fn run_concurrent(
    mut rx: mpsc::Receiver<RestartEvent>,
    exporter: Arc<super::otlp::OtlpExporter>,
    cfg: BatchConfig,
    settled: Arc<AtomicU64>,
    metrics: Arc<crate::metrics::Metrics>,
) -> ExportReport {
    use futures::stream::{FuturesUnordered, StreamExt};
    let mut report = ExportReport::default();
    let max_records = cfg.max_records.max(1);
    let mut batch: Vec<RestartEvent> = Vec::with_capacity(max_records);
    let mut deadline: Option<Instant> = None;
    let mut in_flight = FuturesUnordered::new();
    let mut open = true;
    loop {
        let full = batch.len() >= max_records;
        let due = !batch.is_empty() && (full || !open || deadline.is_some_and(|d| d <= Instant::now()));
        if due && in_flight.len() < MAX_BATCHES_IN_FLIGHT {
            let b = std::mem::replace(&mut batch, Vec::with_capacity(max_records));
            deadline = None;
            let n = b.len() as u64;
            metrics.queue_out(n);
            let exp = exporter.clone();
            in_flight.push(async move { (n, exp.export(&b).await) });
            continue;
        }
        if !open && batch.is_empty() && in_flight.is_empty() {
            break;
        }
        let can_take = open && !full;
        let sleep_until = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            Some((n, result)) = in_flight.next(), if !in_flight.is_empty() => {
                settle(&mut report, "otlp", n, result, &settled);
            }
            item = rx.recv(), if can_take => match item {
                Some(ev) => {
                    if batch.is_empty() {
                        deadline = Some(Instant::now() + cfg.max_delay);
                    }
                    batch.push(ev);
                }
                None => open = false,
            },
            _ = tokio::time::sleep_until(sleep_until), if deadline.is_some() && !due => {}
        }
    }
    report
}
