//! Kubernetes client errors turned into messages that say what to fix.
//!
//! Used by the watch (pods), the checkpoint (leases) and startup checks, so that an unreachable
//! server, bad credentials (401) and missing RBAC (403) read the same everywhere.

/// What went wrong talking to the API server, classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No HTTP answer: connection refused, DNS, TLS, timeout.
    Unreachable,
    /// 401: the credentials were not accepted.
    Unauthorized,
    /// 403: authenticated, but RBAC does not allow the request.
    Forbidden,
    /// 410: the resourceVersion is too old (the watcher relists by itself).
    Expired,
    /// Anything else (5xx, decode errors).
    Other,
}

impl Failure {
    pub const ALL: [Failure; 5] =
        [Failure::Unreachable, Failure::Unauthorized, Failure::Forbidden, Failure::Expired, Failure::Other];

    /// A low-cardinality label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Unreachable => "unreachable",
            Failure::Unauthorized => "unauthorized",
            Failure::Forbidden => "forbidden",
            Failure::Expired => "expired",
            Failure::Other => "other",
        }
    }
}

/// Classifies an HTTP status code the API server answered with.
fn from_code(code: u16) -> Failure {
    match code {
        401 => Failure::Unauthorized,
        403 => Failure::Forbidden,
        410 => Failure::Expired,
        _ => Failure::Other,
    }
}

/// Classifies a kube client error.
pub(crate) fn classify(e: &kube::Error) -> Failure {
    match e {
        kube::Error::Api(status) => from_code(status.code),
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::Auth(_) => Failure::Unreachable,
        _ => Failure::Other,
    }
}

/// Classifies a kube watcher error.
pub(crate) fn classify_watcher(e: &kube::runtime::watcher::Error) -> Failure {
    use kube::runtime::watcher::Error as W;
    match e {
        W::InitialListFailed(e) | W::WatchStartFailed(e) | W::WatchFailed(e) => classify(e),
        W::WatchError(status) => from_code(status.code),
        W::NoResourceVersion => Failure::Other,
    }
}

/// The sentence that says what to fix, for a failure while doing `verbs` on `resource` in `scope`
/// (e.g. `all namespaces` or `namespace shop`) against `server`.
pub(crate) fn advice(failure: Failure, server: &str, verbs: &str, resource: &str, scope: &str) -> String {
    match failure {
        Failure::Unreachable => format!(
            "cannot reach the Kubernetes API server at {server}: check the server address in the kubeconfig \
             (--kubeconfig, --context, $KUBECONFIG) or, in a cluster, that the pod can reach the \
             kubernetes Service (network policies, proxies)"
        ),
        Failure::Unauthorized => format!(
            "the API server at {server} rejected the agent's credentials (401 Unauthorized): the token or \
             client certificate of the kubeconfig context (or the service-account token in a cluster) is \
             invalid or expired; fix the credentials"
        ),
        Failure::Forbidden => format!(
            "the agent is not allowed to {verbs} {resource} in {scope} (403 Forbidden): grant its \
             identity an RBAC rule with verbs [{verbs}] on resource \"{resource}\" (see deploy/base, or e.g. \
             `kubectl create clusterrole restart-watcher --verb={verbs} --resource={resource}` and bind it)"
        ),
        Failure::Expired => format!("the watch of {resource} in {scope} expired (410 Gone); relisting"),
        Failure::Other => format!("the API server at {server} failed a request to {verbs} {resource} in {scope}"),
    }
}
