//! The `otlp` exporter: OTLP/gRPC through tonic's `LogsServiceClient` and `TraceServiceClient`,
//! with our own retries (see `retry.rs`), never the SDK's batch processors (they drop silently
//! when full and so cannot give backpressure).
//!
//! Its configuration, resolved from the OpenTelemetry exporter spec's settings, is `config.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

mod config;

pub use config::{ConfigError, DEFAULT_TIMEOUT, OtlpConfig, RawSignalSettings, SignalConfig, parse_headers, resolve};

use super::convert::{self, MappingConfig};
use super::retry::{self, Retry};
use super::{ExportError, Signals};
use crate::event::RestartEvent;
use crate::metrics::Metrics;

/// Time allowed to open a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connected (lazily) signal client.
struct SignalClient {
    cfg: SignalConfig,
    channel: Channel,
    metadata: MetadataMap,
}

impl SignalClient {
    fn new(cfg: SignalConfig) -> Result<Self, ExportError> {
        let mut endpoint = Endpoint::from_shared(cfg.endpoint.clone())
            .map_err(|e| ExportError::Setup(format!("endpoint {}: {e}", cfg.endpoint)))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(cfg.timeout);
        if cfg.endpoint.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(ca) = &cfg.ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &cfg.identity_pem {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            endpoint =
                endpoint.tls_config(tls).map_err(|e| ExportError::Setup(format!("TLS for {}: {e}", cfg.endpoint)))?;
        }
        let mut metadata = MetadataMap::new();
        for (k, v) in &cfg.headers {
            let key = AsciiMetadataKey::from_bytes(k.as_bytes())
                .map_err(|e| ExportError::Setup(format!("header {k}: {e}")))?;
            let value =
                AsciiMetadataValue::try_from(v.as_str()).map_err(|e| ExportError::Setup(format!("header {k}: {e}")))?;
            metadata.insert(key, value);
        }
        Ok(SignalClient { channel: endpoint.connect_lazy(), cfg, metadata })
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        *req.metadata_mut() = self.metadata.clone();
        req.set_timeout(self.cfg.timeout);
        req
    }
}

/// The OTLP/gRPC exporter.
pub struct OtlpExporter {
    logs: Option<SignalClient>,
    traces: Option<SignalClient>,
    mapping: MappingConfig,
    metrics: Arc<Metrics>,
    /// Exports in progress (id -> start), for /readyz: an exporter stuck retrying.
    in_flight: Arc<InFlight>,
}

/// The exports in progress, by id, with their start times.
#[derive(Debug, Default)]
pub struct InFlight {
    inner: std::sync::Mutex<(u64, std::collections::BTreeMap<u64, Instant>)>,
}

impl InFlight {
    fn begin(&self) -> u64 {
        let Ok(mut g) = self.inner.lock() else { return 0 };
        g.0 += 1;
        let id = g.0;
        g.1.insert(id, Instant::now());
        id
    }
    fn end(&self, id: u64) {
        if let Ok(mut g) = self.inner.lock() {
            g.1.remove(&id);
        }
    }
    /// When the oldest export still in progress started.
    pub fn oldest(&self) -> Option<Instant> {
        self.inner.lock().ok().and_then(|g| g.1.values().min().copied())
    }
}

impl OtlpExporter {
    pub fn new(
        cfg: OtlpConfig,
        signals: Signals,
        mapping: MappingConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ExportError> {
        let logs = cfg.logs.filter(|_| signals.logs).map(SignalClient::new).transpose()?;
        let traces = cfg.traces.filter(|_| signals.traces).map(SignalClient::new).transpose()?;
        Ok(OtlpExporter { logs, traces, mapping, metrics, in_flight: Arc::default() })
    }

    /// The exports in progress, for readiness.
    pub fn in_flight(&self) -> Arc<InFlight> {
        self.in_flight.clone()
    }

    pub fn endpoints(&self) -> String {
        let mut parts = Vec::new();
        if let Some(l) = &self.logs {
            parts.push(format!("logs={}", l.cfg.endpoint));
        }
        if let Some(t) = &self.traces {
            parts.push(format!("traces={}", t.cfg.endpoint));
        }
        parts.join(" ")
    }

    /// Exports a batch: every enabled signal, each retried until it succeeds or fails for good.
    pub async fn export(&self, batch: &[RestartEvent]) -> Result<(), ExportError> {
        let id = self.in_flight.begin();
        let n = batch.len() as u64;
        // The two signals go out concurrently; each is retried on its own.
        let logs = async {
            let Some(client) = &self.logs else { return Ok(()) };
            let req = convert::logs_request(batch, &self.mapping);
            let call = |r| {
                let mut svc = LogsServiceClient::new(client.channel.clone()).send_compressed_if(client.cfg.gzip);
                let req = client.request(r);
                async move {
                    let resp = svc.export(req).await?.into_inner();
                    Ok(resp.partial_success.map(|p| (p.rejected_log_records, p.error_message)))
                }
            };
            send(client, "logs", n, &self.metrics, call, req).await
        };
        let traces = async {
            let Some(client) = &self.traces else { return Ok(()) };
            let req = convert::traces_request(batch, &self.mapping);
            let call = |r| {
                let mut svc = TraceServiceClient::new(client.channel.clone()).send_compressed_if(client.cfg.gzip);
                let req = client.request(r);
                async move {
                    let resp = svc.export(req).await?.into_inner();
                    Ok(resp.partial_success.map(|p| (p.rejected_spans, p.error_message)))
                }
            };
            send(client, "traces", n, &self.metrics, call, req).await
        };
        let (logs, traces) = tokio::join!(logs, traces);
        let first_err = logs.err().or(traces.err());
        self.in_flight.end(id);
        first_err.map_or(Ok(()), Err)
    }
}

trait CompressIf: Sized {
    fn send_compressed_if(self, gzip: bool) -> Self;
}

impl CompressIf for LogsServiceClient<Channel> {
    fn send_compressed_if(self, gzip: bool) -> Self {
        if gzip { self.send_compressed(CompressionEncoding::Gzip) } else { self }
    }
}

impl CompressIf for TraceServiceClient<Channel> {
    fn send_compressed_if(self, gzip: bool) -> Self {
        if gzip { self.send_compressed(CompressionEncoding::Gzip) } else { self }
    }
}

/// Sends one request, retrying per the policy; counts exported, retried, dropped.
async fn send<R, F, Fut>(
    client: &SignalClient,
    signal: &'static str,
    records: u64,
    metrics: &Metrics,
    call: F,
    req: R,
) -> Result<(), ExportError>
where
    R: Clone,
    F: Fn(R) -> Fut,
    Fut: std::future::Future<Output = Result<Option<(i64, String)>, tonic::Status>>,
{
    let mut attempt: u32 = 0;
    loop {
        let started = Instant::now();
        let result = call(req.clone()).await;
        metrics.export_duration(signal, result.is_ok(), started.elapsed());
        match result {
            Ok(partial) => {
                let rejected = partial.as_ref().map_or(0, |p| p.0.max(0) as u64);
                metrics.exported(signal, records.saturating_sub(rejected));
                if rejected > 0 {
                    let message = partial.map(|p| p.1).unwrap_or_default();
                    metrics.dropped(signal, "partial_success", rejected);
                    tracing::warn!(signal, endpoint = %client.cfg.endpoint, rejected, message,
                        "The collector accepted the batch partially; the rejected records are dropped.");
                }
                return Ok(());
            }
            Err(status) => match retry::classify(&status) {
                Retry::Never => {
                    let reason = retry::reason(status.code());
                    metrics.dropped(signal, reason, records);
                    tracing::error!(signal, endpoint = %client.cfg.endpoint, code = reason, message = status.message(), records,
                        "The collector rejected the batch for good; it is dropped (fix the collector or the agent's OTLP settings).");
                    return Err(ExportError::Rejected {
                        signal,
                        endpoint: client.cfg.endpoint.clone(),
                        code: reason,
                        message: status.message().to_owned(),
                    });
                }
                decision => {
                    let delay = match decision {
                        Retry::After(d) => d,
                        _ => retry::backoff(attempt, 0.5 + fastrand::f64() / 2.0),
                    };
                    metrics.retried(signal, retry::reason(status.code()), records);
                    if attempt == 0 {
                        tracing::warn!(signal, endpoint = %client.cfg.endpoint, code = retry::reason(status.code()), message = status.message(),
                            delay_ms = delay.as_millis() as u64, "Export failed; retrying until it succeeds (records are kept).");
                    } else {
                        tracing::debug!(
                            signal,
                            attempt,
                            code = retry::reason(status.code()),
                            delay_ms = delay.as_millis() as u64,
                            "Retrying export."
                        );
                    }
                    attempt = attempt.saturating_add(1);
                    tokio::time::sleep(delay).await;
                }
            },
        }
    }
}
