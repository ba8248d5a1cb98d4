//! High availability (`--leader-elect`): leader election on a `coordination.k8s.io/v1` Lease,
//! and the standby's buffer.
//!
//! Two replicas both watch, detect and classify; only the leader exports. The rules are pure
//! ([`decide`], [`claimed`], [`StandbyBuffer`]) and the tasks are thin loops around them: [`run`]
//! keeps or seeks the Lease and publishes this replica's [`Role`]; [`gate`] sits between the
//! enrichment stage and the export queue, forwarding records while this replica leads and keeping
//! a byte-bounded buffer of them while it stands by. The standby lets go of what the leader's
//! catch-up checkpoint covers; when it takes over, it exports what the checkpoint does not cover.
//!
//! Expiry is judged as client-go judges it, by this replica's own clock: a holder that has not
//! renewed for the lease duration since this replica saw its last renewal has lost the Lease. To
//! take over soon after the leader dies, the renew time written in the Lease is trusted too, but
//! never by more than one retry period (two nodes' clocks may differ): a leader steps down when it
//! has not renewed for the renew deadline, which is shorter than the lease duration less one retry
//! period, so two replicas never export as leaders for longer than that overlap.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::accounting::BudgetUsage;
use crate::accounting::ExportProgress;
use crate::checkpoint::CheckpointStore;
use crate::kube_errors::{Failure, classify};
use crate::record::Record;

/// Default name of the election Lease (in the agent's namespace, beside the checkpoint Lease).
pub(crate) const DEFAULT_LEASE_NAME: &str = "restart-watcher-leader";
/// The standby buffer's budget: records detected while standing by, not yet covered by the
/// leader's checkpoint. Past it, the oldest go first (they are the likeliest to be covered).
pub(crate) const STANDBY_BUFFER_BUDGET_BYTES: usize = 8 << 20;
/// How far before the leader's checkpoint a standby still keeps what it detected, and exports it
/// when it takes over: the two replicas' watches do not see a status update at the same instant,
/// and their clocks may differ (by well under a second with NTP). A restart in this margin may
/// be delivered twice, with the same `restart_watcher.restart.id`.
pub const HANDOFF_MARGIN: Duration = Duration::from_secs(10);
/// Longest lease duration accepted.
pub(crate) const MAX_LEASE_DURATION: Duration = Duration::from_secs(300);

/// What this replica does with what it detects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Exports (and writes the checkpoint). A replica without `--leader-elect` always leads.
    Leader,
    /// Watches and detects, keeps a bounded buffer, exports nothing.
    Standby,
}

/// The election's timing, as client-go names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long a Lease not renewed stays the holder's.
    pub lease_duration: Duration,
    /// A leader that could not renew for this long steps down.
    pub renew_deadline: Duration,
    /// How often the Lease is renewed, or looked at by a standby.
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl Timing {
    /// `Err` with what to fix unless `retry period < renew deadline < lease duration - retry
    /// period` and the lease duration is at most [`MAX_LEASE_DURATION`].
    pub fn check(&self) -> Result<(), String> {
        let Timing { lease_duration: d, renew_deadline: r, retry_period: p } = *self;
        if p.is_zero() || p >= r || r >= d.saturating_sub(p) || d > MAX_LEASE_DURATION {
            return Err(format!(
                "the lease duration ({d:?}), renew deadline ({r:?}) and retry period ({p:?}) must satisfy \
                 0 < retry period < renew deadline < lease duration - retry period, and lease duration <= {MAX_LEASE_DURATION:?} \
                 (e.g. 15s, 10s, 2s)"
            ));
        }
        Ok(())
    }
}

/// What election reads of the Lease.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LeaseView {
    pub holder: Option<String>,
    pub renew_time: Option<Timestamp>,
    pub duration: Option<Duration>,
}

impl LeaseView {
    pub fn of(lease: &Lease) -> Self {
        let spec = lease.spec.as_ref();
        LeaseView {
            holder: spec.and_then(|s| s.holder_identity.clone()).filter(|h| !h.is_empty()),
            renew_time: spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
            duration: spec
                .and_then(|s| s.lease_duration_seconds)
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs),
        }
    }
}

/// One step of election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The Lease is free, expired or this replica's: write it with this replica as holder.
    Take,
    /// Another replica holds it: look again after `recheck_in`.
    Follow { holder: String, recheck_in: Duration },
}

/// What to do, given the Lease (`None`: there is none yet), how long it has shown the same holder
/// and renew time by this replica's clock (`unchanged_for`), and the wall-clock time `now`.
pub(crate) fn decide(
    me: &str,
    view: Option<&LeaseView>,
    unchanged_for: Duration,
    now: Timestamp,
    timing: Timing,
) -> Step {
    let Some(view) = view else { return Step::Take };
    let holder = match view.holder.as_deref() {
        None => return Step::Take,
        Some(h) if h == me => return Step::Take,
        Some(h) => h,
    };
    let duration = view.duration.filter(|d| !d.is_zero()).unwrap_or(timing.lease_duration);
    // client-go's rule: by this replica's clock alone.
    let by_local = duration.saturating_sub(unchanged_for);
    // By the renew time the holder wrote, trusted by at most one retry period.
    let by_record = view
        .renew_time
        .and_then(|renew| renew.checked_add(jiff::SignedDuration::try_from(duration).ok()?).ok())
        .map(|expires| Duration::try_from(expires.duration_since(now)).unwrap_or(Duration::ZERO))
        .unwrap_or(by_local);
    let left = by_local.min(by_record.max(by_local.saturating_sub(timing.retry_period)));
    if left.is_zero() {
        Step::Take
    } else {
        Step::Follow { holder: holder.to_owned(), recheck_in: left.min(timing.retry_period) }
    }
}

/// The Lease as this replica writes it to take or renew it: `existing` (or a new one named
/// `name` in `namespace`) with this replica as holder, renewed at `now`. Taking it from another
/// holder sets the acquire time and counts a transition.
pub(crate) fn claimed(
    existing: Option<Lease>,
    name: &str,
    namespace: &str,
    me: &str,
    now: Timestamp,
    timing: Timing,
) -> Lease {
    let mut lease = existing.unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..Default::default()
        },
        spec: None,
    });
    let spec = lease.spec.get_or_insert_default();
    let previous = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
    if previous != Some(me) {
        if previous.is_some() {
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        spec.acquire_time = Some(MicroTime(now));
        spec.holder_identity = Some(me.to_owned());
    }
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(i32::try_from(timing.lease_duration.as_secs()).unwrap_or(i32::MAX).max(1));
    lease
}

/// Errors of the election.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error(
        "--leader-elect: no RBAC access to Lease {namespace}/{name} ({verb}: 403 Forbidden): grant get, create, \
         update on leases.coordination.k8s.io in namespace {namespace}, or run one replica without --leader-elect"
    )]
    Forbidden { namespace: String, name: String, verb: &'static str },
    #[error("--leader-elect: cannot {verb} Lease {namespace}/{name}: {source}")]
    Kube {
        namespace: String,
        name: String,
        verb: &'static str,
        #[source]
        source: kube::Error,
    },
}

/// The election Lease and this replica's part in it.
#[derive(Clone)]
pub struct Election {
    pub api: Api<Lease>,
    pub namespace: String,
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    pub timing: Timing,
}

impl Election {
    fn err(&self, verb: &'static str, source: kube::Error) -> LeaderError {
        let (namespace, name) = (self.namespace.clone(), self.name.clone());
        if classify(&source) == Failure::Forbidden {
            LeaderError::Forbidden { namespace, name, verb }
        } else {
            LeaderError::Kube { namespace, name, verb, source }
        }
    }

    /// Checks at startup that the Lease can be read (a 403 is a configuration to fix).
    pub async fn preflight(&self) -> Result<(), LeaderError> {
        self.api.get_opt(&self.name).await.map(|_| ()).map_err(|e| self.err("get", e))
    }

    /// Writes `lease` (creating it when `create`); `Ok(false)` when another replica wrote it first.
    async fn write(&self, lease: &Lease, create: bool) -> Result<bool, LeaderError> {
        let pp = PostParams::default();
        let result = if create {
            self.api.create(&pp, lease).await.map(|_| ())
        } else {
            self.api.replace(&self.name, &pp, lease).await.map(|_| ())
        };
        match result {
            Ok(()) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(self.err(if create { "create" } else { "update" }, e)),
        }
    }

    /// Gives the Lease up (at shutdown, once everything is exported), so that a standby takes
    /// over at its next look instead of waiting for the lease to expire.
    async fn release(&self) -> Result<(), LeaderError> {
        let Some(mut lease) = self.api.get_opt(&self.name).await.map_err(|e| self.err("get", e))? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        self.write(&lease, false).await.map(|_| ())
    }
}

/// What the election loop remembers between two looks at the Lease.
struct Seen {
    /// The Lease as last seen, and when it last changed (this replica's clock).
    view: Option<(LeaseView, Instant)>,
    /// While leading: the last successful renewal.
    renewed: Option<Instant>,
    /// The holder this replica last said it follows.
    following: Option<String>,
    /// An error was logged at warn level since the last success.
    warned: bool,
}

/// Keeps or seeks the Lease until `stop`, publishing this replica's role in `role`; at `stop`, a
/// leader releases the Lease. Errors are retried every retry period; a leader that cannot renew
/// within the renew deadline steps down.
pub async fn run(election: Election, role: watch::Sender<Role>, stop: CancellationToken) {
    let mut seen = Seen { view: None, renewed: None, following: None, warned: false };
    tracing::info!(
        lease = %format!("{}/{}", election.namespace, election.name),
        identity = %election.identity,
        lease_duration_secs = election.timing.lease_duration.as_secs(),
        "Leader election: only the leader exports; a standby keeps a bounded buffer and takes over when the Lease expires."
    );
    loop {
        let wait = look(&election, &role, &mut seen).await;
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    if *role.borrow() == Role::Leader {
        match election.release().await {
            Ok(()) => tracing::info!("Released the leadership: a standby takes over at its next look."),
            Err(e) => tracing::warn!(error = %e, "Cannot release the Lease; a standby takes over when it expires."),
        }
    }
}

/// One look at the Lease: take or renew it, or follow its holder. Returns when to look again.
async fn look(election: &Election, role: &watch::Sender<Role>, seen: &mut Seen) -> Duration {
    let timing = election.timing;
    let now = Instant::now();
    let step_down = |why: &str| {
        if *role.borrow() == Role::Leader {
            tracing::warn!(reason = why, "Lost the leadership: standing by (records are kept, not exported).");
            let _ = role.send(Role::Standby);
        }
    };
    let lease = match election.api.get_opt(&election.name).await {
        Ok(lease) => lease,
        Err(e) => {
            let e = election.err("get", e);
            report(&e, &mut seen.warned, "Cannot read the election Lease; retrying.");
            if seen.renewed.is_some_and(|at| now.duration_since(at) > timing.renew_deadline) {
                seen.renewed = None;
                step_down("could not renew the Lease within the renew deadline");
            }
            return timing.retry_period;
        }
    };
    let view = lease.as_ref().map(LeaseView::of);
    let unchanged_for = match (&seen.view, &view) {
        (Some((old, at)), Some(new)) if old == new => now.duration_since(*at),
        _ => {
            seen.view = view.clone().map(|v| (v, now));
            Duration::ZERO
        }
    };
    match decide(&election.identity, view.as_ref(), unchanged_for, Timestamp::now(), timing) {
        Step::Take => {
            let create = lease.is_none();
            let claim =
                claimed(lease, &election.name, &election.namespace, &election.identity, Timestamp::now(), timing);
            match election.write(&claim, create).await {
                Ok(true) => {
                    seen.warned = false;
                    seen.renewed = Some(now);
                    seen.following = None;
                    if *role.borrow() != Role::Leader {
                        tracing::info!(identity = %election.identity, "Became the leader: exporting.");
                        let _ = role.send(Role::Leader);
                    }
                    timing.retry_period
                }
                // Another replica wrote the Lease first: look again at once.
                Ok(false) => Duration::from_millis(50),
                Err(e) => {
                    report(&e, &mut seen.warned, "Cannot write the election Lease; retrying.");
                    if seen.renewed.is_some_and(|at| now.duration_since(at) > timing.renew_deadline) {
                        seen.renewed = None;
                        step_down("could not renew the Lease within the renew deadline");
                    }
                    timing.retry_period
                }
            }
        }
        Step::Follow { holder, recheck_in } => {
            seen.renewed = None;
            step_down(&format!("{holder} holds the Lease"));
            if seen.following.as_deref() != Some(holder.as_str()) {
                tracing::info!(leader = %holder, "Standing by: another replica leads.");
                seen.following = Some(holder);
            }
            recheck_in.max(Duration::from_millis(50))
        }
    }
}

/// Logs an election error once per streak of failures: at error level when RBAC forbids it (no
/// replica can lead until it is fixed, and records wait in the standby buffers), else a warning.
fn report(e: &LeaderError, warned: &mut bool, what: &str) {
    if std::mem::replace(warned, true) {
        tracing::debug!(error = %e, "{what}");
    } else if matches!(e, LeaderError::Forbidden { .. }) {
        tracing::error!(error = %e, "{what}");
    } else {
        tracing::warn!(error = %e, "{what}");
    }
}

/// Records detected while standing by, oldest first, within a byte budget.
#[derive(Debug)]
pub(crate) struct StandbyBuffer {
    records: VecDeque<(Record, usize)>,
    bytes: usize,
    budget_bytes: usize,
}

impl StandbyBuffer {
    pub fn new(budget_bytes: usize) -> Self {
        StandbyBuffer { records: VecDeque::new(), bytes: 0, budget_bytes }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Keeps `ev`; past the budget the oldest records go. Returns their in-flight seconds.
    pub fn push(&mut self, ev: Record) -> Vec<i64> {
        let size = ev.approx_bytes();
        self.bytes += size;
        self.records.push_back((ev, size));
        let mut evicted = Vec::new();
        while self.bytes > self.budget_bytes {
            let Some((ev, size)) = self.records.pop_front() else { break };
            self.bytes -= size;
            evicted.push(ev.in_flight_second());
        }
        evicted
    }

    /// Lets go of what the leader's checkpoint `checkpoint` covers: records this replica observed
    /// more than [`HANDOFF_MARGIN`] before it. Returns their in-flight seconds.
    pub(crate) fn prune(&mut self, checkpoint: Timestamp) -> Vec<i64> {
        let margin = jiff::SignedDuration::try_from(HANDOFF_MARGIN).unwrap_or_default();
        let Ok(covered_until) = checkpoint.checked_sub(margin) else { return Vec::new() };
        let mut bytes = self.bytes;
        let mut covered = Vec::new();
        self.records.retain(|(ev, size)| {
            let keep = ev.observed_at >= covered_until;
            if !keep {
                bytes -= size;
                covered.push(ev.in_flight_second());
            }
            keep
        });
        self.bytes = bytes;
        covered
    }

    /// Everything kept, oldest first.
    pub(crate) fn take_all(&mut self) -> Vec<Record> {
        self.bytes = 0;
        self.records.drain(..).map(|(ev, _)| ev).collect()
    }
}

/// What the gate needs besides its channels.
pub struct Gate {
    pub role: watch::Receiver<Role>,
    /// The leader's checkpoint, read by a standby to let go of what it covers.
    pub checkpoint: Arc<CheckpointStore>,
    /// Records let go by a standby are settled here (`handed_off`), and the export queue's byte
    /// reservations of buffered records are given back.
    pub progress: Arc<ExportProgress>,
    /// The buffer's use against its budget; `shed` counts evictions past it.
    pub usage: Arc<BudgetUsage>,
    pub budget_bytes: usize,
}

/// Between enrichment and the export queue: forwards every record while this replica leads; while
/// it stands by, keeps them in a [`StandbyBuffer`], letting go of what the leader's checkpoint
/// covers (read every checkpoint interval). On becoming the leader, exports what the checkpoint
/// does not cover, then forwards. Ends when `rx` closes; a standby then leaves what it kept to the
/// leader. Every record let go is settled in `progress.handed_off`, so the counts add up.
pub async fn gate(mut rx: mpsc::Receiver<Record>, tx: mpsc::Sender<Record>, mut g: Gate) {
    let mut buffer = StandbyBuffer::new(g.budget_bytes);
    g.usage.budget_bytes.store(g.budget_bytes as u64, Ordering::Relaxed);
    let mut tick = tokio::time::interval(crate::checkpoint::CHECKPOINT_INTERVAL);
    let mut role_open = true;
    let hand_off = |seconds: &[i64]| hand_off(&g.progress, seconds);
    loop {
        // Level-triggered: whatever woke the loop, a leader holds nothing back.
        let leading = *g.role.borrow_and_update() == Role::Leader;
        if leading && !buffer.is_empty() && !take_over(&mut buffer, &g, &tx).await {
            return;
        }
        tokio::select! {
            item = rx.recv() => match item {
                Some(ev) if leading => {
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                }
                Some(ev) => {
                    g.progress.queue.release(u64::from(g.progress.queue.kib_of(ev.approx_bytes())));
                    let evicted = hand_off(&buffer.push(ev));
                    g.usage.shed.fetch_add(evicted, Ordering::Relaxed);
                }
                None => break,
            },
            // A new role: handled at the top of the loop.
            changed = g.role.changed(), if role_open => role_open = changed.is_ok(),
            _ = tick.tick(), if !leading && !buffer.is_empty() => {
                if let Ok(Some(checkpoint)) = g.checkpoint.load().await {
                    hand_off(&buffer.prune(checkpoint));
                }
            }
        }
        g.usage.bytes.store(buffer.bytes() as u64, Ordering::Relaxed);
    }
    if *g.role.borrow() == Role::Leader && !buffer.is_empty() && !take_over(&mut buffer, &g, &tx).await {
        return;
    }
    if !buffer.is_empty() {
        tracing::info!(records = buffer.len(), "Stopping as a standby: the leader delivers what this replica kept.");
        let seconds: Vec<i64> = buffer.take_all().iter().map(Record::in_flight_second).collect();
        hand_off(&seconds);
    }
    g.usage.bytes.store(0, Ordering::Relaxed);
}

/// Settles the records a standby let go (their in-flight seconds); returns how many.
fn hand_off(progress: &ExportProgress, seconds: &[i64]) -> u64 {
    progress.handed_off.fetch_add(seconds.len() as u64, Ordering::Relaxed);
    for second in seconds {
        progress.in_flight.settle(*second, 1);
    }
    seconds.len() as u64
}

/// This replica now leads: lets go of what the old leader's checkpoint covers and exports the
/// rest, oldest first. `false` when the export queue is gone.
async fn take_over(buffer: &mut StandbyBuffer, g: &Gate, tx: &mpsc::Sender<Record>) -> bool {
    let checkpoint = g.checkpoint.load().await.ok().flatten();
    let covered = hand_off(&g.progress, &checkpoint.map_or_else(Vec::new, |c| buffer.prune(c)));
    let kept = buffer.take_all();
    g.usage.bytes.store(0, Ordering::Relaxed);
    tracing::info!(
        exporting = kept.len(),
        covered,
        checkpoint = ?checkpoint.map(|c| c.to_string()),
        "Taking over: exporting the records the old leader's checkpoint does not cover."
    );
    for ev in kept {
        g.progress.queue.reserve(ev.approx_bytes()).await;
        if tx.send(ev).await.is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
    };

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn held(by: &str, renewed: i64) -> LeaseView {
        LeaseView { holder: Some(by.into()), renew_time: Some(at(renewed)), duration: Some(Duration::from_secs(15)) }
    }

    fn follow(recheck_secs: u64) -> Step {
        Step::Follow { holder: "a".into(), recheck_in: Duration::from_secs(recheck_secs) }
    }

    #[test]
    fn election_table() {
        let s = Duration::from_secs;
        // (case, lease, unchanged for, now, expected)
        let rows: Vec<(&str, Option<LeaseView>, Duration, i64, Step)> = vec![
            ("no Lease yet: take it", None, s(0), 0, Step::Take),
            ("released (no holder): take it", Some(LeaseView { holder: None, ..held("a", 0) }), s(0), 0, Step::Take),
            ("ours: renew", Some(held("b", 0)), s(0), 100, Step::Take),
            ("held and fresh: follow, look again in a retry period", Some(held("a", 0)), s(0), 1, follow(2)),
            (
                "held, renewed 14 s ago by both clocks: look again at its expiry",
                Some(held("a", 0)),
                s(14),
                14,
                follow(1),
            ),
            ("unchanged for the lease duration: take it", Some(held("a", 0)), s(15), 15, Step::Take),
            (
                "the holder's renew time is older than this replica's first look: expiry by the record",
                Some(held("a", 0)),
                s(14),
                15,
                Step::Take,
            ),
            (
                "the record says long expired but this replica just saw it: wait at least D - retry",
                Some(held("a", 0)),
                s(0),
                1000,
                follow(2),
            ),
            ("... and takes it after D - retry", Some(held("a", 0)), s(13), 1013, Step::Take),
            (
                "the holder's clock runs ahead (renew time in the future): this replica's clock decides",
                Some(held("a", 100)),
                s(14),
                14,
                follow(1),
            ),
            ("... and takes it after the lease duration", Some(held("a", 100)), s(15), 15, Step::Take),
            (
                "no renew time: this replica's clock alone",
                Some(LeaseView { renew_time: None, ..held("a", 0) }),
                s(15),
                15,
                Step::Take,
            ),
            (
                "the Lease's own duration wins over ours",
                Some(LeaseView { duration: Some(s(60)), ..held("a", 0) }),
                s(30),
                30,
                follow(2),
            ),
        ];
        for (case, view, unchanged_for, now, expected) in rows {
            assert_eq!(decide("b", view.as_ref(), unchanged_for, at(now), T), expected, "{case}");
        }
    }

    #[test]
    fn taking_the_lease_from_another_holder_counts_a_transition_and_renewing_does_not() {
        let mine = claimed(None, "l", "ns", "a", at(0), T);
        let spec = mine.spec.clone().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!((spec.lease_transitions, spec.lease_duration_seconds), (None, Some(15)));
        assert_eq!(spec.acquire_time.map(|t| t.0), Some(at(0)));
        let renewed = claimed(Some(mine), "l", "ns", "a", at(2), T).spec.unwrap();
        assert_eq!((renewed.acquire_time.map(|t| t.0), renewed.renew_time.map(|t| t.0)), (Some(at(0)), Some(at(2))));
        let taken = claimed(Some(claimed(None, "l", "ns", "a", at(0), T)), "l", "ns", "b", at(20), T).spec.unwrap();
        assert_eq!(taken.holder_identity.as_deref(), Some("b"));
        assert_eq!((taken.lease_transitions, taken.acquire_time.map(|t| t.0)), (Some(1), Some(at(20))));
    }

    #[test]
    fn timing_must_let_a_leader_step_down_before_a_standby_takes_over() {
        assert!(T.check().is_ok());
        let s = Duration::from_secs;
        for bad in [
            Timing { retry_period: s(0), ..T },
            Timing { renew_deadline: s(2), ..T },
            Timing { renew_deadline: s(13), ..T },
            Timing { lease_duration: s(400), renew_deadline: s(100), ..T },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    fn observed(i: u32, at_s: i64) -> Record {
        Record {
            observed_at: at(at_s),
            ..Record::sample("shop", &format!("api-{i}"), "app", crate::record::Cause::AppError)
        }
    }

    #[test]
    fn the_standby_buffer_keeps_the_newest_within_its_budget_and_lets_go_of_what_the_checkpoint_covers() {
        let one = observed(0, 0).approx_bytes();
        let mut buffer = StandbyBuffer::new(one * 10 + one / 2);
        let evicted: usize = (0..12).map(|i| buffer.push(observed(i, i64::from(i) * 10)).len()).sum();
        assert_eq!((evicted, buffer.len()), (2, 10), "the two oldest go past the budget");
        assert!(buffer.bytes() <= one * 10 + one / 2);
        // Checkpoint at 100 s: covered are those observed before 90 s (20, 30, ..., 80).
        assert_eq!(buffer.prune(at(100)), [20, 30, 40, 50, 60, 70, 80].map(|s| at(s).as_second()));
        let left: Vec<Timestamp> = buffer.take_all().iter().map(|e| e.observed_at).collect();
        assert_eq!(left, (9..12).map(|i| at(i * 10)).collect::<Vec<_>>());
        assert_eq!(buffer.bytes(), 0);
    }

    struct UnderTest {
        tx: mpsc::Sender<Record>,
        out: mpsc::Receiver<Record>,
        role: watch::Sender<Role>,
        progress: Arc<ExportProgress>,
        usage: Arc<BudgetUsage>,
        task: tokio::task::JoinHandle<()>,
    }

    fn gate_under_test(budget_bytes: usize) -> UnderTest {
        let (in_tx, in_rx) = mpsc::channel(64);
        let (out_tx, out_rx) = mpsc::channel(64);
        let (role_tx, role_rx) = watch::channel(Role::Standby);
        let progress = Arc::new(ExportProgress::default());
        let usage = Arc::new(BudgetUsage::default());
        let g = Gate {
            role: role_rx,
            checkpoint: Arc::new(CheckpointStore::Disabled),
            progress: progress.clone(),
            usage: usage.clone(),
            budget_bytes,
        };
        UnderTest { tx: in_tx, out: out_rx, role: role_tx, progress, usage, task: tokio::spawn(gate(in_rx, out_tx, g)) }
    }

    #[tokio::test]
    async fn a_standby_exports_nothing_until_it_leads_then_what_it_kept_then_everything() {
        let UnderTest { tx, mut out, role, progress, usage, task } = gate_under_test(STANDBY_BUFFER_BUDGET_BYTES);
        for i in 0..3 {
            tx.send(observed(i, 0)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(out.try_recv().is_err(), "a standby exports nothing");
        assert!(usage.bytes.load(Ordering::Relaxed) > 0);
        role.send(Role::Leader).unwrap();
        tx.send(observed(3, 0)).await.unwrap();
        let mut names = Vec::new();
        for _ in 0..4 {
            names.push(out.recv().await.unwrap().pod.name);
        }
        assert_eq!(names, ["api-0", "api-1", "api-2", "api-3"], "what it kept first, oldest first");
        drop(tx);
        task.await.unwrap();
        assert_eq!(progress.handed_off.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_full_standby_buffer_evicts_the_oldest_and_the_counts_add_up() {
        let one = observed(0, 0).approx_bytes();
        let UnderTest { tx, mut out, role: _role, progress, usage, task } = gate_under_test(one * 4);
        for i in 0..10 {
            let ev = observed(i, i64::from(i));
            progress.in_flight.add(ev.in_flight_second(), 1);
            tx.send(ev).await.unwrap();
        }
        drop(tx);
        task.await.unwrap();
        assert!(out.try_recv().is_err());
        assert_eq!(usage.shed.load(Ordering::Relaxed), 6, "past 4 records' worth, the oldest 6 go");
        assert_eq!(progress.handed_off.load(Ordering::Relaxed), 10, "6 evicted and 4 left to the leader at the end");
        assert_eq!(progress.in_flight.oldest(), None, "each settled: the checkpoint is not held back");
        assert_eq!(usage.bytes.load(Ordering::Relaxed), 0);
    }
}
