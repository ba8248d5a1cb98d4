//! The `otlp` exporter: OTLP/gRPC through tonic's `LogsServiceClient` and `TraceServiceClient`,
//! with our own retries (see `retry.rs`), never the SDK's batch processors (they drop silently
//! when full and so cannot give backpressure).
//!
//! Configuration follows the OpenTelemetry exporter spec: `OTEL_EXPORTER_OTLP_{ENDPOINT, HEADERS,
//! COMPRESSION, TIMEOUT, INSECURE, CERTIFICATE, CLIENT_CERTIFICATE, CLIENT_KEY}` and their `_LOGS_` /
//! `_TRACES_` variants (a signal's own setting wins over the generic one), each with a CLI flag that
//! overrides it. For gRPC the endpoint is the whole URL (no signal path is appended). An endpoint
//! without a scheme means `https://`, or `http://` when `insecure` is set.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::convert::{self, MappingConfig};
use super::retry::{self, Retry};
use super::{ExportError, Signals};
use crate::event::RestartEvent;
use crate::metrics::Metrics;

/// Default per-request timeout (the spec's 10 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to open a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One signal's settings as given (env or flag), before validation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawSignalSettings {
    pub endpoint: Option<String>,
    pub headers: Option<String>,
    pub compression: Option<String>,
    /// Milliseconds, as the spec's env vars give it.
    pub timeout_ms: Option<String>,
    pub insecure: Option<String>,
    pub certificate: Option<PathBuf>,
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// A validated signal configuration.
#[derive(Clone, Debug)]
pub struct SignalConfig {
    pub endpoint: String,
    pub headers: Vec<(String, String)>,
    pub gzip: bool,
    pub timeout: Duration,
    pub ca_pem: Option<Vec<u8>>,
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
}

/// A configuration problem, naming the setting and the expected form.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "{setting}: {value:?} is not a valid OTLP endpoint ({why}); expected a URL like http://otel-collector:4317"
    )]
    Endpoint { setting: &'static str, value: String, why: String },
    #[error(
        "{setting}: {value:?} is not a valid header list; expected key1=value1,key2=value2 (keys: lowercase ASCII letters, digits, '-', '_', '.')"
    )]
    Headers { setting: &'static str, value: String },
    #[error("{setting}: {value:?} is not a supported compression; expected gzip or none")]
    Compression { setting: &'static str, value: String },
    #[error("{setting}: {value:?} is not a timeout; expected whole milliseconds, e.g. 10000")]
    Timeout { setting: &'static str, value: String },
    #[error("{setting}: {value:?} is not a boolean; expected true or false")]
    Bool { setting: &'static str, value: String },
    #[error("{setting}: cannot read {path}: {source}")]
    File {
        setting: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{setting}: a client certificate needs a client key too (and the other way round)")]
    HalfIdentity { setting: &'static str },
}

/// Validates one signal's settings: its own (`specific`, env vars with `prefix`, e.g.
/// `OTEL_EXPORTER_OTLP_LOGS`) or else the generic ones (`OTEL_EXPORTER_OTLP_*`), field by field.
/// Messages name the variable the bad value came from. `None` when no endpoint is configured.
pub fn resolve(
    specific: &RawSignalSettings,
    generic: &RawSignalSettings,
    prefix: &'static str,
) -> Result<Option<SignalConfig>, ConfigError> {
    const GENERIC: &str = "OTEL_EXPORTER_OTLP";
    // (value, name of the variable it came from)
    fn pick<'a, T>(
        s: &'a Option<T>,
        g: &'a Option<T>,
        name: fn(&'static str) -> &'static str,
        prefix: &'static str,
    ) -> (Option<&'a T>, &'static str) {
        match (s, g) {
            (Some(v), _) => (Some(v), name(prefix)),
            (None, Some(v)) => (Some(v), name(GENERIC)),
            (None, None) => (None, name(prefix)),
        }
    }
    let (endpoint, endpoint_setting) = pick(&specific.endpoint, &generic.endpoint, endpoint_name, prefix);
    let Some(endpoint) = endpoint.map(|e| e.trim()).filter(|e| !e.is_empty()) else {
        return Ok(None);
    };
    let (insecure, insecure_setting) = pick(&specific.insecure, &generic.insecure, insecure_name, prefix);
    let insecure = match insecure.map(|v| v.trim()) {
        None | Some("") => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => return Err(ConfigError::Bool { setting: insecure_setting, value: v.to_owned() }),
    };
    let endpoint = if endpoint.contains("://") {
        endpoint.to_owned()
    } else if insecure {
        format!("http://{endpoint}")
    } else {
        format!("https://{endpoint}")
    };
    let uri: http::Uri = endpoint.parse().map_err(|e: http::uri::InvalidUri| ConfigError::Endpoint {
        setting: endpoint_setting,
        value: endpoint.clone(),
        why: e.to_string(),
    })?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http") | Some("https"), Some(_)) => {}
        _ => {
            return Err(ConfigError::Endpoint {
                setting: endpoint_setting,
                value: endpoint.clone(),
                why: "the scheme must be http or https, with a host".into(),
            });
        }
    }
    let (headers, headers_setting) = pick(&specific.headers, &generic.headers, headers_name, prefix);
    let headers = match headers {
        None => Vec::new(),
        Some(h) => {
            parse_headers(h).ok_or_else(|| ConfigError::Headers { setting: headers_setting, value: h.clone() })?
        }
    };
    let (compression, compression_setting) =
        pick(&specific.compression, &generic.compression, compression_name, prefix);
    let gzip = match compression.map(|c| c.trim()) {
        None | Some("") | Some("none") => false,
        Some("gzip") => true,
        Some(v) => return Err(ConfigError::Compression { setting: compression_setting, value: v.to_owned() }),
    };
    let (timeout, timeout_setting) = pick(&specific.timeout_ms, &generic.timeout_ms, timeout_name, prefix);
    let timeout = match timeout.map(|t| t.trim()) {
        None | Some("") => DEFAULT_TIMEOUT,
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
            .ok_or_else(|| ConfigError::Timeout { setting: timeout_setting, value: v.to_owned() })?,
    };
    let read = |(path, setting): (Option<&PathBuf>, &'static str)| {
        path.map(|p| std::fs::read(p).map_err(|source| ConfigError::File { setting, path: p.clone(), source }))
            .transpose()
    };
    let ca_pem = read(pick(&specific.certificate, &generic.certificate, certificate_name, prefix))?;
    let cert = pick(&specific.client_certificate, &generic.client_certificate, client_certificate_name, prefix);
    let key = pick(&specific.client_key, &generic.client_key, client_key_name, prefix);
    let cert_setting = cert.1;
    let identity_pem = match (read(cert)?, read(key)?) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err(ConfigError::HalfIdentity { setting: cert_setting }),
    };
    Ok(Some(SignalConfig { endpoint, headers, gzip, timeout, ca_pem, identity_pem }))
}

/// Parses `k1=v1,k2=v2` (values percent-decoded, as the spec says).
pub fn parse_headers(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=')?;
        let key = k.trim().to_ascii_lowercase();
        let value = percent_decode(v.trim())?;
        AsciiMetadataKey::from_bytes(key.as_bytes()).ok()?;
        AsciiMetadataValue::try_from(value.as_str()).ok()?;
        out.push((key, value));
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

macro_rules! names {
    ($($fn:ident => $suffix:literal),* $(,)?) => {$(
        fn $fn(prefix: &'static str) -> &'static str {
            match prefix {
                "OTEL_EXPORTER_OTLP_LOGS" => concat!("OTEL_EXPORTER_OTLP_LOGS_", $suffix),
                "OTEL_EXPORTER_OTLP_TRACES" => concat!("OTEL_EXPORTER_OTLP_TRACES_", $suffix),
                _ => concat!("OTEL_EXPORTER_OTLP_", $suffix),
            }
        }
    )*};
}
names! {
    endpoint_name => "ENDPOINT", headers_name => "HEADERS", compression_name => "COMPRESSION",
    timeout_name => "TIMEOUT", insecure_name => "INSECURE", certificate_name => "CERTIFICATE",
    client_certificate_name => "CLIENT_CERTIFICATE", client_key_name => "CLIENT_KEY",
}

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

/// One signal's settings resolved: `None` = the signal is off.
pub struct OtlpConfig {
    pub logs: Option<SignalConfig>,
    pub traces: Option<SignalConfig>,
}

impl OtlpConfig {
    /// Both signals from the generic settings alone (`OTEL_EXPORTER_OTLP_*`), as a collector
    /// endpoint given on its own: how tests and benches build an exporter.
    pub fn from_generic(generic: &RawSignalSettings) -> Result<Self, ConfigError> {
        let none = RawSignalSettings::default();
        Ok(OtlpConfig {
            logs: resolve(&none, generic, "OTEL_EXPORTER_OTLP_LOGS")?,
            traces: resolve(&none, generic, "OTEL_EXPORTER_OTLP_TRACES")?,
        })
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
