//! A pod's workload and revision as the rollout rule reads them when the pod is first seen:
//! borrowed from its raw labels and ownerReferences, nothing allocated but the list of references.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// The workload a pod's controller belongs to and the revision (template hash) the pod runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRevision<'a> {
    /// `Deployment` (a ReplicaSet named `<deployment>-<pod-template-hash>`), `ReplicaSet`,
    /// `StatefulSet` or `DaemonSet`.
    pub kind: &'static str,
    pub workload: Cow<'a, str>,
    /// `pod-template-hash` (ReplicaSets), `controller-revision-hash` (StatefulSets, DaemonSets).
    pub hash: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Owner<'a> {
    #[serde(default, borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    name: Cow<'a, str>,
    #[serde(default)]
    controller: Option<bool>,
}

#[derive(Default, Deserialize)]
struct HashLabels<'a> {
    #[serde(default, borrow, rename = "pod-template-hash")]
    pod_template: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "controller-revision-hash")]
    controller_revision: Option<Cow<'a, str>>,
}

/// The revision of a pod with these raw `labels` and `ownerReferences`: `None` for a pod without a
/// controller that has revisions, or without its hash label (malformed input reads as none).
pub fn revision<'a>(labels: Option<&'a RawValue>, owners: Option<&'a RawValue>) -> Option<PodRevision<'a>> {
    let owners: Vec<Owner<'a>> = serde_json::from_str(owners?.get()).ok()?;
    let controller = owners.into_iter().find(|o| o.controller == Some(true))?;
    let labels: HashLabels<'a> = labels.and_then(|l| serde_json::from_str(l.get()).ok()).unwrap_or_default();
    let (kind, hash) = match controller.kind.as_ref() {
        "ReplicaSet" => ("ReplicaSet", labels.pod_template?),
        "StatefulSet" => ("StatefulSet", labels.controller_revision?),
        "DaemonSet" => ("DaemonSet", labels.controller_revision?),
        _ => return None,
    };
    let deployment = (kind == "ReplicaSet")
        .then(|| controller.name.strip_suffix(hash.as_ref())?.strip_suffix('-').filter(|d| !d.is_empty()))
        .flatten()
        .map(str::to_owned);
    match deployment {
        Some(d) => Some(PodRevision { kind: "Deployment", workload: Cow::Owned(d), hash }),
        None => Some(PodRevision { kind, workload: controller.name, hash }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn the_workload_and_revision_of_each_controller_table() {
        let rs = r#"[{"kind": "ReplicaSet", "name": "web-7d9f8", "controller": true}]"#;
        let sts = r#"[{"kind": "StatefulSet", "name": "db", "controller": true}]"#;
        let ds = r#"[{"kind": "DaemonSet", "name": "agent", "controller": true}]"#;
        let job = r#"[{"kind": "Job", "name": "report", "controller": true}]"#;
        let not_controller = r#"[{"kind": "ReplicaSet", "name": "web-7d9f8"}]"#;
        let pth = r#"{"app": "web", "pod-template-hash": "7d9f8"}"#;
        let crh = r#"{"controller-revision-hash": "db-5c7d6b"}"#;
        type Want = Option<(&'static str, &'static str, &'static str)>;
        let cases: [(&str, &str, Want); 8] = [
            (rs, pth, Some(("Deployment", "web", "7d9f8"))),
            (
                r#"[{"kind": "ReplicaSet", "name": "bare", "controller": true}]"#,
                pth,
                Some(("ReplicaSet", "bare", "7d9f8")),
            ),
            (sts, crh, Some(("StatefulSet", "db", "db-5c7d6b"))),
            (ds, crh, Some(("DaemonSet", "agent", "db-5c7d6b"))),
            (rs, crh, None),
            (job, pth, None),
            (not_controller, pth, None),
            (rs, "17", None),
        ];
        for (owners, labels, want) in cases {
            let (owners, labels) = (raw(owners), raw(labels));
            let got = revision(Some(&labels), Some(&owners));
            let got = got.as_ref().map(|r| (r.kind, r.workload.as_ref(), r.hash.as_ref()));
            assert_eq!(got, want, "{owners} {labels}");
        }
    }
}
