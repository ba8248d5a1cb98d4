//! OTLP/HTTP with binary protobuf (`http/protobuf`): one POST per request, for endpoints that do
//! not take gRPC. The response status is mapped onto the gRPC status the retry policy already
//! classifies, as the OTLP/HTTP spec pairs them:
//!
//! | HTTP | gRPC equivalent | what the exporter does |
//! |---|---|---|
//! | 2xx | OK | partial success read from the body; a body that is not protobuf is a success, said once |
//! | 429 | RESOURCE_EXHAUSTED (+ `Retry-After` as RetryInfo) | retried |
//! | 502, 503, 504 | UNAVAILABLE (+ `Retry-After`) | retried |
//! | 413 | RESOURCE_EXHAUSTED, "request too large" | split and retried |
//! | 400, 401, 403, 404, other 4xx and 5xx | INVALID_ARGUMENT, UNAUTHENTICATED, ... | dropped, counted |
//! | no response (connect, reset) | UNAVAILABLE | retried |
//! | timeout | DEADLINE_EXCEEDED | retried |

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

use super::SignalConfig;
use crate::export::ExportError;

/// Largest response body read (a partial-success message or an error status), in bytes.
pub(crate) const MAX_RESPONSE_BYTES: usize = 64 * 1024;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A client for one OTLP/HTTP endpoint.
pub(crate) struct HttpClient {
    client: Client<Connector, Full<Bytes>>,
    uri: http::Uri,
    headers: http::HeaderMap,
    gzip: bool,
    timeout: Option<Duration>,
    /// A success with an unreadable body was said in the log (once per client).
    warned_undecodable: std::sync::atomic::AtomicBool,
}

impl HttpClient {
    pub fn new(cfg: &SignalConfig, user_agent: &str) -> Result<Self, ExportError> {
        let setup =
            |what: &str, e: &dyn std::fmt::Display| ExportError::Setup(format!("{what} for {}: {e}", cfg.endpoint));
        let uri: http::Uri = cfg.endpoint.parse().map_err(|e| setup("endpoint", &e))?;
        let tls = tls_config(cfg).map_err(|e| setup("TLS", &e))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(super::CONNECT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let mut headers = http::HeaderMap::new();
        for (k, v) in &cfg.headers {
            let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(|e| setup("header", &e))?;
            let value = http::HeaderValue::from_str(v).map_err(|e| setup("header", &e))?;
            headers.insert(name, value);
        }
        headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/x-protobuf"));
        headers.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_str(user_agent).map_err(|e| setup("user agent", &e))?,
        );
        if cfg.gzip {
            headers.insert(http::header::CONTENT_ENCODING, http::HeaderValue::from_static("gzip"));
        }
        Ok(HttpClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
            uri,
            headers,
            gzip: cfg.gzip,
            timeout: cfg.timeout,
            warned_undecodable: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// POSTs one request; the decoded response, or the failure as a gRPC status.
    pub async fn export<Req: prost::Message, Resp: prost::Message + Default>(
        &self,
        msg: &Req,
    ) -> Result<Resp, tonic::Status> {
        let mut body = msg.encode_to_vec();
        if self.gzip {
            body = gzip(&body).map_err(|e| tonic::Status::internal(format!("gzip: {e}")))?;
        }
        let mut req = http::Request::post(self.uri.clone())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        *req.headers_mut() = self.headers.clone();
        let call = async {
            let resp = self.client.request(req).await.map_err(|e| tonic::Status::unavailable(format!("{e:#}")))?;
            let (parts, body) = resp.into_parts();
            let limited = http_body_util::Limited::new(body, MAX_RESPONSE_BYTES);
            let bytes = limited.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            Ok::<_, tonic::Status>((parts, bytes))
        };
        let (parts, bytes) = match self.timeout {
            Some(t) => tokio::time::timeout(t, call)
                .await
                .map_err(|_| tonic::Status::deadline_exceeded(format!("no response within {t:?}")))??,
            None => call.await?,
        };
        if parts.status.is_success() {
            // A 2xx is the receiver's word that it took the request, whatever its body says: a
            // body that is not protobuf (`{}` from a proxy, a JSON-only receiver) is a success
            // with no partial-success details, said once.
            return Ok(Resp::decode(bytes).unwrap_or_else(|e| {
                if !self.warned_undecodable.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!(endpoint = %self.uri, status = %parts.status, error = %e,
                        "The receiver answered success with a body that is not an OTLP protobuf response; taken as delivered (partial successes, if any, are not seen).");
                }
                Resp::default()
            }));
        }
        Err(status_for(parts.status, &parts.headers, &bytes))
    }
}

/// The gRPC status equivalent to an OTLP/HTTP failure (see the module table).
pub(crate) fn status_for(status: http::StatusCode, headers: &http::HeaderMap, body: &[u8]) -> tonic::Status {
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // The body is a google.rpc.Status when the server follows the spec.
    let message = <tonic_types::pb::Status as prost::Message>::decode(body)
        .ok()
        .map(|s| s.message)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned());
    let message = format!("HTTP {status}: {message}");
    let code = match status.as_u16() {
        429 => Code::ResourceExhausted,
        502..=504 => Code::Unavailable,
        413 => return tonic::Status::resource_exhausted(format!("request too large ({message})")),
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        _ => Code::Internal,
    };
    match retry_after {
        Some(d) => tonic::Status::with_error_details(code, message, ErrorDetails::with_retry_info(Some(d))),
        None => tonic::Status::new(code, message),
    }
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 4), flate2::Compression::fast());
    enc.write_all(bytes)?;
    enc.finish()
}

/// rustls configuration: the system's roots plus the configured CA, and the client identity.
fn tls_config(cfg: &SignalConfig) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(ca) = &cfg.ca_pem {
        for cert in CertificateDer::pem_slice_iter(ca) {
            roots.add(cert.map_err(|e| format!("CA certificate: {e}"))?).map_err(|e| format!("CA certificate: {e}"))?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match &cfg.identity_pem {
        Some((cert, key)) => {
            let certs = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("client certificate: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("client key: {e}"))?;
            builder.with_client_auth_cert(certs, key).map_err(|e| format!("client identity: {e}"))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_failures_map_to_the_grpc_statuses_the_retry_policy_knows() {
        use crate::export::retry::{Retry, classify};
        let mut headers = http::HeaderMap::new();
        let none = http::HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("7"));
        let cases = [
            (429, &headers, Retry::After(Duration::from_secs(7))),
            (503, &headers, Retry::After(Duration::from_secs(7))),
            (502, &none, Retry::Backoff),
            (504, &none, Retry::Backoff),
            (400, &none, Retry::Never),
            (401, &none, Retry::Never),
            (500, &none, Retry::Never),
        ];
        for (code, h, want) in cases {
            let s = status_for(http::StatusCode::from_u16(code).unwrap(), h, b"");
            assert_eq!(classify(&s), want, "HTTP {code}");
        }
        let too_large = status_for(http::StatusCode::PAYLOAD_TOO_LARGE, &none, b"");
        assert!(crate::export::retry::is_too_large(&too_large));
    }
}
