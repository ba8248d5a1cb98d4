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

/// Recent relevant Events, by pod uid, and Node OOM Events, by [`node_key`].
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
    let config = move |s| tuning.configure(watcher::Config::default().fields("involvedObject.kind=Pod"), s);
    let stream = tuned_watcher(api, config, tuning, true, "pod Events".to_owned()).take_until(stop.cancelled_owned());
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
    let config = move |s| tuning.configure(watcher::Config::default().fields(&fields), s);
    let stream = tuned_watcher(api, config, tuning, true, "Node Events".to_owned()).take_until(stop.cancelled_owned());
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
