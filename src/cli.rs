//! Command-line and environment configuration (clap). Every flag's default and env var live here,
//! so the docs can be generated from (and tested against) this definition.

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::detector::KindFilter;
use crate::event::ContainerKind;
use crate::export::Signals;
use crate::export::convert::MappingConfig;

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
    Replay(ReplayArgs),
}

/// Flags of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Kubeconfig file; default as kube-rs infers it: $KUBECONFIG, ~/.kube/config, else the
    /// in-cluster service account.
    #[arg(long, env = "KUBECONFIG_PATH")]
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

    /// Capacity of the queue between detection and export, in records; when full, the watch waits.
    #[arg(long, env = "RESTART_WATCHER_QUEUE_CAPACITY", default_value_t = crate::export::task::DEFAULT_CHANNEL_CAPACITY_EVENTS as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub queue_capacity: u32,

    /// Time allowed at shutdown to drain the queue and flush the exporter, e.g. `10s`, `500ms`.
    #[arg(long, env = "RESTART_WATCHER_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: std::time::Duration,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub detection: DetectionArgs,
}

/// Parses `10s`, `500ms`, `2m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration; expected e.g. 10s, 500ms, 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?} has an unknown unit; expected ms, s or m")),
    };
    std::time::Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The recording: a file, or `-` for standard input. Concatenated JSON watch events (as
    /// `kubectl get pods -A --watch --output-watch-events -o json` prints), Pods or PodLists.
    pub input: String,

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
}

impl DetectionArgs {
    pub fn kind_filter(&self) -> KindFilter {
        let kinds: Vec<ContainerKind> = self.container_kinds.iter().map(|k| k.kind()).collect();
        KindFilter::from_kinds(&kinds)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    App,
    Init,
    Sidecar,
}

impl KindArg {
    pub fn kind(self) -> ContainerKind {
        match self {
            KindArg::App => ContainerKind::App,
            KindArg::Init => ContainerKind::Init,
            KindArg::Sidecar => ContainerKind::Sidecar,
        }
    }
}

/// Where and how records are written.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Exporter: `console` (one readable line per restart) or `otlp-json` (OTLP/JSON lines, the
    /// Collector file exporter's encoding), both on stdout.
    #[arg(long, env = "RESTART_WATCHER_EXPORTER", value_enum, default_value_t = ExporterKind::Console)]
    pub exporter: ExporterKind,

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
}

impl OutputArgs {
    pub fn signals(&self) -> Signals {
        Signals { logs: self.signals.contains(&SignalArg::Logs), traces: self.signals.contains(&SignalArg::Traces) }
    }

    pub fn mapping(&self) -> MappingConfig {
        MappingConfig {
            cluster_name: self.cluster_name.clone().filter(|c| !c.is_empty()),
            pod_label_keys: self.pod_label_keys.iter().filter(|k| !k.is_empty()).cloned().collect(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExporterKind {
    Console,
    OtlpJson,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SignalArg {
    Logs,
    Traces,
}
