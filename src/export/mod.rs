//! Exporters: where restart records go, behind one seam.
//!
//! The producer (replay or the live watch) hands `Record`s to a bounded channel; one export
//! task ([`task::run`]) takes them off in batches and calls [`Exporter::export`]. Each exporter
//! owns its encoding and its sink. Adding a transport (OTLP/gRPC) means adding a variant here.
//!
//! - `console`: one readable line per restart (`console.rs`);
//! - `otlp-json`: OTLP/JSON lines, the Collector file exporter's encoding (`json.rs`);
//! - the mapping to OTLP messages is pure and shared (`convert.rs`).

pub mod console;
pub mod convert;
mod extra;
pub mod json;
mod kv;
pub mod otlp;
pub mod retry;
mod service;
pub mod task;

use std::io::Write;

use crate::record::Record;
use convert::MappingConfig;

/// Errors an exporter can report.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Writing to the output failed (closed pipe, full disk).
    #[error("cannot write records to {sink}: {source}")]
    Write {
        sink: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A record could not be encoded (a bug: the messages are built by us).
    #[error("cannot encode records as OTLP/JSON: {0}")]
    Encode(#[from] serde_json::Error),
    /// The OTLP client could not be set up (bad TLS material, bad header).
    #[error("cannot set up the OTLP exporter: {0}")]
    Setup(String),
    /// The collector rejected a batch with a non-retryable status; the batch is dropped.
    #[error("the collector at {endpoint} rejected the {signal} batch: {code}: {message}")]
    Rejected { signal: &'static str, endpoint: String, code: &'static str, message: String },
}

/// Which OTLP signals an exporter writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signals {
    pub logs: bool,
    pub traces: bool,
}

impl Default for Signals {
    fn default() -> Self {
        Signals { logs: true, traces: true }
    }
}

/// Where a text exporter writes (stdout in the binary, a buffer in tests).
pub type Output = Box<dyn Write + Send>;

/// An exporter of restart records.
pub enum Exporter {
    Console { out: Output },
    OtlpJson { out: Output, signals: Signals, mapping: MappingConfig },
    Otlp(Box<otlp::OtlpExporter>),
}

impl Exporter {
    /// Sets `k8s.cluster.uid` on the resource of every record it writes (console lines have none).
    pub(crate) fn set_cluster_uid(&mut self, uid: Option<String>) {
        match self {
            Exporter::Console { .. } => {}
            Exporter::OtlpJson { mapping, .. } => mapping.cluster_uid = uid,
            Exporter::Otlp(otlp) => otlp.set_cluster_uid(uid),
        }
    }

    /// A short name for logs and metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            Exporter::Console { .. } => "console",
            Exporter::OtlpJson { .. } => "otlp-json",
            Exporter::Otlp(_) => "otlp",
        }
    }

    /// Exports one batch. Text exporters write and flush the batch before returning, so what was
    /// exported is on the output even if the process stops next.
    pub async fn export(&mut self, batch: &[Record]) -> Result<(), ExportError> {
        if batch.is_empty() {
            return Ok(());
        }
        let sink = self.name();
        let write_err = |source| ExportError::Write { sink, source };
        match self {
            Exporter::Console { out } => {
                for ev in batch {
                    writeln!(out, "{}", console::line(ev)).map_err(write_err)?;
                }
                out.flush().map_err(write_err)
            }
            Exporter::OtlpJson { out, signals, mapping } => {
                if signals.logs {
                    let line = json::logs_line(&convert::logs_request(batch, mapping))?;
                    writeln!(out, "{line}").map_err(write_err)?;
                }
                if signals.traces {
                    let line = json::traces_line(&convert::traces_request(batch, mapping))?;
                    writeln!(out, "{line}").map_err(write_err)?;
                }
                out.flush().map_err(write_err)
            }
            Exporter::Otlp(otlp) => otlp.export(batch).await,
        }
    }
}
