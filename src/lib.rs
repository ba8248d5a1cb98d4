//! restart-watcher: every Kubernetes container failure as one OpenTelemetry record.
//!
//! ```text
//! run:    kube watcher (one per scope) -> pod::SlimPod -> watch_step::ScopeWatch (detector,
//!         relists, catch-up) -> [detected channel] -> enrich::run (causes from the kube events,
//!         owners, storm control, previous logs) -> [export channel] -> export::task (Batcher)
//!         -> export::Exporter (otlp | console | otlp-json)
//!         side watches: Events -> enrich::KubeEventStore; ReplicaSet/Job metadata -> OwnerIndex
//!         (node mode: enrich::lookups fills both for the failing pods alone)
//!         with --leader-elect: enrich::run -> leader::gate (leader: forward; standby: buffer)
//!         -> [export channel]
//!         the checkpointer writes the catch-up checkpoint while accounting::Delivery is settled
//! replay: recording -> recording::replay (probe decode; no relist step; the recording's kube
//!         events classify causes as enrich does; no owner watches, no storm control, no previous
//!         logs) -> detector::Detector -> [export channel] -> export::task -> export::Exporter
//! ```
//!
//! The module map, by floor: the data flows up, and no module imports from a floor above its own
//! (`tests/docs.rs` checks that this map names every module file).
//!
//! | floor | module | what it holds |
//! |---|---|---|
//! | 1 | [`pod`] (`pod/{mod,lenient,probe,revision}.rs`) | the slim Pod: only the fields the agent reads, decoded leniently; the probe of an update; the pod's key; its workload and revision |
//! | 1 | [`accounting`] | the delivery counts every stage updates: budgets, export progress, the queue's bytes, in-flight seconds, the watermark, the run report |
//! | 1 | [`keys`] | every attribute key and wire name |
//! | 1 | [`kube_errors`] | API errors turned into messages that say what to fix |
//! | 1 | [`churn`], [`memory`], [`cluster`] | maps that keep their size under churn; heap handed back; `k8s.cluster.uid` |
//! | 2 | [`record`] (`record/{mod,identity,kind,meaning,more}.rs`) | the record (restarts, start failures, failures, evictions), its deterministic ids, what signals and exit codes mean |
//! | 2 | [`checkpoint`] | the catch-up checkpoint (Lease or file) |
//! | 3 | [`rules`] (`rules/{mod,failures,causes,memory,cgroups,pending,pulls,rollouts,owners,text}.rs`) | every rule, pure: failure kinds, effective restart policies and start-failure episodes, causes, pods that never start, rollout regressions, the memory an OOM kill is read against, memory-cgroup OOM counters, image-pull failures, owner naming, text capping and redaction |
//! | 3 | [`leader`], [`workload_metrics`] | `--leader-elect` (pure election rules, the Lease loop, the gate); the per-workload series cap |
//! | 4 | [`detector`] (`detector/{mod,steps,episodes,pod_wide,pending,revisions,rollouts,found,tracked}.rs`) | detection, pure: a short loop over per-rule steps, pod-wide restarts and resizes, pods that never start, each revision's first failure and rollout regressions, the packed per-pod state |
//! | 4 | [`metrics`] | the agent's own metrics, defined once; imports no subsystem |
//! | 5 | [`watch_step`], [`recording`] | one scope's relists and catch-up (pure); recorded streams read through the detector |
//! | 5 | [`export`] (`export/{mod,convert,service,extra,kv,retry,task,console,json}.rs`, `export/otlp/{mod,config,http,self_metrics}.rs`) | the OTLP mapping (pure), the retry policy (pure), the exporters and the batching export task |
//! | 5 | [`admin`] | `/metrics`, `/livez`, `/readyz`, with its connections bounded |
//! | 6 | [`watch`] | the live kube-rs watch and its list strategies |
//! | 7 | [`pod_list`] | one-off lists of the scope's pods: the preflight, lists from the watch cache |
//! | 8 | [`node_oom`] | node mode's opt-in reading of the containers' memory-cgroup OOM counters |
//! | 7 | [`enrich`] (`enrich/{mod,kube_events,lookups,owners,nodes,storm,waiting_room,prevlogs}.rs`) | the stage between detection and export: kube events, owners, node mode's lookups of both, node uids, storm control, the waiting room, previous logs |
//! | 8 | [`config`] (`config/{mod,cli,settings,selectors,reference}.rs`) | the command line (clap alone), flags to the run's settings with every offline check once, the configuration reference |
//! | 9 | [`app`] (`app/{mod,connect,pipeline,shutdown}.rs`), [`logging`] | wiring: a live run's stages in order, its ordered shutdown; the agent's own logs |
//! | 10 | [`replay`] | replay's wiring: the reader, the channel, the export task, the signals |

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
pub(crate) mod kube_errors;
pub mod leader;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod node_oom;
pub mod pod;
pub mod pod_list;
pub mod record;
pub mod recording;
pub mod replay;
pub mod rules;
pub mod watch;
pub mod watch_step;
pub(crate) mod workload_metrics;
