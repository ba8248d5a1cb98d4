//! Command-line and environment configuration (clap). Every flag's default and env var live here,
//! so the docs can be generated from (and tested against) this definition.

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::detector::KindFilter;
use crate::event::ContainerKind;
use crate::export::Signals;
use crate::export::convert::MappingConfig;

/// Every Kubernetes container restart as one OpenTelemetry event.
#[derive(Debug, Parser)]
#[command(name = "restart-watcher", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

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
    /// Feed a recorded watch stream (or Pods / PodLists) through the detector and export the restarts.
    Replay(ReplayArgs),
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
