//! `k8s.node.uid`, the node entity's identifying attribute: node name -> uid, from a metadata-only
//! watch of Nodes (only `metadata` is sent and decoded). In node mode the watch selects the
//! agent's own Node (`metadata.name`), so each agent holds one entry; in cluster mode it holds the
//! cluster's nodes, which are few (about 130 bytes each: 5,000 nodes are 650 KB).
//!
//! The index is bounded in bytes (`NODE_INDEX_BUDGET_BYTES`, about 8,000 nodes): past it, a new
//! node is not kept and counted (`BudgetUsage::shed`), and its pods' records go without
//! `k8s.node.uid`. Without RBAC (`list`, `watch` on `nodes`), the agent says so once and records
//! carry `k8s.node.name` alone.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, PartialObjectMeta};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::accounting::BudgetUsage;
use crate::kube_errors::{Failure, classify};
use crate::watch::{WatchTuning, tuned_watcher};

/// The default budget of the node index, in bytes.
pub const NODE_INDEX_BUDGET_BYTES: usize = 1024 * 1024;

/// What one node occupies: its name, its uid, and the map entry.
fn entry_bytes(name: &str, uid: &str) -> usize {
    name.len() + uid.len() + std::mem::size_of::<(String, String)>() + std::mem::size_of::<u64>()
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<String, String>,
    bytes: usize,
}

/// Node name -> uid.
#[derive(Debug)]
pub struct NodeIndex {
    entries: Mutex<Entries>,
    budget: usize,
    usage: Arc<BudgetUsage>,
}

impl Default for NodeIndex {
    fn default() -> Self {
        Self::with_budget(NODE_INDEX_BUDGET_BYTES)
    }
}

impl NodeIndex {
    pub(crate) fn with_budget(budget_bytes: usize) -> Self {
        let usage = Arc::new(BudgetUsage::default());
        usage.budget_bytes.store(budget_bytes as u64, Ordering::Relaxed);
        NodeIndex { entries: Mutex::default(), budget: budget_bytes, usage }
    }

    /// Its use against its budget, for the metrics.
    pub fn usage(&self) -> Arc<BudgetUsage> {
        self.usage.clone()
    }

    fn apply(&self, meta: &ObjectMeta) {
        let (Some(name), Some(uid)) = (meta.name.as_ref(), meta.uid.as_ref()) else { return };
        let Ok(mut entries) = self.entries.lock() else { return };
        if let Some(old) = entries.map.remove(name) {
            entries.bytes -= entry_bytes(name, &old);
        }
        let bytes = entry_bytes(name, uid);
        if entries.bytes + bytes > self.budget {
            self.usage.shed.fetch_add(1, Ordering::Relaxed);
        } else {
            entries.bytes += bytes;
            crate::churn::make_room(&mut entries.map);
            entries.map.insert(name.clone(), uid.clone());
        }
        self.usage.bytes.store(entries.bytes as u64, Ordering::Relaxed);
    }

    fn delete(&self, meta: &ObjectMeta) {
        let (Some(name), Ok(mut entries)) = (meta.name.as_ref(), self.entries.lock()) else { return };
        if let Some(old) = entries.map.remove(name) {
            entries.bytes -= entry_bytes(name, &old);
        }
        self.usage.bytes.store(entries.bytes as u64, Ordering::Relaxed);
    }

    /// The uid of node `name`, when known.
    pub fn uid(&self, name: &str) -> Option<String> {
        self.entries.lock().ok()?.map.get(name).cloned()
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.map.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The Nodes the index follows: the agent's own in node mode, else all.
fn selected(node: Option<&str>) -> watcher::Config {
    match node {
        Some(name) => watcher::Config::default().fields(&format!("metadata.name={name}")),
        None => watcher::Config::default(),
    }
}

/// Checks access to the watch with a one-object list, whose object goes into `index` (in node
/// mode, the agent's own Node: its uid is known before any pod is read); `false` after saying so
/// once.
pub(crate) async fn allowed(client: &Client, node: Option<&str>, index: &NodeIndex) -> bool {
    let api: Api<Node> = Api::all(client.clone());
    let mut lp = ListParams::default().limit(1);
    if let Some(name) = node {
        lp = lp.fields(&format!("metadata.name={name}"));
    }
    let e = match api.list_metadata(&lp).await {
        Ok(list) => {
            for n in &list.items {
                index.apply(&n.metadata);
            }
            return true;
        }
        Err(e) => e,
    };
    if classify(&e) == Failure::Forbidden {
        tracing::warn!(
            "No RBAC access to nodes (403 Forbidden): grant verbs [list,watch] on them for k8s.node.uid; records carry k8s.node.name alone."
        );
    } else {
        tracing::warn!(error = %e, "Cannot list Nodes; records carry k8s.node.name alone.");
    }
    false
}

/// Runs the metadata watch of Nodes (this agent's own in node mode) into `index` until `stop`.
pub async fn watch(
    client: Client,
    index: Arc<NodeIndex>,
    node: Option<String>,
    tuning: WatchTuning,
    stop: CancellationToken,
) {
    let api = Api::<PartialObjectMeta<Node>>::all(client);
    let stream = tuned_watcher(api, selected(node.as_deref()), tuning, true, "Node metadata".to_owned())
        .take_until(stop.cancelled_owned());
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(Event::Apply(o)) | Ok(Event::InitApply(o)) => index.apply(&o.metadata),
            Ok(Event::Delete(o)) => index.delete(&o.metadata),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "Node watch error; retrying with backoff."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(i: u32) -> ObjectMeta {
        ObjectMeta {
            name: Some(format!("node-{i:05}")),
            uid: Some(format!("00000000-0000-0000-0000-{i:012}")),
            ..Default::default()
        }
    }

    #[test]
    fn past_its_byte_budget_the_index_keeps_no_new_node_counts_it_and_makes_room_on_delete() {
        let budget = 16 * 1024;
        let index = NodeIndex::with_budget(budget);
        let usage = index.usage();
        for i in 0..1_000 {
            index.apply(&node(i));
            assert!(usage.bytes.load(Ordering::Relaxed) as usize <= budget);
        }
        let kept = index.len();
        assert!(kept > 10 && kept < 1_000, "{kept}");
        assert_eq!(usage.shed.load(Ordering::Relaxed), 1_000 - kept as u64);
        assert_eq!(index.uid("node-00000").as_deref(), Some("00000000-0000-0000-0000-000000000000"));
        assert_eq!(index.uid("node-00999"), None);
        let before = usage.bytes.load(Ordering::Relaxed);
        index.apply(&node(0));
        assert_eq!(usage.bytes.load(Ordering::Relaxed), before, "a node seen again counts once");
        index.delete(&node(0));
        index.apply(&node(999));
        assert!(index.uid("node-00999").is_some());
        // What one entry costs: the documented 130 bytes, for names of cluster size.
        assert!(entry_bytes("ip-10-0-12-34.eu-west-1.compute.internal", "1eb3a0c6-0477-4080-a9cb-0cb7db65c6a2") <= 140);
    }
}
