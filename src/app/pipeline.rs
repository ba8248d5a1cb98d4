//! The live pipeline: pod watches -> [detected channel] -> enricher -> [export channel] -> export
//! task, with the Events and owner watches beside them, started as named stages: [`load`]
//! (preflight, checkpoint), then the export task, the side watches, the enricher and the pod
//! watches, each started by a function of its own. [`Delivery`] owns the counts that decide when
//! the checkpoint may advance; `shutdown.rs` ends the run.

use std::sync::Arc;

use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::accounting::Delivery;
use crate::checkpoint::{CheckpointError, CheckpointStore, catch_up_since};
use crate::export::Exporter;
use crate::export::task::{self, BatchConfig, ExportReport};

/// How long the first pod list may take before the agent gives up at startup.
pub(crate) const STARTUP_LIST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Settings of a live run.
pub(crate) struct RunOptions {
    pub scope: crate::watch::WatchScope,
    pub channel_capacity_events: usize,
    pub batch: BatchConfig,
    /// How long the export task may take to drain and flush at shutdown.
    pub shutdown_grace: std::time::Duration,
    /// The API server's URL, for messages.
    pub server: String,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Shared with the admin server's readiness.
    pub watch_stats: std::sync::Arc<crate::accounting::WatchStats>,
    /// Watch the kubelet's Events to classify causes (when RBAC allows).
    pub use_events: bool,
    /// Watch ReplicaSet and Job metadata to name Deployments and CronJobs (when RBAC allows); in
    /// node mode, look up those of the failing pods.
    pub use_owner_watch: bool,
    /// Node mode's lookups: per second, and at once.
    pub lookup_rate: (u32, u32),
    /// Watch Node metadata for `k8s.node.uid` (when RBAC allows).
    pub use_node_watch: bool,
    /// Storm control: coalesce repeated restarts per (workload, container, cause) over this window.
    pub storm_window: Option<std::time::Duration>,
    /// Opt-in: fetch the previous instance's last log lines.
    pub previous_logs: Option<crate::enrich::prevlogs::PreviousLogs>,
    /// Opt-in, node mode: read the containers' memory-cgroup OOM counters.
    pub oom_kills: Option<crate::config::OomKillSettings>,
    /// `--leader-elect`: the election Lease. Without it, this replica always leads.
    pub election: Option<crate::leader::Election>,
    /// This replica's role, published for readiness and metrics (set by the election).
    pub role: tokio::sync::watch::Sender<crate::leader::Role>,
}

/// Tasks started and stopped together: one cancellation token, one `JoinSet`.
pub(super) struct Stage {
    name: &'static str,
    pub stop: CancellationToken,
    tasks: JoinSet<()>,
    /// A task of the stage panicked.
    panicked: bool,
}

impl Stage {
    fn new(name: &'static str, parent: &CancellationToken) -> Self {
        Stage { name, stop: parent.child_token(), tasks: JoinSet::new(), panicked: false }
    }

    fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Resolves when every task of the stage has ended.
    pub async fn ended(&mut self) {
        while let Some(result) = self.tasks.join_next().await {
            if let Err(e) = result
                && e.is_panic()
            {
                self.panicked = true;
                tracing::error!(stage = self.name, error = %e, "A task panicked.");
            }
        }
    }

    /// Cancels the stage and waits for its tasks until `deadline`; what is still running then is
    /// aborted. Returns whether a task of the stage panicked.
    pub(crate) async fn stop_by(mut self, deadline: tokio::time::Instant) -> bool {
        self.stop.cancel();
        if tokio::time::timeout_at(deadline, self.ended()).await.is_err() {
            tracing::warn!(stage = self.name, "Tasks still running at the end of the shutdown grace; aborting them.");
            self.tasks.abort_all();
        }
        self.panicked
    }
}

/// What the load stage found: where to catch up from, and the checkpoint store to write to.
pub(super) struct Loaded {
    pub catch_up: Option<Timestamp>,
    pub store: CheckpointStore,
}

/// The running pipeline: pod watches -> detected -> enricher -> export queue -> export task, with
/// the Events and owner watches beside them.
pub(super) struct Pipeline {
    /// The pod watches (one per scope); stopping them closes the detected channel.
    pub watches: Stage,
    /// The Events and ReplicaSet/Job metadata watches that feed the enricher.
    pub side_watches: Stage,
    pub enricher: JoinHandle<()>,
    pub exporter: JoinHandle<ExportReport>,
    pub delivery: Delivery,
}

/// Load: checks that every scope can be listed (bounded by [`STARTUP_LIST_TIMEOUT`]), then reads
/// the checkpoint. `None` when asked to stop meanwhile.
pub(super) async fn load(
    client: &kube::Client,
    opts: &RunOptions,
    mut store: CheckpointStore,
    stop: &CancellationToken,
) -> Result<Option<Loaded>, crate::watch::WatchError> {
    tokio::select! {
        r = tokio::time::timeout(STARTUP_LIST_TIMEOUT, crate::pod_list::preflight(client, &opts.scope, &opts.server)) => match r {
            Ok(r) => r?,
            Err(_) => return Err(crate::watch::WatchError::StartupTimeout { server: opts.server.clone(), secs: STARTUP_LIST_TIMEOUT.as_secs() }),
        },
        _ = stop.cancelled() => return Ok(None),
    }
    if matches!(store, CheckpointStore::Disabled) {
        tracing::info!("Catch-up is off (--no-checkpoint): restarts during the agent's own downtime are not reported.");
        return Ok(Some(Loaded { catch_up: None, store }));
    }
    let catch_up = match store.load().await {
        Ok(Some(t)) => {
            tracing::info!(checkpoint = %t, store = store.describe(), "Catching up on restarts since the checkpoint.");
            Some(catch_up_since(t))
        }
        Ok(None) => {
            tracing::info!(store = store.describe(), "No checkpoint yet: restarts before this start are not reported.");
            None
        }
        Err(e @ CheckpointError::Forbidden { .. }) => {
            tracing::warn!(error = %e, "Catch-up is off.");
            store = CheckpointStore::Disabled;
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "Cannot read the checkpoint; starting without catch-up.");
            None
        }
    };
    Ok(Some(Loaded { catch_up, store }))
}

/// Spawn: the export task, the Events and owner watches the RBAC allows, the enricher, and one
/// pod watch per scope, each started by a function of its own.
pub(super) async fn spawn(
    client: &kube::Client,
    opts: &RunOptions,
    exporter: Exporter,
    catch_up: Option<Timestamp>,
    checkpoint: Arc<CheckpointStore>,
    stop: &CancellationToken,
) -> Pipeline {
    let (export_tx, export_rx) = mpsc::channel(opts.channel_capacity_events.max(1));
    let (detected_tx, detected_rx) = mpsc::channel(opts.channel_capacity_events.max(1));
    let mut delivery = Delivery::default();
    opts.metrics.observe_export_queue(delivery.progress.queue.usage());
    let exporter =
        tokio::spawn(task::run(export_rx, exporter, opts.batch, delivery.progress.clone(), opts.metrics.clone()));
    let mut side_watches = Stage::new("side watches", stop);
    let kube_events = spawn_kube_events(client, opts, &mut side_watches).await;
    let owners = spawn_owner_watch(client, opts, &mut side_watches).await;
    let nodes = spawn_node_watch(client, opts, &mut side_watches).await;
    // Node mode: the failing pods' Events and owners are looked up instead of watched.
    let lookups = opts.scope.node_name.as_ref().filter(|_| kube_events.is_some() || owners.is_some()).map(|_| {
        let metrics = Some(opts.metrics.clone());
        let l = crate::enrich::lookups::Lookups::new(
            client.clone(),
            opts.lookup_rate,
            kube_events.clone(),
            owners.clone(),
            metrics,
        );
        Arc::new(l)
    });
    let mut enrichment = enrichment(opts, kube_events, (owners, nodes), &delivery);
    enrichment.lookups = lookups;
    let enricher = spawn_enricher(opts, enrichment, detected_rx, export_tx, checkpoint, &delivery);
    let watches = spawn_pod_watches(client, opts, catch_up, detected_tx, &mut delivery, stop);
    Pipeline { watches, side_watches, enricher, exporter, delivery }
}

/// The kubelet's Events about pods (and Node OOM Events), when on and when RBAC allows: their
/// store, fed by watches of the stage.
async fn spawn_kube_events(
    client: &kube::Client,
    opts: &RunOptions,
    side_watches: &mut Stage,
) -> Option<Arc<crate::enrich::KubeEventStore>> {
    use crate::enrich::kube_events;
    if !opts.use_events {
        tracing::info!(
            "Events are off (--no-events): causes come from the container status alone (no liveness_probe, startup_probe, or Event-based evicted and preempted)."
        );
        return None;
    }
    let store = Arc::new(crate::enrich::KubeEventStore::default());
    // Node mode looks up the Events of its failing pods (`enrich::lookups`): no cluster-wide watch,
    // nor list. A cluster-mode agent watches them all.
    if opts.scope.node_name.is_none() {
        let apis = crate::watch::scoped_apis(client, &opts.scope.namespaces);
        if !kube_events::events_allowed(&apis).await {
            return None;
        }
        for (api, _) in apis {
            let stop = side_watches.stop.clone();
            side_watches.spawn(kube_events::watch_events(api, store.clone(), opts.scope.tuning, stop));
        }
    }
    opts.metrics.observe_event_store(store.usage());
    let node_events = kube::Api::namespaced(client.clone(), kube_events::NODE_EVENTS_NAMESPACE);
    let node = opts.scope.node_name.clone();
    if kube_events::node_events_allowed(&node_events, node.as_deref()).await {
        let stop = side_watches.stop.clone();
        side_watches.spawn(kube_events::watch_node_events(node_events, node, store.clone(), opts.scope.tuning, stop));
    }
    Some(store)
}

/// The ReplicaSet and Job metadata watch that names Deployments and CronJobs, when on and when
/// RBAC allows: its index.
async fn spawn_owner_watch(
    client: &kube::Client,
    opts: &RunOptions,
    side_watches: &mut Stage,
) -> Option<Arc<crate::enrich::owners::OwnerIndex>> {
    if !opts.use_owner_watch {
        tracing::info!(
            "The owner watch is off (--no-owner-watch): Deployments are named by the ReplicaSet naming rule, without uid, and CronJobs are not named."
        );
        return None;
    }
    let index = Arc::new(crate::enrich::owners::OwnerIndex::default());
    if opts.scope.node_name.is_some() {
        // Node mode looks up the owners of its failing pods (`enrich::lookups`).
        opts.metrics.observe_owner_index(index.usage());
        return Some(index);
    }
    if !crate::enrich::owners::allowed(client).await {
        return None;
    }
    opts.metrics.observe_owner_index(index.usage());
    let stop = side_watches.stop.clone();
    side_watches.spawn(crate::enrich::owners::watch(client.clone(), index.clone(), opts.scope.tuning, stop));
    Some(index)
}

/// The Node metadata watch (the agent's own Node in node mode) for `k8s.node.uid`, when on and
/// when RBAC allows: its index.
async fn spawn_node_watch(
    client: &kube::Client,
    opts: &RunOptions,
    side_watches: &mut Stage,
) -> Option<Arc<crate::enrich::nodes::NodeIndex>> {
    if !opts.use_node_watch {
        tracing::info!("The node watch is off (--no-node-watch): records carry k8s.node.name without k8s.node.uid.");
        return None;
    }
    let node = opts.scope.node_name.clone();
    let index = Arc::new(crate::enrich::nodes::NodeIndex::default());
    if !crate::enrich::nodes::allowed(client, node.as_deref(), &index).await {
        return None;
    }
    opts.metrics.observe_node_index(index.usage());
    let stop = side_watches.stop.clone();
    side_watches.spawn(crate::enrich::nodes::watch(client.clone(), index.clone(), node, opts.scope.tuning, stop));
    Some(index)
}

/// The enrichment stage's options, with their budgets observed by the metrics.
fn enrichment(
    opts: &RunOptions,
    kube_events: Option<Arc<crate::enrich::KubeEventStore>>,
    (owners, nodes): (Option<Arc<crate::enrich::owners::OwnerIndex>>, Option<Arc<crate::enrich::nodes::NodeIndex>>),
    delivery: &Delivery,
) -> crate::enrich::Enrichment {
    let episodes = &opts.scope.detection.episodes;
    if episodes.budget_bytes.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        episodes.budget_bytes.store(crate::detector::EPISODE_BUDGET_BYTES as u64, std::sync::atomic::Ordering::Relaxed);
    }
    opts.metrics.observe_episodes(episodes.clone());
    let revisions = &opts.scope.detection.revisions;
    revisions.budget_bytes.store(crate::detector::REVISIONS_BUDGET_BYTES as u64, std::sync::atomic::Ordering::Relaxed);
    opts.metrics.observe_revisions(revisions.clone());
    let waiting = &opts.scope.detection.pending;
    waiting.budget_bytes.store(crate::detector::PENDING_BUDGET_BYTES as u64, std::sync::atomic::Ordering::Relaxed);
    opts.metrics.observe_pods_waiting(waiting.clone());
    let rollouts = &opts.scope.detection.rollouts;
    rollouts.budget_bytes.store(crate::detector::ROLLOUTS_BUDGET_BYTES as u64, std::sync::atomic::Ordering::Relaxed);
    opts.metrics.observe_rollouts(rollouts.clone());
    let pending_usage = Arc::new(crate::accounting::BudgetUsage::default());
    opts.metrics.observe_pending(pending_usage.clone());
    crate::enrich::Enrichment {
        kube_events,
        owners,
        nodes,
        lookups: None,
        storm: opts.storm_window.map(|window| {
            let storm = crate::enrich::storm::StormControl::new(window);
            opts.metrics.observe_storm(storm.usage());
            storm
        }),
        previous_logs: opts.previous_logs.clone(),
        progress: delivery.progress.clone(),
        metrics: Some(opts.metrics.clone()),
        pending_budget_bytes: crate::enrich::PENDING_BUDGET_BYTES,
        pending_usage,
    }
}

/// The enricher, between the detected channel and the export channel; with leader election, the
/// gate after it lets only the leader export.
fn spawn_enricher(
    opts: &RunOptions,
    enrichment: crate::enrich::Enrichment,
    detected_rx: mpsc::Receiver<crate::record::Record>,
    export_tx: mpsc::Sender<crate::record::Record>,
    checkpoint: Arc<CheckpointStore>,
    delivery: &Delivery,
) -> JoinHandle<()> {
    if opts.election.is_none() {
        return tokio::spawn(crate::enrich::run(detected_rx, export_tx, enrichment));
    }
    let (gate_tx, gate_rx) = mpsc::channel(GATE_CAPACITY_EVENTS);
    let usage = Arc::new(crate::accounting::BudgetUsage::default());
    opts.metrics.observe_standby_buffer(usage.clone());
    let gate = crate::leader::Gate {
        role: opts.role.subscribe(),
        checkpoint,
        progress: delivery.progress.clone(),
        usage,
        budget_bytes: crate::leader::STANDBY_BUFFER_BUDGET_BYTES,
    };
    tokio::spawn(async move {
        let gate = tokio::spawn(crate::leader::gate(gate_rx, export_tx, gate));
        crate::enrich::run(detected_rx, gate_tx, enrichment).await;
        if let Err(e) = gate.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    })
}

/// One pod watch per scope, each with its health in the delivery accounting.
fn spawn_pod_watches(
    client: &kube::Client,
    opts: &RunOptions,
    catch_up: Option<Timestamp>,
    detected_tx: mpsc::Sender<crate::record::Record>,
    delivery: &mut Delivery,
    stop: &CancellationToken,
) -> Stage {
    let mut watches = Stage::new("pod watches", stop);
    for (api, description) in opts.scope.apis(client) {
        let task = crate::watch::WatchTask {
            api,
            description,
            scope: opts.scope.clone(),
            server: opts.server.clone(),
            catch_up_since: catch_up,
            tx: detected_tx.clone(),
            progress: delivery.progress.clone(),
            stats: opts.watch_stats.clone(),
            health: delivery.add_scope(),
            metrics: opts.metrics.clone(),
        };
        watches.spawn(crate::watch::run(task, watches.stop.clone()));
    }
    if let Some(o) = opts.oom_kills.as_ref().filter(|_| opts.scope.node_name.is_some()) {
        let counters = crate::node_oom::Counters::default();
        opts.metrics.observe_oom_counters(counters.usage.clone());
        tracing::info!(root = %o.root.display(), version = ?o.version, poll = ?o.poll, "Reading this node's container memory cgroups for OOM kills that restart nothing.");
        let task = crate::node_oom::NodeOomTask {
            client: client.clone(),
            pods: opts.scope.apis(client).into_iter().map(|(api, _)| api).collect(),
            params: opts.scope.list_params(),
            root: o.root.clone(),
            version: o.version,
            poll: o.poll,
            counters,
            kernel_log: o.kernel_log.as_deref().and_then(|path| {
                crate::node_oom::KernelLog::open(path)
                    .inspect_err(|e| tracing::warn!(path = %path.display(), error = %e, "Cannot read the kernel log: OOM kills go without the process's name."))
                    .ok()
            }),
            tx: detected_tx.clone(),
            progress: delivery.progress.clone(),
            stats: opts.watch_stats.clone(),
            metrics: opts.metrics.clone(),
        };
        watches.spawn(crate::node_oom::run(task, watches.stop.clone()));
    }
    watches
}

/// Capacity of the channel between enrichment and the leader gate, in records (the export queue
/// behind it holds the rest).
const GATE_CAPACITY_EVENTS: usize = 64;
