//! The first failure of each revision of a workload (`restart_watcher.revision.first_failure`):
//! the revisions that have failed already, by a 64-bit hash of (namespace, workload, template
//! hash), oldest out first past their byte budget, shared by the detectors of every scope. Live
//! and replay compute the same, from the pods' own labels.

use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::accounting::BudgetUsage;
use crate::record::Record;

/// The default budget of the revisions remembered, in bytes (about 43,000 revisions).
pub const REVISIONS_BUDGET_BYTES: usize = 1024 * 1024;
/// What one remembered revision costs: its hash in the set and in the queue, with their overhead.
pub const REVISION_ENTRY_BYTES: usize = 24;

/// The revisions that have failed.
#[derive(Debug, Default)]
pub(super) struct Revisions {
    seen: HashSet<u64>,
    order: VecDeque<u64>,
    pub usage: Arc<BudgetUsage>,
}

impl Revisions {
    pub fn sharing(usage: Arc<BudgetUsage>) -> Self {
        Revisions { usage, ..Revisions::default() }
    }

    fn budget(&self) -> usize {
        self.usage.budget_or(REVISIONS_BUDGET_BYTES)
    }

    /// Marks `ev` as its revision's first failure when it is one: a failure
    /// ([`crate::record::RecordKind::is_failure`]) of a pod whose template hash is known, whose revision has not
    /// failed before.
    pub fn mark(&mut self, ev: &mut Record) {
        let Some(hash) = ev.pod.owners.revision_hash.as_deref().filter(|_| ev.kind.is_failure()) else { return };
        let workload = crate::rules::owners::workload(&ev.pod.owners).map_or("", |w| w.name.as_str());
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (ev.pod.namespace.as_str(), workload, hash).hash(&mut h);
        let key = h.finish();
        if !self.seen.insert(key) {
            return;
        }
        ev.first_of_revision = true;
        self.order.push_back(key);
        let before = self.order.len().saturating_sub(1) * REVISION_ENTRY_BYTES;
        while self.order.len() * REVISION_ENTRY_BYTES > self.budget() {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
                self.usage.shed.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.usage.resize(before, self.order.len() * REVISION_ENTRY_BYTES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure_of(i: u32) -> Record {
        let mut ev = Record::sample("shop", &format!("web-{i}"), "web", crate::record::Cause::AppError);
        ev.pod.owners.revision_hash = Some(format!("hash-{i}"));
        ev
    }

    #[test]
    fn past_their_budget_the_oldest_revisions_are_forgotten_and_counted() {
        let usage = Arc::new(BudgetUsage::default());
        usage.budget_bytes.store((10 * REVISION_ENTRY_BYTES) as u64, Ordering::Relaxed);
        let mut revisions = Revisions::sharing(usage.clone());
        for i in 0..25 {
            let mut ev = failure_of(i);
            revisions.mark(&mut ev);
            assert!(ev.first_of_revision);
            assert!(usage.bytes.load(Ordering::Relaxed) as usize <= 10 * REVISION_ENTRY_BYTES);
        }
        assert_eq!(usage.shed.load(Ordering::Relaxed), 15);
        let mut recent = failure_of(24);
        revisions.mark(&mut recent);
        assert!(!recent.first_of_revision, "a remembered revision");
        let mut forgotten = failure_of(0);
        revisions.mark(&mut forgotten);
        assert!(forgotten.first_of_revision, "the oldest was forgotten: marked first again");
    }
}
