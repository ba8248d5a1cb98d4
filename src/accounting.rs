//! Delivery accounting: the counts and watermarks every stage updates, in one leaf that imports
//! nothing of the agent's. The watch counts what it hands over, the enrichment stage and the
//! export task what they settle; the checkpointer reads the watermark, the metrics and the admin
//! server read the rest.
//!
//! - [`BudgetUsage`]: a store's bytes against its budget, and what it let go to stay within it;
//! - [`ExportProgress`]: records exported, failed, coalesced and handed off, those in flight by
//!   second ([`InFlightBySecond`]), and the export queue's bytes ([`QueueBytes`]);
//! - [`Delivery`]: the progress with every scope's health: the checkpoint's watermark;
//! - [`RunReport`]: a run's final counts, which add up;
//! - [`WatchStats`], [`ScopeHealth`]: the pod watches' counters and health;
//! - [`ExportsInFlight`]: the OTLP exports in progress, for readiness.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use jiff::Timestamp;

/// Default budget of the export queue, in bytes.
pub const DEFAULT_QUEUE_BUDGET_BYTES: usize = 32 * 1024 * 1024;

/// A store's use of its byte budget, shared with the metrics: the waiting records here, storm
/// control's state.
#[derive(Debug, Default)]
pub struct BudgetUsage {
    /// Bytes held now.
    pub bytes: AtomicU64,
    /// The budget.
    pub budget_bytes: AtomicU64,
    /// What the store let go to stay within it (records sent on early; restarts left uncoalesced).
    pub shed: AtomicU64,
}

impl BudgetUsage {
    /// The budget in bytes, or `default` while none is set (0).
    pub fn budget_or(&self, default: usize) -> usize {
        match self.budget_bytes.load(Ordering::Relaxed) {
            0 => default,
            b => usize::try_from(b).unwrap_or(usize::MAX),
        }
    }

    /// The bytes held went from `before` to `after`.
    pub fn resize(&self, before: usize, after: usize) {
        if after >= before {
            self.bytes.fetch_add((after - before) as u64, Ordering::Relaxed);
        } else {
            self.bytes.fetch_sub((before - after) as u64, Ordering::Relaxed);
        }
    }
}

/// The export queue's byte budget: permits of 1 KiB, reserved by the producer for each record it
/// sends, given back by the export task when the record's batch settles. A record larger than the
/// whole budget reserves all of it (it then travels alone). Use and waits are in `usage`.
#[derive(Debug)]
pub struct QueueBytes {
    permits: tokio::sync::Semaphore,
    budget_kib: u32,
    /// KiB reserved and not yet given back (what the task gives back never exceeds it, so a
    /// producer that does not reserve, such as replay, leaves the budget untouched).
    reserved_kib: AtomicU64,
    usage: Arc<BudgetUsage>,
}

impl Default for QueueBytes {
    fn default() -> Self {
        Self::new(DEFAULT_QUEUE_BUDGET_BYTES)
    }
}

impl QueueBytes {
    pub fn new(budget_bytes: usize) -> Self {
        let budget_kib = u32::try_from(budget_bytes / 1024).unwrap_or(u32::MAX).max(1);
        let usage = Arc::new(BudgetUsage::default());
        usage.budget_bytes.store(u64::from(budget_kib) * 1024, Ordering::Relaxed);
        QueueBytes {
            permits: tokio::sync::Semaphore::new(budget_kib as usize),
            budget_kib,
            reserved_kib: AtomicU64::new(0),
            usage,
        }
    }

    /// What a record of `bytes` reserves, in KiB (rounded up, at most the whole budget).
    pub(crate) fn kib_of(&self, bytes: usize) -> u32 {
        u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX).clamp(1, self.budget_kib)
    }

    /// Reserves room for a record of `bytes`, waiting while the queue is full (counted in
    /// `usage.shed`).
    pub(crate) async fn reserve(&self, bytes: usize) {
        let kib = self.kib_of(bytes);
        let permit = match self.permits.try_acquire_many(kib) {
            Ok(p) => Some(p),
            Err(_) => {
                self.usage.shed.fetch_add(1, Ordering::Relaxed);
                self.permits.acquire_many(kib).await.ok()
            }
        };
        if let Some(p) = permit {
            p.forget();
            let now = self.reserved_kib.fetch_add(u64::from(kib), Ordering::Relaxed) + u64::from(kib);
            self.usage.bytes.store(now * 1024, Ordering::Relaxed);
        }
    }

    /// Gives back the room of records whose batch settled.
    pub fn release(&self, kib: u64) {
        let mut back = 0;
        let _ = self.reserved_kib.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
            back = kib.min(r);
            Some(r - back)
        });
        self.permits.add_permits(back as usize);
        self.usage.bytes.store(self.reserved_kib.load(Ordering::Relaxed) * 1024, Ordering::Relaxed);
    }

    /// Its use against its budget, for the metrics.
    pub fn usage(&self) -> Arc<BudgetUsage> {
        self.usage.clone()
    }
}

/// The export counts as they happen, shared with whoever accounts for delivery, so that they
/// survive the export task being aborted at the end of a shutdown grace, or panicking.
#[derive(Debug, Default)]
pub struct ExportProgress {
    /// Records handed to the pipeline and not yet settled, by the second they count in: the
    /// checkpoint advances up to the oldest.
    pub in_flight: InFlightBySecond,
    /// Records exported (accepted by the receiver).
    pub exported: AtomicU64,
    /// Records that failed for good (counted, not retried).
    pub failed: AtomicU64,
    /// Records represented by another record (storm control), settled without an export of their own.
    pub coalesced: AtomicU64,
    /// Records a standby let go to the leader (`--leader-elect`): covered by the leader's
    /// checkpoint, evicted past the standby buffer's budget, or kept when the standby stopped.
    pub handed_off: AtomicU64,
    /// The export queue's byte budget, shared by the producer and the export task.
    pub queue: QueueBytes,
}

impl ExportProgress {}

/// Records in flight by second (see `Record::in_flight_second`). Its size is bounded by the
/// records in flight, which the export queue's budget bounds.
#[derive(Debug, Default)]
pub struct InFlightBySecond {
    seconds: std::sync::Mutex<std::collections::BTreeMap<i64, u64>>,
}

impl InFlightBySecond {
    fn with<R>(&self, f: impl FnOnce(&mut std::collections::BTreeMap<i64, u64>) -> R) -> R {
        f(&mut self.seconds.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// `n` records of `second` are handed to the pipeline.
    pub fn add(&self, second: i64, n: u64) {
        if n > 0 {
            self.with(|m| *m.entry(second).or_default() += n);
        }
    }

    /// `n` records of `second` are settled (more than were added is ignored: replay adds none).
    pub fn settle(&self, second: i64, n: u64) {
        self.with(|m| {
            if let Some(count) = m.get_mut(&second) {
                *count = count.saturating_sub(n);
                if *count == 0 {
                    m.remove(&second);
                }
            }
        });
    }

    /// `n` records of `from` now count in `to` (storm control holding them in a window).
    pub(crate) fn shift(&self, from: i64, to: i64, n: u64) {
        if from != to {
            self.settle(from, n);
            self.add(to, n);
        }
    }

    /// The oldest second with a record in flight.
    pub(crate) fn oldest(&self) -> Option<i64> {
        self.with(|m| m.keys().next().copied())
    }
}

/// The delivery accounting of a live run, in one place: how many records are settled (exported,
/// failed and counted, represented by another record, or handed off to the leader), which are
/// still in flight by second, and whether every scope's watch is live. The checkpoint advances to [`Delivery::watermark`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Delivery {
    pub progress: Arc<ExportProgress>,
    scopes: Vec<Arc<ScopeHealth>>,
}

impl Delivery {
    /// A new scope to account for; its watch reports its health there.
    pub(crate) fn add_scope(&mut self) -> Arc<ScopeHealth> {
        let health = Arc::new(ScopeHealth::default());
        self.scopes.push(health.clone());
        health
    }

    /// Every scope's watch is live (listed, not relisting).
    fn all_live(&self) -> bool {
        self.scopes.iter().all(|h| h.live.load(Ordering::Relaxed))
    }

    /// The checkpoint the pipeline allows now: while every watch is live, the start of the oldest
    /// second with a record in flight, or `now` when none is; `None` while a watch is not live (a
    /// relist may still find restarts of the gap).
    pub(crate) fn watermark(&self, now: Timestamp) -> Option<Timestamp> {
        if !self.all_live() {
            return None;
        }
        let oldest = self.progress.in_flight.oldest().and_then(|s| Timestamp::from_second(s).ok());
        Some(oldest.map_or(now, |o| o.min(now)))
    }
}

/// What a run did. `restarts_detected = exported + failed + coalesced + handed_off + undelivered`,
/// counted in records handed to the pipeline.
#[derive(Debug, Default)]
pub struct RunReport {
    pub restarts_detected: u64,
    pub exported: u64,
    pub failed: u64,
    /// Represented by another record (storm control).
    pub coalesced: u64,
    /// Let go by a standby to the leader (`--leader-elect`).
    pub handed_off: u64,
    /// Detected but neither exported nor counted as failed when the grace period ended.
    pub undelivered: u64,
    /// A task ended abnormally (a panic): the process must exit non-zero.
    pub abnormal: bool,
}

impl RunReport {
    /// The report from the live counts: `detected = exported + failed + coalesced + handed_off +
    /// undelivered` by construction, whatever happened to the export task.
    pub fn from_progress(detected: u64, progress: &ExportProgress, abnormal: bool) -> Self {
        let exported = progress.exported.load(Ordering::Relaxed);
        let failed = progress.failed.load(Ordering::Relaxed);
        let coalesced = progress.coalesced.load(Ordering::Relaxed);
        let handed_off = progress.handed_off.load(Ordering::Relaxed);
        RunReport {
            restarts_detected: detected,
            exported,
            failed,
            coalesced,
            handed_off,
            undelivered: detected.saturating_sub(exported + failed + coalesced + handed_off),
            abnormal,
        }
    }
}

/// Counters shared by the watch tasks, the checkpointer and the metrics.
#[derive(Debug, Default)]
pub struct WatchStats {
    pub watch_events: AtomicU64,
    pub relists: AtomicU64,
    pub errors: AtomicU64,
    pub pods_dropped: AtomicU64,
    pub restarts: AtomicU64,
    /// Scopes whose initial list is complete.
    pub scopes_listed: AtomicU64,
}

/// Health of one scope's watch, for the checkpoint: it may advance only while every watch is
/// known to be live.
#[derive(Debug, Default)]
pub struct ScopeHealth {
    /// Initial list complete, and an event arrived after the last error.
    pub live: AtomicBool,
}

/// The exports in progress, by id, with their start times.
#[derive(Debug, Default)]
pub struct ExportsInFlight {
    inner: std::sync::Mutex<(u64, std::collections::BTreeMap<u64, Instant>)>,
}

impl ExportsInFlight {
    /// An export starts: its id.
    pub(crate) fn begin(&self) -> u64 {
        let Ok(mut g) = self.inner.lock() else { return 0 };
        g.0 += 1;
        let id = g.0;
        g.1.insert(id, Instant::now());
        id
    }
    /// The export `id` ended.
    pub fn end(&self, id: u64) {
        if let Ok(mut g) = self.inner.lock() {
            g.1.remove(&id);
        }
    }
    /// When the oldest export still in progress started.
    pub(crate) fn oldest(&self) -> Option<Instant> {
        self.inner.lock().ok().and_then(|g| g.1.values().min().copied())
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[test]
    fn a_full_queue_makes_the_producer_wait_until_a_batch_settles() {
        let queue = QueueBytes::new(64 * 1024);
        let usage = queue.usage();
        let big = 16 * 1024;
        assert_eq!(queue.kib_of(big), 16);
        for _ in 0..4 {
            assert!(queue.reserve(big).now_or_never().is_some(), "room for four");
        }
        assert_eq!(usage.bytes.load(Ordering::Relaxed), 64 * 1024);
        assert!(queue.reserve(big).now_or_never().is_none(), "the fifth waits");
        assert_eq!(usage.shed.load(Ordering::Relaxed), 1);
        queue.release(16);
        assert!(queue.reserve(big).now_or_never().is_some(), "a settled record made room");
        // Giving back more than was reserved (a producer that does not reserve) grows nothing.
        queue.release(1_000_000);
        assert_eq!(usage.bytes.load(Ordering::Relaxed), 0);
        assert_eq!(queue.permits.available_permits(), 64);
        // A record larger than the whole budget still passes, alone.
        let huge = 1024 * 1024 + 1;
        assert_eq!(queue.kib_of(huge), 64);
        assert!(queue.reserve(huge).now_or_never().is_some());
        assert!(queue.reserve(1).now_or_never().is_none());
    }

    #[test]
    fn the_checkpoint_advances_behind_a_sustained_crash_loop_and_never_passes_a_record_in_flight() {
        let mut delivery = Delivery::default();
        let health = delivery.add_scope();
        let at = |s: i64| Timestamp::from_second(1_800_000_000 + s).unwrap();
        assert_eq!(delivery.watermark(at(0)), None, "not before the watch is live");
        health.live.store(true, Ordering::Relaxed);
        assert_eq!(delivery.watermark(at(0)), Some(at(0)), "nothing in flight: now");
        // A record every second, each settled three seconds later: always some in flight.
        let in_flight = &delivery.progress.in_flight;
        for now in 0..20 {
            in_flight.add(at(now).as_second(), 1);
            if now >= 3 {
                in_flight.settle(at(now - 3).as_second(), 1);
                assert_eq!(delivery.watermark(at(now)), Some(at(now - 2)), "the oldest still in flight");
            }
        }
        health.live.store(false, Ordering::Relaxed);
        assert_eq!(delivery.watermark(at(20)), None, "not while a relist may find the gap's restarts");
    }
}
