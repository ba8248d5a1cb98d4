//! The enrichment stage between detection and export: the kubelet's Events about pods, and the
//! cause of each restart decided from them and the status (`causes.rs`).
//!
//! ```text
//! watch tasks -> [detected channel] -> enricher -> [export channel] -> export task
//!                                         ^ EventStore <- Events watch
//!                                         ^ OwnerIndex <- ReplicaSet/Job metadata watch
//! ```
//!
//! An Event often arrives after the status update that shows the restart. When the status leaves
//! the cause open (a kill by signal, no details), the record waits up to `EVENT_WAIT` for one: the
//! record is delayed, never dropped. At most `MAX_PENDING` records wait; beyond that they are
//! classified at once. The store keeps only relevant Events (`causes::RELEVANT_REASONS`), at most
//! `EVENTS_PER_POD` per pod, for `EVENT_TTL`, for at most `MAX_PODS_WITH_EVENTS` pods.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::ListParams;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::causes::{self, PodEvent};
use crate::event::RestartEvent;
use crate::kube_errors::{Failure, classify as classify_kube};

/// Longest wait for a late Event before a record is classified from what is known.
pub const EVENT_WAIT: Duration = Duration::from_secs(3);
/// Records waiting for Events at most; beyond, they are classified at once.
pub const MAX_PENDING: usize = 1024;
/// Events kept per pod.
pub const EVENTS_PER_POD: usize = 8;
/// How long an Event is kept.
pub const EVENT_TTL: Duration = Duration::from_secs(600);
/// Pods with kept Events at most (memory bound on a large cluster).
pub const MAX_PODS_WITH_EVENTS: usize = 100_000;
/// How often waiting records are re-examined.
const PENDING_CHECK: Duration = Duration::from_millis(100);

/// Recent relevant Events, by pod uid.
#[derive(Debug, Default)]
pub struct EventStore {
    pods: Mutex<HashMap<String, VecDeque<PodEvent>>>,
}

impl EventStore {
    /// Keeps `ev` for the pod `uid`, dropping expired and surplus Events.
    pub fn insert(&self, uid: &str, ev: PodEvent, now: Timestamp) {
        let Ok(mut pods) = self.pods.lock() else { return };
        let ttl = jiff::SignedDuration::try_from(EVENT_TTL).unwrap_or_default();
        let fresh = |e: &PodEvent| now.duration_since(e.time) < ttl;
        if pods.len() >= MAX_PODS_WITH_EVENTS && !pods.contains_key(uid) {
            pods.retain(|_, q| q.iter().any(fresh));
            if pods.len() >= MAX_PODS_WITH_EVENTS {
                return;
            }
        }
        let q = pods.entry(uid.to_owned()).or_default();
        if q.iter().any(|e| e == &ev) {
            return;
        }
        q.retain(fresh);
        q.push_back(ev);
        while q.len() > EVENTS_PER_POD {
            q.pop_front();
        }
    }

    /// The Events kept for a pod.
    pub fn get(&self, uid: &str) -> Vec<PodEvent> {
        self.pods.lock().ok().and_then(|p| p.get(uid).map(|q| q.iter().cloned().collect())).unwrap_or_default()
    }

    pub fn forget(&self, uid: &str) {
        if let Ok(mut p) = self.pods.lock() {
            p.remove(uid);
        }
    }

    pub fn pods(&self) -> usize {
        self.pods.lock().map(|p| p.len()).unwrap_or(0)
    }
}

/// A core/v1 Event, reduced to what classification reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimEvent {
    #[serde(default, deserialize_with = "crate::pod::deserialize_slim_metadata_meta")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub involved_object: InvolvedObject,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub last_timestamp: Option<Timestamp>,
    #[serde(default)]
    pub first_timestamp: Option<Timestamp>,
    #[serde(default)]
    pub event_time: Option<Timestamp>,
    #[serde(default)]
    pub series: Option<EventSeries>,
    #[serde(default)]
    pub source: Option<EventSource>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvolvedObject {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub field_path: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSeries {
    #[serde(default)]
    pub last_observed_time: Option<Timestamp>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct EventSource {
    #[serde(default)]
    pub host: Option<String>,
}

impl kube::Resource for SlimEvent {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;
    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        "Event".into()
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        "events".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl SlimEvent {
    /// The Event as classification sees it, if it is about a pod and relevant.
    pub fn pod_event(&self) -> Option<(String, PodEvent)> {
        if self.involved_object.kind.as_deref() != Some("Pod") {
            return None;
        }
        let reason = self.reason.clone().filter(|r| causes::is_relevant(r))?;
        let uid = self.involved_object.uid.clone().filter(|u| !u.is_empty())?;
        let time = self
            .series
            .as_ref()
            .and_then(|s| s.last_observed_time)
            .or(self.last_timestamp)
            .or(self.event_time)
            .or(self.first_timestamp)?;
        let container =
            self.involved_object.field_path.as_deref().and_then(causes::container_of_field_path).map(str::to_owned);
        Some((uid, PodEvent { reason, message: self.message.clone().unwrap_or_default(), container, time }))
    }
}

/// The verbs the agent needs on events (optional feature).
pub const EVENT_VERBS: &str = "list,watch";

/// Checks access to Events in each scope; `false` (after saying so once) when RBAC denies it.
pub async fn events_allowed(apis: &[(Api<SlimEvent>, String)]) -> bool {
    for (api, desc) in apis {
        if let Err(e) = api.list(&ListParams::default().limit(1)).await {
            if classify_kube(&e) == Failure::Forbidden {
                tracing::warn!(scope = %desc,
                    "No RBAC access to events (403 Forbidden): grant verbs [list,watch] on resource \"events\" to tell \
                     probe kills and evictions apart; classifying restarts from the container status alone.");
            } else {
                tracing::warn!(scope = %desc, error = %e, "Cannot list events; classifying restarts from the container status alone.");
            }
            return false;
        }
    }
    true
}

/// Watches pod Events into `store` until `stop`. In node mode only Events from that node's kubelet
/// (`source.host`) and pod-level Events without a host are kept.
pub async fn watch_events(api: Api<SlimEvent>, node: Option<String>, store: Arc<EventStore>, stop: CancellationToken) {
    let cfg = watcher::Config::default().fields("involvedObject.kind=Pod").page_size(500);
    let stream = watcher::watcher(api, cfg).default_backoff().take_until(stop.cancelled_owned());
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(Event::Apply(e)) | Ok(Event::InitApply(e)) => {
                let host = e.source.as_ref().and_then(|s| s.host.as_deref());
                if node.as_deref().is_some_and(|n| host.is_some_and(|h| h != n)) {
                    continue;
                }
                if let Some((uid, ev)) = e.pod_event() {
                    store.insert(&uid, ev, Timestamp::now());
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "Event watch error; retrying with backoff."),
        }
    }
}

/// Classifies every detected restart (waiting for a late Event where useful) and forwards it to
/// the export channel. Ends when the detected channel closes, after forwarding what waits.
/// Options of the enrichment stage.
#[derive(Default)]
pub struct Enrichment {
    pub events: Option<Arc<EventStore>>,
    pub owners: Option<Arc<crate::owners::OwnerIndex>>,
    pub storm: Option<crate::storm::StormControl>,
    /// Opt-in: the previous instance's last log lines.
    pub previous_logs: Option<crate::prevlogs::PreviousLogs>,
    /// Records settled without reaching the exporter (held by storm control and represented by
    /// another record) are counted here, so the checkpoint's accounting stays exact.
    pub settled: Arc<std::sync::atomic::AtomicU64>,
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// Forwards a record (and what it stands for) to the export channel; `false` when it is gone.
async fn forward(
    tx: &mpsc::Sender<RestartEvent>,
    settled: &std::sync::atomic::AtomicU64,
    ev: RestartEvent,
    records: u64,
) -> bool {
    settled.fetch_add(records.saturating_sub(1), std::sync::atomic::Ordering::Relaxed);
    tx.send(ev).await.is_ok()
}

/// A record waiting for a late Event, or for its previous logs.
struct Pending {
    ev: RestartEvent,
    events_until: Option<Instant>,
    logs: Option<tokio::task::JoinHandle<Result<String, crate::prevlogs::FetchError>>>,
}

pub async fn run(mut rx: mpsc::Receiver<RestartEvent>, tx: mpsc::Sender<RestartEvent>, opts: Enrichment) {
    let Enrichment { events: store, owners, mut storm, previous_logs, settled, metrics } = opts;
    let mut pending: Vec<Pending> = Vec::new();
    let mut ready: Vec<RestartEvent> = Vec::new();
    let mut tick = tokio::time::interval(PENDING_CHECK);
    let mut open = true;
    let classify = |ev: &mut RestartEvent, store: &Option<Arc<EventStore>>| {
        let events = store.as_ref().map(|s| s.get(&ev.pod.uid)).unwrap_or_default();
        ev.cause = causes::classify(ev.terminated.as_ref(), ev.pod_reason.as_deref(), &ev.container.name, &events);
    };
    let status_cause =
        |ev: &RestartEvent| crate::event::classify_from_status(ev.terminated.as_ref(), ev.pod_reason.as_deref());
    while open || !pending.is_empty() {
        tokio::select! {
            item = rx.recv(), if open && pending.len() < MAX_PENDING => match item {
                Some(mut ev) => {
                    if let Some(index) = &owners {
                        index.complete(&mut ev.pod.owners);
                    }
                    classify(&mut ev, &store);
                    let wait_for_events = store.is_some()
                        && causes::worth_waiting_for_events(ev.terminated.as_ref(), ev.pod_reason.as_deref())
                        && ev.cause == status_cause(&ev);
                    let logs = previous_logs.as_ref().map(|p| {
                        let (p, ns, pod, c) = (p.clone(), ev.pod.namespace.clone(), ev.pod.name.clone(), ev.container.name.clone());
                        tokio::spawn(async move { p.fetch(&ns, &pod, &c).await })
                    });
                    if wait_for_events || logs.is_some() {
                        let events_until = wait_for_events.then(|| Instant::now() + EVENT_WAIT);
                        pending.push(Pending { ev, events_until, logs });
                    } else {
                        ready.push(ev);
                    }
                }
                None => open = false,
            },
            _ = tick.tick(), if !pending.is_empty() || !open || storm.is_some() => {}
        }
        // Forward what waited long enough or found its explanation, and whose logs are fetched
        // (or failed); everything once closing.
        let now = Instant::now();
        let mut i = 0;
        while i < pending.len() {
            let p = &mut pending[i];
            if p.events_until.is_some() {
                classify(&mut p.ev, &store);
            }
            let events_done = p.events_until.is_none_or(|d| d <= now || p.ev.cause != status_cause(&p.ev));
            let logs_done = p.logs.as_ref().is_none_or(|h| h.is_finished());
            if !(open && !(events_done && logs_done)) {
                let Pending { mut ev, logs, .. } = pending.swap_remove(i);
                if let Some(handle) = logs {
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
                        "shutdown"
                    };
                    if let Some(m) = &metrics {
                        m.previous_logs_fetch(outcome);
                    }
                }
                ready.push(ev);
            } else {
                i += 1;
            }
        }
        // Storm control holds what repeats within its window; everything else goes on.
        let mut out: Vec<(RestartEvent, u64)> = Vec::new();
        match storm.as_mut() {
            Some(sc) => {
                for ev in ready.drain(..) {
                    out.extend(sc.offer(ev, now).map(|ev| (ev, 1)));
                }
                out.extend(sc.tick(now));
                if !open && pending.is_empty() {
                    out.extend(sc.drain());
                }
            }
            None => out.extend(ready.drain(..).map(|ev| (ev, 1))),
        }
        for (ev, records) in out {
            if !forward(&tx, &settled, ev, records).await {
                return;
            }
        }
    }
}
