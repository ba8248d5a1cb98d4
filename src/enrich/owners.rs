//! Workload owners beyond the pod's own ownerReferences: ReplicaSet -> Deployment and Job -> CronJob,
//! from a lightweight metadata-only watch (`metadata_watcher`: only `metadata` is sent and decoded)
//! of ReplicaSets and Jobs.
//!
//! Only the links that matter are kept: a ReplicaSet's or Job's uid -> its controlling Deployment's or
//! CronJob's name and uid (about 100 bytes each). Without RBAC for the watch (`list`, `watch` on
//! `replicasets.apps` and `jobs.batch`), the agent says so once and falls back to Kubernetes' own
//! naming rule for Deployments (ReplicaSet = `<deployment>-<pod-template-hash>`, name only); a
//! CronJob is then not named.
//!
//! The index is bounded in bytes (`OWNER_INDEX_BUDGET_BYTES`, about 100,000 links): past it, a new
//! link is not kept and counted (`BudgetUsage::shed`); the pods of that ReplicaSet get their
//! Deployment's name by the naming rule, without its uid, and a Job's pods no CronJob. Links leave
//! when their ReplicaSet or Job is deleted, which makes room again.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, PartialObjectMeta};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::accounting::BudgetUsage;
use crate::kube_errors::{Failure, classify};
use crate::record::{OwnerRef, Owners};
use crate::watch::{WatchTuning, tuned_watcher};

/// Which link a watch maintains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Link {
    /// ReplicaSet -> Deployment
    ReplicaSetToDeployment,
    /// Job -> CronJob
    JobToCronJob,
}

impl Link {
    fn owner_kind(self) -> &'static str {
        match self {
            Link::ReplicaSetToDeployment => "Deployment",
            Link::JobToCronJob => "CronJob",
        }
    }
}

/// The default budget of the owner index, in bytes.
pub const OWNER_INDEX_BUDGET_BYTES: usize = 16 * 1024 * 1024;

/// The ReplicaSet annotation that says which revision of its Deployment it is.
const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

/// A ReplicaSet's or Job's controlling owner, and (ReplicaSets) the Deployment revision it is.
#[derive(Clone, Debug)]
struct Linked {
    owner: OwnerRef,
    revision: Option<String>,
}

/// What one link occupies: both uids, the owner's name, the revision, and the map entry.
fn link_bytes(uid: &str, linked: &Linked) -> usize {
    uid.len()
        + linked.owner.name.len()
        + linked.owner.uid.as_ref().map_or(0, String::len)
        + linked.revision.as_ref().map_or(0, String::len)
        + std::mem::size_of::<(String, Linked)>()
        + std::mem::size_of::<u64>()
}

#[derive(Debug, Default)]
struct Links {
    map: HashMap<String, Linked>,
    bytes: usize,
}

impl Links {
    fn remove(&mut self, uid: &str) {
        if let Some(old) = self.map.remove(uid) {
            self.bytes -= link_bytes(uid, &old);
        }
    }
}

/// uid of a ReplicaSet or Job -> its controlling Deployment or CronJob.
#[derive(Debug)]
pub struct OwnerIndex {
    links: Mutex<Links>,
    budget: usize,
    usage: Arc<BudgetUsage>,
}

impl Default for OwnerIndex {
    fn default() -> Self {
        Self::with_budget(OWNER_INDEX_BUDGET_BYTES)
    }
}

impl OwnerIndex {
    pub(crate) fn with_budget(budget_bytes: usize) -> Self {
        let usage = Arc::new(BudgetUsage::default());
        usage.budget_bytes.store(budget_bytes as u64, Ordering::Relaxed);
        OwnerIndex { links: Mutex::default(), budget: budget_bytes, usage }
    }

    /// Its use against its budget, for the metrics.
    pub fn usage(&self) -> Arc<BudgetUsage> {
        self.usage.clone()
    }

    fn controller(meta: &ObjectMeta, kind: &str) -> Option<OwnerRef> {
        meta.owner_references
            .as_ref()?
            .iter()
            .find(|o| o.controller == Some(true) && o.kind == kind)
            .map(|o| OwnerRef { name: o.name.clone(), uid: Some(o.uid.clone()).filter(|u| !u.is_empty()) })
    }

    pub(crate) fn apply(&self, meta: &ObjectMeta, link: Link) {
        let Some(uid) = meta.uid.clone() else { return };
        let Ok(mut links) = self.links.lock() else { return };
        links.remove(&uid);
        if let Some(owner) = Self::controller(meta, link.owner_kind()) {
            let revision = (link == Link::ReplicaSetToDeployment)
                .then(|| meta.annotations.as_ref()?.get(REVISION_ANNOTATION).cloned())
                .flatten();
            let linked = Linked { owner, revision };
            let bytes = link_bytes(&uid, &linked);
            if links.bytes + bytes > self.budget {
                self.usage.shed.fetch_add(1, Ordering::Relaxed);
            } else {
                links.bytes += bytes;
                crate::churn::make_room(&mut links.map);
                links.map.insert(uid, linked);
            }
        }
        self.usage.bytes.store(links.bytes as u64, Ordering::Relaxed);
    }

    fn delete(&self, meta: &ObjectMeta) {
        if let Some(uid) = meta.uid.as_ref() {
            self.forget(uid);
        }
    }

    /// Forgets the link of the ReplicaSet or Job `uid` (it is gone).
    pub(crate) fn forget(&self, uid: &str) {
        if let Ok(mut links) = self.links.lock() {
            links.remove(uid);
            self.usage.bytes.store(links.bytes as u64, Ordering::Relaxed);
        }
    }

    pub fn len(&self) -> usize {
        self.links.lock().map(|l| l.map.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Completes `owners` from the index: the Deployment of its ReplicaSet (and the revision the
    /// ReplicaSet is), the CronJob of its Job.
    pub fn complete(&self, owners: &mut Owners) {
        let Ok(links) = self.links.lock() else { return };
        let lookup =
            |r: &Option<OwnerRef>| r.as_ref().and_then(|r| r.uid.as_ref()).and_then(|uid| links.map.get(uid)).cloned();
        if let Some(dep) = lookup(&owners.replicaset) {
            owners.deployment = Some(dep.owner);
            owners.revision = dep.revision;
        }
        if let Some(cj) = lookup(&owners.job) {
            owners.cronjob = Some(cj.owner);
        }
    }
}

/// Checks access for both watches; `false` after saying so once.
pub(crate) async fn allowed(client: &Client) -> bool {
    let rs: Api<ReplicaSet> = Api::all(client.clone());
    let jobs: Api<Job> = Api::all(client.clone());
    let lp = ListParams::default().limit(1);
    let first_error = match rs.list_metadata(&lp).await {
        Err(e) => Some(e),
        Ok(_) => jobs.list_metadata(&lp).await.err(),
    };
    let Some(e) = first_error else { return true };
    if classify(&e) == Failure::Forbidden {
        tracing::warn!(
            "No RBAC access to replicasets.apps or jobs.batch (403 Forbidden): grant verbs [list,watch] on them to name \
             Deployments (with their uid) and CronJobs; naming Deployments by the ReplicaSet naming rule instead."
        );
    } else {
        tracing::warn!(error = %e, "Cannot list ReplicaSets or Jobs; naming Deployments by the ReplicaSet naming rule instead.");
    }
    false
}

/// Runs the metadata watches of ReplicaSets and Jobs into `index` until `stop`.
pub async fn watch(client: Client, index: Arc<OwnerIndex>, tuning: WatchTuning, stop: CancellationToken) {
    let rs = watch_one(
        Api::<PartialObjectMeta<ReplicaSet>>::all(client.clone()),
        Link::ReplicaSetToDeployment,
        index.clone(),
        tuning,
        stop.clone(),
    );
    let jobs = watch_one(Api::<PartialObjectMeta<Job>>::all(client), Link::JobToCronJob, index, tuning, stop);
    tokio::join!(rs, jobs);
}

/// `Api<PartialObjectMeta<K>>` makes metadata-only requests: only `metadata` is sent and decoded.
async fn watch_one<K>(
    api: Api<PartialObjectMeta<K>>,
    link: Link,
    index: Arc<OwnerIndex>,
    tuning: WatchTuning,
    stop: CancellationToken,
) where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    let stream = tuned_watcher(api, watcher::Config::default(), tuning, true, format!("{link:?} metadata"))
        .take_until(stop.cancelled_owned());
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(Event::Apply(o)) | Ok(Event::InitApply(o)) => index.apply(&o.metadata, link),
            Ok(Event::Delete(o)) => index.delete(&o.metadata),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, ?link, "Owner watch error; retrying with backoff."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn replicaset(i: u32) -> ObjectMeta {
        ObjectMeta {
            uid: Some(format!("00000000-0000-0000-0000-{i:012}")),
            annotations: Some([("deployment.kubernetes.io/revision".to_owned(), "3".to_owned())].into()),
            owner_references: Some(vec![OwnerReference {
                kind: "Deployment".into(),
                name: format!("deploy-{i}"),
                uid: format!("11111111-0000-0000-0000-{i:012}"),
                controller: Some(true),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    fn owners_of(i: u32) -> Owners {
        let rs = replicaset(i);
        Owners { replicaset: Some(OwnerRef { name: format!("deploy-{i}-abc"), uid: rs.uid }), ..Default::default() }
    }

    #[test]
    fn past_its_byte_budget_the_index_keeps_no_new_link_counts_it_and_makes_room_on_delete() {
        let budget = 16 * 1024;
        let index = OwnerIndex::with_budget(budget);
        let usage = index.usage();
        for i in 0..1_000 {
            index.apply(&replicaset(i), Link::ReplicaSetToDeployment);
            assert!(usage.bytes.load(Ordering::Relaxed) as usize <= budget);
        }
        let kept = index.len();
        assert!(kept > 10 && kept < 1_000, "{kept}");
        assert_eq!(usage.shed.load(Ordering::Relaxed), 1_000 - kept as u64);
        // A kept link names the Deployment with its uid; a shed one leaves the naming rule's work.
        let mut first = owners_of(0);
        index.complete(&mut first);
        assert_eq!(first.revision.as_deref(), Some("3"), "the ReplicaSet's Deployment revision");
        assert_eq!(first.deployment.unwrap().uid.as_deref(), Some("11111111-0000-0000-0000-000000000000"));
        let mut last = owners_of(999);
        index.complete(&mut last);
        assert_eq!(last.deployment, None);
        // Re-applying a kept link does not count it twice; deleting makes room for a new one.
        let before = usage.bytes.load(Ordering::Relaxed);
        index.apply(&replicaset(0), Link::ReplicaSetToDeployment);
        assert_eq!(usage.bytes.load(Ordering::Relaxed), before);
        index.delete(&replicaset(0));
        assert!(usage.bytes.load(Ordering::Relaxed) < before);
        index.apply(&replicaset(999), Link::ReplicaSetToDeployment);
        let mut last = owners_of(999);
        index.complete(&mut last);
        assert_eq!(last.deployment.map(|d| d.name), Some("deploy-999".to_owned()));
        assert!(usage.bytes.load(Ordering::Relaxed) as usize <= budget);
    }
}
