//! One-off lists of the scope's pods (the watches are `watch.rs`): the preflight's check that each
//! scope can be listed, and lists from the API server's watch cache (`resourceVersion=0`), which
//! node mode's preflight and its OOM-kill lookups (`node_oom.rs`) ask.

use kube::Client;
use kube::api::{Api, ListParams};

use crate::kube_errors::{Failure, advice, classify};
use crate::pod::SlimPod;
use crate::watch::{POD_VERBS, WatchError, WatchScope};

/// Checks, before watching, that each scope can be listed; returns the message to print otherwise.
pub async fn preflight(client: &Client, scope: &WatchScope, server: &str) -> Result<(), WatchError> {
    for (api, desc) in scope.apis(client) {
        let lp = scope.list_params().limit(1);
        // Node mode lists from the watch cache (indexed by node): etcd cannot filter on
        // spec.nodeName, and a quorum read would scan every pod of the cluster to find one of this
        // node.
        let listed =
            if scope.node_name.is_some() { list_from_cache(client, &api, &lp).await } else { api.list(&lp).await };
        if let Err(source) = listed {
            let failure = classify(&source);
            let advice = match (&failure, &source) {
                (Failure::Other, kube::Error::Api(status)) if status.code == 400 => format!(
                    "the API server refused the pod list for {desc} (400 Bad Request: {}): check \
                     --label-selector, --field-selector, --node-name and --exclude-namespace",
                    status.message
                ),
                _ => advice(failure, server, POD_VERBS, "pods", &desc),
            };
            return Err(WatchError::Startup { advice, failure, source });
        }
    }
    Ok(())
}

/// A list at `resourceVersion=0` (answered by the watch cache) with `lp`'s selectors and limit.
/// kube-core drops `resourceVersion=0` from a list with a limit, so the query is completed here.
pub(crate) async fn list_from_cache(
    client: &Client,
    api: &Api<SlimPod>,
    lp: &ListParams,
) -> Result<kube::core::ObjectList<SlimPod>, kube::Error> {
    let mut req = kube::core::Request::new(api.resource_url()).list(lp).map_err(kube::Error::BuildRequest)?;
    *req.uri_mut() = with_resource_version_zero(req.uri())?;
    client.request(req).await
}

/// `uri` with `resourceVersion=0&resourceVersionMatch=NotOlderThan` in place of any resourceVersion.
fn with_resource_version_zero(uri: &http::Uri) -> Result<http::Uri, kube::Error> {
    let query: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("resourceVersion=") && !p.starts_with("resourceVersionMatch="))
        .chain(["resourceVersion=0", "resourceVersionMatch=NotOlderThan"])
        .collect();
    format!("{}?{}", uri.path(), query.join("&")).parse().map_err(|e: http::uri::InvalidUri| {
        kube::Error::BuildRequest(kube::core::request::Error::Validation(e.to_string()))
    })
}
