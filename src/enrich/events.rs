//! The kubelet's Events about pods: a watch (scoped like the pods; in node mode only that node's
//! kubelet) feeding a bounded store by pod uid, which classification reads.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::ListParams;
use kube::runtime::watcher::{self, Event};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::causes::{self, PodEvent};
use crate::kube_errors::{Failure, classify as classify_kube};
use crate::watch::{WatchTuning, tuned_watcher};

/// Events kept per pod.
pub const EVENTS_PER_POD: usize = 8;
/// How long an Event is kept.
pub const EVENT_TTL: Duration = Duration::from_secs(600);
/// Pods with kept Events at most (memory bound on a large cluster).
pub const MAX_PODS_WITH_EVENTS: usize = 100_000;

/// The store key of a Node's OOM Events (pod uids never contain `:`).
pub fn node_key(node: &str) -> String {
    format!("node:{node}")
}

/// The Event store's budget, in estimated bytes (keys, queues and Events). Past it, the oldest
/// Events are evicted down to [`EVENT_STORE_REFILL_PERCENT`] of it; a restart whose Event was
/// evicted is classified from its status alone.
pub const EVENT_STORE_BUDGET_BYTES: usize = 16 << 20;
/// After an eviction the store holds at most this share of its budget, so that evictions (a scan
/// of the store) come in batches, not at every insert.
pub const EVENT_STORE_REFILL_PERCENT: usize = 90;

/// Estimated bytes of one kept Event.
fn event_bytes(e: &PodEvent) -> usize {
    std::mem::size_of::<PodEvent>() + e.container.as_ref().map_or(0, String::len)
}

/// Estimated bytes of one pod's entry without its Events: the key, the queue, the map's slot.
fn pod_bytes(uid: &str) -> usize {
    uid.len() + std::mem::size_of::<(String, VecDeque<PodEvent>)>() + std::mem::size_of::<u64>()
}

fn queue_bytes(q: &VecDeque<PodEvent>) -> usize {
    q.iter().map(event_bytes).sum()
}

/// Estimated bytes of the whole store, counted again (after a pass that removed many entries).
fn store_bytes(pods: &HashMap<String, VecDeque<PodEvent>>) -> usize {
    pods.iter().map(|(uid, q)| pod_bytes(uid) + queue_bytes(q)).sum()
}

/// Recent relevant Events, by pod uid, and Node OOM Events, by [`node_key`], within a budget of
/// estimated bytes.
#[derive(Debug)]
pub struct EventStore {
    inner: Mutex<Inner>,
    budget_bytes: usize,
}

#[derive(Debug, Default)]
struct Inner {
    pods: HashMap<String, VecDeque<PodEvent>>,
    bytes: usize,
    evicted: u64,
}

impl Default for EventStore {
    fn default() -> Self {
        EventStore::with_budget(EVENT_STORE_BUDGET_BYTES)
    }
}

impl EventStore {
    pub fn with_budget(budget_bytes: usize) -> Self {
        EventStore { inner: Mutex::default(), budget_bytes }
    }

    /// Keeps `ev` for the pod `uid`, dropping expired and surplus Events, then the oldest Events
    /// of the store if it is past its budget.
    pub fn insert(&self, uid: &str, ev: PodEvent, now: Timestamp) {
        let Ok(mut inner) = self.inner.lock() else { return };
        let Inner { pods, bytes, evicted } = &mut *inner;
        let ttl = jiff::SignedDuration::try_from(EVENT_TTL).unwrap_or_default();
        let fresh = |e: &PodEvent| now.duration_since(e.time) < ttl;
        if pods.len() >= MAX_PODS_WITH_EVENTS && !pods.contains_key(uid) {
            pods.retain(|_, q| q.iter().any(fresh));
            *bytes = store_bytes(pods);
            if pods.len() >= MAX_PODS_WITH_EVENTS {
                return;
            }
        }
        let q = match pods.get_mut(uid) {
            Some(q) => q,
            None => {
                *bytes += pod_bytes(uid);
                pods.entry(uid.to_owned()).or_default()
            }
        };
        if q.iter().any(|e| e == &ev) {
            return;
        }
        let before = queue_bytes(q);
        q.retain(fresh);
        q.push_back(ev);
        while q.len() > EVENTS_PER_POD {
            q.pop_front();
        }
        *bytes = *bytes + queue_bytes(q) - before;
        if *bytes > self.budget_bytes {
            *evicted += evict_oldest(pods, bytes, self.budget_bytes / 100 * EVENT_STORE_REFILL_PERCENT);
        }
    }

    /// Estimated bytes held, against [`EventStore::budget_bytes`].
    pub fn bytes(&self) -> usize {
        self.inner.lock().map(|i| i.bytes).unwrap_or(0)
    }

    pub fn budget_bytes(&self) -> usize {
        self.budget_bytes
    }

    /// Events evicted because the store was past its budget, since the start.
    pub fn evicted(&self) -> u64 {
        self.inner.lock().map(|i| i.evicted).unwrap_or(0)
    }

    /// The Events kept for a pod.
    pub fn get(&self, uid: &str) -> Vec<PodEvent> {
        self.inner.lock().ok().and_then(|i| i.pods.get(uid).map(|q| q.iter().cloned().collect())).unwrap_or_default()
    }

    pub fn forget(&self, uid: &str) {
        if let Ok(mut inner) = self.inner.lock()
            && let Some(q) = inner.pods.remove(uid)
        {
            inner.bytes = inner.bytes.saturating_sub(pod_bytes(uid) + queue_bytes(&q));
        }
    }

    pub fn pods(&self) -> usize {
        self.inner.lock().map(|i| i.pods.len()).unwrap_or(0)
    }
}

/// Evicts the oldest Events (by their time) until the store holds at most `target` bytes; pods
/// left without Events go too. Returns how many Events were evicted.
fn evict_oldest(pods: &mut HashMap<String, VecDeque<PodEvent>>, bytes: &mut usize, target: usize) -> u64 {
    let mut by_age: Vec<(Timestamp, usize)> = pods.values().flatten().map(|e| (e.time, event_bytes(e))).collect();
    by_age.sort_unstable_by_key(|(t, _)| *t);
    // The newest time to evict up to: the oldest Events whose removal brings the store to `target`
    // (a pod's entry freed with its last Event is not counted: a little more may go).
    let mut freed = 0;
    let mut cutoff = None;
    for (t, b) in by_age {
        if bytes.saturating_sub(freed) <= target {
            break;
        }
        freed += b;
        cutoff = Some(t);
    }
    let Some(cutoff) = cutoff else { return 0 };
    let mut evicted = 0u64;
    pods.retain(|_, q| {
        let n = q.len();
        q.retain(|e| e.time > cutoff);
        evicted += (n - q.len()) as u64;
        !q.is_empty()
    });
    *bytes = store_bytes(pods);
    evicted
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
    pub name: Option<String>,
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
        let reason = self.reason.as_deref()?;
        let uid = self.involved_object.uid.clone().filter(|u| !u.is_empty())?;
        let time = self.time()?;
        let container =
            self.involved_object.field_path.as_deref().and_then(causes::container_of_field_path).map(str::to_owned);
        let ev = PodEvent::decode(reason, self.message.as_deref().unwrap_or(""), container, time, false)?;
        Some((uid, ev))
    }

    /// The Event as classification sees it, if it reports an OOM kill on a Node: the key it is
    /// stored under ([`node_key`]) and the event.
    pub fn node_oom_event(&self) -> Option<(String, PodEvent)> {
        if self.involved_object.kind.as_deref() != Some("Node") {
            return None;
        }
        let reason = self.reason.as_deref()?;
        let node = self.involved_object.name.as_deref().filter(|n| !n.is_empty())?;
        let time = self.time()?;
        let ev = PodEvent::decode(reason, self.message.as_deref().unwrap_or(""), None, time, true)?;
        Some((node_key(node), ev))
    }

    fn time(&self) -> Option<Timestamp> {
        self.series
            .as_ref()
            .and_then(|s| s.last_observed_time)
            .or(self.last_timestamp)
            .or(self.event_time)
            .or(self.first_timestamp)
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
pub async fn watch_events(
    api: Api<SlimEvent>,
    node: Option<String>,
    store: Arc<EventStore>,
    tuning: WatchTuning,
    stop: CancellationToken,
) {
    let selector = watcher::Config::default().fields("involvedObject.kind=Pod");
    let stream = tuned_watcher(api, selector, tuning, true, "pod Events".to_owned()).take_until(stop.cancelled_owned());
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

/// Namespace where Events about Nodes are recorded (the kubelet and node-problem-detector write
/// them there: a Node has no namespace).
pub const NODE_EVENTS_NAMESPACE: &str = "default";

/// Checks access to the Node Events; `false` (after saying what is lost and what to grant) when
/// RBAC denies it.
pub async fn node_events_allowed(api: &Api<SlimEvent>) -> bool {
    match api.list(&ListParams::default().fields("involvedObject.kind=Node").limit(1)).await {
        Ok(_) => true,
        Err(e) => {
            let hint = if classify_kube(&e) == Failure::Forbidden { " (403 Forbidden)" } else { "" };
            tracing::warn!(namespace = NODE_EVENTS_NAMESPACE, error = %e,
                "Cannot list Node Events{hint}: node-level OOM kills (SystemOOM, OOMKilling) will not explain an exit 137; \
                 grant verbs [list,watch] on \"events\" in namespace default.");
            false
        }
    }
}

/// Watches the Node Events that report OOM kills (`OOMKilling`, `SystemOOM`) into `store` until
/// `stop`, for the nodes in scope: `node` in node mode, else every node.
pub async fn watch_node_events(
    api: Api<SlimEvent>,
    node: Option<String>,
    store: Arc<EventStore>,
    tuning: WatchTuning,
    stop: CancellationToken,
) {
    let mut fields = "involvedObject.kind=Node".to_owned();
    if let Some(node) = &node {
        fields.push_str(&format!(",involvedObject.name={node}"));
    }
    let selector = watcher::Config::default().fields(&fields);
    let stream =
        tuned_watcher(api, selector, tuning, true, "Node Events".to_owned()).take_until(stop.cancelled_owned());
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(Event::Apply(e)) | Ok(Event::InitApply(e)) => {
                if let Some((key, ev)) = e.node_oom_event() {
                    tracing::debug!(node = e.involved_object.name.as_deref().unwrap_or(""), reason = %ev.reason, "Node OOM Event.");
                    store.insert(&key, ev, Timestamp::now());
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "Node Event watch error; retrying with backoff."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn killing(container: &str, at: Timestamp) -> PodEvent {
        PodEvent::decode("Killing", "Container failed liveness probe", Some(container.to_owned()), at, false).unwrap()
    }

    #[test]
    fn a_flood_past_the_budget_evicts_the_oldest_events_and_never_grows() {
        let budget = 64 << 10;
        let store = EventStore::with_budget(budget);
        let start: Timestamp = "2026-11-20T10:00:00Z".parse().unwrap();
        let n = 20_000;
        for i in 0..n {
            let at = start + jiff::SignedDuration::from_millis(i);
            store.insert(&format!("pod-{:05}", i % 4_000), killing("web", at), at);
            assert!(store.bytes() <= budget, "insert {i}: {} bytes > {budget}", store.bytes());
        }
        assert!(store.evicted() > 0);
        let last = start + jiff::SignedDuration::from_millis(n - 1);
        assert_eq!(
            store.get(&format!("pod-{:05}", (n - 1) % 4_000)).last().map(|e| e.time),
            Some(last),
            "the newest stays"
        );
        assert!(store.get("pod-00000").iter().all(|e| e.time > start), "the oldest went");
        // Every kept Event plus every evicted one, plus those a pod's queue limit dropped, is what came in.
        let kept: usize = (0..4_000).map(|p| store.get(&format!("pod-{p:05}")).len()).sum();
        assert!(kept as u64 + store.evicted() <= n as u64);
        // The accounting is exact: forgetting every pod brings it back to zero.
        for p in 0..4_000 {
            store.forget(&format!("pod-{p:05}"));
        }
        assert_eq!((store.bytes(), store.pods()), (0, 0));
    }

    #[test]
    fn under_its_budget_the_store_evicts_nothing() {
        let store = EventStore::default();
        let at: Timestamp = "2026-11-20T10:00:00Z".parse().unwrap();
        for i in 0..1_000 {
            store.insert(&format!("pod-{i}"), killing("web", at), at);
        }
        assert_eq!(store.evicted(), 0);
        assert_eq!(store.pods(), 1_000);
        assert!(store.bytes() > 1_000 * std::mem::size_of::<PodEvent>());
    }
}
