//! What identifies one record (its `restart_watcher.restart.id`, its span id).

use jiff::Timestamp;
use sha2::{Digest, Sha256};

use super::{RecordKind, RestartedContainer};
use crate::pod::SlimTerminated;

/// What identifies one record: SHA-256 of the pod uid, the container name and, for a restart or a
/// failure, the dead instance's `containerID` and `finishedAt` (a container id names one instance;
/// `finishedAt` tells apart two instances whose ids are missing or reused after the kubelet lost its
/// state). The `restartCount` goes in only when one of the two is missing, so that the id stays the
/// same for every observation of one termination and differs between terminations; when the dead
/// instance has no id, so does the current instance's id (two restarts with an empty `lastState`
/// after a `restartCount` reset are two instances). A start failure adds when its episode was first
/// seen; a pod-wide restart, its containers and their new counts. Records other than restarts are prefixed by their kind, so that ids never collide across
/// kinds. Fields are length-prefixed so that no two different inputs hash the same bytes.
#[derive(Clone, Copy)]
pub(super) struct Identity<'a> {
    pub kind: Option<RecordKind>,
    pub pod_uid: &'a str,
    pub container: &'a str,
    pub restart_count: u32,
    pub terminated: Option<&'a SlimTerminated>,
    pub current_id: Option<&'a str>,
    pub episode_started_at: Option<Timestamp>,
    pub members: &'a [RestartedContainer],
}

impl Identity<'_> {
    pub(crate) fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut field = |tag: u8, bytes: &[u8]| {
            h.update([tag]);
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        if let Some(kind) = self.kind {
            field(b'k', kind.as_str().as_bytes());
        }
        field(b'u', self.pod_uid.as_bytes());
        field(b'c', self.container.as_bytes());
        let id = self.terminated.and_then(|t| t.container_id.as_deref()).filter(|i| !i.is_empty());
        let finished = self.terminated.and_then(|t| t.finished_at);
        if let Some(id) = id {
            field(b'i', id.as_bytes());
        }
        if let Some(finished) = finished {
            field(b'f', &finished.as_nanosecond().to_be_bytes());
        }
        if id.is_none() || finished.is_none() {
            field(b'n', &self.restart_count.to_be_bytes());
        }
        if id.is_none()
            && let Some(current) = self.current_id.filter(|i| !i.is_empty())
        {
            field(b'a', current.as_bytes());
        }
        if let Some(started) = self.episode_started_at {
            field(b's', &started.as_nanosecond().to_be_bytes());
        }
        for m in self.members {
            field(b'm', m.name.as_bytes());
            field(b'r', &m.restart_count.to_be_bytes());
        }
        h.finalize().into()
    }
}
