//! The agent's own metrics, defined once with the OpenTelemetry metrics API. They are served as
//! Prometheus text on the admin server (`opentelemetry-prometheus`) and, with `--self-metrics-otlp`,
//! pushed with `opentelemetry-otlp` to the collector: one set of instruments, two readers.
//!
//! Labels are low-cardinality only (kind, cause, signal, reason, failure); pod and namespace names
//! belong in the restart records, never here.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider};
use opentelemetry_sdk::metrics::SdkMeterProvider;

use crate::record::Record;

/// Prefix of every instrument.
pub(crate) const PREFIX: &str = "restart_watcher";

/// Errors setting the metrics up.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot set up the Prometheus exporter: {0}")]
    Prometheus(String),
    #[error("cannot encode metrics: {0}")]
    Encode(String),
}

/// Every instrument the agent records.
#[derive(Clone, Debug)]
pub struct Metrics {
    restarts_detected: Counter<u64>,
    failures_detected: Counter<u64>,
    records_exported: Counter<u64>,
    records_retried: Counter<u64>,
    records_dropped: Counter<u64>,
    queue_in: Counter<u64>,
    queue_out: Counter<u64>,
    export_duration: Histogram<f64>,
    detection_latency: Histogram<f64>,
    watch_relists: Counter<u64>,
    restart_count_resets: Counter<u64>,
    watch_errors: Counter<u64>,
    api_requests: Counter<u64>,
    api_lookups_limited: Counter<u64>,
    previous_logs_fetches: Counter<u64>,
    container_restarts: Counter<u64>,
    container_failures: Counter<u64>,
    node_restarts: Counter<u64>,
    /// `--workload-metrics`: the series of the two counters above, capped; unset when off.
    workload_series: std::sync::Arc<std::sync::OnceLock<std::sync::Mutex<crate::workload_metrics::SeriesCap>>>,
    /// For the instruments observed from a store (`observe_event_store`).
    meter: Meter,
}

impl Metrics {
    pub fn new(meter: &Meter) -> Self {
        let counter = |name: &str, desc: &'static str| {
            meter.u64_counter(format!("{PREFIX}.{name}")).with_description(desc).build()
        };
        let metrics = Metrics {
            restarts_detected: counter(
                "restarts.detected",
                "Container restarts detected, by container kind and cause.",
            ),
            failures_detected: counter(
                "failures.detected",
                "Start failures, their ends, terminal failures and evictions detected, by event and cause.",
            ),
            records_exported: counter("records.exported", "Records accepted by the collector, by signal."),
            records_retried: counter(
                "records.retried",
                "Records in export attempts that failed and were retried, by signal and gRPC reason.",
            ),
            records_dropped: counter("records.dropped", "Records dropped for good, by signal and reason."),
            queue_in: counter("queue.in", "Records put on the export queue."),
            queue_out: counter("queue.out", "Records taken off the export queue."),
            export_duration: meter
                .f64_histogram(format!("{PREFIX}.export.duration"))
                .with_unit("s")
                .with_description("Duration of one OTLP export call, by signal and outcome.")
                .with_boundaries(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
                .build(),
            detection_latency: meter
                .f64_histogram(format!("{PREFIX}.detection.latency"))
                .with_unit("s")
                .with_description("Time from a container's death (finishedAt) to its detection.")
                .with_boundaries(vec![0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0])
                .build(),
            watch_relists: counter("watch.relists", "Relists of the pod watch (after 410 Gone or a broken watch)."),
            restart_count_resets: counter(
                "restart_count.resets",
                "Falls of a container's restartCount (the kubelet lost its state, or something rewrote the status): the count starts again from the new value, nothing is reported.",
            ),
            watch_errors: counter("watch.errors", "Pod watch errors, by failure class."),
            api_requests: counter(
                "api.requests",
                "Node mode's lookups sent to the API server, by kind (events_list, replicaset_get, job_get).",
            ),
            api_lookups_limited: counter(
                "api.lookups_limited",
                "Node mode's lookups not sent past their rate limit, by kind: the cause came from the status, the owner from the naming rule.",
            ),
            previous_logs_fetches: counter(
                "previous_logs.fetches",
                "Fetches of the previous instance's logs, by outcome (ok, timeout, forbidden, error, shutdown).",
            ),
            container_restarts: counter(
                "container.restarts",
                "Opt-in (--workload-metrics): container restarts by namespace, workload kind, workload, container and cause.",
            ),
            container_failures: counter(
                "container.failures",
                "Opt-in (--workload-metrics): start failures, their ends, terminal failures and evictions by namespace, workload kind, workload, container, event and cause.",
            ),
            node_restarts: counter(
                "node.restarts",
                "Opt-in (--workload-metrics): container restarts by node and cause.",
            ),
            workload_series: Default::default(),
            meter: meter.clone(),
        };
        // Counters an alert or a dashboard reads from the start: present at 0 before their first
        // increase, so `increase()` sees that one too.
        metrics.watch_relists.add(0, &[]);
        metrics.restart_count_resets.add(0, &[]);
        for failure in crate::kube_errors::Failure::ALL {
            metrics.watch_errors.add(0, &[KeyValue::new("failure", failure.as_str())]);
        }
        metrics
    }

    /// Turns the per-workload counters on, with at most `max_series` series (see
    /// `workload_metrics`).
    pub(crate) fn enable_workload_metrics(&self, max_series: usize) {
        let _ = self.workload_series.set(std::sync::Mutex::new(crate::workload_metrics::SeriesCap::new(max_series)));
    }

    /// Counts a record per workload, when `--workload-metrics` is on: once its cause is decided
    /// (after the Events are consulted), before storm control coalesces anything.
    pub(crate) fn count_per_workload(&self, ev: &Record) {
        let Some(cap) = self.workload_series.get() else {
            return;
        };
        let (admitted, node, series) = {
            let mut cap = cap.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            (cap.admit(ev), cap.admit_node(ev), cap.series())
        };
        if admitted.first_overflow {
            tracing::warn!(
                series,
                "The per-workload counters reached their series cap: new series count under namespace, workload and container \"other\" (raise --workload-metrics-max-series)."
            );
        }
        let l = admitted.labels;
        let mut labels = vec![
            KeyValue::new("namespace", l.namespace),
            KeyValue::new("workload_kind", l.workload_kind),
            KeyValue::new("workload", l.workload),
            KeyValue::new("revision", l.revision),
            KeyValue::new("container", l.container),
            KeyValue::new("cause", ev.cause.as_str()),
        ];
        if ev.kind == crate::record::RecordKind::Restart {
            self.container_restarts.add(1 + u64::from(ev.missed), &labels);
            self.node_restarts.add(
                1 + u64::from(ev.missed),
                &[KeyValue::new("node", node), KeyValue::new("cause", ev.cause.as_str())],
            );
        } else {
            labels.push(KeyValue::new("event", ev.kind.as_str()));
            self.container_failures.add(1, &labels);
        }
    }

    /// A store's use against its byte budget (the gauges `NAME.usage` and `NAME.limit`) and what it
    /// shed past it (the counter `shed.0`), read at each collection.
    fn observe_budget(
        &self,
        name: &str,
        (usage_desc, limit_desc): (&'static str, &'static str),
        shed: (&str, &'static str),
        read: [Box<dyn Fn() -> u64 + Send + Sync>; 3],
    ) {
        let [used, limit, shed_count] = read;
        for (suffix, description, read) in [("usage", usage_desc, used), ("limit", limit_desc, limit)] {
            self.meter
                .u64_observable_gauge(format!("{PREFIX}.{name}.{suffix}"))
                .with_unit("By")
                .with_description(description)
                .with_callback(move |o| o.observe(read(), &[]))
                .build();
        }
        self.meter
            .u64_observable_counter(format!("{PREFIX}.{}", shed.0))
            .with_description(shed.1)
            .with_callback(move |o| o.observe(shed_count(), &[]))
            .build();
    }

    /// The same, for a store that reports through a [`BudgetUsage`](crate::accounting::BudgetUsage).
    fn observe_usage(
        &self,
        name: &str,
        descriptions: (&'static str, &'static str),
        shed: (&str, &'static str),
        usage: std::sync::Arc<crate::accounting::BudgetUsage>,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        let (used, limit) = (usage.clone(), usage.clone());
        self.observe_budget(
            name,
            descriptions,
            shed,
            [
                Box::new(move || used.bytes.load(Relaxed)),
                Box::new(move || limit.budget_bytes.load(Relaxed)),
                Box::new(move || usage.shed.load(Relaxed)),
            ],
        );
    }

    /// The Event store's use against its budget, and its evictions.
    pub(crate) fn observe_event_store(&self, usage: std::sync::Arc<crate::accounting::BudgetUsage>) {
        self.observe_usage(
            "events.store",
            (
                "Estimated bytes held by the Event store.",
                "The Event store's budget, in bytes: past it, the oldest Events are evicted.",
            ),
            (
                "events.evicted",
                "Events evicted from the store past its budget (restarts they would explain are classified from the status).",
            ),
            usage,
        );
    }

    /// The records waiting for a late Event or their previous logs, against their budget, and those
    /// sent on early to stay within it.
    pub(crate) fn observe_pending(&self, usage: std::sync::Arc<crate::accounting::BudgetUsage>) {
        self.observe_usage(
            "pending",
            (
                "Estimated bytes of the records waiting for a late Event or their previous logs.",
                "Their budget, in bytes: past it, the oldest go on at once.",
            ),
            (
                "pending.released_early",
                "Records sent on before their wait for an Event or their previous logs was over, to stay within the budget.",
            ),
            usage,
        );
    }

    /// The owner index's use against its budget, and the links it did not keep past it.
    pub(crate) fn observe_owner_index(&self, usage: std::sync::Arc<crate::accounting::BudgetUsage>) {
        self.observe_usage(
            "owners.index",
            (
                "Estimated bytes of the owner index (ReplicaSet -> Deployment and Job -> CronJob links).",
                "The owner index's budget, in bytes: past it, new links are not kept.",
            ),
            (
                "owners.unindexed",
                "ReplicaSet or Job links not kept past the budget (their Deployment is named by the naming rule, without uid).",
            ),
            usage,
        );
    }

    /// The export queue's use against its byte budget, and the waits for room in it.
    pub(crate) fn observe_export_queue(&self, usage: std::sync::Arc<crate::accounting::BudgetUsage>) {
        self.observe_usage(
            "queue",
            (
                "Estimated bytes of the records in the export queue (channel, batch being filled, batches in flight).",
                "The export queue's budget, in bytes: past it, the pipeline waits (backpressure).",
            ),
            ("queue.full_waits", "Records that waited for room in the export queue's byte budget."),
            usage,
        );
    }

    /// The start-failure episodes kept for their closing records, against their budget, and the
    /// episodes past it (reported when they open, not when they end).
    pub(crate) fn observe_episodes(&self, usage: std::sync::Arc<crate::accounting::BudgetUsage>) {
        self.observe_usage(
            "episodes",
            (
                "Bytes of the start-failure episodes kept for their closing records.",
                "Their budget, in bytes: past it, a new episode is reported when it opens but not when it ends.",
            ),
            ("episodes.over_budget", "Start-failure episodes opened past the budget: their end is not reported."),
            usage,
        );
    }

    /// The revisions remembered for `first_failure`, against their budget, and those let go.
    pub(crate) fn observe_revisions(&self, usage: std::sync::Arc<crate::accounting::BudgetUsage>) {
        self.observe_usage(
            "revisions",
            (
                "Bytes of the workload revisions that have failed, remembered to mark each one's first failure.",
                "Their budget, in bytes: past it, the oldest are forgotten.",
            ),
            (
                "revisions.forgotten",
                "Revisions forgotten past the budget (a later failure of one is marked first again).",
            ),
            usage,
        );
    }

    /// The pods waiting to start, kept to report those that wait past the threshold, against their
    /// budget, and those not kept past it.
    pub(crate) fn observe_pods_waiting(&self, usage: std::sync::Arc<crate::accounting::BudgetUsage>) {
        self.observe_usage(
            "pods_waiting",
            (
                "Bytes of the pods waiting to start, kept to report those that wait past the pending threshold.",
                "Their budget, in bytes: past it, a pod that waits is not kept, nor reported.",
            ),
            ("pods_waiting.over_budget", "Pods waiting to start not kept past the budget: never reported."),
            usage,
        );
    }

    /// The workloads watched for rollout regressions, against their budget, and those forgotten.
    pub(crate) fn observe_rollouts(&self, usage: std::sync::Arc<crate::accounting::BudgetUsage>) {
        self.observe_usage(
            "rollouts",
            (
                "Bytes of the workloads watched for rollout regressions (their revision, failing pods, rollout).",
                "Their budget, in bytes: past it, the oldest workloads are forgotten.",
            ),
            (
                "rollouts.forgotten",
                "Workloads forgotten past the budget (their next revision is a baseline, not a rollout).",
            ),
            usage,
        );
    }

    /// The node index's use against its budget, and the nodes not kept past it.
    pub(crate) fn observe_node_index(&self, usage: std::sync::Arc<crate::accounting::BudgetUsage>) {
        self.observe_usage(
            "nodes.index",
            (
                "Estimated bytes of the node index (node name -> uid, for k8s.node.uid).",
                "The node index's budget, in bytes: past it, new nodes are not kept.",
            ),
            ("nodes.unindexed", "Nodes not kept past the budget (their pods' records go without k8s.node.uid)."),
            usage,
        );
    }

    /// The OOM-kill counters kept between scans (`--oom-kills-from-cgroups`) against their budget.
    pub(crate) fn observe_oom_counters(&self, usage: std::sync::Arc<crate::accounting::BudgetUsage>) {
        self.observe_usage(
            "oom_counters",
            (
                "Bytes of the memory-cgroup OOM-kill counters kept between scans.",
                "Their budget, in bytes: past it, more containers are not read.",
            ),
            ("oom_counters.unread", "Containers not read past the budget (their OOM kills are not reported)."),
            usage,
        );
    }

    /// Storm control's use against its budget, and the restarts it let through past it.
    pub(crate) fn observe_storm(&self, usage: std::sync::Arc<crate::accounting::BudgetUsage>) {
        self.observe_usage(
            "storm.state",
            (
                "Estimated bytes held by storm control (its windows and the records they hold).",
                "Storm control's budget, in bytes: past it, restarts are emitted at once, uncoalesced.",
            ),
            ("storm.over_budget", "Restarts emitted uncoalesced because storm control's state was at its budget."),
            usage,
        );
    }

    /// `--leader-elect`: the standby buffer's use against its budget, and the records evicted past
    /// it (the leader delivers them; they are lost only if it dies before its checkpoint covers them).
    pub(crate) fn observe_standby_buffer(&self, usage: std::sync::Arc<crate::accounting::BudgetUsage>) {
        self.observe_usage(
            "standby.buffer",
            (
                "Estimated bytes of the records a standby keeps until the leader's checkpoint covers them.",
                "The standby buffer's budget, in bytes: past it, the oldest records go.",
            ),
            (
                "standby.evicted",
                "Records a standby let go past its buffer's budget before the leader's checkpoint covered them.",
            ),
            usage,
        );
    }

    /// The heap: bytes allocated and in use, and the heap's address space (in use, and free: kept
    /// for reuse, or its pages handed back by a trim). What is in use growing is a store or a
    /// backlog; the RSS growing while it stays flat is the allocator's slack. Nothing where the C
    /// library is not glibc.
    pub(crate) fn observe_heap(&self) {
        type Read = fn(crate::memory::HeapBytes) -> u64;
        let parts: [(&str, &'static str, Read); 2] = [
            ("in_use", "Heap bytes allocated and not yet freed.", |h| h.in_use),
            ("mapped", "The heap's address space in bytes: in use, and free (for reuse, or handed back).", |h| {
                h.mapped
            }),
        ];
        for (name, description, read) in parts {
            self.meter
                .u64_observable_gauge(format!("{PREFIX}.heap.{name}"))
                .with_unit("By")
                .with_description(description)
                .with_callback(move |o| {
                    if let Some(heap) = crate::memory::heap_bytes() {
                        o.observe(read(heap), &[]);
                    }
                })
                .build();
        }
    }

    /// Whether this replica leads (1: it exports) or stands by (0). Always 1 without
    /// `--leader-elect`.
    pub(crate) fn observe_leader(&self, leads: impl Fn() -> bool + Send + Sync + 'static) {
        self.meter
            .u64_observable_gauge(format!("{PREFIX}.leader"))
            .with_description("1 while this replica leads and exports, 0 while it stands by (--leader-elect).")
            .with_callback(move |o| o.observe(u64::from(leads()), &[]))
            .build();
    }

    /// Instruments that record nowhere (replay, tests).
    pub fn noop() -> Self {
        Metrics::new(&SdkMeterProvider::builder().build().meter("restart-watcher"))
    }

    pub(crate) fn restart_detected(&self, ev: &Record) {
        if ev.kind != crate::record::RecordKind::Restart {
            self.failures_detected
                .add(1, &[KeyValue::new("event", ev.kind.as_str()), KeyValue::new("cause", ev.cause.as_str())]);
            return;
        }
        self.restarts_detected
            .add(1, &[KeyValue::new("kind", ev.container_kind().as_str()), KeyValue::new("cause", ev.cause.as_str())]);
        if let Some(finished) = ev.terminated.as_ref().and_then(|t| t.finished_at).filter(|_| !ev.detected_late) {
            // A negative latency is clock skew between the node and the agent: count it as immediate.
            let secs = ev.observed_at.duration_since(finished).as_secs_f64().max(0.0);
            self.detection_latency.record(secs, &[]);
        }
    }
    pub fn exported(&self, signal: &'static str, n: u64) {
        self.records_exported.add(n, &[KeyValue::new("signal", signal)]);
    }
    pub fn retried(&self, signal: &'static str, reason: &'static str, n: u64) {
        self.records_retried.add(n, &[KeyValue::new("signal", signal), KeyValue::new("reason", reason)]);
    }
    pub fn dropped(&self, signal: &'static str, reason: &'static str, n: u64) {
        self.records_dropped.add(n, &[KeyValue::new("signal", signal), KeyValue::new("reason", reason)]);
    }
    pub(crate) fn queue_in(&self, n: u64) {
        self.queue_in.add(n, &[]);
    }
    pub(crate) fn queue_out(&self, n: u64) {
        self.queue_out.add(n, &[]);
    }
    pub(crate) fn export_duration(&self, signal: &'static str, ok: bool, d: Duration) {
        self.export_duration.record(
            d.as_secs_f64(),
            &[KeyValue::new("signal", signal), KeyValue::new("outcome", if ok { "ok" } else { "error" })],
        );
    }
    pub fn relist(&self) {
        self.watch_relists.add(1, &[]);
    }
    pub(crate) fn restart_count_resets(&self, n: u64) {
        self.restart_count_resets.add(n, &[]);
    }
    pub(crate) fn previous_logs_fetch(&self, outcome: &'static str) {
        self.previous_logs_fetches.add(1, &[KeyValue::new("outcome", outcome)]);
    }
    pub(crate) fn watch_error(&self, failure: &'static str) {
        self.watch_errors.add(1, &[KeyValue::new("failure", failure)]);
    }

    /// A lookup of `kind` sent (node mode).
    pub(crate) fn api_request(&self, kind: &'static str) {
        self.api_requests.add(1, &[KeyValue::new("kind", kind)]);
    }

    /// A lookup of `kind` not sent past the rate limit (node mode).
    pub(crate) fn api_lookup_limited(&self, kind: &'static str) {
        self.api_lookups_limited.add(1, &[KeyValue::new("kind", kind)]);
    }
}

/// `service.name` of the agent's own metrics.
pub const SERVICE_NAME: &str = "restart-watcher";

/// The meter provider with its readers, and the Prometheus registry the admin server encodes.
pub struct SelfTelemetry {
    pub metrics: std::sync::Arc<Metrics>,
    provider: SdkMeterProvider,
    registry: prometheus::Registry,
}

impl SelfTelemetry {
    /// Sets up the Prometheus reader (what `/metrics` serves), under the resource
    /// `service.name=restart-watcher`.
    pub fn new() -> Result<Self, MetricsError> {
        Self::with_readers(None::<opentelemetry_sdk::metrics::ManualReader>)
    }

    /// [`SelfTelemetry::new`], and `push` beside the Prometheus reader (the OTLP push of
    /// `--self-metrics-otlp`, built by `export::otlp::self_metrics`).
    pub(crate) fn with_push(push: impl opentelemetry_sdk::metrics::reader::MetricReader) -> Result<Self, MetricsError> {
        Self::with_readers(Some(push))
    }

    fn with_readers(push: Option<impl opentelemetry_sdk::metrics::reader::MetricReader>) -> Result<Self, MetricsError> {
        let registry = prometheus::Registry::new();
        let prom = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .build()
            .map_err(|e| MetricsError::Prometheus(e.to_string()))?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(SERVICE_NAME)
            .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let mut builder = SdkMeterProvider::builder().with_reader(prom).with_resource(resource);
        if let Some(push) = push {
            builder = builder.with_reader(push);
        }
        let provider = builder.build();
        let metrics = std::sync::Arc::new(Metrics::new(&provider.meter("restart-watcher")));
        Ok(SelfTelemetry { metrics, provider, registry })
    }

    /// The Prometheus text exposition of every metric.
    pub fn prometheus_text(&self) -> Result<String, MetricsError> {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .map_err(|e| MetricsError::Encode(e.to_string()))?;
        String::from_utf8(buf).map_err(|e| MetricsError::Encode(e.to_string()))
    }

    /// Flushes pushed metrics (at shutdown).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!(error = %e, "Metrics provider shutdown.");
        }
    }
}
