//! The `otlp` exporter: OTLP/gRPC through tonic's `LogsServiceClient` and `TraceServiceClient`, or
//! OTLP/HTTP with protobuf (`http.rs`), with our own retries (see `retry.rs`), never the SDK's batch
//! processors (they drop silently when full and so cannot give backpressure).
//!
//! A request is never larger than [`MAX_REQUEST_BYTES`] (encoded): a bigger batch is split before
//! it is sent, and a request the receiver still refuses as too large is split again, down to one
//! record. Its configuration, resolved from the OpenTelemetry exporter spec's settings, is
//! `config.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

mod config;
mod http;
pub(crate) mod self_metrics;

pub use config::{OtlpConfig, Protocol, RawSignalSettings, resolve};
pub use config::{SettingError, SignalConfig};

use super::convert::{self, MappingConfig};
use super::retry::{self, Retry};
use super::{ExportError, Signals};
use crate::accounting::ExportsInFlight;
use crate::metrics::Metrics;
use crate::record::Record;

/// Time allowed to open a connection.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest export request sent, encoded, in bytes: under the 4 MiB that gRPC servers (the
/// Collector's OTLP receiver included) accept by default, with room for framing.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024 - 64 * 1024;

/// The `User-Agent` of every export.
pub(crate) fn user_agent() -> String {
    format!("restart-watcher/{}", env!("CARGO_PKG_VERSION"))
}

/// How a signal's requests travel.
enum Transport {
    Grpc { channel: Channel, metadata: MetadataMap },
    Http(Box<http::HttpClient>),
}

/// A connected (lazily) signal client.
struct SignalClient {
    cfg: SignalConfig,
    transport: Transport,
    /// The largest request the receiver takes, as far as it has said.
    limit: RequestLimit,
}

/// What a receiver answered: how many records it rejected, and why.
type Partial = Option<(i64, String)>;

impl SignalClient {
    fn new(cfg: SignalConfig) -> Result<Self, ExportError> {
        let transport = match cfg.protocol {
            Protocol::Grpc => Self::grpc(&cfg)?,
            Protocol::HttpProtobuf => Transport::Http(Box::new(http::HttpClient::new(&cfg, &user_agent())?)),
        };
        Ok(SignalClient { cfg, transport, limit: RequestLimit::default() })
    }

    fn grpc(cfg: &SignalConfig) -> Result<Transport, ExportError> {
        let (channel, metadata) = grpc_channel(cfg)?;
        Ok(Transport::Grpc { channel, metadata })
    }

    fn grpc_request<T>(&self, metadata: &MetadataMap, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        *req.metadata_mut() = metadata.clone();
        if let Some(t) = self.cfg.timeout {
            req.set_timeout(t);
        }
        req
    }

    async fn export_logs(&self, msg: ExportLogsServiceRequest) -> Result<Partial, tonic::Status> {
        let resp: ExportLogsServiceResponse = match &self.transport {
            Transport::Grpc { channel, metadata } => {
                let mut svc = LogsServiceClient::new(channel.clone());
                if self.cfg.gzip {
                    svc = svc.send_compressed(CompressionEncoding::Gzip);
                }
                svc.export(self.grpc_request(metadata, msg)).await?.into_inner()
            }
            Transport::Http(client) => client.export(&msg).await?,
        };
        Ok(resp.partial_success.map(|p| (p.rejected_log_records, p.error_message)))
    }

    async fn export_traces(&self, msg: ExportTraceServiceRequest) -> Result<Partial, tonic::Status> {
        let resp: ExportTraceServiceResponse = match &self.transport {
            Transport::Grpc { channel, metadata } => {
                let mut svc = TraceServiceClient::new(channel.clone());
                if self.cfg.gzip {
                    svc = svc.send_compressed(CompressionEncoding::Gzip);
                }
                svc.export(self.grpc_request(metadata, msg)).await?.into_inner()
            }
            Transport::Http(client) => client.export(&msg).await?,
        };
        Ok(resp.partial_success.map(|p| (p.rejected_spans, p.error_message)))
    }
}

/// A lazily connected gRPC channel for `cfg` (TLS, timeout, User-Agent) and the metadata (headers)
/// every request carries. The self-metrics exporter uses it too, so both follow one configuration.
pub(crate) fn grpc_channel(cfg: &SignalConfig) -> Result<(Channel, MetadataMap), ExportError> {
    let mut endpoint = Endpoint::from_shared(cfg.endpoint.clone())
        .map_err(|e| ExportError::Setup(format!("endpoint {}: {e}", cfg.endpoint)))?
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(user_agent())
        .map_err(|e| ExportError::Setup(format!("user agent: {e}")))?;
    if let Some(t) = cfg.timeout {
        endpoint = endpoint.timeout(t);
    }
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
        let key =
            AsciiMetadataKey::from_bytes(k.as_bytes()).map_err(|e| ExportError::Setup(format!("header {k}: {e}")))?;
        let value =
            AsciiMetadataValue::try_from(v.as_str()).map_err(|e| ExportError::Setup(format!("header {k}: {e}")))?;
        metadata.insert(key, value);
    }
    Ok((endpoint.connect_lazy(), metadata))
}

/// The OTLP/gRPC exporter.
pub struct OtlpExporter {
    logs: Option<SignalClient>,
    traces: Option<SignalClient>,
    mapping: MappingConfig,
    metrics: Arc<Metrics>,
    /// Exports in progress (id -> start), for /readyz: an exporter stuck retrying.
    in_flight: Arc<ExportsInFlight>,
}

impl OtlpExporter {
    /// Sets `k8s.cluster.uid` on the resource of the records it sends.
    pub(crate) fn set_cluster_uid(&mut self, uid: Option<String>) {
        self.mapping.cluster_uid = uid;
    }

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
    pub fn in_flight(&self) -> Arc<ExportsInFlight> {
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
    /// `Err` with the first permanent failure if any record could not go (see [`Self::export_batch`]
    /// for how many).
    pub async fn export(&self, batch: &[Record]) -> Result<(), ExportError> {
        self.export_batch(batch).await.error.map_or(Ok(()), Err)
    }

    /// Exports a batch: every enabled signal, each retried until it succeeds or fails for good.
    /// A record that fails for good (refused alone as too large, or in a part the receiver
    /// rejects) fails alone: the rest of the batch is delivered and counted as delivered. A record
    /// counts as failed when any of its signals failed.
    pub(crate) async fn export_batch(&self, batch: &[Record]) -> BatchOutcome {
        let id = self.in_flight.begin();
        let mut failed = vec![false; batch.len()];
        // The signals go out one after the other, each retried on its own: a batch's two requests
        // (the records converted and encoded) are never in memory at once. With every batch in
        // flight at once when a collector comes back, that halves the drain's peak; a second
        // round trip per batch costs no throughput while batches are in flight side by side.
        let mut error = None;
        if let Some(client) = &self.logs {
            let build = |part: &[Record]| convert::logs_request(part, &self.mapping);
            let e = deliver(client, "logs", batch, &self.metrics, build, |r| client.export_logs(r), &mut failed).await;
            error = error.or(e);
        }
        if let Some(client) = &self.traces {
            let build = |part: &[Record]| convert::traces_request(part, &self.mapping);
            let e =
                deliver(client, "traces", batch, &self.metrics, build, |r| client.export_traces(r), &mut failed).await;
            error = error.or(e);
        }
        self.in_flight.end(id);
        BatchOutcome { failed: failed.iter().filter(|f| **f).count() as u64, error }
    }
}

/// Sends `batch` as requests of at most the client's request limit (at first
/// [`MAX_REQUEST_BYTES`], then what the receiver is seen to take): split in halves before sending
/// while too big, and again when the receiver says a request is too large, down to one record
/// (which is dropped and counted only if even alone it is refused for its size). Every part is
/// sent; the records of parts that fail for good are marked in `failed`, and the first permanent
/// failure is returned.
async fn deliver<R, B, F, Fut>(
    client: &SignalClient,
    signal: &'static str,
    batch: &[Record],
    metrics: &Metrics,
    build: B,
    call: F,
    failed: &mut [bool],
) -> Option<ExportError>
where
    R: prost::Message,
    B: Fn(&[Record]) -> R,
    F: Fn(R) -> Fut,
    Fut: std::future::Future<Output = Result<Partial, tonic::Status>>,
{
    let mut parts: Vec<std::ops::Range<usize>> = Vec::new();
    parts.push(0..batch.len());
    let mut first_err = None;
    while let Some(range) = parts.pop() {
        let part = &batch[range.clone()];
        let req = build(part);
        let size = req.encoded_len();
        if part.len() > 1 && size > client.limit.bytes() {
            push_halves(&mut parts, range);
            continue;
        }
        match send(client, signal, part.len() as u64, metrics, &call, req, || build(part)).await {
            Ok(()) => {}
            Err(Failure::TooLarge(_)) if part.len() > 1 => {
                client.limit.refused(size, &client.cfg.endpoint, signal);
                tracing::debug!(
                    signal,
                    records = part.len(),
                    "The receiver refused the request as too large; splitting it."
                );
                push_halves(&mut parts, range);
            }
            Err(Failure::TooLarge(status)) => {
                metrics.dropped(signal, "too_large", 1);
                tracing::error!(signal, endpoint = %client.cfg.endpoint, message = status.message(), bytes = size,
                    "The receiver refuses even a single record as too large; it is dropped, the rest of its batch goes on (raise the receiver's request size limit).");
                failed[range].fill(true);
                first_err.get_or_insert(ExportError::Rejected {
                    signal,
                    endpoint: client.cfg.endpoint.clone(),
                    code: "too_large",
                    message: status.message().to_owned(),
                });
            }
            Err(Failure::Rejected(e)) => {
                failed[range].fill(true);
                first_err.get_or_insert(e);
            }
        }
    }
    first_err
}

/// Queues the two halves of `part`, the first half to go first.
fn push_halves(parts: &mut Vec<std::ops::Range<usize>>, part: std::ops::Range<usize>) {
    let mid = part.start + part.len() / 2;
    parts.push(mid..part.end);
    parts.push(part.start..mid);
}

/// What became of a batch sent over OTLP: how many of its records failed for good (the others
/// were delivered), and the first permanent failure.
#[derive(Debug, Default)]
pub(crate) struct BatchOutcome {
    pub failed: u64,
    pub error: Option<ExportError>,
}

/// The largest request a receiver is seen to take, in encoded bytes: [`MAX_REQUEST_BYTES`] until
/// it refuses one as too large, then just under the smallest size it refused, so that later batches
/// are split before they go instead of each being refused and split again. The receiver's limit
/// may be raised: what was learned is forgotten after [`LEARNED_LIMIT_TTL`].
#[derive(Debug)]
pub(crate) struct RequestLimit {
    /// (bytes, learned at); `None`: nothing learned.
    learned: std::sync::Mutex<Option<(usize, Instant)>>,
}

/// How long a learned request limit is kept.
pub(crate) const LEARNED_LIMIT_TTL: Duration = Duration::from_secs(600);

impl Default for RequestLimit {
    fn default() -> Self {
        RequestLimit { learned: std::sync::Mutex::new(None) }
    }
}

impl RequestLimit {
    /// The limit in force.
    pub fn bytes(&self) -> usize {
        let mut learned = self.learned.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match *learned {
            Some((bytes, at)) if at.elapsed() < LEARNED_LIMIT_TTL => bytes,
            Some(_) => {
                *learned = None;
                tracing::info!("Trying the largest requests again after {} s.", LEARNED_LIMIT_TTL.as_secs());
                MAX_REQUEST_BYTES
            }
            None => MAX_REQUEST_BYTES,
        }
    }

    /// The receiver refused a request of `size` bytes as too large.
    pub fn refused(&self, size: usize, endpoint: &str, signal: &'static str) {
        let mut learned = self.learned.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = learned.map_or(MAX_REQUEST_BYTES, |(b, _)| b);
        let limit = size.saturating_sub(1).min(now);
        if limit < now {
            tracing::warn!(
                signal,
                endpoint,
                refused_bytes = size,
                limit_bytes = limit,
                "The receiver refuses requests this large; sending smaller ones (raise its request size limit for fewer requests)."
            );
        }
        *learned = Some((limit, Instant::now()));
    }
}

/// Why a request was not delivered.
enum Failure {
    /// Refused for its size: split it.
    TooLarge(tonic::Status),
    /// Refused for good (dropped and counted).
    Rejected(ExportError),
}

/// Sends one request, retrying per the policy; counts exported, retried, dropped. A retry sends
/// the request `rebuild` makes anew: holding a copy of every request in flight for a retry that
/// rarely comes would double the export's memory (measured in the soak bench: 4 batches of 512
/// records, held and sent, were a 9 MB spike when a collector came back).
async fn send<R, F, Fut>(
    client: &SignalClient,
    signal: &'static str,
    records: u64,
    metrics: &Metrics,
    call: &F,
    req: R,
    rebuild: impl Fn() -> R,
) -> Result<(), Failure>
where
    F: Fn(R) -> Fut,
    Fut: std::future::Future<Output = Result<Partial, tonic::Status>>,
{
    let mut attempt: u32 = 0;
    let mut first = Some(req);
    loop {
        let started = Instant::now();
        let result = call(first.take().unwrap_or_else(&rebuild)).await;
        metrics.export_duration(signal, result.is_ok(), started.elapsed());
        let status = match result {
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
            Err(status) => status,
        };
        let delay = match retry::classify(&status) {
            Retry::Split => return Err(Failure::TooLarge(status)),
            Retry::Never => {
                let reason = retry::reason(status.code());
                metrics.dropped(signal, reason, records);
                tracing::error!(signal, endpoint = %client.cfg.endpoint, code = reason, message = status.message(), records,
                    "The collector rejected the batch for good; it is dropped (fix the collector or the agent's OTLP settings).");
                return Err(Failure::Rejected(ExportError::Rejected {
                    signal,
                    endpoint: client.cfg.endpoint.clone(),
                    code: reason,
                    message: status.message().to_owned(),
                }));
            }
            Retry::After(d) => d,
            Retry::Backoff => retry::backoff(attempt, 0.5 + fastrand::f64() / 2.0),
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
}
