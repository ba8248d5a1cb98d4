//! Owner naming, pure: the workload chain a pod's ownerReferences give (a ReplicaSet's
//! Deployment by Kubernetes' own naming rule), and the one workload a record belongs to. The
//! metadata watches that name Deployments and CronJobs with their uids are `enrich::owners`.

use crate::pod::SlimPod;
use crate::record::{OwnerRef, Owners};

/// The workload chain from ownerReferences. The Deployment of a ReplicaSet follows the name rule
/// Kubernetes itself applies: the ReplicaSet is named `<deployment>-<pod-template-hash>`, and the pod
/// carries that hash as its `pod-template-hash` label. (A metadata watch of ReplicaSets would also
/// give the Deployment's uid; the name rule gives the name only.)
pub(crate) fn from_pod(pod: &SlimPod, labels: &std::collections::BTreeMap<String, String>) -> Owners {
    let mut owners = Owners::default();
    let refs = pod.owner_references();
    owners.revision_hash = match refs.iter().find(|o| o.controller == Some(true)).map(|o| o.kind.as_str()) {
        Some("ReplicaSet") => labels.get("pod-template-hash").cloned(),
        Some("StatefulSet" | "DaemonSet") => labels.get("controller-revision-hash").cloned(),
        _ => None,
    };
    let controller = refs.iter().find(|o| o.controller == Some(true)).or_else(|| refs.first());
    let Some(o) = controller else {
        return owners;
    };
    let owner = OwnerRef { name: o.name.clone(), uid: Some(o.uid.clone()).filter(|u| !u.is_empty()) };
    match o.kind.as_str() {
        "ReplicaSet" => {
            let hash = labels.get("pod-template-hash");
            let deployment = hash
                .and_then(|hash| o.name.strip_suffix(hash.as_str()))
                .and_then(|d| d.strip_suffix('-'))
                .filter(|d| !d.is_empty());
            if let Some(dep) = deployment {
                owners.deployment = Some(OwnerRef { name: dep.to_owned(), uid: None });
            }
            owners.replicaset = Some(owner);
        }
        "StatefulSet" => owners.statefulset = Some(owner),
        "DaemonSet" => owners.daemonset = Some(owner),
        "Job" => owners.job = Some(owner),
        _ => {}
    }
    owners
}

/// The workload a record belongs to: its most specific named controller, in one order for every
/// use (`service.name`, storm control): Deployment before its ReplicaSet, CronJob before its Job.
/// A pod has one controller chain, so the order among chains never matters.
pub fn workload(o: &Owners) -> Option<&OwnerRef> {
    [&o.deployment, &o.replicaset, &o.statefulset, &o.daemonset, &o.cronjob, &o.job].into_iter().flatten().next()
}
