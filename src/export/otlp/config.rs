//! The `otlp` exporter's configuration, per the OpenTelemetry exporter spec:
//! `OTEL_EXPORTER_OTLP_{ENDPOINT, PROTOCOL, HEADERS, COMPRESSION, TIMEOUT, INSECURE, CERTIFICATE,
//! CLIENT_CERTIFICATE, CLIENT_KEY}` and their `_LOGS_` / `_TRACES_` variants (a signal's own setting
//! wins over the generic one), each with a CLI flag that overrides it.
//!
//! - Protocol `grpc` (default) or `http/protobuf` (`http/json` is not supported: http/protobuf is
//!   used, with a warning). For gRPC the endpoint is the whole URL; for HTTP the generic endpoint
//!   gets the signal's path (`/v1/logs`, `/v1/traces`) and a signal's own endpoint is used as is.
//! - Without any endpoint for a signal, the spec's default: `http://localhost:4317` (gRPC) or
//!   `http://localhost:4318` (HTTP).
//! - An endpoint without a scheme means `https://`, or `http://` when `insecure` is set.
//! - Booleans: `true` (any case) is true; anything else is false, with a warning unless `false`.
//! - Enums (protocol, compression) are case-insensitive; an unknown value is warned about and the
//!   default is used.
//! - Timeout in milliseconds; 0 means no limit; at most [`MAX_TIMEOUT`].
//! - Certificates and keys must be PEM.
//!
//! Pure: nothing here connects; warnings are returned for the caller to log.

use std::path::PathBuf;
use std::time::Duration;

use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};

/// Default per-request timeout (the spec's 10 s).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest per-request timeout accepted (0 means no limit).
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// The spec's default endpoints.
pub(crate) const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";
pub(crate) const DEFAULT_HTTP_ENDPOINT: &str = "http://localhost:4318";

/// The OTLP transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    #[default]
    Grpc,
    HttpProtobuf,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// One signal's settings as given (env or flag), before validation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawSignalSettings {
    pub endpoint: Option<String>,
    pub protocol: Option<String>,
    pub headers: Option<String>,
    pub compression: Option<String>,
    /// Milliseconds, as the spec's env vars give it.
    pub timeout_ms: Option<String>,
    pub insecure: Option<String>,
    pub certificate: Option<PathBuf>,
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// The settings given as flags, by variable: `(OTEL_EXPORTER_OTLP_TIMEOUT, --otlp-timeout)`.
    /// A message about such a setting names the flag.
    pub flags: Vec<(String, String)>,
}

impl RawSignalSettings {
    /// The name to use in messages for the setting whose variable is `env`: its flag if the value
    /// came from the command line.
    fn name_of(&self, env: &'static str) -> Setting {
        match self.flags.iter().find(|(e, _)| e == env) {
            Some((_, flag)) => Setting::Flag(flag.clone()),
            None => Setting::Env(env),
        }
    }
}

/// Where a setting came from, as a message names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Setting {
    Env(&'static str),
    Flag(String),
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Setting::Env(e) => f.write_str(e),
            Setting::Flag(flag) => f.write_str(flag),
        }
    }
}

/// A validated signal configuration.
#[derive(Clone, Debug)]
pub struct SignalConfig {
    /// The URL requests go to (for HTTP, with the signal's path).
    pub endpoint: String,
    pub protocol: Protocol,
    pub headers: Vec<(String, String)>,
    pub gzip: bool,
    /// Per-request timeout; `None` = no limit.
    pub timeout: Option<Duration>,
    pub ca_pem: Option<Vec<u8>>,
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
}

/// A configuration problem, naming the setting and the expected form.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    #[error(
        "{setting}: {value:?} is not a valid OTLP endpoint ({why}); expected a URL like http://otel-collector:4317"
    )]
    Endpoint { setting: Setting, value: String, why: String },
    #[error(
        "{setting}: {value:?} is not a valid header list; expected key1=value1,key2=value2 (keys: lowercase ASCII letters, digits, '-', '_', '.')"
    )]
    Headers { setting: Setting, value: String },
    #[error(
        "{setting}: {value:?} is not a timeout; expected whole milliseconds from 0 (no limit) to 3600000, e.g. 10000"
    )]
    Timeout { setting: Setting, value: String },
    #[error("{setting}: {} is not PEM (expected a {expected} block, \"-----BEGIN ...\")", path.display())]
    NotPem { setting: Setting, path: PathBuf, expected: &'static str },
    #[error("{setting}: cannot read {path}: {source}")]
    File {
        setting: Setting,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{setting}: a client certificate needs a client key too (and the other way round)")]
    HalfIdentity { setting: Setting },
}

/// Validates one signal's settings: its own (`specific`, env vars with `prefix`, e.g.
/// `OTEL_EXPORTER_OTLP_LOGS`) or else the generic ones (`OTEL_EXPORTER_OTLP_*`), field by field.
/// Messages name the variable the bad value came from; what the spec says to warn about and
/// ignore goes to `warnings`. `None` when no endpoint is configured.
pub fn resolve(
    specific: &RawSignalSettings,
    generic: &RawSignalSettings,
    prefix: &'static str,
    warnings: &mut Vec<String>,
) -> Result<Option<SignalConfig>, SettingError> {
    let (endpoint, endpoint_setting) = pick(specific, generic, |r| &r.endpoint, endpoint_name, prefix);
    let Some(endpoint) = endpoint.map(|e| e.trim()).filter(|e| !e.is_empty()) else {
        return Ok(None);
    };
    let own_endpoint = specific.endpoint.as_deref().is_some_and(|e| !e.trim().is_empty());
    resolve_at(specific, generic, prefix, endpoint, endpoint_setting, own_endpoint, warnings).map(Some)
}

/// [`resolve`], with the spec's default endpoint when none is configured.
pub(crate) fn resolve_or_default(
    specific: &RawSignalSettings,
    generic: &RawSignalSettings,
    prefix: &'static str,
    warnings: &mut Vec<String>,
) -> Result<(SignalConfig, bool), SettingError> {
    if let Some(cfg) = resolve(specific, generic, prefix, warnings)? {
        return Ok((cfg, false));
    }
    let protocol = protocol(specific, generic, prefix, &mut Vec::new());
    let default = match protocol {
        Protocol::Grpc => DEFAULT_GRPC_ENDPOINT,
        Protocol::HttpProtobuf => DEFAULT_HTTP_ENDPOINT,
    };
    let cfg = resolve_at(specific, generic, prefix, default, Setting::Env(endpoint_name(prefix)), false, warnings)?;
    Ok((cfg, true))
}

const GENERIC: &str = "OTEL_EXPORTER_OTLP";

/// A setting's value: the signal's own, else the generic one; with the name of the variable it
/// came from.
fn pick<'a, T>(
    specific: &'a RawSignalSettings,
    generic: &'a RawSignalSettings,
    field: impl Fn(&RawSignalSettings) -> &Option<T>,
    name: fn(&'static str) -> &'static str,
    prefix: &'static str,
) -> (Option<&'a T>, Setting) {
    match (field(specific), field(generic)) {
        (Some(v), _) => (Some(v), specific.name_of(name(prefix))),
        (None, Some(v)) => (Some(v), generic.name_of(name(GENERIC))),
        (None, None) => (None, specific.name_of(name(prefix))),
    }
}

fn protocol(
    specific: &RawSignalSettings,
    generic: &RawSignalSettings,
    prefix: &'static str,
    warnings: &mut Vec<String>,
) -> Protocol {
    let (value, setting) = pick(specific, generic, |r| &r.protocol, protocol_name, prefix);
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("grpc") => Protocol::Grpc,
        Some("http/protobuf") => Protocol::HttpProtobuf,
        Some("http/json") => {
            warnings.push(format!("{setting}: http/json is not supported; using http/protobuf (same endpoint)"));
            Protocol::HttpProtobuf
        }
        Some(v) => {
            warnings.push(format!("{setting}: unknown protocol {v:?}; using grpc (expected grpc or http/protobuf)"));
            Protocol::Grpc
        }
    }
}

fn resolve_at(
    specific: &RawSignalSettings,
    generic: &RawSignalSettings,
    prefix: &'static str,
    endpoint: &str,
    endpoint_setting: Setting,
    own_endpoint: bool,
    warnings: &mut Vec<String>,
) -> Result<SignalConfig, SettingError> {
    let protocol = protocol(specific, generic, prefix, warnings);
    let (insecure, insecure_setting) = pick(specific, generic, |r| &r.insecure, insecure_name, prefix);
    let insecure = match insecure.map(|v| v.trim()) {
        None | Some("") => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => {
            warnings.push(format!("{insecure_setting}: {v:?} is not true; read as false"));
            false
        }
    };
    let mut endpoint = endpoint_url(endpoint, insecure, endpoint_setting)?;
    if protocol == Protocol::HttpProtobuf && !own_endpoint {
        // The generic (or default) endpoint is a base URL: the signal's path is appended.
        let path = if prefix.ends_with("TRACES") { "v1/traces" } else { "v1/logs" };
        endpoint = format!("{}/{path}", endpoint.trim_end_matches('/'));
    }
    let (headers, headers_setting) = pick(specific, generic, |r| &r.headers, headers_name, prefix);
    let headers = match headers {
        None => Vec::new(),
        Some(h) => {
            parse_headers(h).ok_or_else(|| SettingError::Headers { setting: headers_setting, value: h.clone() })?
        }
    };
    let (compression, compression_setting) = pick(specific, generic, |r| &r.compression, compression_name, prefix);
    let gzip = match compression.map(|c| c.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("none") => false,
        Some("gzip") => true,
        Some(v) => {
            warnings.push(format!(
                "{compression_setting}: unknown compression {v:?}; sending uncompressed (expected gzip or none)"
            ));
            false
        }
    };
    let (timeout, timeout_setting) = pick(specific, generic, |r| &r.timeout_ms, timeout_name, prefix);
    let timeout = match timeout.map(|t| t.trim()) {
        None | Some("") => Some(DEFAULT_TIMEOUT),
        Some(v) => match v.parse::<u64>() {
            Ok(0) => None,
            Ok(ms) if Duration::from_millis(ms) <= MAX_TIMEOUT => Some(Duration::from_millis(ms)),
            _ => return Err(SettingError::Timeout { setting: timeout_setting, value: v.to_owned() }),
        },
    };
    let ca_pem = read_pem(pick(specific, generic, |r| &r.certificate, certificate_name, prefix), "CERTIFICATE")?;
    let cert = pick(specific, generic, |r| &r.client_certificate, client_certificate_name, prefix);
    let key = pick(specific, generic, |r| &r.client_key, client_key_name, prefix);
    let cert_setting = cert.1.clone();
    let identity_pem = match (read_pem(cert, "CERTIFICATE")?, read_pem(key, "PRIVATE KEY")?) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err(SettingError::HalfIdentity { setting: cert_setting }),
    };
    Ok(SignalConfig { endpoint, protocol, headers, gzip, timeout, ca_pem, identity_pem })
}

/// The endpoint as a URL: without a scheme, `https://`, or `http://` when `insecure` is set. It
/// must be http or https with a host, and a port (if any) from 1 to 65535.
fn endpoint_url(endpoint: &str, insecure: bool, setting: Setting) -> Result<String, SettingError> {
    let endpoint = if endpoint.contains("://") {
        endpoint.to_owned()
    } else if insecure {
        format!("http://{endpoint}")
    } else {
        format!("https://{endpoint}")
    };
    let bad = |why: String| SettingError::Endpoint { setting: setting.clone(), value: endpoint.clone(), why };
    let uri: http::Uri = endpoint.parse().map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
    // `Uri` accepts any digits as a port (and then reports none): check it here.
    let host_port = uri.authority().map(|a| a.as_str().rsplit('@').next().unwrap_or_default()).unwrap_or_default();
    if let Some((_, port)) = host_port.rsplit_once(':').filter(|(_, p)| !p.ends_with(']'))
        && port.parse::<u16>().ok().filter(|p| *p > 0).is_none()
    {
        return Err(bad(format!("port {port} is not in 1..=65535")));
    }
    match (uri.scheme_str(), uri.host()) {
        (Some("http") | Some("https"), Some(_)) => Ok(endpoint),
        _ => Err(bad("the scheme must be http or https, with a host".into())),
    }
}

/// The contents of a PEM file setting, if set; it must hold a block whose label ends with
/// `expected` (`CERTIFICATE`, `PRIVATE KEY`: also `RSA PRIVATE KEY`, `EC PRIVATE KEY`).
fn read_pem(
    (path, setting): (Option<&PathBuf>, Setting),
    expected: &'static str,
) -> Result<Option<Vec<u8>>, SettingError> {
    let Some(p) = path else { return Ok(None) };
    let bytes =
        std::fs::read(p).map_err(|source| SettingError::File { setting: setting.clone(), path: p.clone(), source })?;
    let text = String::from_utf8_lossy(&bytes);
    let is_pem = text.lines().any(|l| {
        l.trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|r| r.strip_suffix("-----"))
            .is_some_and(|label| label.ends_with(expected))
    });
    if !is_pem {
        return Err(SettingError::NotPem { setting, path: p.clone(), expected });
    }
    Ok(Some(bytes))
}

/// Parses `k1=v1,k2=v2` (values percent-decoded, as the spec says).
pub(crate) fn parse_headers(s: &str) -> Option<Vec<(String, String)>> {
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
                "OTEL_EXPORTER_OTLP_METRICS" => concat!("OTEL_EXPORTER_OTLP_METRICS_", $suffix),
                _ => concat!("OTEL_EXPORTER_OTLP_", $suffix),
            }
        }
    )*};
}
names! {
    endpoint_name => "ENDPOINT", protocol_name => "PROTOCOL", headers_name => "HEADERS", compression_name => "COMPRESSION",
    timeout_name => "TIMEOUT", insecure_name => "INSECURE", certificate_name => "CERTIFICATE",
    client_certificate_name => "CLIENT_CERTIFICATE", client_key_name => "CLIENT_KEY",
}

/// Both signals' settings resolved: `None` = the signal is off. `notes` are the spec's warnings
/// and what defaults were used, for the caller to log at start.
#[derive(Clone, Debug)]
pub struct OtlpConfig {
    pub logs: Option<SignalConfig>,
    pub traces: Option<SignalConfig>,
    pub notes: Vec<String>,
}

impl OtlpConfig {
    /// Both signals: each from its own settings, else the generic ones, else the spec's default
    /// endpoint. A signal on the default while the other has an endpoint is called out in `notes`
    /// (setting only the logs endpoint does not turn traces off).
    pub fn resolve(
        logs: &RawSignalSettings,
        traces: &RawSignalSettings,
        generic: &RawSignalSettings,
        signals: crate::export::Signals,
    ) -> Result<Self, SettingError> {
        let mut notes = Vec::new();
        let l = signals
            .logs
            .then(|| resolve_or_default(logs, generic, "OTEL_EXPORTER_OTLP_LOGS", &mut notes))
            .transpose()?;
        let t = signals
            .traces
            .then(|| resolve_or_default(traces, generic, "OTEL_EXPORTER_OTLP_TRACES", &mut notes))
            .transpose()?;
        let explicit = |c: &Option<(SignalConfig, bool)>| c.as_ref().is_some_and(|(_, d)| !d);
        for (signal, cfg, other_explicit, own) in [
            ("logs", &l, explicit(&t), "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"),
            ("traces", &t, explicit(&l), "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        ] {
            if let Some((cfg, true)) = cfg
                && other_explicit
            {
                notes.push(format!(
                    "{signal} go to the default endpoint {} because no endpoint is set for them ({own} or OTEL_EXPORTER_OTLP_ENDPOINT); \
                     set one, or --signals to export only the other signal",
                    cfg.endpoint
                ));
            }
        }
        // A generic setting that both signals read is said once, not once per signal.
        let mut said = std::collections::HashSet::new();
        notes.retain(|n| said.insert(n.clone()));
        Ok(OtlpConfig { logs: l.map(|(c, _)| c), traces: t.map(|(c, _)| c), notes })
    }

    /// Both signals from the generic settings alone (`OTEL_EXPORTER_OTLP_*`), as a collector
    /// endpoint given on its own: how tests and benches build an exporter.
    pub fn from_generic(generic: &RawSignalSettings) -> Result<Self, SettingError> {
        let none = RawSignalSettings::default();
        Self::resolve(&none, &none, generic, crate::export::Signals::default())
    }

    /// What is exported where, for the start-up log and `check-config`.
    pub(crate) fn describe(&self) -> String {
        let one = |name: &str, c: &Option<SignalConfig>| match c {
            Some(c) => format!(
                "{name}={} ({}, gzip {}, timeout {})",
                c.endpoint,
                c.protocol.as_str(),
                c.gzip,
                c.timeout.map_or("none".to_owned(), |t| format!("{t:?}"))
            ),
            None => format!("{name}=off"),
        };
        format!("{}; {}", one("logs", &self.logs), one("traces", &self.traces))
    }
}
