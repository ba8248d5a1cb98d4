//! Flags to settings, in one place: [`settings`] turns the command line and environment of `run`
//! into the [`Settings`] the agent runs with, and [`replay_settings`] those of `replay`. Every
//! check that needs no network is made here, once, and a bad value is a [`ConfigError`] naming the
//! setting; what is tolerated but worth a word goes to [`Settings::warnings`], said once.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::cli::{DetectionArgs, ExporterKind, KindArg, OutputArgs, RecordKindArg, ReplayArgs, RunArgs, SignalArg};
use super::{ConfigError, check_checkpoint_file, is_dns_label, selectors};
use crate::detector::{Detection, KindFilter};
use crate::export::Signals;
use crate::export::convert::MappingConfig;
use crate::export::otlp::{OtlpConfig, RawSignalSettings, SignalConfig};
use crate::export::task::BatchConfig;
use crate::record::{ContainerKind, RecordKind, RecordKinds};
use crate::watch::{WatchScope, WatchTuning};

/// The OTLP flags of one signal (or of all of them), borrowed.
struct SignalFlags<'a> {
    endpoint: &'a Option<String>,
    protocol: &'a Option<String>,
    headers: &'a Option<String>,
    compression: &'a Option<String>,
    timeout: &'a Option<String>,
    insecure: &'a Option<String>,
    certificate: &'a Option<PathBuf>,
    client_certificate: &'a Option<PathBuf>,
    client_key: &'a Option<PathBuf>,
}

macro_rules! signal_flags {
    ($a:expr) => {
        SignalFlags {
            endpoint: &$a.endpoint,
            protocol: &$a.protocol,
            headers: &$a.headers,
            compression: &$a.compression,
            timeout: &$a.timeout,
            insecure: &$a.insecure,
            certificate: &$a.certificate,
            client_certificate: &$a.client_certificate,
            client_key: &$a.client_key,
        }
    };
}

/// Everything a live run is set up with.
pub struct Settings {
    pub scope: WatchScope,
    pub output: Output,
    /// `--self-metrics-otlp`: where the agent's own metrics are pushed.
    pub self_metrics: Option<SignalConfig>,
    pub kube: KubeSource,
    pub checkpoint: Checkpoint,
    /// `--leader-elect`.
    pub election: Option<ElectionSettings>,
    pub queue_capacity_records: usize,
    pub shutdown_grace: Duration,
    /// Watch the kubelet's Events to classify causes (when RBAC allows).
    pub kube_events: bool,
    /// Watch ReplicaSet and Job metadata to name Deployments and CronJobs (when RBAC allows).
    pub owner_watch: bool,
    /// Node mode's lookups: per second, and at once.
    pub lookup_rate: (u32, u32),
    /// Watch Node metadata for `k8s.node.uid` (when RBAC allows).
    pub node_watch: bool,
    /// Read the `kube-system` namespace's uid for `k8s.cluster.uid`.
    pub cluster_uid: bool,
    /// `--workload-metrics`: the cap on the per-workload series.
    pub workload_metrics_max_series: Option<usize>,
    pub storm_window: Option<Duration>,
    pub previous_logs: Option<PreviousLogsSettings>,
    /// `--oom-kills-from-cgroups`: the memory hierarchy read, and how often.
    pub oom_kills: Option<OomKillSettings>,
    pub admin_listen: SocketAddr,
    /// What is tolerated but worth a word, said once at start.
    pub warnings: Vec<String>,
}

/// Where records go and how they are batched.
pub struct Output {
    pub kind: ExporterKind,
    /// The OTLP settings of both signals, resolved (the `otlp` exporter only).
    pub otlp: Option<OtlpConfig>,
    pub signals: Signals,
    pub mapping: MappingConfig,
    pub batch: BatchConfig,
}

/// Where the kubeconfig comes from: the flags, else kube-rs's inference.
#[derive(Clone, Debug, Default)]
pub struct KubeSource {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

/// Where the catch-up checkpoint lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checkpoint {
    Disabled,
    File(PathBuf),
    /// A Lease of this name in `namespace` (`None`: the agent's own).
    Lease {
        name: String,
        namespace: Option<String>,
    },
}

/// `--leader-elect`: the election Lease and its timing.
#[derive(Clone, Debug)]
pub struct ElectionSettings {
    pub lease: String,
    pub timing: crate::leader::Timing,
}

/// The opt-in OOM kills that restart nothing: the memory hierarchy, its version, the interval.
#[derive(Clone, Debug)]
pub struct OomKillSettings {
    pub root: PathBuf,
    pub version: crate::rules::cgroups::CgroupVersion,
    pub poll: Duration,
    /// `--oom-kill-kernel-log`, checked readable.
    pub kernel_log: Option<PathBuf>,
}

/// The opt-in previous logs.
#[derive(Clone, Debug)]
pub struct PreviousLogsSettings {
    pub lines: u32,
    pub max_bytes: usize,
    pub timeout: Duration,
}

/// Everything a replay is set up with.
pub struct ReplaySettings {
    pub input: String,
    pub output: Output,
    pub detection: Detection,
    pub checkpoint_file: Option<PathBuf>,
    pub max_value_bytes: usize,
    pub shutdown_grace: Duration,
}

/// The settings of `run`: every offline check, once.
pub fn settings(args: &RunArgs) -> Result<Settings, ConfigError> {
    check_selection(args)?;
    if let Some(path) = &args.kubeconfig {
        std::fs::metadata(path).map_err(|source| ConfigError::Kubeconfig { path: path.clone(), source })?;
    }
    let redactions = crate::rules::text::compile_redactions(&args.previous_logs_redact)?;
    let election = election(args)?;
    let output = output(&args.output)?;
    let self_metrics = self_metrics(args)?;
    let mut warnings = output.otlp.as_ref().map(|o| o.notes.clone()).unwrap_or_default();
    if let Some(name) =
        output.mapping.cluster_name.as_deref().filter(|n| crate::cluster::is_placeholder_cluster_name(n))
    {
        warnings.push(format!(
            "--cluster-name {name:?} is a placeholder: set it to this cluster's name (k8s.cluster.name), or records of several clusters look alike"
        ));
    }
    Ok(Settings {
        scope: scope(args, detection(&args.detection, redactions.clone())),
        output,
        self_metrics,
        kube: KubeSource { kubeconfig: args.kubeconfig.clone(), context: args.context.clone() },
        checkpoint: checkpoint(args)?,
        election,
        queue_capacity_records: args.queue_capacity as usize,
        shutdown_grace: args.shutdown_grace,
        kube_events: !args.no_events,
        owner_watch: !args.no_owner_watch,
        lookup_rate: (args.lookups_per_second, args.lookup_burst),
        node_watch: !args.no_node_watch,
        cluster_uid: !args.no_cluster_uid,
        workload_metrics_max_series: args.workload_metrics.then_some(args.workload_metrics_max_series as usize),
        storm_window: args.storm_window.filter(|w| !w.is_zero()),
        previous_logs: (args.previous_logs_lines > 0).then_some(PreviousLogsSettings {
            lines: args.previous_logs_lines,
            max_bytes: args.previous_logs_max_bytes as usize,
            timeout: args.previous_logs_timeout,
        }),
        oom_kills: oom_kills(args)?,
        admin_listen: args.admin_listen,
        warnings,
    })
}

/// `--oom-kills-from-cgroups`: in node mode only, and over a memory hierarchy that is there.
fn oom_kills(args: &RunArgs) -> Result<Option<OomKillSettings>, ConfigError> {
    let Some(dir) = &args.oom_kills_from_cgroups else {
        return Ok(None);
    };
    if args.node_name.as_deref().is_none_or(str::is_empty) {
        return Err(ConfigError::OomKillsWithoutNode);
    }
    let (root, version) = crate::node_oom::memory_hierarchy(dir)?;
    if let Some(path) = &args.oom_kill_kernel_log {
        crate::node_oom::KernelLog::open(path)
            .map_err(|source| ConfigError::KernelLog { path: path.clone(), source })?;
    }
    Ok(Some(OomKillSettings { root, version, poll: args.oom_kill_poll, kernel_log: args.oom_kill_kernel_log.clone() }))
}

/// The settings of `replay`.
pub fn replay_settings(args: &ReplayArgs) -> Result<ReplaySettings, ConfigError> {
    if let Some(path) = &args.checkpoint_file {
        check_checkpoint_file(path)?;
    }
    Ok(ReplaySettings {
        input: args.input.clone(),
        output: output(&args.output)?,
        detection: detection(&args.detection, Vec::new()),
        checkpoint_file: args.checkpoint_file.clone(),
        max_value_bytes: usize::try_from(args.max_value_bytes).unwrap_or(usize::MAX),
        shutdown_grace: args.shutdown_grace,
    })
}

/// The selectors and namespaces, checked as the API server would.
fn check_selection(args: &RunArgs) -> Result<(), ConfigError> {
    if let Some(l) = &args.label_selector {
        selectors::check_label_selector("--label-selector / RESTART_WATCHER_LABEL_SELECTOR", l)?;
    }
    if let Some(f) = &args.field_selector {
        selectors::check_field_selector("--field-selector / RESTART_WATCHER_FIELD_SELECTOR", f)?;
    }
    if let Some(ns) = args.namespaces.iter().chain(&args.exclude_namespaces).find(|n| !n.is_empty() && !is_dns_label(n))
    {
        return Err(ConfigError::Namespace(ns.clone()));
    }
    Ok(())
}

/// What pods to watch, and how.
fn scope(args: &RunArgs, detection: Detection) -> WatchScope {
    let non_empty = |v: &[String]| v.iter().filter(|n| !n.is_empty()).cloned().collect();
    let node_name = args.node_name.clone().filter(|n| !n.is_empty());
    let default_jitter = if node_name.is_some() { crate::watch::NODE_MODE_DEFAULT_JITTER } else { Duration::ZERO };
    WatchScope {
        namespaces: non_empty(&args.namespaces),
        exclude_namespaces: non_empty(&args.exclude_namespaces),
        label_selector: args.label_selector.clone(),
        field_selector: args.field_selector.clone(),
        node_name,
        detection,
        tuning: WatchTuning {
            list_strategy: args.list_strategy,
            watch_timeout: args.watch_timeout,
            jitter: args.list_jitter.unwrap_or(default_jitter),
        },
    }
}

/// What the detector reports, with the redactions applied to the kubelet messages it copies.
fn detection(args: &DetectionArgs, redactions: Vec<regex::Regex>) -> Detection {
    let kinds: Vec<ContainerKind> = args.container_kinds.iter().map(|k| container_kind(*k)).collect();
    Detection {
        kinds: KindFilter::from_kinds(&kinds),
        records: record_kinds(&args.events),
        redactions,
        episodes: Default::default(),
        revisions: Default::default(),
        pending: Default::default(),
        pending_threshold: args.pending_threshold,
        rollouts: Default::default(),
        rollout_window: args.rollout_window,
    }
}

fn container_kind(k: KindArg) -> ContainerKind {
    match k {
        KindArg::App => ContainerKind::App,
        KindArg::Init => ContainerKind::Init,
        KindArg::Sidecar => ContainerKind::Sidecar,
    }
}

/// The record kinds `--events` selects.
fn record_kinds(events: &[RecordKindArg]) -> RecordKinds {
    if events.contains(&RecordKindArg::All) {
        return RecordKinds::default();
    }
    let kinds: Vec<RecordKind> =
        events.iter().filter_map(|e| if let RecordKindArg::One(k) = e { Some(*k) } else { None }).collect();
    RecordKinds::from_kinds(&kinds)
}

/// Where records go: the exporter (the flag, else `otlp` when an OTLP endpoint is set, else
/// `console`), with its OTLP settings resolved for the selected signals.
pub fn output(args: &OutputArgs) -> Result<Output, ConfigError> {
    let kind =
        args.exporter.unwrap_or(if any_otlp_endpoint(args) { ExporterKind::Otlp } else { ExporterKind::Console });
    let signals =
        Signals { logs: args.signals.contains(&SignalArg::Logs), traces: args.signals.contains(&SignalArg::Traces) };
    let otlp = match kind {
        ExporterKind::Otlp => Some(otlp(args, signals)?),
        _ => None,
    };
    Ok(Output {
        kind,
        otlp,
        signals,
        mapping: MappingConfig {
            cluster_name: args.cluster_name.clone().filter(|c| !c.is_empty()),
            cluster_uid: None,
            pod_label_keys: args.pod_label_keys.iter().filter(|k| !k.is_empty()).cloned().collect(),
            service_from_labels: args.service_from_labels,
        },
        batch: BatchConfig { max_records: args.batch_max_records as usize, max_delay: args.batch_max_delay },
    })
}

fn any_otlp_endpoint(args: &OutputArgs) -> bool {
    let o = &args.otlp;
    [&o.generic.endpoint, &o.logs.endpoint, &o.traces.endpoint]
        .iter()
        .any(|e| e.as_deref().is_some_and(|e| !e.trim().is_empty()))
}

/// Both signals' OTLP settings, resolved by the exporter spec's rules.
fn otlp(args: &OutputArgs, signals: Signals) -> Result<OtlpConfig, ConfigError> {
    let o = &args.otlp;
    let generic = raw(signal_flags!(o.generic), "", "");
    let logs = raw(signal_flags!(o.logs), "LOGS_", "logs-");
    let traces = raw(signal_flags!(o.traces), "TRACES_", "traces-");
    Ok(OtlpConfig::resolve(&logs, &traces, &generic, signals)?)
}

/// The settings as given, before resolution, with the flags that gave them (a value that differs
/// from its variable's came from the command line, which wins): `env_infix` and `flag_infix` are
/// the signal's part of the variable (`LOGS_`) and of the flag (`logs-`).
fn raw(f: SignalFlags<'_>, env_infix: &str, flag_infix: &str) -> RawSignalSettings {
    let mut flags = Vec::new();
    let mut given = |setting: &str, value: Option<&OsStr>| {
        let env = format!("OTEL_EXPORTER_OTLP_{env_infix}{setting}");
        if value.is_some_and(|v| std::env::var_os(&env).as_deref() != Some(v)) {
            flags.push((env, format!("--otlp-{flag_infix}{}", setting.to_ascii_lowercase().replace('_', "-"))));
        }
    };
    given("ENDPOINT", os(f.endpoint));
    given("PROTOCOL", os(f.protocol));
    given("HEADERS", os(f.headers));
    given("COMPRESSION", os(f.compression));
    given("TIMEOUT", os(f.timeout));
    given("INSECURE", os(f.insecure));
    given("CERTIFICATE", f.certificate.as_deref().map(|p| p.as_os_str()));
    given("CLIENT_CERTIFICATE", f.client_certificate.as_deref().map(|p| p.as_os_str()));
    given("CLIENT_KEY", f.client_key.as_deref().map(|p| p.as_os_str()));
    RawSignalSettings {
        endpoint: f.endpoint.clone(),
        protocol: f.protocol.clone(),
        headers: f.headers.clone(),
        compression: f.compression.clone(),
        timeout_ms: f.timeout.clone(),
        insecure: f.insecure.clone(),
        certificate: f.certificate.clone(),
        client_certificate: f.client_certificate.clone(),
        client_key: f.client_key.clone(),
        flags,
    }
}

/// A string setting as the environment holds it.
fn os(value: &Option<String>) -> Option<&OsStr> {
    value.as_deref().map(OsStr::new)
}

/// Where and how `--self-metrics-otlp` pushes: `--self-metrics-endpoint`
/// (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`), else the generic OTLP endpoint, with the generic OTLP
/// settings (headers, TLS, compression, timeout), resolved as for the records. gRPC only. `None`
/// when it is off.
fn self_metrics(args: &RunArgs) -> Result<Option<SignalConfig>, ConfigError> {
    if !args.self_metrics_otlp {
        return Ok(None);
    }
    let specific = RawSignalSettings { endpoint: args.self_metrics_endpoint.clone(), ..Default::default() };
    let generic = raw(signal_flags!(args.output.otlp.generic), "", "");
    let cfg = crate::export::otlp::resolve(&specific, &generic, "OTEL_EXPORTER_OTLP_METRICS", &mut Vec::new())?
        .ok_or(ConfigError::SelfMetricsWithoutEndpoint)?;
    if cfg.protocol != crate::export::otlp::Protocol::Grpc {
        return Err(ConfigError::SelfMetricsGrpcOnly);
    }
    Ok(Some(cfg))
}

/// Where the checkpoint lives (node mode appends the node's name to the Lease's).
fn checkpoint(args: &RunArgs) -> Result<Checkpoint, ConfigError> {
    if args.no_checkpoint {
        return Ok(Checkpoint::Disabled);
    }
    if let Some(path) = &args.checkpoint_file {
        check_checkpoint_file(path)?;
        return Ok(Checkpoint::File(path.clone()));
    }
    let name = match &args.node_name {
        Some(node) => format!("{}-{node}", args.checkpoint_lease),
        None => args.checkpoint_lease.clone(),
    };
    Ok(Checkpoint::Lease { name, namespace: args.checkpoint_namespace.clone().filter(|n| !n.is_empty()) })
}

/// `--leader-elect` needs the checkpoint Lease (a standby lets go of what it covers), one agent
/// per scope (not node mode, where each node has its own agent), and a timing in which a leader
/// steps down before a standby can take over.
fn election(args: &RunArgs) -> Result<Option<ElectionSettings>, ConfigError> {
    if !args.leader_elect {
        return Ok(None);
    }
    let timing = crate::leader::Timing {
        lease_duration: args.leader_elect_lease_duration,
        renew_deadline: args.leader_elect_renew_deadline,
        retry_period: args.leader_elect_retry_period,
    };
    let why = if args.node_name.is_some() {
        Some("node mode (--node-name / NODE_NAME) runs one agent per node: drop --leader-elect".to_owned())
    } else if args.no_checkpoint {
        Some("the standby relies on the leader's checkpoint: drop --no-checkpoint".to_owned())
    } else if args.checkpoint_file.is_some() {
        Some("replicas share the checkpoint through its Lease: drop --checkpoint-file".to_owned())
    } else if args.leader_elect_lease.is_empty() || args.leader_elect_lease == args.checkpoint_lease {
        Some("--leader-elect-lease must be set and differ from --checkpoint-lease".to_owned())
    } else {
        timing.check().err()
    };
    match why {
        Some(w) => Err(ConfigError::LeaderElect(w)),
        None => Ok(Some(ElectionSettings { lease: args.leader_elect_lease.clone(), timing })),
    }
}

impl Settings {
    /// The effective settings, as `check-config` prints them.
    pub fn summary(&self) -> Vec<(&'static str, String)> {
        let mut summary = vec![("exporter", format!("{:?}", self.output.kind).to_lowercase())];
        if let Some(cfg) = &self.output.otlp {
            summary.push(("otlp", cfg.describe()));
        }
        summary.extend(self.warnings.iter().map(|w| ("warning", w.clone())));
        if let Some(m) = &self.self_metrics {
            summary.push(("self metrics", m.endpoint.clone()));
        }
        let scope = &self.scope;
        let namespaces =
            if scope.namespaces.is_empty() { "all namespaces".to_owned() } else { scope.namespaces.join(",") };
        summary.push(("scope", namespaces));
        if let Some(node) = &scope.node_name {
            summary.push(("node mode", node.clone()));
        }
        let t = &scope.tuning;
        let strategy = clap::ValueEnum::to_possible_value(&t.list_strategy).map(|v| v.get_name().to_owned());
        summary.push((
            "pod watch",
            format!(
                "list strategy {}, watch timeout {} s, list jitter {} ms",
                strategy.unwrap_or_default(),
                t.watch_timeout.as_secs(),
                t.jitter.as_millis()
            ),
        ));
        summary.push(("checkpoint", self.checkpoint.describe()));
        if let Some(e) = &self.election {
            let t = &e.timing;
            summary.push((
                "leader election",
                format!(
                    "Lease {}, lease duration {:?}, renew deadline {:?}, retry period {:?}",
                    e.lease, t.lease_duration, t.renew_deadline, t.retry_period
                ),
            ));
        }
        let records = scope.detection.records;
        let emitted: Vec<&str> = RecordKind::ALL.iter().filter(|k| records.allows(**k)).map(|k| k.as_str()).collect();
        summary.push(("records", emitted.join(", ")));
        summary.push(("admin server", self.admin_listen.to_string()));
        summary
    }
}

impl Checkpoint {
    pub(crate) fn describe(&self) -> String {
        match self {
            Checkpoint::Disabled => "off".to_owned(),
            Checkpoint::File(f) => format!("file {}", f.display()),
            Checkpoint::Lease { name, .. } => format!("Lease {name}"),
        }
    }
}
