//! The export task: takes records off the bounded channel in batches and exports them.
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
//!
//! The queue (the channel, the batch being filled and the batches in flight) is also bounded in
//! bytes ([`QueueBytes`], `DEFAULT_QUEUE_BUDGET_BYTES`): records with previous logs are large, and
//! the channel's bound counts records. The enrichment stage reserves each record's bytes before it
//! sends it, waiting while the queue is full (backpressure, counted); the export task gives them
//! back when the record's batch is settled.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::otlp::BatchOutcome;
use super::{ExportError, Exporter};
use crate::accounting::ExportProgress;
use crate::record::Record;

/// Default capacity of the channel between the detector and the exporter, in events.
pub(crate) const DEFAULT_CHANNEL_CAPACITY_EVENTS: usize = 4_096;
/// Default largest batch, in events.
pub const DEFAULT_BATCH_MAX_RECORDS: usize = 128;
/// Default longest wait between a batch's first event and its export.
pub(crate) const DEFAULT_BATCH_MAX_DELAY: Duration = Duration::from_millis(200);

/// Batches the OTLP exporter may have in flight at once.
pub const MAX_BATCHES_IN_FLIGHT: usize = 4;
/// Default budget of the export queue, in bytes.
pub const DEFAULT_QUEUE_BUDGET_BYTES: usize = 32 * 1024 * 1024;
/// Records exported before the exporter catches up (no record waiting) that make a burst (a
/// backlog drained after an outage, a crash-loop storm): when it ends, free heap goes back to the
/// kernel at once rather than at the next periodic trim (see `BurstTrim`, `crate::memory`).
pub(crate) const BURST_RECORDS: u64 = 4 * DEFAULT_BATCH_MAX_RECORDS as u64;

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

/// Runs until the channel closes; returns what was exported and what failed (also counted, as it
/// happens, in `progress`).
pub async fn run(
    rx: mpsc::Receiver<Record>,
    exporter: Exporter,
    cfg: BatchConfig,
    progress: Arc<ExportProgress>,
    metrics: Arc<crate::metrics::Metrics>,
) -> ExportReport {
    run_until(rx, exporter, cfg, progress, metrics, CancellationToken::new()).await
}

/// [`run`], and when `close` is cancelled the channel is closed to senders: what is already in it
/// is still exported, then the task ends (for a producer that cannot be stopped, such as a
/// blocking read of stdin).
pub(crate) async fn run_until(
    rx: mpsc::Receiver<Record>,
    exporter: Exporter,
    cfg: BatchConfig,
    progress: Arc<ExportProgress>,
    metrics: Arc<crate::metrics::Metrics>,
    close: CancellationToken,
) -> ExportReport {
    let input = Input { rx, close };
    match exporter {
        Exporter::Otlp(otlp) => run_concurrent(input, Arc::from(otlp), cfg, progress, metrics).await,
        other => run_sequential(input, other, cfg, progress, metrics).await,
    }
}

/// Waits for the export task until `deadline`, then aborts it. Returns its report, if it ended
/// normally, and whether it ended abnormally (panicked or was aborted). The counts live in
/// `ExportProgress`, so nothing exported before an abort or a panic is forgotten.
pub async fn finish(
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

/// The channel, and the token that closes it.
struct Input {
    rx: mpsc::Receiver<Record>,
    close: CancellationToken,
}

impl Input {
    /// No record waits in the channel.
    fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// The next record; `None` once the channel is closed and empty.
    async fn recv(&mut self) -> Option<Record> {
        if !self.close.is_cancelled() {
            tokio::select! {
                item = self.rx.recv() => return item,
                _ = self.close.cancelled() => self.rx.close(),
            }
        }
        self.rx.recv().await
    }
}

/// A batch of `n` records settled: `outcome` says how many failed for good, the rest were exported.
fn settle(
    report: &mut ExportReport,
    name: &'static str,
    (n, kib, seconds): (u64, u64, Vec<i64>),
    outcome: BatchOutcome,
    progress: &ExportProgress,
) {
    progress.queue.release(kib);
    for second in seconds {
        progress.in_flight.settle(second, 1);
    }
    let failed = outcome.failed.min(n);
    report.exported += n - failed;
    progress.exported.fetch_add(n - failed, Ordering::Relaxed);
    if failed > 0 {
        report.failed += failed;
        progress.failed.fetch_add(failed, Ordering::Relaxed);
    }
    if let Some(e) = outcome.error {
        tracing::error!(exporter = name, records = failed, of = n, error = %e, "Records could not be exported.");
        report.first_error.get_or_insert(e);
    }
    report.batches += 1;
}

/// A text exporter's result: the whole batch, or none of it.
fn all_or_nothing(n: u64, result: Result<(), ExportError>) -> BatchOutcome {
    match result {
        Ok(()) => BatchOutcome::default(),
        Err(e) => BatchOutcome { failed: n, error: Some(e) },
    }
}

/// The batch being filled: records in arrival order, due when full, when its first record has
/// waited `max_delay`, or when the input is closed. Both export loops fill batches through it.
struct Batcher {
    batch: Vec<Record>,
    max_records: usize,
    max_delay: Duration,
    /// When the batch is due at the latest; set by its first record.
    deadline: Option<Instant>,
}

impl Batcher {
    fn new(cfg: BatchConfig) -> Self {
        let max_records = cfg.max_records.max(1);
        Batcher { batch: Vec::new(), max_records, max_delay: cfg.max_delay, deadline: None }
    }

    fn push(&mut self, ev: Record) {
        if self.batch.is_empty() {
            self.deadline = Some(Instant::now() + self.max_delay);
        }
        self.batch.push(ev);
    }

    fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    fn full(&self) -> bool {
        self.batch.len() >= self.max_records
    }

    /// The batch should go now (`closing`: no more records will come).
    fn due(&self, closing: bool) -> bool {
        !self.batch.is_empty() && (self.full() || closing || self.deadline.is_some_and(|d| d <= Instant::now()))
    }

    /// Takes the batch, leaving an empty one (which grows as records come: a batch reserved at its
    /// largest would hold `max_records` records' room while a handful are in flight).
    fn take(&mut self) -> Vec<Record> {
        self.deadline = None;
        std::mem::take(&mut self.batch)
    }

    /// Resolves at the batch's deadline; never while it has none.
    async fn deadline_passed(&self) {
        match self.deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    }
}

/// Text exporters: one batch at a time, in order.
async fn run_sequential(
    mut rx: Input,
    mut exporter: Exporter,
    cfg: BatchConfig,
    progress: Arc<ExportProgress>,
    metrics: Arc<crate::metrics::Metrics>,
) -> ExportReport {
    let mut report = ExportReport::default();
    let mut batcher = Batcher::new(cfg);
    let mut open = true;
    while open || !batcher.is_empty() {
        if !batcher.due(!open) {
            tokio::select! {
                item = rx.recv(), if open && !batcher.full() => match item {
                    Some(ev) => batcher.push(ev),
                    None => open = false,
                },
                _ = batcher.deadline_passed() => {}
            }
            continue;
        }
        let batch = batcher.take();
        let n = batch.len() as u64;
        let kib = batch.iter().map(|ev| u64::from(progress.queue.kib_of(ev.approx_bytes()))).sum();
        let seconds = batch.iter().map(Record::in_flight_second).collect();
        metrics.queue_out(n);
        let outcome = all_or_nothing(n, exporter.export(&batch).await);
        settle(&mut report, exporter.name(), (n, kib, seconds), outcome, &progress);
    }
    report
}

/// When an export burst ends, so free heap should go back to the kernel at once (see
/// `crate::memory`).
#[derive(Debug, Default)]
struct BurstTrim {
    /// Records sent since the exporter last caught up.
    since_caught_up: u64,
    /// A burst ended with batches still in flight: trim again once they have all settled.
    again_when_settled: bool,
}

impl BurstTrim {
    fn sent(&mut self, records: u64) {
        self.since_caught_up += records;
    }

    /// After a batch settles: whether to hand free heap back now. The exporter has caught up when
    /// no record waits (`backlog`: the channel holds some, or a batch is due); the records sent
    /// since it last did made a burst if they reach [`BURST_RECORDS`]. Batches in flight do not
    /// hold the trim back: after an outage each retries on its own backoff (up to
    /// `retry::BACKOFF_MAX`), and waiting for the last would keep the drained backlog resident;
    /// what they free when they settle goes back with one more trim then. Nor does the batch
    /// being filled: under steady traffic it is never empty.
    fn settled(&mut self, backlog: bool, in_flight: usize) -> bool {
        if !backlog && std::mem::take(&mut self.since_caught_up) >= BURST_RECORDS {
            self.again_when_settled = in_flight > 0;
            return true;
        }
        if self.again_when_settled && in_flight == 0 {
            self.again_when_settled = false;
            return true;
        }
        false
    }
}

/// The OTLP exporter: up to `MAX_BATCHES_IN_FLIGHT` batches at once. The batch being filled lives
/// outside the `select!`, so a completion never loses what was collected.
async fn run_concurrent(
    mut rx: Input,
    exporter: Arc<super::otlp::OtlpExporter>,
    cfg: BatchConfig,
    progress: Arc<ExportProgress>,
    metrics: Arc<crate::metrics::Metrics>,
) -> ExportReport {
    use futures::stream::{FuturesUnordered, StreamExt};
    let mut report = ExportReport::default();
    let mut batcher = Batcher::new(cfg);
    let mut in_flight = FuturesUnordered::new();
    let mut open = true;
    let mut burst = BurstTrim::default();
    loop {
        let due = batcher.due(!open);
        if due && in_flight.len() < MAX_BATCHES_IN_FLIGHT {
            let batch = batcher.take();
            let n = batch.len() as u64;
            burst.sent(n);
            let kib: u64 = batch.iter().map(|ev| u64::from(progress.queue.kib_of(ev.approx_bytes()))).sum();
            let seconds: Vec<i64> = batch.iter().map(Record::in_flight_second).collect();
            metrics.queue_out(n);
            let exp = exporter.clone();
            in_flight.push(async move { ((n, kib, seconds), exp.export_batch(&batch).await) });
            continue;
        }
        if !open && batcher.is_empty() && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            Some((counts, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                settle(&mut report, "otlp", counts, outcome, &progress);
                if burst.settled(!rx.is_empty() || batcher.due(!open), in_flight.len()) {
                    crate::memory::release_free_memory();
                }
            }
            item = rx.recv(), if open && !batcher.full() => match item {
                Some(ev) => batcher.push(ev),
                None => open = false,
            },
            _ = batcher.deadline_passed(), if !due => {}
        }
    }
    report
}

#[cfg(test)]
mod tests {

    use super::*;

    fn record(previous_logs_bytes: usize) -> Record {
        Record {
            previous_logs: Some("x".repeat(previous_logs_bytes)),
            ..Record::sample("", "", "", crate::record::Cause::AppError)
        }
    }

    #[test]
    fn a_drained_backlog_ends_a_burst_even_while_records_keep_coming() {
        let batch = DEFAULT_BATCH_MAX_RECORDS as u64;
        // (records sent before the settle, records still waiting, batches in flight) -> trim?
        let steps: &[(u64, bool, usize, bool)] = &[
            // A backlog drains: 8 full batches, 4 at a time, records arriving all along; a batch
            // from before the outage still waits on its retry backoff.
            (4 * batch, true, 3, false),
            (batch, true, 3, false),
            (batch, true, 3, false),
            (batch, true, 3, false),
            (batch, false, 1, true), // nothing waits (a part-filled batch is not due): it is over
            (0, false, 1, false),
            (0, false, 0, true), // the retried batch settled: what it held goes back too
            // Steady traffic afterwards: one batch at a time, nothing waiting after each.
            (batch, false, 0, false),
            (batch, false, 0, false),
            (batch, false, 0, false),
            (batch, false, 0, false),
            (batch, false, 0, false),
            // A short backlog (under BURST_RECORDS) is not a burst.
            (batch, true, 1, false),
            (batch, false, 0, false),
            // A drain that ends with nothing in flight is one trim.
            (8 * batch, false, 0, true),
            (batch, false, 0, false),
        ];
        let mut trim = BurstTrim::default();
        for (i, &(sent, backlog, in_flight, expected)) in steps.iter().enumerate() {
            trim.sent(sent);
            assert_eq!(trim.settled(backlog, in_flight), expected, "step {i}");
        }
    }

    #[test]
    fn a_batch_holds_room_only_for_the_records_it_has() {
        let mut batcher = Batcher::new(BatchConfig { max_records: 65_536, max_delay: Duration::from_secs(1) });
        assert_eq!(batcher.batch.capacity(), 0, "an empty batch reserves nothing");
        for _ in 0..3 {
            batcher.push(record(0));
        }
        let taken = batcher.take();
        assert_eq!(taken.len(), 3);
        assert!(taken.capacity() < 64, "3 records hold room for {}", taken.capacity());
        assert_eq!(batcher.batch.capacity(), 0, "the next batch starts empty");
    }

    #[tokio::test]
    async fn a_panic_in_the_export_task_keeps_its_counts_and_is_reported_as_abnormal() {
        let progress = Arc::new(crate::accounting::ExportProgress::default());
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
        let (report, abnormal) = finish(task, deadline).await;
        assert!(report.is_none() && abnormal);
        let r = crate::accounting::RunReport::from_progress(100, &progress, abnormal);
        assert_eq!((r.exported, r.failed, r.undelivered, r.abnormal), (80, 0, 20, true));
    }
}
