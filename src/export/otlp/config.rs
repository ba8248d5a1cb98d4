//! The `otlp` exporter's configuration, per the OpenTelemetry exporter spec:
//! `OTEL_EXPORTER_OTLP_{ENDPOINT, HEADERS, COMPRESSION, TIMEOUT, INSECURE, CERTIFICATE,
//! CLIENT_CERTIFICATE, CLIENT_KEY}` and their `_LOGS_` / `_TRACES_` variants (a signal's own setting
//! wins over the generic one), each with a CLI flag that overrides it. For gRPC the endpoint is the
//! whole URL (no signal path is appended). An endpoint without a scheme means `https://`, or
//! `http://` when `insecure` is set. Pure: nothing here connects.

use std::path::PathBuf;
use std::time::Duration;

use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};

/// Default per-request timeout (the spec's 10 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

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
    let endpoint = endpoint_url(endpoint, insecure, endpoint_setting)?;
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
    let ca_pem = read_pem(pick(&specific.certificate, &generic.certificate, certificate_name, prefix))?;
    let cert = pick(&specific.client_certificate, &generic.client_certificate, client_certificate_name, prefix);
    let key = pick(&specific.client_key, &generic.client_key, client_key_name, prefix);
    let cert_setting = cert.1;
    let identity_pem = match (read_pem(cert)?, read_pem(key)?) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err(ConfigError::HalfIdentity { setting: cert_setting }),
    };
    Ok(Some(SignalConfig { endpoint, headers, gzip, timeout, ca_pem, identity_pem }))
}

/// The endpoint as a URL: without a scheme, `https://`, or `http://` when `insecure` is set. It
/// must be http or https with a host.
fn endpoint_url(endpoint: &str, insecure: bool, setting: &'static str) -> Result<String, ConfigError> {
    let endpoint = if endpoint.contains("://") {
        endpoint.to_owned()
    } else if insecure {
        format!("http://{endpoint}")
    } else {
        format!("https://{endpoint}")
    };
    let bad = |why: String| ConfigError::Endpoint { setting, value: endpoint.clone(), why };
    let uri: http::Uri = endpoint.parse().map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http") | Some("https"), Some(_)) => Ok(endpoint),
        _ => Err(bad("the scheme must be http or https, with a host".into())),
    }
}

/// The contents of a PEM file setting, if set.
fn read_pem((path, setting): (Option<&PathBuf>, &'static str)) -> Result<Option<Vec<u8>>, ConfigError> {
    path.map(|p| std::fs::read(p).map_err(|source| ConfigError::File { setting, path: p.clone(), source })).transpose()
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
