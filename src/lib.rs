//! restart-watcher: every Kubernetes container restart as one OpenTelemetry event.
//!
//! ```text
//! pods (watch or recording) -> pod::SlimPod -> detector::Detector -> event::RestartEvent
//!     -> bounded channel -> export::task -> export::Exporter (console | otlp-json | ...)
//! ```
//!
//! Layout:
//! - [`pod`]: the slim Pod, decoding only the fields the agent uses;
//! - [`detector`]: pure restart detection (`docs/detection.md`);
//! - [`event`]: the restart event model, cause classification, deterministic ids;
//! - [`keys`]: every attribute key and wire name, in one place;
//! - [`export`]: the OTLP mapping (pure), the exporters and the batching export task;
//! - [`replay`]: recorded watch streams through the detector;
//! - [`app`]: wiring and ordered shutdown;
//! - [`cli`]: command-line and environment configuration.

pub mod app;
pub mod cli;
pub mod detector;
pub mod event;
pub mod export;
pub mod keys;
pub mod pod;
pub mod replay;
