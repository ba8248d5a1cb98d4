//! Replay: a recorded stream through the same detector as a live watch (`recording`), and its
//! wiring: the reader on a blocking thread, the bounded channel, the export task, the signals.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::accounting::{ExportProgress, RunReport};
use crate::detector::{Detection, Detector};
use crate::export::Exporter;
use crate::export::task::{self, BatchConfig};

pub(crate) use crate::recording::DEFAULT_MAX_VALUE_BYTES;
pub use crate::recording::{RecordingClock, ReplayError, ReplayStats, replay, replay_bounded};

/// Settings of a replay run.
#[derive(Clone, Debug)]
pub(crate) struct ReplayOptions {
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
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            shutdown_grace: std::time::Duration::from_secs(10),
        }
    }
}

/// The outcome of a replay: what was read, the delivery counts (which add up:
/// `detected = exported + failed + undelivered`), the first export error, and the error that
/// stopped the reading, if any.
#[derive(Debug)]
pub(crate) struct ReplayOutcome {
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
pub(crate) async fn replay_stream(
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
    let reader = Reader::default();
    let mut reading = reader.spawn(input, source_name, &opts, tx);
    let (read, interrupted) = tokio::select! {
        read = &mut reading => (Some(read), false),
        _ = stop.cancelled() => {
            tracing::info!("Stopping the replay: exporting what was detected.");
            reader.stopping.store(true, Ordering::Relaxed);
            close.cancel();
            (None, true)
        }
    };
    let deadline = tokio::time::Instant::now() + opts.shutdown_grace;
    let (export, abnormal) = task::finish(exporter_task, deadline).await;
    // Interrupted: the reader stops at its next read, or at its next record once the export task
    // has let go of the channel; its counts are those it reached (from its last read, if it stays
    // blocked on a pipe).
    let read = match read {
        Some(read) => Some(read),
        None => tokio::time::timeout(READER_STOP_WAIT, &mut reading).await.ok(),
    };
    let (result, stats, reader_panicked) = match read {
        Some(Ok((result, stats))) => (result, stats, false),
        Some(Err(join)) => {
            tracing::error!(error = %join, "The replay reader ended abnormally.");
            (Ok(()), ReplayStats::default(), join.is_panic())
        }
        None => (Ok(()), reader.read_so_far(), false),
    };
    // Records sent after the channel closed were refused and are not counted as detected.
    let error = result.err().filter(|e| !(interrupted && matches!(e, ReplayError::SinkClosed)));
    ReplayOutcome {
        stats,
        episode_ends_unreported: opts.detection.episodes.shed.load(Ordering::Relaxed),
        report: RunReport::from_progress(
            reader.detected.load(Ordering::Relaxed),
            &progress,
            abnormal || reader_panicked,
        ),
        first_export_error: export.and_then(|r| r.first_error),
        error,
        interrupted,
    }
}

/// The reader's side of a replay, shared with the task that waits for it: what it detected and
/// handed over, what it has read so far (before each read of the input: a reader blocked on a pipe
/// at a signal still has its counts reported), and the flag that ends it at its next read.
#[derive(Default)]
struct Reader {
    detected: Arc<AtomicU64>,
    so_far: Arc<std::sync::Mutex<ReplayStats>>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

type Reading = tokio::task::JoinHandle<(Result<(), ReplayError>, ReplayStats)>;

impl Reader {
    /// Reads `input` on a blocking thread through a detector, handing each record to `tx`
    /// (waiting while it is full); `tx` is dropped when the reading ends, so the export task
    /// drains what is queued and ends.
    fn spawn(
        &self,
        input: Box<dyn Read + Send>,
        source_name: String,
        opts: &ReplayOptions,
        tx: mpsc::Sender<crate::record::Record>,
    ) -> Reading {
        let (metrics, detected, opts) = (opts.metrics.clone(), self.detected.clone(), opts.clone());
        let (so_far, stopping) = (self.so_far.clone(), self.stopping.clone());
        tokio::task::spawn_blocking(move || {
            let mut detector = Detector::with(&opts.detection);
            detector.set_catch_up(opts.catch_up_since);
            let mut stats = ReplayStats::default();
            let send = |ev: crate::record::Record| {
                metrics.restart_detected(&ev);
                metrics.queue_in(1);
                let sent = tx.blocking_send(ev).is_ok();
                detected.fetch_add(u64::from(sent), Ordering::Relaxed);
                sent
            };
            // The recording's kube events explain its records as a live agent's Events do.
            let held = std::cell::RefCell::new(RecordedKubeEvents::default());
            let emit = |ev: crate::record::Record| held.borrow_mut().admit(ev).into_iter().all(&send);
            let kube_event = |raw: &[u8]| {
                let ready = held.borrow_mut().event(raw);
                let _ = ready.into_iter().all(&send);
            };
            let before_read = |s: &ReplayStats| {
                *so_far.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = *s;
                !stopping.load(Ordering::Relaxed)
            };
            let max = opts.max_value_bytes;
            let result = crate::recording::replay_with(
                input,
                &source_name,
                max,
                &mut detector,
                Timestamp::now,
                emit,
                kube_event,
                &mut stats,
                before_read,
            );
            let waiting = held.into_inner().finish();
            let result = match result {
                Ok(()) if !waiting.into_iter().all(&send) => Err(ReplayError::SinkClosed),
                other => other,
            };
            (result, stats)
        })
    }

    fn read_so_far(&self) -> ReplayStats {
        *self.so_far.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The kube events of a recording, applied to its records as a live agent applies the Events it
/// watches (`enrich::classify`): a record whose status leaves its cause open waits for a kube event
/// that explains it, up to `enrich::EVENT_WAIT` of the recording's own time (the latest time its
/// records and kube events gave), and at most `MAX_WAITING` records wait (beyond, the oldest goes
/// on as it is classified then). What still waits when the recording ends goes on then. Until the
/// recording gives its first kube event, nothing waits: a recording of pods alone has none.
#[derive(Default)]
struct RecordedKubeEvents {
    store: crate::enrich::KubeEventStore,
    waiting: std::collections::VecDeque<crate::record::Record>,
    /// The recording's time: the latest its records and kube events gave.
    now: Option<Timestamp>,
    /// Whether the recording has given a kube event yet: until it has, nothing waits.
    kube_events_seen: bool,
}

/// Records of a replay waiting for a kube event, at most.
const MAX_WAITING: usize = 1024;

impl RecordedKubeEvents {
    /// A detected record: what is ready to go on (it, or waiting ones it made late).
    fn admit(&mut self, mut ev: crate::record::Record) -> Vec<crate::record::Record> {
        self.advance(ev.observed_at);
        crate::enrich::classify(&mut ev, Some(&self.store));
        let mut ready = self.release();
        // A recording of pods alone has no kube event to wait for (as a live agent without Events).
        if self.kube_events_seen && crate::enrich::waits_for_kube_events(&ev) {
            self.waiting.push_back(ev);
            if self.waiting.len() > MAX_WAITING {
                ready.extend(self.waiting.pop_front());
            }
        } else {
            ready.push(ev);
        }
        ready
    }

    /// A kube event of the recording (a watch event's JSON text): stored, then what it explains
    /// or made late is ready.
    fn event(&mut self, raw: &[u8]) -> Vec<crate::record::Record> {
        #[derive(serde::Deserialize)]
        struct Watched {
            object: crate::enrich::kube_events::SlimKubeEvent,
        }
        self.kube_events_seen = true;
        let Ok(watched) = serde_json::from_slice::<Watched>(raw) else {
            tracing::debug!("Skipped a recorded kube event that cannot be read.");
            return Vec::new();
        };
        if let Some((key, ev)) = watched.object.pod_event().or_else(|| watched.object.node_oom_event()) {
            let at = ev.time;
            self.advance(at);
            self.store.insert(&key, ev, self.now.unwrap_or(at));
        }
        self.release()
    }

    /// The waiting records now explained, or that waited `EVENT_WAIT` of the recording's time.
    fn release(&mut self) -> Vec<crate::record::Record> {
        let wait = jiff::SignedDuration::try_from(crate::enrich::EVENT_WAIT).unwrap_or_default();
        let (mut ready, mut still) = (Vec::new(), std::collections::VecDeque::new());
        for mut ev in std::mem::take(&mut self.waiting) {
            crate::enrich::classify(&mut ev, Some(&self.store));
            let late = self.now.is_some_and(|now| now.duration_since(ev.observed_at) >= wait);
            if late || !crate::enrich::waits_for_kube_events(&ev) { ready.push(ev) } else { still.push_back(ev) }
        }
        self.waiting = still;
        ready
    }

    fn advance(&mut self, at: Timestamp) {
        self.now = self.now.max(Some(at));
    }

    /// The records still waiting when the recording ends.
    fn finish(mut self) -> Vec<crate::record::Record> {
        for ev in &mut self.waiting {
            crate::enrich::classify(ev, Some(&self.store));
        }
        self.waiting.into()
    }
}

/// How long an interrupted replay waits, once the export has ended, for its reader to stop (a
/// reader blocked reading a pipe is left behind: the process exits).
pub(crate) const READER_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// How a replay of the command line ended well.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplayEnd {
    /// The input ended and everything detected was delivered (the checkpoint, if any, written).
    Done,
    /// A signal stopped it before the input ended, after everything detected was delivered: no
    /// checkpoint is written (it would claim what was never read).
    Interrupted,
}

/// Why a replay of the command line failed. Everything detected before was handed on.
#[derive(Debug, thiserror::Error)]
pub enum ReplayRunError {
    #[error("cannot open the replay input {path:?}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error(transparent)]
    Export(#[from] crate::export::ExportError),
    #[error(transparent)]
    Read(#[from] ReplayError),
    #[error("a task of the replay ended abnormally (see the log); counts above are those it reached")]
    Abnormal,
    #[error("{failed} records could not be exported: {source}")]
    Failed {
        failed: u64,
        #[source]
        source: crate::export::ExportError,
    },
    #[error(
        "{undelivered} records were still undelivered at the end of the shutdown grace ({grace:?}); raise --shutdown-grace or check the collector"
    )]
    Undelivered { undelivered: u64, grace: std::time::Duration },
}

/// The replay of `restart-watcher replay`: the input (a file, or `-` for stdin), its checkpoint
/// file's catch-up, the replay until the input ends or `stop`, the summary in the log, and the
/// checkpoint written at the recording's time.
pub async fn run(
    settings: crate::config::ReplaySettings,
    stop: CancellationToken,
) -> Result<ReplayEnd, ReplayRunError> {
    let (input, source_name): (Box<dyn Read + Send>, String) = if settings.input == "-" {
        (Box::new(std::io::stdin()), "stdin".to_owned())
    } else {
        let file = std::fs::File::open(&settings.input)
            .map_err(|source| ReplayRunError::Open { path: settings.input.clone(), source })?;
        (Box::new(file), settings.input.clone())
    };
    let metrics = Arc::new(crate::metrics::Metrics::noop());
    let exporter = crate::app::connect::exporter(&settings.output, metrics.clone())?;
    let checkpoint = settings.checkpoint_file.clone().map(crate::checkpoint::CheckpointStore::File);
    let catch_up_since = match &checkpoint {
        Some(store) => store.load().await?.map(crate::checkpoint::catch_up_since),
        None => None,
    };
    let opts = ReplayOptions {
        detection: settings.detection,
        batch: settings.output.batch,
        metrics,
        catch_up_since,
        max_value_bytes: settings.max_value_bytes,
        shutdown_grace: settings.shutdown_grace,
        ..ReplayOptions::default()
    };
    let outcome = replay_stream(input, source_name, exporter, opts, stop).await;
    log_summary(&outcome);
    let r = &outcome.report;
    if let Some(e) = outcome.error {
        return Err(e.into());
    }
    if r.abnormal {
        return Err(ReplayRunError::Abnormal);
    }
    if let Some(source) = outcome.first_export_error {
        return Err(ReplayRunError::Failed { failed: r.failed, source });
    }
    if r.undelivered > 0 {
        return Err(ReplayRunError::Undelivered { undelivered: r.undelivered, grace: settings.shutdown_grace });
    }
    if outcome.interrupted {
        return Ok(ReplayEnd::Interrupted);
    }
    if let Some(store) = checkpoint {
        // Everything the stream showed has been handed over, up to the recording's own time (a
        // later recording of the same cluster then catches up from there).
        store.save(outcome.stats.clock.now().unwrap_or_else(Timestamp::now)).await?;
    }
    Ok(ReplayEnd::Done)
}

/// The replay's counts in the log: what was read, and what became of what was detected.
fn log_summary(outcome: &ReplayOutcome) {
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
}
