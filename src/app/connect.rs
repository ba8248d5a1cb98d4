//! Connecting a live run to what is outside it, from its settings: its own telemetry, the
//! exporter, the Kubernetes client, the checkpoint store and the election.

use std::sync::Arc;

use crate::checkpoint::CheckpointStore;
use crate::config::cli::ExporterKind;
use crate::config::{Checkpoint, ConfigError, ElectionSettings, KubeSource, Output, Settings};
use crate::export::{ExportError, Exporter};
use crate::metrics::{Metrics, MetricsError, SelfTelemetry};

/// The agent's own metrics: the Prometheus reader of `/metrics`, and the OTLP push of
/// `--self-metrics-otlp`.
pub fn telemetry(settings: &Settings) -> Result<Arc<SelfTelemetry>, TelemetryError> {
    let telemetry = match &settings.self_metrics {
        Some(cfg) => SelfTelemetry::with_push(crate::export::otlp::self_metrics::push_reader(cfg)?)?,
        None => SelfTelemetry::new()?,
    };
    if let Some(max) = settings.workload_metrics_max_series {
        telemetry.metrics.enable_workload_metrics(max);
    }
    Ok(Arc::new(telemetry))
}

/// Why the agent's own metrics could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Push(#[from] ExportError),
}

/// The configured exporter. Records go to stdout for the console and otlp-json exporters.
pub fn exporter(output: &Output, metrics: Arc<Metrics>) -> Result<Exporter, ExportError> {
    let out: Box<dyn std::io::Write + Send> = Box::new(std::io::stdout());
    Ok(match (output.kind, &output.otlp) {
        (ExporterKind::OtlpJson, _) => {
            Exporter::OtlpJson { out, signals: output.signals, mapping: output.mapping.clone() }
        }
        (ExporterKind::Otlp, Some(cfg)) => {
            tracing::info!(signals = cfg.describe(), "Exporting over OTLP.");
            let otlp =
                crate::export::otlp::OtlpExporter::new(cfg.clone(), output.signals, output.mapping.clone(), metrics)?;
            Exporter::Otlp(Box::new(otlp))
        }
        _ => Exporter::Console { out },
    })
}

/// The client configuration as kube-rs infers it ($KUBECONFIG, ~/.kube/config, in-cluster), or
/// from `--kubeconfig` / `--context`. Every request carries the agent's `User-Agent`
/// (`restart-watcher/<version>`), so that the API server's audit log and its priority and fairness
/// can tell the agent's requests apart.
pub(crate) async fn kube_config(source: &KubeSource) -> Result<kube::Config, ConfigError> {
    let mut config = inferred_kube_config(source).await?;
    if let Ok(agent) = http::HeaderValue::from_str(&crate::export::otlp::user_agent()) {
        config.headers.push((http::header::USER_AGENT, agent));
    }
    Ok(config)
}

async fn inferred_kube_config(args: &KubeSource) -> Result<kube::Config, ConfigError> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let options = KubeConfigOptions { context: args.context.clone(), ..Default::default() };
    let unusable = |setting: String| move |source| ConfigError::KubeconfigUnusable { setting, source };
    match &args.kubeconfig {
        Some(path) => {
            let setting = format!("--kubeconfig {}", path.display());
            let kc = Kubeconfig::read_from(path).map_err(unusable(setting.clone()))?;
            kube::Config::from_custom_kubeconfig(kc, &options).await.map_err(unusable(setting))
        }
        None if args.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(unusable(format!("--context {:?} (from the default kubeconfig)", args.context))),
        None => kube::Config::infer().await.map_err(ConfigError::NoKubeConfig),
    }
}

/// The agent's own namespace, for its checkpoint Lease: the flag, else the service account's,
/// else the kubeconfig context's.
pub(crate) fn own_namespace(checkpoint: &Checkpoint, config: &kube::Config) -> String {
    const SA_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
    let flag = match checkpoint {
        Checkpoint::Lease { namespace, .. } => namespace.clone(),
        _ => None,
    };
    flag.filter(|n| !n.is_empty())
        .or_else(|| std::fs::read_to_string(SA_NAMESPACE_FILE).ok().map(|s| s.trim().to_owned()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| config.default_namespace.clone())
}

/// This replica's identity in Leases: the pod name (downward API), else the host name.
pub fn identity() -> String {
    std::env::var("POD_NAME").or_else(|_| std::env::var("HOSTNAME")).unwrap_or_else(|_| "restart-watcher".into())
}

/// Where the checkpoint lives; a Lease needs the client and the agent's namespace.
pub(crate) fn checkpoint_store(checkpoint: &Checkpoint, client: &kube::Client, namespace: String) -> CheckpointStore {
    match checkpoint {
        Checkpoint::Disabled => CheckpointStore::Disabled,
        Checkpoint::File(path) => CheckpointStore::File(path.clone()),
        Checkpoint::Lease { name, .. } => CheckpointStore::Lease {
            api: Box::new(kube::Api::namespaced(client.clone(), &namespace)),
            namespace,
            name: name.clone(),
            identity: identity(),
        },
    }
}

/// The election of `--leader-elect`, on a Lease in the agent's namespace.
pub fn election(e: &ElectionSettings, client: &kube::Client, namespace: &str) -> crate::leader::Election {
    crate::leader::Election {
        api: kube::Api::namespaced(client.clone(), namespace),
        namespace: namespace.to_owned(),
        name: e.lease.clone(),
        identity: identity(),
        timing: e.timing,
    }
}
