//! The admin HTTP server: `/metrics` (Prometheus text), `/livez`, `/readyz`.
//!
//! Ready means: every watch scope finished its initial list, and the exporter is not stuck on one
//! batch for longer than [`EXPORT_STUCK_THRESHOLD`] (a collector down for minutes makes the agent
//! unready, which shows in `kubectl get pods` without restarting it: liveness stays green).
//! A standby (`--leader-elect`) is ready once its initial lists are complete: it is a hot
//! standby, able to take over at once; the body says which role it has.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::metrics::SelfTelemetry;

/// An export retrying longer than this makes `/readyz` fail.
pub const EXPORT_STUCK_THRESHOLD: Duration = Duration::from_secs(60);

/// Errors of the admin server.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("--admin-listen {addr}: cannot listen: {source}; choose a free address, e.g. 0.0.0.0:9090")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What readiness looks at.
#[derive(Clone, Default)]
pub struct Readiness {
    /// Scopes expected to finish their initial list.
    pub scopes: u64,
    pub watch: Arc<crate::watch::WatchStats>,
    /// The OTLP exports in progress, when exporting over OTLP.
    pub export_in_flight: Option<Arc<crate::export::otlp::InFlight>>,
    /// This replica's role (`--leader-elect`); `None`: it always leads.
    pub role: Option<tokio::sync::watch::Receiver<crate::leader::Role>>,
}

impl Readiness {
    /// `Ok` with the role when ready, else the reason.
    pub fn check(&self) -> Result<&'static str, String> {
        let listed = self.watch.scopes_listed.load(std::sync::atomic::Ordering::Relaxed);
        if listed < self.scopes {
            return Err(format!("initial list not complete ({listed} of {} scopes)", self.scopes));
        }
        match self.role.as_ref().map(|r| *r.borrow()) {
            None => {}
            Some(crate::leader::Role::Standby) => return Ok("ready (standby: the leader exports)"),
            Some(crate::leader::Role::Leader) => {}
        }
        let stuck =
            self.export_in_flight.as_ref().and_then(|f| f.oldest()).filter(|s| s.elapsed() > EXPORT_STUCK_THRESHOLD);
        if let Some(since) = stuck {
            return Err(format!("the exporter has been retrying one batch for {} s", since.elapsed().as_secs()));
        }
        Ok(if self.role.is_some() { "ready (leader)" } else { "ready" })
    }
}

struct AdminState {
    telemetry: Arc<SelfTelemetry>,
    readiness: Readiness,
}

/// Binds the admin server (so a bad address fails at startup) and serves it until `stop`.
/// Returns the bound address and the server task.
pub async fn serve(
    addr: SocketAddr,
    telemetry: Arc<SelfTelemetry>,
    readiness: Readiness,
    stop: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), AdminError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| AdminError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| AdminError::Bind { addr, source })?;
    let state = Arc::new(AdminState { telemetry, readiness });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
            tracing::error!(error = %e, "The admin server failed.");
        }
    });
    tracing::info!(addr = %bound, "Admin server listening (/metrics, /livez, /readyz).");
    Ok((bound, task))
}

async fn metrics(State(state): State<Arc<AdminState>>) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let ct = [("content-type", "text/plain; version=0.0.4; charset=utf-8")];
    match state.telemetry.prometheus_text() {
        Ok(text) => (StatusCode::OK, ct, text),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, ct, format!("{e}\n")),
    }
}

async fn readyz(State(state): State<Arc<AdminState>>) -> (StatusCode, String) {
    match state.readiness.check() {
        Ok(state) => (StatusCode::OK, format!("{state}\n")),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
    }
}
