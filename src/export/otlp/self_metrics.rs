//! `--self-metrics-otlp`: the agent's own metrics pushed over OTLP/gRPC, with the same resolved
//! settings as the records (endpoint, headers, TLS, compression, timeout), every
//! [`PUSH_INTERVAL`].

use std::time::Duration;

use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::metrics::PeriodicReader;

use super::SignalConfig;
use crate::export::ExportError;

/// How often pushed metrics are sent.
pub(crate) const PUSH_INTERVAL: Duration = Duration::from_secs(30);

/// The push reader for `cfg`'s endpoint. Must be built inside the Tokio runtime.
pub(crate) fn push_reader(
    cfg: &SignalConfig,
) -> Result<PeriodicReader<opentelemetry_otlp::MetricExporter>, ExportError> {
    let failed =
        |e: &dyn std::fmt::Display| ExportError::Setup(format!("the OTLP metrics exporter for {}: {e}", cfg.endpoint));
    let (channel, metadata) = super::grpc_channel(cfg)?;
    let mut exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_channel(channel)
        .with_metadata(metadata)
        .with_timeout(cfg.timeout.unwrap_or(PUSH_INTERVAL));
    if cfg.gzip {
        exporter = exporter.with_compression(opentelemetry_otlp::Compression::Gzip);
    }
    let exporter = exporter.build().map_err(|e| failed(&e))?;
    Ok(PeriodicReader::builder(exporter).with_interval(PUSH_INTERVAL).build())
}
