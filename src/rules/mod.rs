//! The rules, pure: plain functions on plain data, each with its table of cases.
//!
//! - [`failures`]: start failures and their episodes, failures that restart nothing, evictions, and
//!   which updates may show one;
//! - [`causes`]: the cause of a restart, from its status and the kubelet's Events;
//! - [`owners`]: the workload a pod belongs to, from its ownerReferences;
//! - [`memory`]: the memory a container had (limit, request, QoS class), from Kubernetes quantities;
//! - [`cgroups`]: a node's container memory cgroups, their OOM-kill counters, and when a rise is an
//!   OOM kill that restarted nothing;
//! - [`pending`]: whether a pod has yet to start, and why, from its status and the Events;
//! - [`rollouts`]: when a new revision's failures after its rollout make a regression;
//! - [`pulls`]: why an image cannot be pulled, and from which registry;
//! - [`text`]: text capped and redacted before it goes into a record.

pub(crate) mod causes;
pub mod cgroups;
pub mod failures;
pub(crate) mod memory;
pub mod owners;
pub mod pending;
pub mod pulls;
pub mod rollouts;
pub mod text;
