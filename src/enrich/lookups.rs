//! Node mode's lookups: instead of cluster-wide Events and ReplicaSet/Job watches, each agent asks
//! only for what its own node's failures need, when they need it:
//!
//! - the Events of one pod that failed with its cause open (or that never started): a list of the
//!   pod's namespace narrowed by `involvedObject.uid`, served from the API server's watch cache
//!   (`resourceVersion=0`), once when the record comes and once more before its wait for a late
//!   Event ends; the Events go into the same store a watch feeds, so the cause rules are unchanged;
//! - the metadata of a failing pod's ReplicaSet or Job, by name (`GET`, from the watch cache), into
//!   the owner index; looked up again after [`OWNER_TTL`], forgotten when it is gone (404).
//!
//! A token bucket bounds them all ([`DEFAULT_LOOKUPS_PER_SECOND`], [`DEFAULT_LOOKUP_BURST`]): past
//! it, a cause comes from the status alone and an owner from the naming rule, each counted
//! (`restart_watcher_api_lookups_limited_total{kind}`). Every request is counted by kind
//! (`restart_watcher_api_requests_total{kind}`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{GetParams, ListParams, PartialObjectMeta};
use kube::{Api, Client};

use super::KubeEventStore;
use super::kube_events::SlimKubeEvent;
use super::owners::{Link, OwnerIndex};
use crate::kube_errors::{Failure, classify};
use crate::record::Owners;

/// Lookups per second, on average, at most.
pub const DEFAULT_LOOKUPS_PER_SECOND: u32 = 5;
/// Lookups at once, at most, after a quiet time.
pub const DEFAULT_LOOKUP_BURST: u32 = 20;
/// How long an owner looked up is not looked up again.
pub const OWNER_TTL: Duration = Duration::from_secs(600);
/// The longest a lookup may take; the record then goes on with what is known.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Owners remembered as looked up, at most (past it, those looked up longest ago are forgotten).
const MAX_OWNERS_LOOKED_UP: usize = 4096;

/// A token bucket, pure: `rate` tokens a second up to `burst`.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket { rate: f64::from(rate), burst, tokens: burst, last: None }
    }

    /// Takes a token at `now` if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + refill).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What the lookups fill, how fast they may go, and what they remember.
pub struct Lookups {
    client: Client,
    bucket: Mutex<TokenBucket>,
    store: Option<Arc<KubeEventStore>>,
    owners: Option<Arc<OwnerIndex>>,
    looked_up: Mutex<HashMap<String, Instant>>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    events_denied: AtomicBool,
    owners_denied: AtomicBool,
}

impl Lookups {
    pub fn new(
        client: Client,
        (rate, burst): (u32, u32),
        store: Option<Arc<KubeEventStore>>,
        owners: Option<Arc<OwnerIndex>>,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> Self {
        Lookups {
            client,
            bucket: Mutex::new(TokenBucket::new(rate, burst)),
            store,
            owners,
            looked_up: Mutex::default(),
            metrics,
            events_denied: AtomicBool::new(false),
            owners_denied: AtomicBool::new(false),
        }
    }

    /// A token for a request of `kind`; `false` (counted) past the limit.
    fn permit(&self, kind: &'static str) -> bool {
        let ok = self.bucket.lock().is_ok_and(|mut b| b.take(Instant::now()));
        if let Some(m) = &self.metrics {
            if ok { m.api_request(kind) } else { m.api_lookup_limited(kind) }
        }
        ok
    }

    /// Whether the lookups of Events are on (node mode with Events, not refused by RBAC).
    pub fn fetches_events(&self) -> bool {
        self.store.is_some() && !self.events_denied.load(Ordering::Relaxed)
    }

    /// The Events of the pod `uid` in `namespace`, into the store.
    pub async fn events(&self, namespace: &str, uid: &str) {
        let Some(store) = &self.store else { return };
        if self.events_denied.load(Ordering::Relaxed) || !self.permit("events_list") {
            return;
        }
        let api: Api<SlimKubeEvent> = Api::namespaced(self.client.clone(), namespace);
        let lp = ListParams::default().fields(&format!("involvedObject.uid={uid}")).match_any();
        match tokio::time::timeout(LOOKUP_TIMEOUT, api.list(&lp)).await {
            Ok(Ok(list)) => {
                for (key, ev) in list.items.iter().filter_map(SlimKubeEvent::pod_event) {
                    store.insert(&key, ev, Timestamp::now());
                }
            }
            Ok(Err(e)) => self.failed(&e, &self.events_denied, "events", "[list] on resource \"events\""),
            Err(_) => tracing::debug!(namespace, uid, "An Events lookup timed out; the cause comes from the status."),
        }
    }

    /// The ReplicaSet's and Job's metadata of `owners` in `namespace`, into the owner index, unless
    /// looked up within [`OWNER_TTL`].
    pub async fn owners(&self, namespace: &str, owners: &Owners) {
        let Some(index) = &self.owners else { return };
        for (link, owner) in [(Link::ReplicaSetToDeployment, &owners.replicaset), (Link::JobToCronJob, &owners.job)] {
            let Some((name, uid)) = owner.as_ref().and_then(|o| Some((o.name.as_str(), o.uid.as_deref()?))) else {
                continue;
            };
            if self.owners_denied.load(Ordering::Relaxed) || self.fresh(uid) {
                continue;
            }
            let kind = if link == Link::ReplicaSetToDeployment { "replicaset_get" } else { "job_get" };
            if !self.permit(kind) {
                continue;
            }
            let found = match link {
                Link::ReplicaSetToDeployment => {
                    get(Api::<PartialObjectMeta<ReplicaSet>>::namespaced(self.client.clone(), namespace), name).await
                }
                Link::JobToCronJob => {
                    get(Api::<PartialObjectMeta<Job>>::namespaced(self.client.clone(), namespace), name).await
                }
            };
            match found {
                Ok(Some(meta)) if meta.uid.as_deref() == Some(uid) => index.apply(&meta, link),
                // Gone (or another object of its name): what the index knew of it goes.
                Ok(_) => index.forget(uid),
                Err(None) => continue,
                Err(Some(e)) => {
                    self.failed(
                        &e,
                        &self.owners_denied,
                        "replicasets and jobs",
                        "[get] on replicasets.apps and jobs.batch",
                    );
                    continue;
                }
            }
            self.remember(uid);
        }
    }

    fn fresh(&self, uid: &str) -> bool {
        self.looked_up.lock().is_ok_and(|m| m.get(uid).is_some_and(|at| at.elapsed() < OWNER_TTL))
    }

    fn remember(&self, uid: &str) {
        let Ok(mut m) = self.looked_up.lock() else { return };
        if m.len() >= MAX_OWNERS_LOOKED_UP {
            m.retain(|_, at| at.elapsed() < OWNER_TTL);
            if m.len() >= MAX_OWNERS_LOOKED_UP {
                m.clear();
            }
        }
        m.insert(uid.to_owned(), Instant::now());
    }

    /// A lookup refused or failed: a 403 stops that kind of lookup (said once), the rest is logged.
    fn failed(&self, e: &kube::Error, denied: &AtomicBool, what: &str, grant: &str) {
        if classify(e) == Failure::Forbidden {
            if !denied.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %e,
                    "No RBAC access to {what} (403 Forbidden): grant verbs {grant}: node mode looks up the failing \
                     pods' {what} instead of watching them. Going on without (causes from the status, owners by the \
                     naming rule).");
            }
        } else {
            tracing::debug!(error = %e, "A lookup of {what} failed; going on with what is known.");
        }
    }
}

/// An object's metadata by name from the watch cache: `Ok(None)` when it is gone, `Err(None)` on a
/// timeout.
async fn get<K>(
    api: Api<PartialObjectMeta<K>>,
    name: &str,
) -> Result<Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>, Option<kube::Error>>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    match tokio::time::timeout(LOOKUP_TIMEOUT, api.get_metadata_opt_with(name, &GetParams::any())).await {
        Ok(Ok(found)) => Ok(found.map(|o| o.metadata)),
        Ok(Err(e)) => Err(Some(e)),
        Err(_) => Err(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_gives_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(5, 20);
        assert_eq!((0..30).filter(|_| b.take(t0)).count(), 20, "the burst at once");
        assert!(!b.take(t0 + Duration::from_millis(100)), "half a token after 100 ms");
        assert!(b.take(t0 + Duration::from_millis(200)), "one after 200 ms");
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..30).filter(|_| b.take(later)).count(), 20, "a quiet minute refills to the burst, no more");
        let mut slow = TokenBucket::new(0, 1);
        assert!(slow.take(t0) && !slow.take(later), "rate 0: the burst only");
    }
}
