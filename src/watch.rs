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
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use kube::api::ListParams;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::accounting::{ScopeHealth, WatchStats};
use crate::detector::Detection;
use crate::kube_errors::{Failure, advice, classify_watcher};
use crate::pod::SlimPod;
use crate::record::Record;
use crate::watch_step::{ListChange, ScopeWatch};

/// Page size of the initial list and relists, in pods (bounds the memory of one list response).
pub(crate) const LIST_PAGE_SIZE_PODS: u32 = 500;
/// The verbs the agent needs on pods.
pub(crate) const POD_VERBS: &str = "get,list,watch";

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
    pub detection: Detection,
    /// How to list and watch (strategy, timeouts, jitter).
    pub tuning: WatchTuning,
}

/// Server-side timeout of one watch request (kube's and client-go's default). When it ends, the
/// watch resumes from the last resourceVersion it saw (bookmarks keep that fresh): no relist.
pub(crate) const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(290);
/// Node mode's default [`WatchTuning::jitter`]: a DaemonSet rollout or an API server restart
/// spreads the agents' lists over this window.
pub const NODE_MODE_DEFAULT_JITTER: Duration = Duration::from_secs(10);
/// How long a streaming list may go without an event before its end (the initial-events-end
/// bookmark) has come: past it, the server is taken not to serve streaming lists (an older server,
/// or a proxy that drops `sendInitialEvents`, streams a plain watch whose list never ends) and the
/// watch lists instead. A real streaming list sends its objects from the watch cache without a
/// pause, then its end at once.
pub(crate) const STREAMING_LIST_QUIET_BOUND: Duration = Duration::from_secs(10);
/// The reconnect backoff before jitter: client-go's reflector backoff (0.8 s doubling to 30 s).
pub(crate) const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(800);
pub(crate) const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Which list strategy to use: `Auto` is a list at resourceVersion 0 for node mode's pods (the
/// kubelet's own list: the watch cache answers from its `spec.nodeName` index), and a streaming
/// list, falling back to pages, for cluster-wide watches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ListStrategyChoice {
    #[default]
    Auto,
    Streaming,
    WatchCache,
    Paginated,
}

impl ListStrategyChoice {
    /// Whether a refused streaming list falls back (only `Auto`: a forced strategy is kept, and
    /// its errors are retried and reported like any other).
    pub(crate) fn falls_back(self) -> bool {
        self == ListStrategyChoice::Auto
    }
}

/// How the pod watch lists and reconnects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchTuning {
    pub list_strategy: ListStrategyChoice,
    /// Server-side timeout of one watch request; the watch then resumes without a relist.
    pub watch_timeout: Duration,
    /// The window over which the first list, and each reconnect or relist after an error, is
    /// delayed at random (0 = no jitter beyond kube's backoff).
    pub jitter: Duration,
}

impl WatchTuning {
    /// `cfg` with `strategy`, the page size and the watch timeout.
    ///
    /// A list at resourceVersion 0 carries no page size: kube-core leaves `resourceVersion=0` out
    /// of any list that has a `limit`, which would make it a quorum read from etcd (on servers
    /// before consistent reads from the cache), the scan that listing from the cache avoids. The
    /// watch cache answers such a list in one response, as it does the kubelet's.
    pub(crate) fn configure(&self, cfg: watcher::Config, strategy: ListStrategy) -> watcher::Config {
        let timeout_secs = u32::try_from(self.watch_timeout.as_secs()).unwrap_or(u32::MAX).max(1);
        let cfg = cfg.timeout(timeout_secs);
        match strategy {
            ListStrategy::Streaming => cfg.page_size(LIST_PAGE_SIZE_PODS).streaming_lists(),
            ListStrategy::WatchCache => watcher::Config { page_size: None, ..cfg.any_semantic() },
            ListStrategy::PagedQuorum => cfg.page_size(LIST_PAGE_SIZE_PODS),
        }
    }

    /// The strategy a watch starts with. Measured at 100,000 pods (docs/performance.md): 200
    /// node-mode streaming lists cost the API server 3x what 200 lists at resourceVersion 0 do (the
    /// initial events of a streaming list scan the whole cache; the list uses the node index), so
    /// node mode lists like the kubelet. A watch that no index narrows (`cluster_wide`) never
    /// lists at resourceVersion 0, which servers before 1.33 answer with every object at once.
    pub(crate) fn initial_strategy(&self, cluster_wide: bool) -> ListStrategy {
        match (self.list_strategy, cluster_wide) {
            (ListStrategyChoice::Auto, true) | (ListStrategyChoice::Streaming, _) => ListStrategy::Streaming,
            (ListStrategyChoice::Auto | ListStrategyChoice::WatchCache, false) => ListStrategy::WatchCache,
            (ListStrategyChoice::WatchCache | ListStrategyChoice::Paginated, true)
            | (ListStrategyChoice::Paginated, false) => ListStrategy::PagedQuorum,
        }
    }
}

impl Default for WatchTuning {
    fn default() -> Self {
        WatchTuning {
            list_strategy: ListStrategyChoice::Auto,
            watch_timeout: DEFAULT_WATCH_TIMEOUT,
            jitter: Duration::ZERO,
        }
    }
}

/// The delay before reconnect attempt `attempt` (0 for the first after a healthy watch): the
/// exponential backoff ([`RECONNECT_BACKOFF_MIN`] doubling to [`RECONNECT_BACKOFF_MAX`]) plus
/// `unit` (uniform in [0, 1)) of `jitter`. Spread over the window, many agents that lose their
/// watch at the same moment (an API server restart, a `410 Gone`) come back one by one.
pub(crate) fn reconnect_delay(attempt: u32, jitter: Duration, unit: f64) -> Duration {
    let base = RECONNECT_BACKOFF_MIN.saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX));
    base.min(RECONNECT_BACKOFF_MAX) + jitter.mul_f64(unit.clamp(0.0, 1.0))
}

/// The watch's backoff when `jitter` is set: [`reconnect_delay`], reset by any event.
#[derive(Debug)]
pub(crate) struct JitteredBackoff {
    jitter: Duration,
    attempt: u32,
}

impl JitteredBackoff {
    pub fn new(jitter: Duration) -> Self {
        JitteredBackoff { jitter, attempt: 0 }
    }
}

impl Iterator for JitteredBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let d = reconnect_delay(self.attempt, self.jitter, fastrand::f64());
        self.attempt = self.attempt.saturating_add(1);
        Some(d)
    }
}

impl kube::runtime::utils::Backoff for JitteredBackoff {
    fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// The backoff of a pod watch: kube's default (client-go's, with its small jitter), or
/// [`JitteredBackoff`] when a jitter window is set.
pub fn watch_backoff(jitter: Duration) -> Box<dyn kube::runtime::utils::Backoff> {
    if jitter.is_zero() { Box::new(watcher::DefaultBackoff::default()) } else { Box::new(JitteredBackoff::new(jitter)) }
}

impl WatchScope {
    /// The field selector sent to the API server: the user's, the node, and the exclusions.
    pub(crate) fn effective_field_selector(&self) -> Option<String> {
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
        self.tuning.configure(self.selectors(), strategy)
    }

    /// The list parameters that select the scope's pods: the label and field selectors.
    pub(crate) fn list_params(&self) -> ListParams {
        let mut params = ListParams::default();
        if let Some(l) = self.label_selector.as_deref().filter(|l| !l.is_empty()) {
            params = params.labels(l);
        }
        if let Some(f) = self.effective_field_selector() {
            params = params.fields(&f);
        }
        params
    }

    /// The watcher settings that select the pods: the label and field selectors.
    pub(crate) fn selectors(&self) -> watcher::Config {
        let mut cfg = watcher::Config::default();
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
    /// at a time. No etcd read, no list response held in memory: cluster-wide watches.
    Streaming,
    /// A list with `resourceVersion=0`, served from the watch cache (which indexes pods by
    /// `spec.nodeName`): node mode, where the response is one node's pods, as the kubelet lists.
    WatchCache,
    /// A paginated list with `resourceVersion` unset (500 objects a page; a quorum read from etcd
    /// before 1.31, from the watch cache after): where streaming lists are refused, for
    /// cluster-wide watches, which a list at resourceVersion 0 would return in one response.
    PagedQuorum,
}

impl ListStrategy {
    /// What a cluster-wide watch uses when the API server refuses streaming lists.
    pub(crate) const FALLBACK: ListStrategy = ListStrategy::PagedQuorum;

    pub fn as_str(self) -> &'static str {
        match self {
            ListStrategy::Streaming => "streaming list (watch cache)",
            ListStrategy::WatchCache => "list at resourceVersion 0 (watch cache)",
            ListStrategy::PagedQuorum => "paginated quorum list",
        }
    }
}

/// Whether a watch error says that the API server does not serve streaming lists (a server
/// before 1.34 without the `WatchList` gate answers the `sendInitialEvents` watch with 4xx).
pub(crate) fn refuses_streaming_lists(e: &watcher::Error) -> bool {
    let status = match e {
        watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status,
        watcher::Error::WatchError(status) => status,
        _ => return false,
    };
    matches!(status.code, 400 | 422) || status.message.contains("sendInitialEvents")
}

/// A watch with the agent's list strategy and backoff: `base` carries the selectors, and
/// [`WatchTuning::configure`] the strategy, page size and timeout; the first list waits a random
/// part of `tuning.jitter`; a server that refuses streaming lists before the first list is
/// complete gets [`ListStrategy::FALLBACK`] (when the choice is `auto`), said once in the log;
/// errors are yielded, then backed off ([`watch_backoff`]). Used by the pod watch and the Event
/// and owner watches.
pub(crate) fn tuned_watcher<K>(
    api: Api<K>,
    base: watcher::Config,
    tuning: WatchTuning,
    cluster_wide: bool,
    what: String,
) -> WatchStream<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let strategy = tuning.initial_strategy(cluster_wide);
    let inner = open_watch(&api, &base, tuning, strategy, &what);
    // Agents started together (a DaemonSet rollout) list one by one.
    let start_delay = (!tuning.jitter.is_zero()).then(|| tuning.jitter.mul_f64(fastrand::f64()));
    let state = Tuned {
        api,
        base,
        tuning,
        what,
        inner,
        strategy,
        listed: false,
        streaming_list_open: false,
        warned_no_end: false,
        start_delay,
    };
    futures::stream::unfold(state, |mut st| async move {
        let item = st.next().await?;
        Some((item, st))
    })
    .boxed()
}

/// A watch and its list strategy, with what it learnt of the server.
struct Tuned<K: 'static> {
    api: Api<K>,
    base: watcher::Config,
    tuning: WatchTuning,
    what: String,
    inner: WatchStream<K>,
    strategy: ListStrategy,
    listed: bool,
    /// A streaming list has started and its end has not come.
    streaming_list_open: bool,
    warned_no_end: bool,
    start_delay: Option<Duration>,
}

impl<K> Tuned<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    /// The next event or error for the caller; `None` when the watch ends. A strategy the server
    /// does not serve is replaced here, and the caller never sees its errors.
    async fn next(&mut self) -> Option<Result<watcher::Event<K>, watcher::Error>> {
        if let Some(delay) = self.start_delay.take() {
            tokio::time::sleep(delay).await;
        }
        loop {
            let item = if self.streaming_list_open {
                match tokio::time::timeout(STREAMING_LIST_QUIET_BOUND, self.inner.next()).await {
                    Ok(item) => item?,
                    Err(_) => {
                        self.streaming_list_went_quiet();
                        continue;
                    }
                }
            } else {
                self.inner.next().await?
            };
            match &item {
                Ok(watcher::Event::Init) => self.streaming_list_open = self.strategy == ListStrategy::Streaming,
                Ok(watcher::Event::InitDone) => {
                    self.listed = true;
                    self.streaming_list_open = false;
                }
                Err(e)
                    if self.tuning.list_strategy.falls_back()
                        && self.strategy == ListStrategy::Streaming
                        && !self.listed
                        && refuses_streaming_lists(e) =>
                {
                    tracing::info!(what = %self.what, strategy = ListStrategy::FALLBACK.as_str(), error = %e,
                        "The API server does not serve streaming lists; listing instead.");
                    self.fall_back();
                    continue;
                }
                // The watcher starts over after an error: its next list opens with `Init` again.
                Err(_) => self.streaming_list_open = false,
                _ => {}
            }
            return Some(item);
        }
    }

    /// A server that ignores `sendInitialEvents` (an older one, or a proxy) streams a plain watch:
    /// its list never ends, and the agent would never be ready.
    fn streaming_list_went_quiet(&mut self) {
        let quiet_secs = STREAMING_LIST_QUIET_BOUND.as_secs();
        if self.tuning.list_strategy.falls_back() {
            tracing::warn!(what = %self.what, strategy = ListStrategy::FALLBACK.as_str(), quiet_secs,
                "The API server's streaming list went quiet without its end (the initial-events-end bookmark): it does not serve streaming lists (an older server, or a proxy that drops sendInitialEvents); listing instead.");
            self.fall_back();
        } else if !std::mem::replace(&mut self.warned_no_end, true) {
            tracing::warn!(what = %self.what, quiet_secs,
                "The API server's streaming list went quiet without its end, and --list-strategy streaming is forced: still waiting (use auto to fall back to a list).");
        }
    }

    /// Lists instead of streaming, from now on.
    fn fall_back(&mut self) {
        self.strategy = ListStrategy::FALLBACK;
        self.streaming_list_open = false;
        self.inner = open_watch(&self.api, &self.base, self.tuning, self.strategy, &self.what);
    }
}

/// The stream of a watch: kube's watcher events, or its errors.
pub(crate) type WatchStream<K> = futures::stream::BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>;

/// One watcher with `strategy`, behind the watch's backoff.
fn open_watch<K>(
    api: &Api<K>,
    base: &watcher::Config,
    tuning: WatchTuning,
    strategy: ListStrategy,
    what: &str,
) -> WatchStream<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    tracing::debug!(what, strategy = strategy.as_str(), "Watching.");
    let stream = watcher::watcher(api.clone(), tuning.configure(base.clone(), strategy));
    kube::runtime::utils::StreamBackoff::new(stream, watch_backoff(tuning.jitter)).boxed()
}

/// One `(api, description)` per scope of a namespaced resource: all namespaces when `namespaces`
/// is empty, else one per namespace. Pods and their Events are watched in the same scopes.
pub(crate) fn scoped_apis<K>(client: &Client, namespaces: &[String]) -> Vec<(Api<K>, String)>
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

/// How often a scope's detector looks for pods that have now waited past the pending threshold.
const PENDING_TICK: Duration = Duration::from_secs(1);

/// Everything one watch task needs.
pub struct WatchTask {
    pub api: Api<SlimPod>,
    pub description: String,
    pub scope: WatchScope,
    pub server: String,
    /// Catch-up for the initial list (from the checkpoint).
    pub catch_up_since: Option<Timestamp>,
    pub tx: mpsc::Sender<Record>,
    /// Where each record handed over counts as in flight until settled (the checkpoint's watermark).
    pub progress: Arc<crate::accounting::ExportProgress>,
    pub stats: Arc<WatchStats>,
    pub health: Arc<ScopeHealth>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Watches until `stop` is cancelled (or the export side goes away). Never ends on a watch error.
/// The bookkeeping is [`ScopeWatch`]'s; this loop pulls events, logs, forwards restarts and keeps
/// the scope's health.
pub async fn run(task: WatchTask, stop: CancellationToken) {
    let WatchTask { api, description, scope, server, catch_up_since, tx, progress, stats, health, metrics } = task;
    let mut watch = ScopeWatch::new(&scope.detection, catch_up_since);
    let stream = tuned_watcher(api, scope.selectors(), scope.tuning, scope.node_name.is_none(), description.clone())
        .take_until(stop.clone().cancelled_owned());
    let mut stream = std::pin::pin!(stream);
    let mut last_failure: Option<Failure> = None;
    let mut tick = tokio::time::interval(PENDING_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let item = tokio::select! {
            item = stream.next() => match item {
                Some(item) => item,
                None => break,
            },
            _ = tick.tick() => {
                for ev in watch.tick(Timestamp::now()) {
                    if !forward(ev, &tx, &progress, &stats, &metrics).await {
                        return;
                    }
                }
                continue;
            }
        };
        let event = match item {
            Ok(ev) => ev,
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
        stats.watch_events.fetch_add(1, Ordering::Relaxed);
        if last_failure.take().is_some() {
            tracing::info!(scope = %description, "Watch recovered.");
        }
        let step = watch.on_watch_event(event, Timestamp::now());
        report_list_change(step.list, &description, &stats, &metrics);
        if step.resets > 0 {
            metrics.restart_count_resets(step.resets);
        }
        if watch.listed() {
            health.live.store(true, Ordering::Relaxed);
        }
        for ev in step.restarts {
            if !forward(ev, &tx, &progress, &stats, &metrics).await {
                tracing::error!(scope = %description, "The export pipeline is gone; stopping this watch.");
                return;
            }
        }
    }
    tracing::debug!(scope = %description, "Watch stopped.");
}

/// Hands a detected record to the pipeline, counted as detected and in flight before it can be
/// settled; waits while the channel is full (backpressure onto the source). `false` when the
/// pipeline is gone (the record is settled: it never entered).
pub(crate) async fn forward(
    ev: crate::record::Record,
    tx: &tokio::sync::mpsc::Sender<crate::record::Record>,
    progress: &crate::accounting::ExportProgress,
    stats: &WatchStats,
    metrics: &crate::metrics::Metrics,
) -> bool {
    stats.restarts.fetch_add(1, Ordering::Relaxed);
    let second = ev.in_flight_second();
    progress.in_flight.add(second, 1);
    if tx.send(ev).await.is_err() {
        progress.in_flight.settle(second, 1);
        return false;
    }
    metrics.queue_in(1);
    true
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
            crate::memory::release_free_memory();
            tracing::info!(scope = %description, pods, containers, "Initial list complete; watching.");
        }
        ListChange::RelistComplete { pods, dropped } => {
            stats.pods_dropped.fetch_add(dropped as u64, Ordering::Relaxed);
            crate::memory::release_free_memory();
            tracing::info!(scope = %description, pods, dropped, "Relist complete; pods missing from it were dropped.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn reconnects_back_off_like_client_go_plus_a_share_of_the_jitter_window() {
        let cases = [
            // (attempt, jitter, unit, delay)
            (0, Duration::ZERO, 0.9, ms(800)),
            (1, Duration::ZERO, 0.0, ms(1600)),
            (5, Duration::ZERO, 0.0, ms(25_600)),
            (6, Duration::ZERO, 0.0, RECONNECT_BACKOFF_MAX),
            (u32::MAX, Duration::ZERO, 0.0, RECONNECT_BACKOFF_MAX),
            (0, ms(10_000), 0.0, ms(800)),
            (0, ms(10_000), 0.5, ms(5_800)),
            (0, ms(10_000), 0.999_9, ms(10_799)),
            (3, ms(10_000), 0.25, ms(6_400 + 2_500)),
            // Out-of-range units are clamped: never past the window.
            (0, ms(10_000), 7.0, ms(10_800)),
            (0, ms(10_000), -1.0, ms(800)),
        ];
        for (attempt, jitter, unit, want) in cases {
            let got = reconnect_delay(attempt, jitter, unit);
            assert!(
                got.abs_diff(want) <= ms(1),
                "attempt {attempt}, jitter {jitter:?}, unit {unit}: {got:?} != {want:?}"
            );
        }
    }

    #[test]
    fn the_jittered_backoff_spreads_delays_over_the_window_and_resets_on_success() {
        use kube::runtime::utils::Backoff;
        let window = Duration::from_secs(10);
        let mut b = JitteredBackoff::new(window);
        let firsts: Vec<Duration> = (0..200)
            .map(|_| {
                let d = b.next().unwrap();
                b.reset();
                d
            })
            .collect();
        assert!(firsts.iter().all(|d| *d >= RECONNECT_BACKOFF_MIN && *d < RECONNECT_BACKOFF_MIN + window));
        // Spread, not bunched: 200 draws cover both halves of the window.
        let mid = RECONNECT_BACKOFF_MIN + window / 2;
        assert!(firsts.iter().any(|d| *d < mid) && firsts.iter().any(|d| *d >= mid), "{firsts:?}");
        // Without a reset, the base doubles.
        let second = b.nth(1).unwrap();
        assert!(second >= RECONNECT_BACKOFF_MIN * 2, "{second:?}");
    }

    #[test]
    fn node_mode_lists_like_the_kubelet_and_cluster_wide_watches_stream() {
        use ListStrategy::*;
        use ListStrategyChoice as C;
        let cases = [
            // (choice, cluster-wide, strategy)
            (C::Auto, false, WatchCache),
            (C::Auto, true, Streaming),
            (C::Streaming, false, Streaming),
            (C::Streaming, true, Streaming),
            (C::WatchCache, false, WatchCache),
            (C::WatchCache, true, PagedQuorum), // never every object in one response
            (C::Paginated, false, PagedQuorum),
            (C::Paginated, true, PagedQuorum),
        ];
        for (choice, cluster_wide, want) in cases {
            let tuning = WatchTuning { list_strategy: choice, ..WatchTuning::default() };
            assert_eq!(tuning.initial_strategy(cluster_wide), want, "{choice:?}, cluster-wide {cluster_wide}");
            assert_eq!(choice.falls_back(), choice == C::Auto, "a forced strategy is kept");
        }
    }

    #[test]
    fn the_watch_timeout_goes_to_the_server() {
        let scope = WatchScope {
            tuning: WatchTuning { watch_timeout: Duration::from_secs(60), ..WatchTuning::default() },
            ..WatchScope::default()
        };
        assert_eq!(scope.watcher_config(ListStrategy::Streaming).timeout, Some(60));
        assert!(scope.watcher_config(ListStrategy::Streaming).bookmarks);
    }
}
