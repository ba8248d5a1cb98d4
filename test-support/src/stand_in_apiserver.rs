//! A stand-in Kubernetes API server on 127.0.0.1:0 (plain HTTP) that serves one pod, records every
//! request, and can behave as servers that do not serve streaming lists do: it answers a watch
//! with `sendInitialEvents=true` as a plain watch (the pod as `ADDED`, then nothing, never the
//! initial-events-end bookmark), as an older server or a proxy that drops the parameter would.
//! After a list, the watch from the list's resourceVersion shows the pod's container restarted.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::routing::get;
use serde_json::{Value, json};

/// The list's resourceVersion.
pub const LIST_RESOURCE_VERSION: &str = "5";

#[derive(Default)]
pub struct Recorded {
    /// Every request's path and query.
    pub requests: Mutex<Vec<String>>,
}

pub struct StandInApiServer {
    pub addr: SocketAddr,
    pub recorded: Arc<Recorded>,
    _server: tokio::task::JoinHandle<()>,
    _runtime: Option<tokio::runtime::Runtime>,
}

/// The pod, with its container's `restartCount`.
fn pod(restarts: u32) -> Value {
    let mut web = crate::pods::c("web", restarts)
        .field("image", "registry.example.com/web:1.0")
        .field("imageID", "")
        .running_since("2026-11-20T10:01:01Z");
    if restarts > 0 {
        web = web.terminated(json!({"exitCode": 1, "reason": "Error", "startedAt": "2026-11-20T10:00:00Z",
            "finishedAt": "2026-11-20T10:01:00Z", "containerID": "containerd://web-0"}));
    }
    crate::pods::pod("5ca1ab1e-0000-0000-0000-000000000001")
        .named("shop", "web-1")
        .meta(json!({"resourceVersion": if restarts == 0 { "4" } else { "6" },
                     "creationTimestamp": "2026-11-20T09:59:00Z"}))
        .app(web)
        .json()
}

/// Watch events, one JSON object per line, then the connection stays open.
fn watch_stream(events: Vec<Value>, delay: Duration) -> Body {
    let lines = futures::stream::iter(events).then(move |e| async move {
        tokio::time::sleep(delay).await;
        Ok::<_, std::io::Error>(format!("{e}\n"))
    });
    Body::from_stream(lines.chain(futures::stream::pending()))
}

use futures::StreamExt;

async fn pods(State(recorded): State<Arc<Recorded>>, RawQuery(query): RawQuery) -> axum::response::Response {
    let query = query.unwrap_or_default();
    recorded.requests.lock().unwrap().push(format!("/api/v1/pods?{query}"));
    let has = |p: &str| query.split('&').any(|q| q == p);
    let body = if !has("watch=true") {
        Body::from(
            json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": LIST_RESOURCE_VERSION},
                "items": [pod(0)]})
            .to_string(),
        )
    } else if has("sendInitialEvents=true") {
        // A plain watch: the pod as it is, no bookmark ending the list.
        watch_stream(vec![json!({"type": "ADDED", "object": pod(0)})], Duration::ZERO)
    } else if has(&format!("resourceVersion={LIST_RESOURCE_VERSION}")) {
        watch_stream(vec![json!({"type": "MODIFIED", "object": pod(1)})], Duration::from_secs(1))
    } else {
        watch_stream(Vec::new(), Duration::ZERO)
    };
    axum::response::Response::builder().header("content-type", "application/json").body(body).unwrap()
}

impl StandInApiServer {
    /// Starts the server on a runtime of its own (for tests that are not async).
    pub fn start() -> StandInApiServer {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let recorded = Arc::new(Recorded::default());
        let app = Router::new().route("/api/v1/pods", get(pods)).with_state(recorded.clone());
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        StandInApiServer { addr, recorded, _server: server, _runtime: Some(runtime) }
    }

    /// A kubeconfig for the server, written to `dir`.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("stand-in.kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: s\n  cluster: {{server: \"http://{}\"}}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context: {{cluster: s, user: u}}\ncurrent-context: c\n",
            self.addr
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn requests(&self) -> Vec<String> {
        self.recorded.requests.lock().unwrap().clone()
    }
}

impl Drop for StandInApiServer {
    fn drop(&mut self) {
        if let Some(rt) = self._runtime.take() {
            rt.shutdown_background();
        }
    }
}
