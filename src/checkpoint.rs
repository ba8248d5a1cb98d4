//! The catch-up checkpoint: the time up to which every detected restart has been handed to the
//! exporter (exported, or dropped with a counted reason).
//!
//! It lives in a Lease (`coordination.k8s.io/v1`) in the agent's namespace in a cluster, as the
//! annotation `restart-watcher.io/checkpoint` (RFC 3339), or in a file for local runs. On start, the
//! detector reports a container first seen with a termination newer than
//! `checkpoint - CATCH_UP_MARGIN` once, with `restart_watcher.detected_late`. The margin covers the
//! delay between a container's death and the status update that shows it: a restart that died just
//! before the checkpoint may not yet have been visible.

use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;

use crate::kube_errors::{Failure, classify};

/// Annotation of the Lease that holds the checkpoint.
pub(crate) const LEASE_ANNOTATION: &str = "restart-watcher.io/checkpoint";
/// Default Lease name (node mode appends `-<node name>`).
pub(crate) const DEFAULT_LEASE_NAME: &str = "restart-watcher-checkpoint";
/// How often the checkpoint is written at most.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);
/// How far before the checkpoint catch-up looks (status-update lag of kubelet, clock skew).
pub(crate) const CATCH_UP_MARGIN: Duration = Duration::from_secs(60);

/// Errors of the checkpoint store.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// RBAC does not allow the Lease operations.
    #[error(
        "no RBAC access to Lease {namespace}/{name} ({verb}: 403 Forbidden): grant get, create, update on \
         leases.coordination.k8s.io in namespace {namespace}; running without catch-up"
    )]
    Forbidden { namespace: String, name: String, verb: &'static str },
    /// Another Kubernetes error.
    #[error("cannot {verb} Lease {namespace}/{name}: {source}")]
    Kube {
        namespace: String,
        name: String,
        verb: &'static str,
        #[source]
        source: kube::Error,
    },
    /// The file could not be read or written.
    #[error("checkpoint file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The stored value is not an RFC 3339 timestamp.
    #[error("checkpoint in {location} is not an RFC 3339 timestamp: {value:?}; delete it to start without catch-up")]
    Malformed { location: String, value: String },
}

/// Where the checkpoint lives.
pub enum CheckpointStore {
    Lease { api: Box<Api<Lease>>, namespace: String, name: String, identity: String },
    File(PathBuf),
    Disabled,
}

impl CheckpointStore {
    pub(crate) fn describe(&self) -> String {
        match self {
            CheckpointStore::Lease { namespace, name, .. } => format!("Lease {namespace}/{name}"),
            CheckpointStore::File(p) => format!("file {}", p.display()),
            CheckpointStore::Disabled => "nowhere (catch-up off)".to_owned(),
        }
    }

    /// Reads the checkpoint; `None` when there is none yet.
    pub async fn load(&self) -> Result<Option<Timestamp>, CheckpointError> {
        let (raw, location) = match self {
            CheckpointStore::Disabled => return Ok(None),
            CheckpointStore::File(path) => match tokio::fs::read_to_string(path).await {
                Ok(s) => (s, format!("file {}", path.display())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(source) => return Err(CheckpointError::Io { path: path.clone(), source }),
            },
            CheckpointStore::Lease { api, namespace, name, .. } => {
                let lease = api.get_opt(name).await.map_err(|e| kube_err(e, namespace, name, "get"))?;
                let value = lease.and_then(|l| l.metadata.annotations).and_then(|mut a| a.remove(LEASE_ANNOTATION));
                match value {
                    Some(v) => (v, format!("Lease {namespace}/{name}")),
                    None => return Ok(None),
                }
            }
        };
        let stored = raw
            .trim()
            .parse::<Timestamp>()
            .map_err(|_| CheckpointError::Malformed { location: location.clone(), value: raw })?;
        Ok(Some(in_force(stored, Timestamp::now(), &location)))
    }

    /// Writes the checkpoint.
    pub(crate) async fn save(&self, t: Timestamp) -> Result<(), CheckpointError> {
        match self {
            CheckpointStore::Disabled => Ok(()),
            CheckpointStore::File(path) => {
                let tmp = path.with_extension("tmp");
                let io = |source| CheckpointError::Io { path: path.clone(), source };
                tokio::fs::write(&tmp, format!("{t}\n")).await.map_err(io)?;
                tokio::fs::rename(&tmp, path).await.map_err(io)
            }
            CheckpointStore::Lease { api, namespace, name, identity } => {
                let existing = api.get_opt(name).await.map_err(|e| kube_err(e, namespace, name, "get"))?;
                let renew = Some(MicroTime(t));
                match existing {
                    None => {
                        let lease = Lease {
                            metadata: ObjectMeta {
                                name: Some(name.clone()),
                                namespace: Some(namespace.clone()),
                                annotations: Some([(LEASE_ANNOTATION.to_owned(), t.to_string())].into()),
                                ..Default::default()
                            },
                            spec: Some(LeaseSpec {
                                holder_identity: Some(identity.clone()),
                                renew_time: renew,
                                ..Default::default()
                            }),
                        };
                        api.create(&PostParams::default(), &lease)
                            .await
                            .map_err(|e| kube_err(e, namespace, name, "create"))?;
                    }
                    Some(mut lease) => {
                        lease
                            .metadata
                            .annotations
                            .get_or_insert_default()
                            .insert(LEASE_ANNOTATION.to_owned(), t.to_string());
                        let spec = lease.spec.get_or_insert_default();
                        spec.holder_identity = Some(identity.clone());
                        spec.renew_time = renew;
                        api.replace(name, &PostParams::default(), &lease)
                            .await
                            .map_err(|e| kube_err(e, namespace, name, "update"))?;
                    }
                }
                Ok(())
            }
        }
    }
}

fn kube_err(source: kube::Error, namespace: &str, name: &str, verb: &'static str) -> CheckpointError {
    if classify(&source) == Failure::Forbidden {
        CheckpointError::Forbidden { namespace: namespace.to_owned(), name: name.to_owned(), verb }
    } else {
        CheckpointError::Kube { namespace: namespace.to_owned(), name: name.to_owned(), verb, source }
    }
}

/// The checkpoint in force for a `stored` one read at `now`: a time in the future (a clock set wrong
/// when it was written, or a hand edit) would turn catch-up off until then, so it counts as `now`,
/// said in the log.
pub(crate) fn in_force(stored: Timestamp, now: Timestamp, location: &str) -> Timestamp {
    if stored <= now {
        return stored;
    }
    tracing::warn!(checkpoint = %stored, now = %now, location,
        "The checkpoint is in the future (a clock set wrong, or an edit); catching up from now instead.");
    now
}

/// The time from which catch-up reports first-seen terminations, for a stored checkpoint.
pub(crate) fn catch_up_since(checkpoint: Timestamp) -> Timestamp {
    let margin = jiff::SignedDuration::try_from(CATCH_UP_MARGIN).unwrap_or_default();
    checkpoint.checked_sub(margin).unwrap_or(checkpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_in_the_future_counts_as_now_and_one_in_the_past_is_kept() {
        let now: Timestamp = "2026-12-06T12:00:00Z".parse().unwrap();
        let past: Timestamp = "2026-12-06T11:00:00Z".parse().unwrap();
        let future: Timestamp = "2099-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(in_force(past, now, "file f"), past);
        assert_eq!(in_force(now, now, "file f"), now);
        assert_eq!(in_force(future, now, "file f"), now);
    }

    #[tokio::test]
    async fn a_checkpoint_file_dated_2099_is_read_as_now() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint");
        std::fs::write(&path, "2099-01-01T00:00:00Z\n").unwrap();
        let before = Timestamp::now();
        let read = CheckpointStore::File(path).load().await.unwrap().unwrap();
        assert!(read >= before && read <= Timestamp::now(), "{read}");
    }
}
