//! Command-line and environment configuration (clap). Every flag's default and env var live here,
//! so the docs can be generated from (and tested against) this definition.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::record::RecordKind;

/// Every Kubernetes container restart as one OpenTelemetry event.
#[derive(Debug, Parser)]
#[command(name = "restart-watcher", version, about, propagate_version = true, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do; `run` (watch the cluster) when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The flags of `run`, accepted without the subcommand name.
    #[command(flatten)]
    pub run: RunArgs,

    /// Log filter for the agent's own logs (tracing `EnvFilter` syntax), written to stderr.
    #[arg(long, env = "RESTART_WATCHER_LOG", default_value = "info", global = true)]
    pub log: String,

    /// Format of the agent's own logs.
    #[arg(long, env = "RESTART_WATCHER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch the cluster's pods and export every container restart (the default).
    Run(Box<RunArgs>),
    /// Feed a recorded watch stream (or Pods / PodLists) through the detector and export the restarts.
    Replay(Box<ReplayArgs>),
    /// Validate the configuration of `run` (flags and env) without connecting to anything.
    CheckConfig(Box<RunArgs>),
    /// Print the reference of every flag and environment variable (Markdown), as in docs/configuration.md.
    #[command(hide = true)]
    ConfigReference,
}

/// Flags of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Kubeconfig file; default as kube-rs infers it: $KUBECONFIG, ~/.kube/config, else the
    /// in-cluster service account.
    #[arg(long)]
    pub kubeconfig: Option<std::path::PathBuf>,

    /// Kubeconfig context to use instead of the current one.
    #[arg(long)]
    pub context: Option<String>,

    /// Watch only this namespace (repeatable; default: all namespaces).
    #[arg(
        long = "namespace",
        short = 'n',
        value_name = "NAMESPACE",
        env = "RESTART_WATCHER_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,

    /// Leave this namespace out (repeatable).
    #[arg(
        long = "exclude-namespace",
        value_name = "NAMESPACE",
        env = "RESTART_WATCHER_EXCLUDE_NAMESPACES",
        value_delimiter = ','
    )]
    pub exclude_namespaces: Vec<String>,

    /// Watch only pods matching this label selector (e.g. `app.kubernetes.io/part-of=shop`).
    #[arg(long, env = "RESTART_WATCHER_LABEL_SELECTOR")]
    pub label_selector: Option<String>,

    /// Watch only pods matching this field selector (e.g. `status.phase!=Succeeded`).
    #[arg(long, env = "RESTART_WATCHER_FIELD_SELECTOR")]
    pub field_selector: Option<String>,

    /// Node mode: watch only the pods of this node (`spec.nodeName`); set in a DaemonSet from the
    /// downward API. One agent per node scales to any cluster size.
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,

    /// How the watches get their state: `auto` (node mode's pods: a list at resourceVersion 0,
    /// as the kubelet lists, from the watch cache's node index; cluster-wide watches: a streaming
    /// list, or pages of 500 on servers without streaming lists), or one of them forced
    /// (cluster-wide watches page instead of `watch-cache`). See docs/operations.md.
    #[arg(long, env = "RESTART_WATCHER_LIST_STRATEGY", value_enum, default_value_t = crate::watch::ListStrategyChoice::Auto)]
    pub list_strategy: crate::watch::ListStrategyChoice,

    /// Server-side timeout of one watch request, e.g. `290s` (1s to 1h); the watch then resumes
    /// where it was, without a relist. Lower it behind a proxy that cuts idle connections sooner.
    #[arg(long, env = "RESTART_WATCHER_WATCH_TIMEOUT", default_value = "290s", value_parser = parse_watch_timeout)]
    pub watch_timeout: std::time::Duration,

    /// Delay each watch's first list, and each reconnect or relist after an error, by a random part of
    /// this window (0s to 10m), so that many agents do not list at once. Default: 10s in node
    /// mode, 0s (kube's backoff only) in cluster mode.
    #[arg(long, env = "RESTART_WATCHER_LIST_JITTER", value_parser = parse_list_jitter)]
    pub list_jitter: Option<std::time::Duration>,

    /// Keep the catch-up checkpoint in this file instead of a Lease (local runs).
    #[arg(long, env = "RESTART_WATCHER_CHECKPOINT_FILE", conflicts_with = "no_checkpoint")]
    pub checkpoint_file: Option<std::path::PathBuf>,

    /// Name of the checkpoint Lease (node mode appends `-<node name>`).
    #[arg(long, env = "RESTART_WATCHER_CHECKPOINT_LEASE", default_value = crate::checkpoint::DEFAULT_LEASE_NAME)]
    pub checkpoint_lease: String,

    /// Namespace of the checkpoint Lease: the agent's own (default: $POD_NAMESPACE, else the
    /// service account's namespace, else the kubeconfig context's namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pub checkpoint_namespace: Option<String>,

    /// No checkpoint: restarts that happen while the agent is down are not reported.
    #[arg(long, env = "RESTART_WATCHER_NO_CHECKPOINT")]
    pub no_checkpoint: bool,

    /// High availability: run two or more replicas; they elect a leader with a Lease in the
    /// agent's namespace. All watch and detect; only the leader exports, a standby keeps a bounded
    /// buffer and takes over when the Lease expires. Needs the checkpoint Lease; not in node mode.
    #[arg(long, env = "RESTART_WATCHER_LEADER_ELECT")]
    pub leader_elect: bool,

    /// Name of the election Lease (`--leader-elect`).
    #[arg(long, env = "RESTART_WATCHER_LEADER_ELECT_LEASE", default_value = crate::leader::DEFAULT_LEASE_NAME)]
    pub leader_elect_lease: String,

    /// How long a Lease not renewed stays its holder's (`--leader-elect`; 3s to 5m): a standby
    /// takes over this long after the leader dies.
    #[arg(long, env = "RESTART_WATCHER_LEADER_ELECT_LEASE_DURATION", default_value = "15s", value_parser = parse_election_period)]
    pub leader_elect_lease_duration: Duration,

    /// A leader that could not renew the Lease for this long stops exporting (`--leader-elect`;
    /// less than the lease duration minus the retry period).
    #[arg(long, env = "RESTART_WATCHER_LEADER_ELECT_RENEW_DEADLINE", default_value = "10s", value_parser = parse_election_period)]
    pub leader_elect_renew_deadline: Duration,

    /// How often the leader renews the Lease and a standby looks at it (`--leader-elect`; less than
    /// the renew deadline).
    #[arg(long, env = "RESTART_WATCHER_LEADER_ELECT_RETRY_PERIOD", default_value = "2s", value_parser = parse_election_period)]
    pub leader_elect_retry_period: Duration,

    /// Capacity of the queue between detection and export, in records (1 to 1048576); when full,
    /// the watch waits.
    #[arg(long, env = "RESTART_WATCHER_QUEUE_CAPACITY", default_value_t = crate::export::task::DEFAULT_CHANNEL_CAPACITY_EVENTS as u32,
          value_parser = clap::value_parser!(u32).range(1..=(1 << 20)), allow_negative_numbers = true)]
    pub queue_capacity: u32,

    /// Time allowed at shutdown to drain the queue and flush the exporter, e.g. `10s`, `500ms` (0s to 1h).
    #[arg(long, env = "RESTART_WATCHER_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_grace)]
    pub shutdown_grace: std::time::Duration,

    /// Node mode, opt-in: read the OOM-kill counters of this node's container memory cgroups
    /// under DIR (the host's /sys/fs/cgroup, mounted read-only) and report OOM kills that restart
    /// nothing (`restart_watcher.container.oom_kill`). Needs --node-name.
    #[arg(long, env = "RESTART_WATCHER_OOM_KILLS_FROM_CGROUPS", value_name = "DIR")]
    pub oom_kills_from_cgroups: Option<std::path::PathBuf>,

    /// With --oom-kills-from-cgroups: read the kernel log at PATH (`/dev/kmsg`: needs CAP_SYSLOG or
    /// kernel.dmesg_restrict=0) to name the killed process (`restart_watcher.oom_kill.process`).
    #[arg(long, env = "RESTART_WATCHER_OOM_KILL_KERNEL_LOG", value_name = "PATH", requires = "oom_kills_from_cgroups")]
    pub oom_kill_kernel_log: Option<std::path::PathBuf>,

    /// How often the OOM-kill counters are read, e.g. `10s` (1s to 5m).
    #[arg(long, env = "RESTART_WATCHER_OOM_KILL_POLL", default_value = "10s", value_parser = parse_oom_kill_poll)]
    pub oom_kill_poll: std::time::Duration,

    /// Do not watch the kubelet's Events (in node mode: do not look up the failing pods' Events):
    /// classify causes from the container status alone (no `liveness_probe`, `startup_probe`,
    /// event-based `evicted`/`preempted`).
    #[arg(long, env = "RESTART_WATCHER_NO_EVENTS")]
    pub no_events: bool,

    /// Do not watch ReplicaSet and Job metadata (in node mode: do not look up the failing pods'
    /// ReplicaSets and Jobs): name Deployments by the ReplicaSet naming rule (without uid) and
    /// leave CronJobs unnamed.
    #[arg(long, env = "RESTART_WATCHER_NO_OWNER_WATCH")]
    pub no_owner_watch: bool,

    /// Node mode: the failing pods' Events and owners looked up per second at most, on average
    /// (1 to 1000); past it, causes come from the status and owners from the naming rule.
    #[arg(long, env = "RESTART_WATCHER_LOOKUPS_PER_SECOND", default_value_t = crate::enrich::lookups::DEFAULT_LOOKUPS_PER_SECOND,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub lookups_per_second: u32,

    /// Node mode: the lookups allowed at once after a quiet time (1 to 10000).
    #[arg(long, env = "RESTART_WATCHER_LOOKUP_BURST", default_value_t = crate::enrich::lookups::DEFAULT_LOOKUP_BURST,
          value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub lookup_burst: u32,

    /// Do not watch Node metadata: records carry `k8s.node.name` without `k8s.node.uid` (in node
    /// mode the watch is of the agent's own Node).
    #[arg(long, env = "RESTART_WATCHER_NO_NODE_WATCH")]
    pub no_node_watch: bool,

    /// Do not read the `kube-system` namespace's uid: records carry no `k8s.cluster.uid`.
    #[arg(long, env = "RESTART_WATCHER_NO_CLUSTER_UID")]
    pub no_cluster_uid: bool,

    /// Count restarts and failures per workload in `/metrics` (opt-in):
    /// `restart_watcher_container_restarts_total` and `restart_watcher_container_failures_total`,
    /// labelled by namespace, workload kind, workload, container and cause.
    #[arg(long, env = "RESTART_WATCHER_WORKLOAD_METRICS")]
    pub workload_metrics: bool,

    /// The cap on those counters' series (1 to 1900): past it, new series count under `other`.
    #[arg(long, env = "RESTART_WATCHER_WORKLOAD_METRICS_MAX_SERIES", default_value_t = crate::workload_metrics::DEFAULT_MAX_SERIES as u32,
          value_parser = clap::value_parser!(u32).range(1..=crate::workload_metrics::MAX_MAX_SERIES as i64))]
    pub workload_metrics_max_series: u32,

    /// Storm control (opt-in): per (workload, container, cause), emit the first restart at once and
    /// then at most one record per window, carrying how many restarts it stands for
    /// (`restart_watcher.restarts.coalesced`), e.g. `60s` (0s = off, up to 24h). Off by default: one record per restart.
    #[arg(long, env = "RESTART_WATCHER_STORM_WINDOW", value_parser = parse_storm_window)]
    pub storm_window: Option<std::time::Duration>,

    /// Opt-in: attach the last N log lines of the instance that died (`restart_watcher.previous_logs`),
    /// fetched from the API server right after detection (needs `get` on `pods/log`). 0 = off; at most 10000.
    #[arg(long, env = "RESTART_WATCHER_PREVIOUS_LOGS_LINES", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=crate::enrich::prevlogs::MAX_LINES as i64), allow_negative_numbers = true)]
    pub previous_logs_lines: u32,

    /// Cap on the attached previous logs, in bytes (the end is kept; at most 1 MiB: records must fit an export request).
    #[arg(long, env = "RESTART_WATCHER_PREVIOUS_LOGS_MAX_BYTES", default_value_t = crate::enrich::prevlogs::DEFAULT_MAX_BYTES as u32,
          value_parser = clap::value_parser!(u32).range(1..=(1 << 20)), allow_negative_numbers = true)]
    pub previous_logs_max_bytes: u32,

    /// Timeout of one previous-logs fetch (the record goes out without logs after it), e.g. `5s` (1ms to 5m).
    #[arg(long, env = "RESTART_WATCHER_PREVIOUS_LOGS_TIMEOUT", default_value = "5s", value_parser = parse_previous_logs_timeout)]
    pub previous_logs_timeout: std::time::Duration,

    /// A regular expression whose matches are replaced by `[REDACTED]` in previous logs (repeatable).
    #[arg(
        long = "previous-logs-redact",
        value_name = "REGEX",
        env = "RESTART_WATCHER_PREVIOUS_LOGS_REDACT",
        value_delimiter = '\n'
    )]
    pub previous_logs_redact: Vec<String>,

    /// Address of the admin HTTP server (`/metrics`, `/livez`, `/readyz`).
    #[arg(long, env = "RESTART_WATCHER_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: std::net::SocketAddr,

    /// Also push the agent's own metrics over OTLP/gRPC to the collector (the OTLP endpoint, or
    /// --self-metrics-endpoint), every 30 s.
    #[arg(long, env = "RESTART_WATCHER_SELF_METRICS_OTLP")]
    pub self_metrics_otlp: bool,

    /// Where --self-metrics-otlp pushes (default: the OTLP endpoint).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")]
    pub self_metrics_endpoint: Option<String>,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub detection: DetectionArgs,
}

/// Longest `--shutdown-grace`.
pub(crate) const MAX_SHUTDOWN_GRACE: Duration = Duration::from_secs(3600);
/// Longest `--batch-max-delay`.
pub(crate) const MAX_BATCH_MAX_DELAY: Duration = Duration::from_secs(60);
/// Longest `--storm-window`.
pub(crate) const MAX_STORM_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Shortest and longest `--previous-logs-timeout`.
pub(crate) const PREVIOUS_LOGS_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(1), Duration::from_secs(300));

/// Shortest and longest `--watch-timeout`.
pub(crate) const WATCH_TIMEOUT_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(3600));
/// Longest `--list-jitter`.
pub(crate) const MAX_LIST_JITTER: Duration = Duration::from_secs(600);

fn parse_watch_timeout(s: &str) -> Result<Duration, String> {
    parse_duration_in(s, WATCH_TIMEOUT_RANGE.0, WATCH_TIMEOUT_RANGE.1)
}
fn parse_list_jitter(s: &str) -> Result<Duration, String> {
    parse_duration_in(s, Duration::ZERO, MAX_LIST_JITTER)
}
fn parse_election_period(s: &str) -> Result<Duration, String> {
    parse_duration_in(s, Duration::from_millis(100), crate::leader::MAX_LEASE_DURATION)
}
fn parse_grace(s: &str) -> Result<Duration, String> {
    parse_duration_in(s, Duration::ZERO, MAX_SHUTDOWN_GRACE)
}
fn parse_batch_max_delay(s: &str) -> Result<Duration, String> {
    parse_duration_in(s, Duration::ZERO, MAX_BATCH_MAX_DELAY)
}
fn parse_storm_window(s: &str) -> Result<Duration, String> {
    parse_duration_in(s, Duration::ZERO, MAX_STORM_WINDOW)
}
fn parse_pending_threshold(s: &str) -> Result<Duration, String> {
    parse_duration_in(s, Duration::from_secs(1), Duration::from_secs(24 * 3600))
}
fn parse_rollout_window(s: &str) -> Result<Duration, String> {
    parse_duration_in(s, Duration::from_secs(60), Duration::from_secs(24 * 3600))
}
fn parse_oom_kill_poll(s: &str) -> Result<Duration, String> {
    parse_duration_in(s, Duration::from_secs(1), Duration::from_secs(300))
}
fn parse_previous_logs_timeout(s: &str) -> Result<Duration, String> {
    parse_duration_in(s, PREVIOUS_LOGS_TIMEOUT_RANGE.0, PREVIOUS_LOGS_TIMEOUT_RANGE.1)
}

/// A duration within `min..=max`: every duration setting has a range, so that none can overflow a
/// deadline (`Instant + duration`) or mean something absurd.
pub(crate) fn parse_duration_in(s: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < min || d > max {
        return Err(format!("{s:?} is out of range; expected {} to {}", human(min), human(max)));
    }
    Ok(d)
}

/// Parses `10s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration; expected e.g. 10s, 500ms, 2m, 1h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?} has an unknown unit; expected ms, s, m or h")),
    };
    std::time::Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// A duration as the flags write it: `24h`, `10m`, `290s`, `500ms`.
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".to_owned(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The recording: a file, or `-` for standard input. Concatenated JSON watch events (as
    /// `kubectl get pods -A --watch --output-watch-events -o json` prints), Pods or PodLists.
    pub input: String,

    /// Catch-up checkpoint file: pods first seen with a termination later than the checkpoint
    /// (minus 60 s) are reported with `detected_late`; written when the replay ends successfully.
    #[arg(long, env = "RESTART_WATCHER_CHECKPOINT_FILE")]
    pub checkpoint_file: Option<std::path::PathBuf>,

    /// Largest single JSON value in the input (a watch event, a Pod, a whole PodList), in bytes;
    /// a larger one stops the replay with an error naming it. Bounds the replay's memory.
    #[arg(long, env = "RESTART_WATCHER_MAX_VALUE_BYTES", default_value_t = crate::recording::DEFAULT_MAX_VALUE_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(1024..=(1u64 << 36)))]
    pub max_value_bytes: u64,

    /// Time allowed, once the input ends or on SIGTERM/SIGINT, to export what was detected, e.g.
    /// `10s` (0s to 1h); what is still undelivered after it is reported and the exit code is 1.
    #[arg(long, env = "RESTART_WATCHER_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_grace)]
    pub shutdown_grace: std::time::Duration,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub detection: DetectionArgs,
}

/// What restarts are reported.
#[derive(Debug, Args)]
pub struct DetectionArgs {
    /// Container kinds to report, comma-separated.
    #[arg(
        long,
        env = "RESTART_WATCHER_CONTAINER_KINDS",
        value_enum,
        value_delimiter = ',',
        default_value = "app,init,sidecar"
    )]
    pub container_kinds: Vec<KindArg>,

    /// Event kinds to emit, comma-separated: `restart`, `start_failure`, `start_failure_ended`,
    /// `failure`, `eviction`, `pod_restart`, `oom_kill`, `pod_start_failure`,
    /// `pod_start_failure_ended`, `rollout_regression`, or `all`. `--events restart` keeps to restarts alone.
    #[arg(long, env = "RESTART_WATCHER_EVENTS", value_delimiter = ',', default_value = "all", value_parser = parse_record_kind)]
    pub events: Vec<RecordKindArg>,

    /// How long a pod may wait to start (unscheduled, or no container ever ran) before one
    /// `restart_watcher.pod.start_failure` reports it, e.g. `5m` (1s to 24h).
    #[arg(long, env = "RESTART_WATCHER_PENDING_THRESHOLD", default_value = "5m", value_parser = parse_pending_threshold)]
    pub pending_threshold: Duration,

    /// How long after a rollout its new revision's failures count towards one
    /// `restart_watcher.workload.rollout_regression`, e.g. `15m` (1m to 24h).
    #[arg(long, env = "RESTART_WATCHER_ROLLOUT_WINDOW", default_value = "15m", value_parser = parse_rollout_window)]
    pub rollout_window: Duration,
}

/// An `--events` value: one event kind, or all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKindArg {
    All,
    One(RecordKind),
}

fn parse_record_kind(s: &str) -> Result<RecordKindArg, String> {
    if s == "all" {
        return Ok(RecordKindArg::All);
    }
    RecordKind::parse(s).map(RecordKindArg::One).ok_or_else(|| {
        let names: Vec<&str> = RecordKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("{s:?} is not an event kind; use all or some of: {}", names.join(", "))
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    App,
    Init,
    Sidecar,
}

/// Where and how records are written.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Exporter: `otlp` (OTLP/gRPC to a collector; the default when an OTLP endpoint is set),
    /// `console` (one readable line per restart on stdout; the default otherwise) or `otlp-json`
    /// (OTLP/JSON lines on stdout, the Collector file exporter's encoding).
    #[arg(long, env = "RESTART_WATCHER_EXPORTER", value_enum)]
    pub exporter: Option<ExporterKind>,

    #[command(flatten)]
    pub otlp: OtlpArgs,

    /// Largest export batch, in records (1 to 65536); a request is also split to stay under the
    /// receiver's size limit.
    #[arg(long, env = "RESTART_WATCHER_BATCH_MAX_RECORDS", default_value_t = crate::export::task::DEFAULT_BATCH_MAX_RECORDS as u32,
          value_parser = clap::value_parser!(u32).range(1..=65_536), allow_negative_numbers = true)]
    pub batch_max_records: u32,

    /// Longest wait between a batch's first record and its export, e.g. `200ms` (0s to 1m).
    #[arg(long, env = "RESTART_WATCHER_BATCH_MAX_DELAY", default_value = "200ms", value_parser = parse_batch_max_delay)]
    pub batch_max_delay: std::time::Duration,

    /// OTLP signals to write, comma-separated: each restart is a log record (an event) and a span.
    #[arg(long, env = "RESTART_WATCHER_SIGNALS", value_enum, value_delimiter = ',', default_value = "logs,traces")]
    pub signals: Vec<SignalArg>,

    /// `k8s.cluster.name` on every record's resource.
    #[arg(long, env = "RESTART_WATCHER_CLUSTER_NAME")]
    pub cluster_name: Option<String>,

    /// Pod label keys copied onto the resource as `k8s.pod.label.<key>`, comma-separated
    /// (opt-in: labels can be high-cardinality).
    #[arg(long, env = "RESTART_WATCHER_POD_LABEL_KEYS", value_delimiter = ',')]
    pub pod_label_keys: Vec<String>,

    /// Name the service from the well-known labels when no `resource.opentelemetry.io/` annotation
    /// does: `app.kubernetes.io/instance`, then `app.kubernetes.io/name` for `service.name`,
    /// `app.kubernetes.io/version` for `service.version` (opt-in, as semconv's Kubernetes guide asks).
    #[arg(long, env = "RESTART_WATCHER_SERVICE_FROM_LABELS")]
    pub service_from_labels: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExporterKind {
    Otlp,
    Console,
    OtlpJson,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SignalArg {
    Logs,
    Traces,
}

/// OTLP/gRPC exporter settings: the OpenTelemetry exporter spec's env vars, each with a flag that
/// overrides it. A signal's own setting (`_LOGS_`, `_TRACES_`) wins over the generic one.
#[derive(Debug, Default, Args)]
pub struct OtlpArgs {
    #[command(flatten)]
    pub generic: OtlpGenericArgs,
    #[command(flatten)]
    pub logs: OtlpLogsArgs,
    #[command(flatten)]
    pub traces: OtlpTracesArgs,
}

/// The eight settings of one OTLP signal (or of all of them), written once: `$flag` and `$env`
/// are the infixes of the flag (`otlp-logs-endpoint`) and of the variable
/// (`OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`).
macro_rules! otlp_signal_args {
    ($name:ident, $flag:literal, $env:literal, $only:literal) => {
        #[derive(Debug, Default, Args)]
        pub struct $name {
            #[arg(id = concat!("otlp-", $flag, "endpoint"), long = concat!("otlp-", $flag, "endpoint"),
                  env = concat!("OTEL_EXPORTER_OTLP_", $env, "ENDPOINT"), value_name = "ENDPOINT",
                  help = concat!("OTLP endpoint URL, e.g. http://otel-collector:4317 (no scheme: https, or http with insecure; default http://localhost:4317, or :4318 for http/protobuf)", $only))]
            pub endpoint: Option<String>,
            #[arg(id = concat!("otlp-", $flag, "protocol"), long = concat!("otlp-", $flag, "protocol"),
                  env = concat!("OTEL_EXPORTER_OTLP_", $env, "PROTOCOL"), value_name = "PROTOCOL",
                  help = concat!("Transport: grpc (default) or http/protobuf (OTLP/HTTP; the generic endpoint gets /v1/logs, /v1/traces)", $only))]
            pub protocol: Option<String>,
            #[arg(id = concat!("otlp-", $flag, "headers"), long = concat!("otlp-", $flag, "headers"),
                  env = concat!("OTEL_EXPORTER_OTLP_", $env, "HEADERS"), value_name = "HEADERS",
                  help = concat!("Headers sent with every export: key1=value1,key2=value2 (values percent-decoded)", $only))]
            pub headers: Option<String>,
            #[arg(id = concat!("otlp-", $flag, "compression"), long = concat!("otlp-", $flag, "compression"),
                  env = concat!("OTEL_EXPORTER_OTLP_", $env, "COMPRESSION"), value_name = "COMPRESSION",
                  help = concat!("Compression: gzip or none (an unknown value is warned about and ignored)", $only))]
            pub compression: Option<String>,
            #[arg(id = concat!("otlp-", $flag, "timeout"), long = concat!("otlp-", $flag, "timeout"),
                  env = concat!("OTEL_EXPORTER_OTLP_", $env, "TIMEOUT"), value_name = "TIMEOUT",
                  help = concat!("Per-request timeout in milliseconds, 0 = no limit, at most 3600000 (default 10000)", $only))]
            pub timeout: Option<String>,
            #[arg(id = concat!("otlp-", $flag, "insecure"), long = concat!("otlp-", $flag, "insecure"),
                  env = concat!("OTEL_EXPORTER_OTLP_", $env, "INSECURE"), value_name = "INSECURE",
                  help = concat!("true: plain text for an endpoint without a scheme (any other value is false)", $only))]
            pub insecure: Option<String>,
            #[arg(id = concat!("otlp-", $flag, "certificate"), long = concat!("otlp-", $flag, "certificate"),
                  env = concat!("OTEL_EXPORTER_OTLP_", $env, "CERTIFICATE"), value_name = "CERTIFICATE",
                  help = concat!("PEM file of the CA that signs the collector's certificate", $only))]
            pub certificate: Option<std::path::PathBuf>,
            #[arg(id = concat!("otlp-", $flag, "client-certificate"), long = concat!("otlp-", $flag, "client-certificate"),
                  env = concat!("OTEL_EXPORTER_OTLP_", $env, "CLIENT_CERTIFICATE"), value_name = "CLIENT_CERTIFICATE",
                  help = concat!("PEM client certificate for mutual TLS", $only))]
            pub client_certificate: Option<std::path::PathBuf>,
            #[arg(id = concat!("otlp-", $flag, "client-key"), long = concat!("otlp-", $flag, "client-key"),
                  env = concat!("OTEL_EXPORTER_OTLP_", $env, "CLIENT_KEY"), value_name = "CLIENT_KEY",
                  help = concat!("PEM client key for mutual TLS", $only))]
            pub client_key: Option<std::path::PathBuf>,
        }

    };
}

otlp_signal_args!(OtlpGenericArgs, "", "", "");
otlp_signal_args!(OtlpLogsArgs, "logs-", "LOGS_", " (logs only)");
otlp_signal_args!(OtlpTracesArgs, "traces-", "TRACES_", " (traces only)");
