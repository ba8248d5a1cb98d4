//! restart-watcher: every Kubernetes container restart as one OpenTelemetry event.
//!
//! ```text
//! run:    kube watcher (one per scope) -> pod::SlimPod -> watch_step::ScopeWatch (detector,
//!         relists, catch-up) -> [detected channel] -> enrich::run (causes from enrich::events,
//!         owners, storm control, previous logs) -> [export channel] -> export::task (Batcher)
//!         -> export::Exporter (otlp | console | otlp-json)
//!         side watches: Events -> enrich::KubeEventStore; ReplicaSet/Job metadata -> OwnerIndex
//!         with --leader-elect: enrich::run -> leader::gate (leader: forward; standby: buffer)
//!         -> [export channel]
//!         app::checkpointer writes the catch-up checkpoint while app::Delivery is all settled
//! replay: recording -> replay (probe decode; no relist step, no enrichment: causes from the
//!         status alone, no owner watches, no storm control, no previous logs)
//!         -> detector::Detector -> [export channel] -> export::task -> export::Exporter
//! ```
//!
//! Layout:
//! - [`pod`]: the slim Pod, decoding only the fields the agent uses;
//! - [`detector`]: pure restart detection (`docs/detection.md`);
//! - [`record`]: the record model (what the agent emits: restarts, start failures, failures, evictions), deterministic ids;
//! - [`enrich`]: the stage that classifies, names owners, coalesces storms and attaches previous
//!   logs, with what it reads: `enrich::events` (the Events watch and store), `enrich::causes`
//!   (every cause rule, pure), `enrich::owners` (every owner rule and the metadata watches),
//!   `enrich::storm` (pure) and `enrich::prevlogs`;
//! - [`metrics`], [`admin`]: the agent's own metrics, defined once, and `/metrics` `/livez` `/readyz`;
//! - [`keys`]: every attribute key and wire name, in one place;
//! - [`export`]: the OTLP mapping (pure), the exporters and the batching export task;
//! - [`replay`]: recorded watch streams through the detector;
//! - [`watch_step`]: one scope's relist and catch-up bookkeeping around the detector (pure);
//! - [`watch`]: the live kube-rs watch: pulls events through [`watch_step`], forwards restarts;
//! - [`checkpoint`]: the catch-up checkpoint (Lease or file);
//! - [`leader`]: `--leader-elect`: election on a Lease (pure rules, thin loop) and the gate that
//!   lets only the leader export while a standby keeps a bounded buffer;
//! - [`kube_errors`]: API errors turned into messages that say what to fix;
//! - [`app`]: wiring and ordered shutdown;
//! - [`config`]: the command line and environment (`config::cli`), selector syntax
//!   (`config::selectors`), every offline check and the conversion from flags to settings;
//! - [`logging`]: the agent's own logs;
//! - [`churn`]: maps whose keys come and go keep the size their contents need.

pub mod accounting;
pub mod admin;
pub mod app;
pub mod checkpoint;
pub mod churn;
pub mod cluster;
pub mod config;
pub mod detector;
pub mod enrich;
pub mod export;
pub mod keys;
pub mod kube_errors;
pub mod leader;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod pod;
pub mod record;
pub mod recording;
pub mod replay;
pub mod rules;
pub mod watch;
pub mod watch_step;
pub mod workload_metrics;
