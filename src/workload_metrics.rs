//! Opt-in per-workload counters for Prometheus users (`--workload-metrics`):
//! `restart_watcher_container_restarts_total{namespace, workload_kind, workload, revision, container, cause}`
//! and, for the records that are not restarts,
//! `restart_watcher_container_failures_total{namespace, workload_kind, workload, revision, container, event, cause}`
//! (`revision`: the pod's template hash, `none` without one: each rollout makes new series);
//! and restarts by node, `restart_watcher_node_restarts_total{node, cause}`.
//!
//! Their labels come from the cluster, so their series are capped (`SeriesCap`, pure): past the
//! cap, a new series is counted under `other` for namespace, workload kind, workload and container
//! (cause and event stay: they are bounded), and the agent says so once. The cap stays under the
//! OpenTelemetry SDK's own limit of 2,000 series per instrument, so its overflow series never shows.

use std::collections::HashSet;

use crate::record::{OwnerRef, Owners, Record, RecordKind};

/// The default cap on the series of the two counters together.
pub(crate) const DEFAULT_MAX_SERIES: usize = 1000;
/// The largest cap: the SDK's 2,000 series per instrument, less room for the `other` series (one
/// per cause and event).
pub(crate) const MAX_MAX_SERIES: usize = 1900;
/// The label value past the cap.
pub(crate) const OTHER: &str = "other";

/// A series' labels (besides `cause` and `event`, which are bounded).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct WorkloadLabels {
    pub namespace: String,
    /// `Deployment`, `StatefulSet`, `DaemonSet`, `CronJob`, `Job`, `ReplicaSet`, or `Pod` for a
    /// pod without a controller.
    pub workload_kind: &'static str,
    pub workload: String,
    /// The pod's template hash (`pod-template-hash`, `controller-revision-hash`), else `none`.
    pub revision: String,
    pub container: String,
}

impl WorkloadLabels {
    /// The workload of a record: its most specific known controller, else the pod itself.
    pub fn of(ev: &Record) -> Self {
        let (workload_kind, workload) = match workload(&ev.pod.owners) {
            Some((kind, r)) => (kind, r.name.clone()),
            None => ("Pod", ev.pod.name.clone()),
        };
        WorkloadLabels {
            namespace: ev.pod.namespace.clone(),
            workload_kind,
            workload,
            revision: ev
                .pod
                .owners
                .revision_hash
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "none".to_owned()),
            container: ev.container.name.clone(),
        }
    }

    fn other() -> Self {
        WorkloadLabels {
            namespace: OTHER.to_owned(),
            workload_kind: OTHER,
            workload: OTHER.to_owned(),
            revision: OTHER.to_owned(),
            container: OTHER.to_owned(),
        }
    }
}

/// The workload that names a pod's restarts, with its kind: the same order as storm control's.
fn workload(o: &Owners) -> Option<(&'static str, &OwnerRef)> {
    [
        ("Deployment", &o.deployment),
        ("ReplicaSet", &o.replicaset),
        ("StatefulSet", &o.statefulset),
        ("DaemonSet", &o.daemonset),
        ("CronJob", &o.cronjob),
        ("Job", &o.job),
    ]
    .into_iter()
    .find_map(|(kind, r)| r.as_ref().map(|r| (kind, r)))
}

/// The series admitted so far, up to a cap.
#[derive(Debug)]
pub(crate) struct SeriesCap {
    max: usize,
    seen: HashSet<(WorkloadLabels, RecordKind, crate::record::Cause)>,
    overflowed: bool,
    /// The node counter's series, under the same cap of their own.
    nodes: HashSet<(String, crate::record::Cause)>,
}

/// What [`SeriesCap::admit`] decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Admitted {
    pub labels: WorkloadLabels,
    /// This is the first series past the cap (say so, once).
    pub first_overflow: bool,
}

impl SeriesCap {
    pub fn new(max: usize) -> Self {
        SeriesCap { max: max.clamp(1, MAX_MAX_SERIES), seen: HashSet::new(), overflowed: false, nodes: HashSet::new() }
    }

    /// The labels to count `ev` under: its own while the series fit under the cap (or the series
    /// exists already), else `other`.
    pub(crate) fn admit(&mut self, ev: &Record) -> Admitted {
        let labels = WorkloadLabels::of(ev);
        let key = (labels, ev.kind, ev.cause);
        if self.seen.contains(&key) {
            return Admitted { labels: key.0, first_overflow: false };
        }
        if self.seen.len() < self.max {
            let labels = key.0.clone();
            self.seen.insert(key);
            return Admitted { labels, first_overflow: false };
        }
        let first_overflow = !self.overflowed;
        self.overflowed = true;
        Admitted { labels: WorkloadLabels::other(), first_overflow }
    }

    /// The `node` label to count `ev` under: its node (`none` before it is scheduled) while the node
    /// series fit under the cap (or exist already), else `other`.
    pub(crate) fn admit_node(&mut self, ev: &Record) -> String {
        let node = ev.pod.node_name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "none".to_owned());
        let key = (node, ev.cause);
        if self.nodes.contains(&key) || self.nodes.len() < self.max {
            let node = key.0.clone();
            self.nodes.insert(key);
            return node;
        }
        OTHER.to_owned()
    }

    /// Series admitted under their own labels.
    pub fn series(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Cause;

    fn ev(ns: &str, pod: &str, deployment: Option<&str>, cause: Cause) -> Record {
        let mut ev = Record::sample(ns, pod, "app", cause);
        ev.pod.owners.deployment = deployment.map(|d| OwnerRef { name: d.into(), uid: None });
        ev
    }

    #[test]
    fn workloads_are_named_by_their_controller_else_the_pod() {
        let l = WorkloadLabels::of(&ev("shop", "api-7d9f8-x2", Some("api"), Cause::AppError));
        assert_eq!((l.workload_kind, l.workload.as_str(), l.container.as_str()), ("Deployment", "api", "app"));
        let l = WorkloadLabels::of(&ev("shop", "debug", None, Cause::AppError));
        assert_eq!((l.workload_kind, l.workload.as_str(), l.revision.as_str()), ("Pod", "debug", "none"));
        let mut rolled = ev("shop", "api-5c8d-x1", Some("api"), Cause::AppError);
        rolled.pod.owners.revision_hash = Some("5c8d".into());
        assert_eq!(WorkloadLabels::of(&rolled).revision, "5c8d", "each revision its own series");
    }

    #[test]
    fn past_the_cap_new_series_count_as_other_and_it_is_said_once() {
        let mut cap = SeriesCap::new(2);
        let a = cap.admit(&ev("shop", "api-1", Some("api"), Cause::AppError));
        assert_eq!((a.labels.workload.as_str(), a.first_overflow), ("api", false));
        // another pod of the same workload: the same series
        assert_eq!(cap.admit(&ev("shop", "api-2", Some("api"), Cause::AppError)).labels.workload, "api");
        // another cause: a second series
        assert_eq!(cap.admit(&ev("shop", "api-2", Some("api"), Cause::OomKilled)).labels.workload, "api");
        // a third: past the cap
        let o = cap.admit(&ev("shop", "web-1", Some("web"), Cause::AppError));
        assert_eq!((o.labels, o.first_overflow), (WorkloadLabels::other(), true));
        let o = cap.admit(&ev("other-ns", "db-1", Some("db"), Cause::AppError));
        assert_eq!((o.labels.namespace.as_str(), o.first_overflow), (OTHER, false), "said once");
        // series admitted before stay theirs
        assert_eq!(cap.admit(&ev("shop", "api-3", Some("api"), Cause::AppError)).labels.workload, "api");
        assert_eq!(cap.series(), 2);
        assert_eq!(SeriesCap::new(1_000_000).max, MAX_MAX_SERIES, "never above the SDK's own limit");
    }

    #[test]
    fn nodes_past_the_cap_count_as_other() {
        let mut cap = SeriesCap::new(1);
        let on = |node: &str| {
            let mut e = ev("shop", "api-1", Some("api"), Cause::AppError);
            e.pod.node_name = Some(node.into());
            e
        };
        assert_eq!(cap.admit_node(&on("node-a")), "node-a");
        assert_eq!(cap.admit_node(&on("node-a")), "node-a");
        assert_eq!(cap.admit_node(&on("node-b")), OTHER);
        assert_eq!(cap.admit_node(&ev("shop", "api-2", None, Cause::AppError)), OTHER, "unscheduled, past the cap");
    }
}
