//! The cluster's identity on every record: `k8s.cluster.uid`, the uid of the `kube-system`
//! namespace (the semantic conventions' definition: it lives as long as the cluster), read once at
//! start; and a warning when `--cluster-name` is left at a placeholder.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;

/// How long the start waits for the `kube-system` namespace before going on without the uid.
pub(crate) const CLUSTER_UID_TIMEOUT: Duration = Duration::from_secs(5);

/// The namespace whose uid identifies the cluster.
pub(crate) const CLUSTER_UID_NAMESPACE: &str = "kube-system";

/// Names that mean "not set": the shipped manifests' example and the usual fill-ins.
const PLACEHOLDER_NAMES: [&str; 8] =
    ["my-cluster", "cluster", "default", "example", "changeme", "change-me", "change_me", "your-cluster"];

/// Whether `--cluster-name` is a placeholder left from an example (case-insensitive, `<...>` too).
pub(crate) fn is_placeholder_cluster_name(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase();
    PLACEHOLDER_NAMES.contains(&n.as_str()) || (n.starts_with('<') && n.ends_with('>'))
}

/// The uid of `kube-system`, or `None` (said once) when RBAC or the API server does not allow it.
pub async fn cluster_uid(client: &kube::Client) -> Option<String> {
    let api: kube::Api<Namespace> = kube::Api::all(client.clone());
    match tokio::time::timeout(CLUSTER_UID_TIMEOUT, api.get_metadata(CLUSTER_UID_NAMESPACE)).await {
        Ok(Ok(ns)) => ns.metadata.uid.filter(|u| !u.is_empty()),
        Ok(Err(kube::Error::Api(e))) if e.code == 403 => {
            tracing::warn!(
                "No RBAC access to namespace kube-system (403 Forbidden): records carry no k8s.cluster.uid. \
                 Grant get on namespaces, resourceNames [kube-system] (deploy/base/rbac.yaml)."
            );
            None
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "Cannot read namespace kube-system: records carry no k8s.cluster.uid.");
            None
        }
        Err(_) => {
            tracing::warn!(
                timeout_s = CLUSTER_UID_TIMEOUT.as_secs(),
                "Namespace kube-system not read in time: records carry no k8s.cluster.uid."
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_cluster_names() {
        for (name, placeholder) in [
            ("my-cluster", true),
            ("My-Cluster", true),
            ("<cluster-name>", true),
            ("changeme", true),
            ("prod-eu-1", false),
            ("staging", false),
        ] {
            assert_eq!(is_placeholder_cluster_name(name), placeholder, "{name}");
        }
    }
}
