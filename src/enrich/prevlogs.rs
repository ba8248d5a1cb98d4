//! The previous instance's last log lines (opt-in, `--previous-logs-lines N`): fetched right after
//! a restart is detected with `GET .../pods/NAME/log?container=C&previous=true&tailLines=N&limitBytes=B`
//! and attached as `restart_watcher.previous_logs`.
//!
//! Bounded in every direction: at most `PREVIOUS_LOGS_CONCURRENCY` fetches at once, each within a
//! timeout, the text capped in bytes, optional redaction regexes applied before anything leaves
//! the agent. A failed fetch never blocks or loses the record: the record goes out without logs,
//! and the failure is counted (`restart_watcher_previous_logs_fetches_total{outcome}`).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use kube::{Api, Client};
use regex::Regex;
use tokio::sync::Semaphore;

use crate::kube_errors::{Failure, classify};

/// Fetches in flight at most.
pub const PREVIOUS_LOGS_CONCURRENCY: usize = 4;
/// Default cap on the attached text, in bytes.
pub(crate) const DEFAULT_MAX_BYTES: usize = 16 * 1024;
/// Most log lines that can be asked for (`--previous-logs-lines`); the byte cap applies anyway.
pub(crate) const MAX_LINES: u32 = 10_000;
/// Why a fetch brought nothing.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("forbidden (403): grant verb get on resource \"pods/log\"")]
    Forbidden,
    #[error("{0}")]
    Kube(#[source] kube::Error),
}

impl FetchError {
    /// Low-cardinality outcome label.
    pub fn outcome(&self) -> &'static str {
        match self {
            FetchError::Timeout(_) => "timeout",
            FetchError::Forbidden => "forbidden",
            FetchError::Kube(_) => "error",
        }
    }
}

/// The fetcher.
#[derive(Clone)]
pub struct PreviousLogs {
    client: Client,
    pub lines: u32,
    pub max_bytes: usize,
    pub timeout: Duration,
    redactions: Arc<Vec<Regex>>,
    permits: Arc<Semaphore>,
}

impl PreviousLogs {
    pub fn new(client: Client, lines: u32, max_bytes: usize, timeout: Duration, redactions: Vec<Regex>) -> Self {
        PreviousLogs {
            client,
            lines,
            max_bytes,
            timeout,
            redactions: Arc::new(redactions),
            permits: Arc::new(Semaphore::new(PREVIOUS_LOGS_CONCURRENCY)),
        }
    }

    /// Fetches the last lines of the previous instance of `container`, redacted and capped. The
    /// wait for a free slot counts in the timeout.
    pub async fn fetch(&self, namespace: &str, pod: &str, container: &str) -> Result<String, FetchError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let lp = LogParams {
            container: Some(container.to_owned()),
            previous: true,
            tail_lines: Some(i64::from(self.lines)),
            limit_bytes: Some(self.max_bytes as i64),
            ..Default::default()
        };
        let work = async {
            let _permit = self.permits.acquire().await.map_err(|_| FetchError::Timeout(self.timeout))?;
            api.logs(pod, &lp).await.map_err(|e| {
                if classify(&e) == Failure::Forbidden { FetchError::Forbidden } else { FetchError::Kube(e) }
            })
        };
        let text = tokio::time::timeout(self.timeout, work).await.map_err(|_| FetchError::Timeout(self.timeout))??;
        Ok(crate::rules::text::redact_and_cap(&text, &self.redactions, self.max_bytes))
    }
}
