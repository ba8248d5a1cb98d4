//! The enrichment stage between detection and export, and what it reads: the kubelet's Events
//! about pods (`kube_events.rs`: their store and watches), the workload owners (`owners.rs`: the
//! ReplicaSet/Job metadata watches), node mode's lookups of both for its failing pods
//! (`lookups.rs`), storm control (`storm.rs`, pure), the waiting room (`waiting_room.rs`, pure)
//! and previous logs (`prevlogs.rs`). The rules it applies (causes, owner naming) are `rules/`.
//!
//! ```text
//! watch tasks -> [detected channel] -> enricher -> [export channel] -> export task
//!                                         ^ KubeEventStore <- Events watch (node mode: lookups)
//!                                         ^ OwnerIndex <- ReplicaSet/Job metadata watch (node mode: lookups)
//! ```
//!
//! An Event often arrives after the status update that shows the restart. When the status leaves
//! the cause open (a kill by signal, no details), the record waits up to `EVENT_WAIT` for one: the
//! record is delayed, never dropped. At most `MAX_PENDING` records wait (beyond, the stage stops
//! reading: backpressure), and at most `PENDING_BUDGET_BYTES` of them (each record's bytes, plus
//! `--previous-logs-max-bytes` for one whose logs are being fetched): past the budget, the oldest
//! waiting records go on at once, classified from what is known, without the logs still being
//! fetched, and are counted (`BudgetUsage::shed`). The store keeps only relevant Events
//! (`causes::RELEVANT_REASONS`), at most `EVENTS_PER_POD` per pod, for `EVENT_TTL`, for at most
//! `MAX_PODS_WITH_EVENTS` pods.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

pub mod kube_events;
pub mod lookups;
pub mod nodes;
pub mod owners;
pub mod prevlogs;
pub mod storm;
pub(crate) mod waiting_room;

pub use kube_events::KubeEventStore;
use waiting_room::{Released, WaitingRoom};

use crate::accounting::BudgetUsage;
use crate::record::{Record, RecordKind};
use crate::rules::causes;

/// Longest wait for a late Event before a record is classified from what is known.
pub const EVENT_WAIT: Duration = Duration::from_secs(3);
/// Records waiting for Events at most; beyond, they are classified at once.
pub(crate) const MAX_PENDING: usize = 1024;
/// How often waiting records are re-examined.
const PENDING_CHECK: Duration = Duration::from_millis(100);
/// The default budget of the records waiting for a late Event or their previous logs, in bytes.
pub const PENDING_BUDGET_BYTES: usize = 8 * 1024 * 1024;

/// Options of the enrichment stage.
#[derive(Default)]
pub struct Enrichment {
    pub kube_events: Option<Arc<KubeEventStore>>,
    pub owners: Option<Arc<crate::enrich::owners::OwnerIndex>>,
    /// Node name -> uid, for `k8s.node.uid`.
    pub nodes: Option<Arc<nodes::NodeIndex>>,
    /// Node mode: the Events and owners of the failing pods, looked up instead of watched.
    pub lookups: Option<Arc<lookups::Lookups>>,
    pub storm: Option<crate::enrich::storm::StormControl>,
    /// Opt-in: the previous instance's last log lines.
    pub previous_logs: Option<crate::enrich::prevlogs::PreviousLogs>,
    /// Records settled without reaching the exporter (held by storm control and represented by
    /// another record) are counted here, so the checkpoint's accounting stays exact.
    pub progress: Arc<crate::accounting::ExportProgress>,
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The waiting records' budget in bytes (`PENDING_BUDGET_BYTES` when 0) and their use.
    pub pending_budget_bytes: usize,
    pub pending_usage: Arc<BudgetUsage>,
}

/// Forwards a record (and what it stands for) to the export channel; `false` when it is gone.
async fn forward(
    tx: &mpsc::Sender<Record>,
    progress: &crate::accounting::ExportProgress,
    ev: Record,
    records: u64,
) -> bool {
    progress.coalesced.fetch_add(records.saturating_sub(1), std::sync::atomic::Ordering::Relaxed);
    progress.in_flight.settle(ev.in_flight_second(), records.saturating_sub(1));
    progress.queue.reserve(ev.approx_bytes()).await;
    tx.send(ev).await.is_ok()
}

/// A fetch of previous logs in progress.
type LogsFetch = tokio::task::JoinHandle<Result<String, prevlogs::FetchError>>;

/// Puts the fetched previous logs on the record (a fetch still running is aborted and counted
/// with `unfinished`: `shutdown`, or `over_budget` for a record released early) and counts the
/// outcome.
async fn attach_logs(
    ev: &mut Record,
    handle: LogsFetch,
    unfinished: &'static str,
    metrics: Option<&crate::metrics::Metrics>,
) {
    let outcome = if handle.is_finished() {
        match handle.await {
            Ok(Ok(text)) => {
                ev.previous_logs = Some(text);
                "ok"
            }
            Ok(Err(e)) => {
                tracing::debug!(pod = %ev.pod.name, container = %ev.container.name, error = %e, "Previous logs not fetched.");
                e.outcome()
            }
            Err(_) => "error",
        }
    } else {
        handle.abort();
        unfinished
    };
    if let Some(m) = metrics {
        m.previous_logs_fetch(outcome);
    }
}

/// What goes on to export, with the records each stands for: storm control holds what repeats
/// within its window (everything it holds once `closing`); without it, everything ready.
fn release(
    storm: Option<&mut storm::StormControl>,
    ready: &mut Vec<Record>,
    now: Instant,
    closing: bool,
    in_flight: &crate::accounting::InFlightBySecond,
) -> Vec<(Record, u64)> {
    let Some(sc) = storm else {
        return ready.drain(..).map(|ev| (ev, 1)).collect();
    };
    let mut out: Vec<(Record, u64)> = Vec::new();
    for ev in ready.drain(..) {
        out.extend(sc.offer_in_flight(ev, now, Some(in_flight)).map(|ev| (ev, 1)));
    }
    out.extend(sc.tick(now));
    if closing {
        out.extend(sc.drain());
    }
    out
}

/// Classifies every detected record (waiting for a late kube event where useful) and forwards it
/// to the export channel. Ends when the detected channel closes, after forwarding what waits.
pub async fn run(mut rx: mpsc::Receiver<Record>, tx: mpsc::Sender<Record>, opts: Enrichment) {
    let mut stage = Stage::new(opts);
    let mut tick = tokio::time::interval(PENDING_CHECK);
    let mut open = true;
    while open || !stage.room.is_empty() {
        tokio::select! {
            item = rx.recv(), if open && stage.room.len() < MAX_PENDING => match item {
                Some(ev) => stage.admit(ev).await,
                None => open = false,
            },
            _ = tick.tick(), if !stage.room.is_empty() || !open || stage.storm.is_some() => {}
        }
        stage.let_out(Instant::now(), !open).await;
        let closing = !open && stage.room.is_empty();
        for (ev, records) in
            release(stage.storm.as_mut(), &mut stage.ready, Instant::now(), closing, &stage.progress.in_flight)
        {
            if !forward(&tx, &stage.progress, ev, records).await {
                return;
            }
        }
    }
}

/// The enrichment stage's state: what it reads, the waiting room, and the records ready to go on.
struct Stage {
    kube_events: Option<Arc<KubeEventStore>>,
    owners: Option<Arc<owners::OwnerIndex>>,
    nodes: Option<Arc<nodes::NodeIndex>>,
    lookups: Option<Arc<lookups::Lookups>>,
    storm: Option<storm::StormControl>,
    previous_logs: Option<prevlogs::PreviousLogs>,
    progress: Arc<crate::accounting::ExportProgress>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    room: WaitingRoom<LogsFetch>,
    usage: Arc<BudgetUsage>,
    ready: Vec<Record>,
}

impl Stage {
    fn new(opts: Enrichment) -> Self {
        let budget = if opts.pending_budget_bytes == 0 { PENDING_BUDGET_BYTES } else { opts.pending_budget_bytes };
        opts.pending_usage.budget_bytes.store(budget as u64, Ordering::Relaxed);
        Stage {
            kube_events: opts.kube_events,
            owners: opts.owners,
            nodes: opts.nodes,
            lookups: opts.lookups,
            storm: opts.storm,
            previous_logs: opts.previous_logs,
            progress: opts.progress,
            metrics: opts.metrics,
            room: WaitingRoom::new(budget),
            usage: opts.pending_usage,
            ready: Vec::new(),
        }
    }

    /// A detected record: owners named and cause classified, then ready, or in the waiting room
    /// for a late kube event (its status leaves the cause open) or its previous logs.
    async fn admit(&mut self, mut ev: Record) {
        if let Some(l) = &self.lookups {
            l.owners(&ev.pod.namespace, &ev.pod.owners).await;
        }
        if let Some(index) = &self.owners {
            index.complete(&mut ev.pod.owners);
        }
        if let (Some(index), Some(node)) = (&self.nodes, ev.pod.node_name.as_deref()) {
            ev.pod.node_uid = index.uid(node);
        }
        classify(&mut ev, self.kube_events.as_deref());
        if let Some(l) = self.lookups.as_ref().filter(|l| l.fetches_events() && wants_kube_events(&ev)) {
            look_up_events(l, &mut ev, self.kube_events.as_deref()).await;
        }
        // Node mode waits only while its lookups can bring an Event.
        let events_coming = self.lookups.as_ref().is_none_or(|l| l.fetches_events());
        let wait_for_events = self.kube_events.is_some() && events_coming && waits_for_kube_events(&ev);
        // Previous logs are those of a restarted container's dead instance.
        let logs = self.previous_logs.as_ref().filter(|_| ev.kind == RecordKind::Restart).map(|p| {
            let (p, ns, pod, c) = (p.clone(), ev.pod.namespace.clone(), ev.pod.name.clone(), ev.container.name.clone());
            tokio::spawn(async move { p.fetch(&ns, &pod, &c).await })
        });
        if wait_for_events || logs.is_some() {
            let events_until = wait_for_events.then(|| Instant::now() + EVENT_WAIT);
            let logs_reserve = if logs.is_some() { self.previous_logs.as_ref().map_or(0, |p| p.max_bytes) } else { 0 };
            let bytes = ev.approx_bytes() + logs_reserve;
            self.room.admit(ev, events_until, logs, bytes);
        } else {
            self.count(&ev);
            self.ready.push(ev);
        }
        self.usage.bytes.store(self.room.bytes() as u64, Ordering::Relaxed);
    }

    /// Lets out of the waiting room what waited long enough, found its explanation or has its
    /// logs; everything once `closing`; past the budget, the oldest first until it fits.
    async fn let_out(&mut self, now: Instant, closing: bool) {
        let store = self.kube_events.clone();
        for released in self.room.release(now, closing, |ev| classify(ev, store.as_deref())) {
            let Released { record: mut ev, logs, early } = released;
            if early {
                self.usage.shed.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(handle) = logs {
                let unfinished = if early { "over_budget" } else { "shutdown" };
                attach_logs(&mut ev, handle, unfinished, self.metrics.as_deref()).await;
            }
            self.count(&ev);
            self.ready.push(ev);
        }
        self.usage.bytes.store(self.room.bytes() as u64, Ordering::Relaxed);
    }

    /// Counted once its cause is final (after the kube events it waited for), so that the
    /// metric's `cause` is the record's.
    fn count(&self, ev: &Record) {
        if let Some(m) = &self.metrics {
            m.restart_detected(ev);
            m.count_per_workload(ev);
        }
    }
}

/// Node mode: the Events of a record's pod looked up now, and, when its cause is still open, once
/// more just before its wait for a late Event ends (in the background: the waiting room then
/// classifies it with what came).
async fn look_up_events(l: &Arc<lookups::Lookups>, ev: &mut Record, store: Option<&KubeEventStore>) {
    l.events(&ev.pod.namespace, &ev.pod.uid).await;
    classify(ev, store);
    if waits_for_kube_events(ev) {
        let (l, namespace, uid) = (l.clone(), ev.pod.namespace.clone(), ev.pod.uid.clone());
        tokio::spawn(async move {
            tokio::time::sleep(EVENT_WAIT.saturating_sub(LATE_LOOKUP_MARGIN)).await;
            l.events(&namespace, &uid).await;
        });
    }
}

/// How long before the end of a record's wait for a late Event its second lookup goes.
const LATE_LOOKUP_MARGIN: Duration = Duration::from_millis(700);

/// Whether the kube events about a record's pod can change it: a restart or failure whose status
/// leaves its cause open, a pod that never started.
fn wants_kube_events(ev: &Record) -> bool {
    waits_for_kube_events(ev) || ev.kind == RecordKind::PodStartFailure
}

/// The cause of a restart or a failure, from its status and the kube events kept about its pod
/// (and its node). Start failures and evictions are classified by the detector from their reasons.
/// Whether a classified record is worth holding for a kube event still to come: a restart or
/// failure whose status leaves the cause open and that no kube event has explained yet.
pub(crate) fn waits_for_kube_events(ev: &Record) -> bool {
    matches!(ev.kind, RecordKind::Restart | RecordKind::Failure)
        && causes::restart_worth_waiting_for_events(ev)
        && ev.cause == causes::restart_cause_from_status(ev)
}

/// A record's cause, from its status and the kube events the store holds about its pod and node.
pub(crate) fn classify(ev: &mut Record, store: Option<&KubeEventStore>) {
    if matches!(ev.kind, RecordKind::PodStartFailure | RecordKind::PodStartFailureEnded) {
        pod_start_reason(ev, store);
        return;
    }
    // Pod-wide restarts and resizes are decided from the status over several observations.
    if !matches!(ev.kind, RecordKind::Restart | RecordKind::Failure) || ev.cause.is_pod_wide_or_resize() {
        return;
    }
    let Some(store) = store else {
        ev.cause = causes::restart_cause(ev, &[]);
        return;
    };
    let mut evidence = store.get(&ev.pod.uid, &ev.container.name);
    if let Some(node) = &ev.pod.node_name {
        evidence.extend(store.get(&kube_events::node_key(node), &ev.container.name));
    }
    ev.cause = causes::restart_cause(ev, &evidence);
}

/// A pod that does not start: the reason the Events about it give (a volume that cannot be
/// mounted, a sandbox that cannot be created), when its status said no more than that it waits.
fn pod_start_reason(ev: &mut Record, store: Option<&KubeEventStore>) {
    let (Some(store), Some(e)) = (store, ev.episode.as_deref_mut()) else { return };
    let events = store.get(&ev.pod.uid, "");
    if let Some(reason) = crate::rules::pending::reason_from_events(&e.reason, &events) {
        e.reason = reason.to_owned();
        ev.cause = crate::rules::pending::cause(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::SlimTerminated;

    /// A restart killed by a signal with nothing more said: worth waiting for an Event. Its
    /// termination message makes it about 4.5 KiB.
    fn killed(i: u32) -> Record {
        Record {
            terminated: Some(SlimTerminated { exit_code: 137, message: Some("m".repeat(4096)), ..Default::default() }),
            cause: crate::record::Cause::Unknown,
            ..Record::sample("shop", &format!("api-{i}"), "app", crate::record::Cause::Unknown)
        }
    }

    /// Runs the stage over `n` such restarts with a budget of `budget` bytes; returns how many came
    /// out and the waiting records' use.
    async fn flood(n: u32, budget: usize) -> (usize, Arc<BudgetUsage>) {
        let (in_tx, in_rx) = mpsc::channel(n as usize);
        let (out_tx, mut out_rx) = mpsc::channel(n as usize);
        let usage = Arc::new(BudgetUsage::default());
        let opts = Enrichment {
            kube_events: Some(Arc::new(KubeEventStore::default())),
            pending_budget_bytes: budget,
            pending_usage: usage.clone(),
            ..Default::default()
        };
        assert!(causes::restart_worth_waiting_for_events(&killed(0)), "the flood must wait for Events");
        let stage = tokio::spawn(run(in_rx, out_tx, opts));
        for i in 0..n {
            in_tx.send(killed(i)).await.unwrap();
        }
        drop(in_tx);
        stage.await.unwrap();
        let mut out = 0;
        while out_rx.recv().await.is_some() {
            out += 1;
        }
        (out, usage)
    }

    #[tokio::test]
    async fn past_their_byte_budget_waiting_records_go_on_early_and_none_is_lost() {
        let (out, usage) = flood(40, 16 * 1024).await;
        assert_eq!(out, 40, "every record goes on");
        let early = usage.shed.load(Ordering::Relaxed);
        assert!(early >= 30, "at most about 4 of 4.5 KiB fit in 16 KiB: {early} released early");
        assert_eq!(usage.bytes.load(Ordering::Relaxed), 0);
        assert_eq!(usage.budget_bytes.load(Ordering::Relaxed), 16 * 1024);
    }

    #[tokio::test]
    async fn within_the_budget_records_wait_for_their_events() {
        let (out, usage) = flood(40, PENDING_BUDGET_BYTES).await;
        assert_eq!(out, 40);
        assert_eq!(usage.shed.load(Ordering::Relaxed), 0);
    }
}
