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
pub(crate) const EXPORT_STUCK_THRESHOLD: Duration = Duration::from_secs(60);

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
    pub watch: Arc<crate::accounting::WatchStats>,
    /// The OTLP exports in progress, when exporting over OTLP.
    pub export_in_flight: Option<Arc<crate::accounting::ExportsInFlight>>,
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

/// Most connections the admin server holds at once. A new one past it closes the oldest (an idle
/// or slow client), so that the kubelet's probes are always answered.
pub const ADMIN_MAX_CONNECTIONS: usize = 64;
/// Time a client has to send a request's headers before its connection is closed (slowloris).
pub const ADMIN_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of an admin connection: one request (no keep-alive), its headers read within
/// [`ADMIN_HEADER_READ_TIMEOUT`], its answer written within the rest.
pub(crate) const ADMIN_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// File descriptors kept for the agent's own work (its watches, the exporter, logs): the admin
/// server never holds more than the limit less these.
pub const FD_RESERVE: u64 = 128;
/// The pause after a failed accept (out of descriptors), before the next.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Raises the soft limit of open files to the hard limit, as Go's runtime does: the default soft
/// limit (often 1,024) is a relic. Returns the soft limit in force.
pub(crate) fn raise_open_files_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

/// How many admin connections fit beside the reserve under a limit of `open_files` descriptors.
pub fn connection_budget(open_files: u64) -> usize {
    let spare = open_files.saturating_sub(FD_RESERVE);
    usize::try_from(spare).unwrap_or(usize::MAX).clamp(4, ADMIN_MAX_CONNECTIONS)
}

/// Binds the admin server (so a bad address fails at startup) and serves it until `stop`.
/// Returns the bound address and the server task. Connections are bounded
/// ([`connection_budget`]), and each lives for one request at most [`ADMIN_CONNECTION_TIMEOUT`].
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
    let max_connections = connection_budget(raise_open_files_limit());
    let task = tokio::spawn(accept_loop(listener, app, max_connections, stop));
    tracing::info!(addr = %bound, max_connections, "Admin server listening (/metrics, /livez, /readyz).");
    Ok((bound, task))
}

/// The open connections, oldest first: each can be told to close.
#[derive(Default)]
struct Connections {
    next_id: u64,
    open: std::collections::BTreeMap<u64, CancellationToken>,
}

async fn accept_loop(listener: tokio::net::TcpListener, app: Router, max: usize, stop: CancellationToken) {
    let connections = Arc::new(std::sync::Mutex::new(Connections::default()));
    let mut warned_full = false;
    let mut warned_accept = false;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors (or a connection reset before it was taken): pause, go on.
                if !std::mem::replace(&mut warned_accept, true) {
                    tracing::warn!(error = %e, "The admin server cannot accept a connection; retrying.");
                }
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let (id, close) = {
            let mut c = connections.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if c.open.len() >= max {
                if let Some((_, oldest)) = c.open.pop_first() {
                    oldest.cancel();
                }
                if !std::mem::replace(&mut warned_full, true) {
                    tracing::warn!(
                        max_connections = max,
                        "The admin server is at its connection limit: the oldest connection is closed for each new one."
                    );
                }
            }
            let id = c.next_id;
            c.next_id += 1;
            let close = stop.child_token();
            c.open.insert(id, close.clone());
            (id, close)
        };
        let (app, connections) = (app.clone(), connections.clone());
        tokio::spawn(async move {
            serve_connection(stream, app, close).await;
            connections.lock().unwrap_or_else(std::sync::PoisonError::into_inner).open.remove(&id);
        });
    }
}

/// One connection: one request, headers within [`ADMIN_HEADER_READ_TIMEOUT`], all of it within
/// [`ADMIN_CONNECTION_TIMEOUT`]; closed early when `close` is cancelled (evicted, or shutdown).
async fn serve_connection(stream: tokio::net::TcpStream, app: Router, close: CancellationToken) {
    let io = hyper_util::rt::TokioIo::new(stream);
    let service = hyper_util::service::TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(ADMIN_HEADER_READ_TIMEOUT)
        .keep_alive(false)
        .serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = tokio::time::timeout(ADMIN_CONNECTION_TIMEOUT, conn.as_mut()) => {}
        _ = close.cancelled() => {}
    }
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
