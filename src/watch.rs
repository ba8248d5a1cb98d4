//! The live watch: kube-rs `watcher` on the slim Pod -> [`ScopeWatch`] (detector, relists,
//! catch-up: pure, in `watch_step.rs`) -> bounded channel.
//!
//! One task per scope (all namespaces, or each `--namespace`), each with its own detector, so that
//! one scope's relist never drops another scope's pods. Errors never end the watch: the stream backs
//! off (`default_backoff`) and goes on; errors are logged with what to fix.
//!
//! Sending a restart into the channel waits while the channel is full (backpressure). That is safe:
//! the detector is level-triggered, so a watch that expires meanwhile relists and the counts still
//! compare right.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures::StreamExt;
use jiff::Timestamp;
use kube::api::ListParams;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::detector::KindFilter;
use crate::event::RestartEvent;
use crate::kube_errors::{Failure, advice, classify, classify_watcher};
use crate::pod::SlimPod;
use crate::watch_step::{ListChange, ScopeWatch};

/// Page size of the initial list and relists, in pods (bounds the memory of one list response).
pub const LIST_PAGE_SIZE_PODS: u32 = 500;
/// The verbs the agent needs on pods.
pub const POD_VERBS: &str = "get,list,watch";

/// What to watch.
#[derive(Clone, Debug, Default)]
pub struct WatchScope {
    /// Namespaces to watch; empty = all namespaces.
    pub namespaces: Vec<String>,
    /// Namespaces to leave out (field selector `metadata.namespace!=`).
    pub exclude_namespaces: Vec<String>,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    /// Node mode: only pods with `spec.nodeName` = this.
    pub node_name: Option<String>,
    pub kinds: KindFilter,
}

impl WatchScope {
    /// The field selector sent to the API server: the user's, the node, and the exclusions.
    pub fn effective_field_selector(&self) -> Option<String> {
        let mut parts: Vec<String> = Vec::new();
        if let Some(f) = self.field_selector.as_deref().filter(|f| !f.is_empty()) {
            parts.push(f.to_owned());
        }
        if let Some(node) = &self.node_name {
            parts.push(format!("spec.nodeName={node}"));
        }
        for ns in &self.exclude_namespaces {
            parts.push(format!("metadata.namespace!={ns}"));
        }
        (!parts.is_empty()).then(|| parts.join(","))
    }

    /// One `(api, description)` per watch task.
    pub fn apis(&self, client: &Client) -> Vec<(Api<SlimPod>, String)> {
        scoped_apis(client, &self.namespaces)
    }

    /// The watcher settings for `strategy`: bookmarks on (kube's default), the selectors.
    pub fn watcher_config(&self, strategy: ListStrategy) -> watcher::Config {
        let mut cfg = watcher::Config::default().page_size(LIST_PAGE_SIZE_PODS);
        cfg = match strategy {
            ListStrategy::Streaming => cfg.streaming_lists(),
            ListStrategy::WatchCache => cfg.any_semantic(),
            ListStrategy::PagedQuorum => cfg,
        };
        if let Some(l) = self.label_selector.as_deref().filter(|l| !l.is_empty()) {
            cfg = cfg.labels(l);
        }
        if let Some(f) = self.effective_field_selector() {
            cfg = cfg.fields(&f);
        }
        cfg
    }
}

/// How a watch gets its initial state (and the state after a `410 Gone`). See docs/operations.md,
/// "Cost to the control plane".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListStrategy {
    /// A streaming list (`sendInitialEvents=true`, Kubernetes 1.34+ by default, the `WatchList`
    /// gate before): the state comes as watch events from the API server's watch cache, one object
    /// at a time. No etcd read, no list response held in memory, whatever the field selector.
    Streaming,
    /// A list with `resourceVersion=0`, served from the watch cache (which indexes pods by
    /// `spec.nodeName`), in one response: node mode's fallback, where the response is one node's pods.
    WatchCache,
    /// A paginated list with `resourceVersion` unset (a quorum read from etcd, 500 pods a page):
    /// cluster mode's fallback, where a watch-cache list would ignore the page size and come back
    /// in one response of every pod.
    PagedQuorum,
}

impl ListStrategy {
    /// Where a watch starts.
    pub const INITIAL: ListStrategy = ListStrategy::Streaming;

    /// What to use when the API server refuses streaming lists.
    pub fn fallback(node_mode: bool) -> ListStrategy {
        if node_mode { ListStrategy::WatchCache } else { ListStrategy::PagedQuorum }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ListStrategy::Streaming => "streaming list (watch cache)",
            ListStrategy::WatchCache => "list at resourceVersion 0 (watch cache)",
            ListStrategy::PagedQuorum => "paginated quorum list (etcd)",
        }
    }
}

/// Whether a watch error says that the API server does not serve streaming lists (a server
/// before 1.34 without the `WatchList` gate answers the `sendInitialEvents` watch with 4xx).
pub fn refuses_streaming_lists(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => {
            matches!(status.code, 400 | 422) || status.message.contains("sendInitialEvents")
        }
        watcher::Error::WatchError(status) => {
            matches!(status.code, 400 | 422) || status.message.contains("sendInitialEvents")
        }
        _ => false,
    }
}

/// One `(api, description)` per scope of a namespaced resource: all namespaces when `namespaces`
/// is empty, else one per namespace. Pods and their Events are watched in the same scopes.
pub fn scoped_apis<K>(client: &Client, namespaces: &[String]) -> Vec<(Api<K>, String)>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    if namespaces.is_empty() {
        vec![(Api::all(client.clone()), "all namespaces".to_owned())]
    } else {
        namespaces.iter().map(|ns| (Api::namespaced(client.clone(), ns), format!("namespace {ns}"))).collect()
    }
}

/// Errors that stop the agent before it starts watching.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The first list failed: unreachable server, 401, 403, or a bad selector.
    #[error("{advice}")]
    Startup {
        advice: String,
        failure: Failure,
        #[source]
        source: kube::Error,
    },
    /// The first list got no answer in time.
    #[error(
        "the Kubernetes API server at {server} did not answer the first pod list within {secs} s: check that it \
         is up and reachable (and its etcd), and the kubeconfig's server address"
    )]
    StartupTimeout { server: String, secs: u64 },
}

/// Counters shared by the watch tasks, the checkpointer and the metrics.
#[derive(Debug, Default)]
pub struct WatchStats {
    pub events: AtomicU64,
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

/// Checks, before watching, that each scope can be listed; returns the message to print otherwise.
pub async fn preflight(client: &Client, scope: &WatchScope, server: &str) -> Result<(), WatchError> {
    for (api, desc) in scope.apis(client) {
        let mut lp = ListParams::default().limit(1);
        if scope.node_name.is_some() {
            // From the watch cache (indexed by node): etcd cannot filter on spec.nodeName, and a
            // quorum read would scan every pod of the cluster to find one of this node.
            lp = lp.match_any();
        }
        if let Some(l) = scope.label_selector.as_deref().filter(|l| !l.is_empty()) {
            lp = lp.labels(l);
        }
        if let Some(f) = scope.effective_field_selector() {
            lp = lp.fields(&f);
        }
        if let Err(source) = api.list(&lp).await {
            let failure = classify(&source);
            let advice = match (&failure, &source) {
                (Failure::Other, kube::Error::Api(status)) if status.code == 400 => format!(
                    "the API server refused the pod list for {desc} (400 Bad Request: {}): check \
                     --label-selector, --field-selector, --node-name and --exclude-namespace",
                    status.message
                ),
                _ => advice(failure, server, POD_VERBS, "pods", &desc),
            };
            return Err(WatchError::Startup { advice, failure, source });
        }
    }
    Ok(())
}

/// Everything one watch task needs.
pub struct WatchTask {
    pub api: Api<SlimPod>,
    pub description: String,
    pub scope: WatchScope,
    pub server: String,
    /// Catch-up for the initial list (from the checkpoint).
    pub catch_up_since: Option<Timestamp>,
    pub tx: mpsc::Sender<RestartEvent>,
    pub sent: Arc<AtomicU64>,
    pub stats: Arc<WatchStats>,
    pub health: Arc<ScopeHealth>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Watches until `stop` is cancelled (or the export side goes away). Never ends on a watch error.
/// The bookkeeping is [`ScopeWatch`]'s; this loop pulls events, logs, forwards restarts and keeps
/// the scope's health.
pub async fn run(task: WatchTask, stop: CancellationToken) {
    let WatchTask { api, description, scope, server, catch_up_since, tx, sent, stats, health, metrics } = task;
    let mut watch = ScopeWatch::new(scope.kinds, catch_up_since);
    let mut strategy = ListStrategy::INITIAL;
    tracing::debug!(scope = %description, strategy = strategy.as_str(), "Watching.");
    let mut last_failure: Option<Failure> = None;
    'strategies: loop {
        let cfg = scope.watcher_config(strategy);
        let stream = watcher::watcher(api.clone(), cfg).default_backoff().take_until(stop.clone().cancelled_owned());
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            let event = match item {
                Ok(ev) => ev,
                Err(e) if strategy == ListStrategy::Streaming && !watch.listed() && refuses_streaming_lists(&e) => {
                    strategy = ListStrategy::fallback(scope.node_name.is_some());
                    tracing::info!(scope = %description, strategy = strategy.as_str(), error = %e,
                    "The API server does not serve streaming lists; listing instead.");
                    continue 'strategies;
                }
                Err(e) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    health.live.store(false, Ordering::Relaxed);
                    let failure = classify_watcher(&e);
                    metrics.watch_error(failure.as_str());
                    if last_failure != Some(failure) {
                        tracing::warn!(scope = %description, failure = failure.as_str(), error = %e,
                        "{}; retrying with backoff.", advice(failure, &server, POD_VERBS, "pods", &description));
                    } else {
                        tracing::debug!(scope = %description, error = %e, "Watch error; retrying with backoff.");
                    }
                    last_failure = Some(failure);
                    continue;
                }
            };
            stats.events.fetch_add(1, Ordering::Relaxed);
            if last_failure.take().is_some() {
                tracing::info!(scope = %description, "Watch recovered.");
            }
            let step = watch.on_watch_event(event, Timestamp::now());
            report_list_change(step.list, &description, &stats, &metrics);
            if watch.listed() {
                health.live.store(true, Ordering::Relaxed);
            }
            for ev in step.restarts {
                stats.restarts.fetch_add(1, Ordering::Relaxed);
                metrics.restart_detected(&ev);
                // Waits while the channel is full: backpressure onto the watch.
                if tx.send(ev).await.is_err() {
                    tracing::error!(scope = %description, "The export pipeline is gone; stopping this watch.");
                    return;
                }
                sent.fetch_add(1, Ordering::Relaxed);
                metrics.queue_in(1);
            }
        }
        break;
    }
    tracing::debug!(scope = %description, "Watch stopped.");
}

/// Logs and counts what an event did to the scope's list.
fn report_list_change(change: ListChange, description: &str, stats: &WatchStats, metrics: &crate::metrics::Metrics) {
    match change {
        ListChange::None | ListChange::ListStarted => {}
        ListChange::RelistStarted => {
            stats.relists.fetch_add(1, Ordering::Relaxed);
            metrics.relist();
            tracing::info!(scope = %description, "Relisting pods.");
        }
        ListChange::InitialListComplete { pods, containers } => {
            stats.scopes_listed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(scope = %description, pods, containers, "Initial list complete; watching.");
        }
        ListChange::RelistComplete { pods, dropped } => {
            stats.pods_dropped.fetch_add(dropped as u64, Ordering::Relaxed);
            tracing::info!(scope = %description, pods, dropped, "Relist complete; pods missing from it were dropped.");
        }
    }
}
