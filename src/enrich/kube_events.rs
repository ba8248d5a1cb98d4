//! The kubelet's Events about pods: a watch (cluster mode, scoped like the pods; node mode looks up
//! its failing pods' Events instead, `lookups.rs`) feeding a bounded store by pod uid, which
//! classification reads.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::Ordering;
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

use crate::accounting::BudgetUsage;
use crate::kube_errors::{Failure, classify as classify_kube};
use crate::pod::PodKey;
use crate::rules::causes::{self, Kill, KubeEvent, NODE_OOM_REASONS, RELEVANT_REASONS};
use crate::watch::{WatchTuning, tuned_watcher};

/// Events kept per pod.
pub(crate) const EVENTS_PER_POD: usize = 8;
/// How long an Event is kept.
pub(crate) const EVENT_TTL: Duration = Duration::from_secs(600);
/// Pods with kept Events at most (memory bound on a large cluster).
pub(crate) const MAX_PODS_WITH_EVENTS: usize = 100_000;
/// How often the store drops the pods whose Events have all expired (at an insert, at most this
/// often): a pod that is gone, or quiet, does not hold its entry until the store is full.
pub(crate) const EVENT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// The store key of a Node's OOM Events (pod uids never contain `:`).
pub(crate) fn node_key(node: &str) -> String {
    format!("node:{node}")
}

/// The Event store's budget, in estimated bytes (keys, queues and Events). Past it, the oldest
/// Events are evicted down to [`EVENT_STORE_REFILL_PERCENT`] of it; a restart whose Event was
/// evicted is classified from its status alone.
pub const EVENT_STORE_BUDGET_BYTES: usize = 16 << 20;
/// After an eviction the store holds at most this share of its budget, so that evictions (a scan
/// of the store) come in batches, not at every insert.
pub(crate) const EVENT_STORE_REFILL_PERCENT: usize = 90;

/// One kept Event as the store holds it: no string, 24 bytes. The container is a hash of its
/// name, compared with the hash of the restarted container's (two containers of one pod whose
/// names collide in 64 bits would share their Events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Kept {
    /// When it last happened, in microseconds since the epoch (the API's finest, `MicroTime`).
    time_us: i64,
    /// [`container_hash`] of the container its field path names; 0 when it names none.
    container: u64,
    /// Its index in [`RELEVANT_REASONS`], or in [`NODE_OOM_REASONS`] when `on_node`.
    reason: u8,
    kill: Option<Kill>,
    on_node: bool,
}

const _: () = assert!(std::mem::size_of::<Kept>() == 24);

/// A container name's hash as [`Kept`] holds it: never 0 (0 is "no container").
fn container_hash(name: &str) -> u64 {
    let mut h = DefaultHasher::new();
    name.hash(&mut h);
    h.finish().max(1)
}

/// The reasons a kept Event's index points into.
fn reasons(on_node: bool) -> &'static [&'static str] {
    if on_node { &NODE_OOM_REASONS } else { &RELEVANT_REASONS }
}

impl Kept {
    fn of(ev: &KubeEvent) -> Option<Kept> {
        let reason = reasons(ev.on_node).iter().position(|r| *r == ev.reason)?;
        Some(Kept {
            time_us: ev.time.as_microsecond(),
            container: ev.container.as_deref().map_or(0, container_hash),
            reason: u8::try_from(reason).ok()?,
            kill: ev.kill,
            on_node: ev.on_node,
        })
    }

    /// The Event as classification reads it, naming `container` (whose hash is `hash`) if it
    /// named a container; `None` if it is about another container.
    fn event(&self, container: &str, hash: u64) -> Option<KubeEvent> {
        let named = match self.container {
            0 => None,
            h if h == hash => Some(container.to_owned()),
            _ => return None,
        };
        Some(KubeEvent {
            reason: reasons(self.on_node).get(usize::from(self.reason))?,
            kill: self.kill,
            container: named,
            time: Timestamp::from_microsecond(self.time_us).ok()?,
            on_node: self.on_node,
        })
    }
}

/// A pod's kept Events, oldest first, never none: one Event in the map's own slot (most pods hold
/// one, a restart's `Killing`), more in one exact-size slice. A pod with one Event allocates
/// nothing of its own: tens of thousands of small, long-lived allocations, replaced at every
/// restart, are what scatters a heap over pages it cannot give back.
#[derive(Debug)]
enum PodEvents {
    One(Kept),
    Many(Box<[Kept]>),
}

impl PodEvents {
    /// The Events of `kept`; `None` when there are none (no Events, no entry).
    fn of(kept: Vec<Kept>) -> Option<PodEvents> {
        match kept[..] {
            [] => None,
            [one] => Some(PodEvents::One(one)),
            _ => Some(PodEvents::Many(kept.into_boxed_slice())),
        }
    }

    fn as_slice(&self) -> &[Kept] {
        match self {
            PodEvents::One(e) => std::slice::from_ref(e),
            PodEvents::Many(q) => q,
        }
    }

    /// Keeps only the Events `keep` accepts; returns how many are left (0: drop the entry).
    fn retain(&mut self, keep: impl Fn(&Kept) -> bool) -> usize {
        let q = self.as_slice();
        if q.iter().all(&keep) {
            return q.len();
        }
        match PodEvents::of(q.iter().copied().filter(|e| keep(e)).collect()) {
            Some(left) => {
                *self = left;
                self.as_slice().len()
            }
            None => 0,
        }
    }
}

// The map's slot holds one Event in place and no more than a slice's pointer and length besides.
const _: () = assert!(std::mem::size_of::<PodEvents>() == std::mem::size_of::<Kept>());

/// Estimated bytes of a pod's entry holding `events` Events: the map's slot and its control byte,
/// and the Events past the first.
fn entry_bytes(events: usize) -> usize {
    let slice = if events > 1 { events * std::mem::size_of::<Kept>() } else { 0 };
    std::mem::size_of::<(PodKey, PodEvents)>() + 1 + slice
}

/// Estimated bytes of the whole store, counted again (after a pass that removed many entries).
fn store_bytes(pods: &HashMap<PodKey, PodEvents>) -> usize {
    pods.values().map(|q| entry_bytes(q.as_slice().len())).sum()
}

/// Recent relevant Events, by pod uid, and Node OOM Events, by [`node_key`], within a budget of
/// estimated bytes. Each pod's Events are a [`PodEvents`], oldest first.
#[derive(Debug)]
pub struct KubeEventStore {
    inner: Mutex<Inner>,
    budget_bytes: usize,
    /// Its bytes against the budget, and the Events evicted past it, for the metrics.
    usage: Arc<BudgetUsage>,
}

#[derive(Debug, Default)]
struct Inner {
    pods: HashMap<PodKey, PodEvents>,
    bytes: usize,
    evicted: u64,
    /// When the expired entries were last dropped.
    swept_at: Option<Timestamp>,
}

impl Default for KubeEventStore {
    fn default() -> Self {
        KubeEventStore::with_budget(EVENT_STORE_BUDGET_BYTES)
    }
}

impl KubeEventStore {
    pub(crate) fn with_budget(budget_bytes: usize) -> Self {
        let usage = Arc::new(BudgetUsage::default());
        usage.budget_bytes.store(budget_bytes as u64, Ordering::Relaxed);
        KubeEventStore { inner: Mutex::default(), budget_bytes, usage }
    }

    /// Its bytes against its budget, and the Events evicted past it (`shed`).
    pub fn usage(&self) -> Arc<BudgetUsage> {
        self.usage.clone()
    }

    fn publish(&self, inner: &Inner) {
        self.usage.bytes.store(inner.bytes as u64, Ordering::Relaxed);
        self.usage.shed.store(inner.evicted, Ordering::Relaxed);
    }

    /// Keeps `ev` for the pod `uid`, dropping expired and surplus Events, then the oldest Events
    /// of the store if it is past its budget. Every [`EVENT_SWEEP_INTERVAL`], it first drops the
    /// pods whose Events have all expired.
    pub fn insert(&self, uid: &str, ev: KubeEvent, now: Timestamp) {
        let Some(kept) = Kept::of(&ev) else { return };
        let Ok(mut inner) = self.inner.lock() else { return };
        let sweep = jiff::SignedDuration::try_from(EVENT_SWEEP_INTERVAL).unwrap_or_default();
        if inner.swept_at.is_none_or(|at| now.duration_since(at) >= sweep) {
            inner.swept_at = Some(now);
            expire(&mut inner, now);
        }
        let Inner { pods, bytes, evicted, .. } = &mut *inner;
        let key = PodKey::of_uid(uid);
        if pods.len() >= MAX_PODS_WITH_EVENTS && !pods.contains_key(&key) {
            expire_pods(pods, bytes, now);
            if pods.len() >= MAX_PODS_WITH_EVENTS {
                return;
            }
        }
        let old = pods.get(&key).map_or(&[][..], PodEvents::as_slice);
        if old.contains(&kept) {
            return;
        }
        // A pod's entry is never empty: no slice means no entry.
        let before = if old.is_empty() { 0 } else { entry_bytes(old.len()) };
        let fresh = fresh_at(now);
        let mut q: Vec<Kept> = Vec::with_capacity(old.len() + 1);
        q.extend(old.iter().filter(|e| fresh(e)));
        q.push(kept);
        if q.len() > EVENTS_PER_POD {
            q.drain(..q.len() - EVENTS_PER_POD);
        }
        *bytes = *bytes + entry_bytes(q.len()) - before;
        let Some(q) = PodEvents::of(q) else { return };
        crate::churn::make_room(pods);
        pods.insert(key, q);
        if *bytes > self.budget_bytes {
            *evicted += evict_oldest(pods, bytes, self.budget_bytes / 100 * EVENT_STORE_REFILL_PERCENT);
        }
        self.publish(&inner);
    }

    /// Estimated bytes held, against the budget the store was made with.
    pub fn bytes(&self) -> usize {
        self.inner.lock().map(|i| i.bytes).unwrap_or(0)
    }

    /// Events evicted because the store was past its budget, since the start.
    pub fn evicted(&self) -> u64 {
        self.inner.lock().map(|i| i.evicted).unwrap_or(0)
    }

    /// The Events kept for a pod (or under a [`node_key`]) that can be about `container`: those
    /// that name it, and those that name no container. Oldest first.
    pub fn get(&self, uid: &str, container: &str) -> Vec<KubeEvent> {
        let hash = container_hash(container);
        let Ok(inner) = self.inner.lock() else { return Vec::new() };
        inner
            .pods
            .get(&PodKey::of_uid(uid))
            .map(|q| q.as_slice().iter().filter_map(|e| e.event(container, hash)).collect())
            .unwrap_or_default()
    }

    #[cfg(test)]
    pub(crate) fn forget(&self, uid: &str) {
        if let Ok(mut inner) = self.inner.lock()
            && let Some(q) = inner.pods.remove(&PodKey::of_uid(uid))
        {
            inner.bytes = inner.bytes.saturating_sub(entry_bytes(q.as_slice().len()));
            self.publish(&inner);
        }
    }

    pub fn pods(&self) -> usize {
        self.inner.lock().map(|i| i.pods.len()).unwrap_or(0)
    }
}

/// Whether a kept Event is younger than [`EVENT_TTL`] at `now`.
fn fresh_at(now: Timestamp) -> impl Fn(&Kept) -> bool {
    let ttl_us = i64::try_from(EVENT_TTL.as_micros()).unwrap_or(i64::MAX);
    let now_us = now.as_microsecond();
    move |e| now_us.saturating_sub(e.time_us) < ttl_us
}

/// Drops the expired Events, and the pods left without any.
fn expire_pods(pods: &mut HashMap<PodKey, PodEvents>, bytes: &mut usize, now: Timestamp) {
    let fresh = fresh_at(now);
    pods.retain(|_, q| q.retain(&fresh) > 0);
    *bytes = store_bytes(pods);
}

/// [`expire_pods`], then gives the map's room back once it is mostly empty (after a storm, or a
/// burst of short-lived pods): its table keeps the size of its largest moment otherwise.
fn expire(inner: &mut Inner, now: Timestamp) {
    expire_pods(&mut inner.pods, &mut inner.bytes, now);
    let len = inner.pods.len();
    if inner.pods.capacity() > 4 * len.max(1024) {
        inner.pods.shrink_to(2 * len);
    }
}

/// Evicts the oldest Events (by their time) until the store holds at most `target` bytes; pods
/// left without Events go too. Returns how many Events were evicted.
fn evict_oldest(pods: &mut HashMap<PodKey, PodEvents>, bytes: &mut usize, target: usize) -> u64 {
    let mut by_age: Vec<i64> = pods.values().flat_map(|q| q.as_slice().iter().map(|e| e.time_us)).collect();
    by_age.sort_unstable();
    // The newest time to evict up to: the oldest Events whose removal brings the store to `target`
    // (a pod's entry freed with its last Event is not counted: a little more may go).
    let mut freed = 0;
    let mut cutoff = None;
    for t in by_age {
        if bytes.saturating_sub(freed) <= target {
            break;
        }
        freed += std::mem::size_of::<Kept>();
        cutoff = Some(t);
    }
    let Some(cutoff) = cutoff else { return 0 };
    let mut evicted = 0u64;
    pods.retain(|_, q| {
        let n = q.as_slice().len();
        let left = q.retain(|e| e.time_us > cutoff);
        evicted += (n - left) as u64;
        left > 0
    });
    *bytes = store_bytes(pods);
    evicted
}

/// A core/v1 Event, reduced to what classification reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SlimKubeEvent {
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
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InvolvedObject {
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
pub(crate) struct EventSeries {
    #[serde(default)]
    pub last_observed_time: Option<Timestamp>,
}

impl kube::Resource for SlimKubeEvent {
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

impl SlimKubeEvent {
    /// The Event as classification sees it, if it is about a pod and relevant.
    pub(crate) fn pod_event(&self) -> Option<(String, KubeEvent)> {
        if self.involved_object.kind.as_deref() != Some("Pod") {
            return None;
        }
        let reason = self.reason.as_deref()?;
        let uid = self.involved_object.uid.clone().filter(|u| !u.is_empty())?;
        let time = self.time()?;
        let container =
            self.involved_object.field_path.as_deref().and_then(causes::container_of_field_path).map(str::to_owned);
        let ev = KubeEvent::decode(reason, self.message.as_deref().unwrap_or(""), container, time, false)?;
        Some((uid, ev))
    }

    /// The Event as classification sees it, if it reports an OOM kill on a Node: the key it is
    /// stored under ([`node_key`]) and the event.
    pub fn node_oom_event(&self) -> Option<(String, KubeEvent)> {
        if self.involved_object.kind.as_deref() != Some("Node") {
            return None;
        }
        let reason = self.reason.as_deref()?;
        let node = self.involved_object.name.as_deref().filter(|n| !n.is_empty())?;
        let time = self.time()?;
        let ev = KubeEvent::decode(reason, self.message.as_deref().unwrap_or(""), None, time, true)?;
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

/// Checks access to Events in each scope; `false` (after saying so once) when RBAC denies it.
pub(crate) async fn events_allowed(apis: &[(Api<SlimKubeEvent>, String)]) -> bool {
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

/// Watches pod Events into `store` until `stop` (cluster mode: node mode looks up the Events of
/// its failing pods instead, `enrich::lookups`).
pub(crate) async fn watch_events(
    api: Api<SlimKubeEvent>,
    store: Arc<KubeEventStore>,
    tuning: WatchTuning,
    stop: CancellationToken,
) {
    let selector = watcher::Config::default().fields("involvedObject.kind=Pod");
    let stream = tuned_watcher(api, selector, tuning, true, "pod Events".to_owned()).take_until(stop.cancelled_owned());
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(Event::Apply(e)) | Ok(Event::InitApply(e)) => {
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
pub(crate) const NODE_EVENTS_NAMESPACE: &str = "default";

/// Checks access to the Node Events; `false` (after saying what is lost and what to grant) when
/// RBAC denies it.
pub(crate) async fn node_events_allowed(api: &Api<SlimKubeEvent>, node: Option<&str>) -> bool {
    match api.list(&ListParams::default().fields(&node_fields(node)).limit(1)).await {
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

/// The field selector of the Node Events in scope: `node`'s alone in node mode, else every node's.
fn node_fields(node: Option<&str>) -> String {
    match node {
        Some(node) => format!("involvedObject.kind=Node,involvedObject.name={node}"),
        None => "involvedObject.kind=Node".to_owned(),
    }
}

/// Watches the Node Events that report OOM kills (`OOMKilling`, `SystemOOM`) into `store` until
/// `stop`, for the nodes in scope: `node` in node mode, else every node.
pub(crate) async fn watch_node_events(
    api: Api<SlimKubeEvent>,
    node: Option<String>,
    store: Arc<KubeEventStore>,
    tuning: WatchTuning,
    stop: CancellationToken,
) {
    let selector = watcher::Config::default().fields(&node_fields(node.as_deref()));
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

    fn killing(container: &str, at: Timestamp) -> KubeEvent {
        KubeEvent::decode("Killing", "Container failed liveness probe", Some(container.to_owned()), at, false).unwrap()
    }

    #[test]
    fn a_flood_past_the_budget_evicts_the_oldest_events_and_never_grows() {
        let budget = 64 << 10;
        let store = KubeEventStore::with_budget(budget);
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
            store.get(&format!("pod-{:05}", (n - 1) % 4_000), "web").last().map(|e| e.time),
            Some(last),
            "the newest stays"
        );
        assert!(store.get("pod-00000", "web").iter().all(|e| e.time > start), "the oldest went");
        // Every kept Event plus every evicted one, plus those a pod's queue limit dropped, is what came in.
        let kept: usize = (0..4_000).map(|p| store.get(&format!("pod-{p:05}"), "web").len()).sum();
        assert!(kept as u64 + store.evicted() <= n as u64);
        // The accounting is exact: forgetting every pod brings it back to zero.
        for p in 0..4_000 {
            store.forget(&format!("pod-{p:05}"));
        }
        assert_eq!((store.bytes(), store.pods()), (0, 0));
    }

    /// A store holding one Killing Event at `at` for each of `pods` pods (`pod-0`...).
    fn with_pods(pods: usize, at: Timestamp) -> KubeEventStore {
        let store = KubeEventStore::default();
        for i in 0..pods {
            store.insert(&format!("pod-{i}"), killing("web", at), at);
        }
        store
    }

    #[test]
    fn under_its_budget_the_store_evicts_nothing() {
        let store = with_pods(1_000, "2026-11-20T10:00:00Z".parse().unwrap());
        assert_eq!(store.evicted(), 0);
        assert_eq!(store.pods(), 1_000);
        assert_eq!(store.bytes(), 1_000 * entry_bytes(1));
    }

    #[test]
    fn an_event_goes_to_the_container_it_names_and_a_pod_level_one_to_every_container() {
        let store = KubeEventStore::default();
        let at: Timestamp = "2026-11-20T10:00:00.123456Z".parse().unwrap();
        store.insert("uid-1", killing("web", at), at);
        let evicted = KubeEvent::decode("Evicted", "The node was low on resource: memory.", None, at, false).unwrap();
        store.insert("uid-1", evicted.clone(), at);
        assert_eq!(store.get("uid-1", "web"), vec![killing("web", at), evicted.clone()], "kept exactly, to the µs");
        assert_eq!(store.get("uid-1", "sidecar"), vec![evicted]);
        assert_eq!(store.get("uid-2", "web"), vec![]);
    }

    #[test]
    fn a_node_oom_event_is_kept_under_its_node() {
        let store = KubeEventStore::default();
        let at: Timestamp = "2026-11-20T10:00:00Z".parse().unwrap();
        let oom =
            KubeEvent::decode("SystemOOM", "System OOM encountered, victim process: app", None, at, true).unwrap();
        store.insert(&node_key("node-1"), oom.clone(), at);
        assert_eq!(store.get(&node_key("node-1"), "web"), vec![oom]);
        assert_eq!(store.get(&node_key("node-2"), "web"), vec![]);
    }

    #[test]
    fn the_same_event_twice_is_kept_once_and_a_pod_keeps_its_newest_events() {
        let store = KubeEventStore::default();
        let at: Timestamp = "2026-11-20T10:00:00Z".parse().unwrap();
        store.insert("uid-1", killing("web", at), at);
        store.insert("uid-1", killing("web", at), at);
        assert_eq!(store.get("uid-1", "web").len(), 1);
        let times: Vec<Timestamp> = (1..=12).map(|s| at + jiff::SignedDuration::from_secs(s)).collect();
        for t in &times {
            store.insert("uid-1", killing("web", *t), *t);
        }
        let kept: Vec<Timestamp> = store.get("uid-1", "web").iter().map(|e| e.time).collect();
        assert_eq!(kept, times[times.len() - EVENTS_PER_POD..]);
        assert_eq!(store.bytes(), entry_bytes(EVENTS_PER_POD));
    }

    #[test]
    fn pods_whose_events_expired_leave_the_store_at_the_next_sweep_and_give_its_room_back() {
        let at: Timestamp = "2026-11-20T10:00:00Z".parse().unwrap();
        let store = with_pods(50_000, at);
        let room = store.inner.lock().unwrap().pods.capacity();
        assert!(room >= 50_000);
        // Before the TTL nothing goes, sweep or not.
        let before_ttl = at + jiff::SignedDuration::try_from(EVENT_TTL - Duration::from_secs(1)).unwrap();
        store.insert("late", killing("web", before_ttl), before_ttl);
        assert_eq!(store.pods(), 50_001);
        // A sweep after the TTL: only the pod with a fresh Event stays, and the table shrinks.
        let after = before_ttl + jiff::SignedDuration::try_from(EVENT_SWEEP_INTERVAL).unwrap();
        store.insert("new", killing("web", after), after);
        assert_eq!(store.pods(), 2);
        assert_eq!(store.bytes(), 2 * entry_bytes(1));
        assert!(store.get("pod-0", "web").is_empty());
        assert!(store.inner.lock().unwrap().pods.capacity() < room / 4);
    }

    #[test]
    fn a_pods_only_event_is_held_in_the_maps_slot_and_an_expiry_down_to_one_puts_it_back_there() {
        let at: Timestamp = "2026-11-20T10:00:00Z".parse().unwrap();
        let store = KubeEventStore::default();
        let in_slot = |store: &KubeEventStore| {
            matches!(store.inner.lock().unwrap().pods.get(&PodKey::of_uid("uid-1")), Some(PodEvents::One(_)))
        };
        store.insert("uid-1", killing("web", at), at);
        assert!(in_slot(&store));
        assert_eq!(store.bytes(), std::mem::size_of::<(PodKey, PodEvents)>() + 1, "nothing past the slot");
        let later = at + jiff::SignedDuration::from_mins(5);
        store.insert("uid-1", killing("sidecar", later), later);
        assert!(!in_slot(&store));
        assert_eq!(store.bytes(), entry_bytes(2));
        // The first Event expires; a sweep (at another pod's insert) leaves the pod its second.
        let after_ttl = at + jiff::SignedDuration::try_from(EVENT_TTL).unwrap() + jiff::SignedDuration::from_secs(1);
        store.insert("uid-2", killing("web", after_ttl), after_ttl);
        assert!(in_slot(&store));
        assert_eq!(store.get("uid-1", "sidecar"), vec![killing("sidecar", later)]);
        assert_eq!(store.get("uid-1", "web"), vec![]);
        assert_eq!(store.bytes(), 2 * entry_bytes(1));
    }
}
