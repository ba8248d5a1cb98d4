//! Wiring: the producer (replay, later the live watch), the bounded channel and the export task.
//!
//! Shutdown order is owned here: the producer ends (end of stream, error, or signal) and drops its
//! sender; the export task drains what is queued and exports it; then the result is reported.

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
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            kinds: KindFilter::default(),
            channel_capacity_events: task::DEFAULT_CHANNEL_CAPACITY_EVENTS,
            batch: BatchConfig::default(),
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
    let exporter_task = tokio::spawn(task::run(rx, exporter, opts.batch));
    let kinds = opts.kinds;
    let reader = tokio::task::spawn_blocking(move || {
        let mut detector = Detector::new(kinds);
        let mut stats = ReplayStats::default();
        let result = replay::replay(
            input,
            &source_name,
            &mut detector,
            Timestamp::now,
            |ev| tx.blocking_send(ev).is_ok(),
            &mut stats,
        );
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
