//! OOM kills that restart nothing (node mode, opt-in: `--oom-kills-from-cgroups DIR`): a loop that
//! reads the OOM-kill counters of this node's container memory cgroups through a read-only mount
//! of the host's cgroup filesystem, and, when one rose in a container that lives on, fetches the
//! node's pods once (from the watch cache) to name it. The rules are `rules/cgroups.rs`; the record
//! is built by the detector's `oom_kill_record`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::Api;
use kube::api::ListParams;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::accounting::{BudgetUsage, ExportProgress, WatchStats};
use crate::pod::SlimPod;
use crate::record::{OomKills, Record};
use crate::rules::cgroups::{self, CgroupVersion, Reading};

/// How deep below the memory hierarchy's root the pods' cgroups are looked for (`kubepods` /
/// `burstable` / `pod<uid>` under a `cgroupRoot` of a few levels, or systemd's slices).
pub const SCAN_DEPTH_MAX: usize = 8;
/// At most this many directories are looked at in one scan (a node with unrelated deep trees).
pub const SCAN_DIRS_MAX: usize = 100_000;
/// What one container's kept counter costs: its id, its value, the map's overhead.
pub const COUNTER_ENTRY_BYTES: usize = 128;
/// The budget of the kept counters: 8,192 containers, far more than a node runs.
pub const COUNTER_BUDGET_BYTES: usize = 1 << 20;
/// Default interval between two scans.
pub const DEFAULT_POLL: Duration = Duration::from_secs(10);

/// Errors of the setup, said before the agent starts.
#[derive(Debug, thiserror::Error)]
pub enum NodeOomError {
    #[error(
        "--oom-kills-from-cgroups {0}: no memory cgroup hierarchy there (neither memory/memory.oom_control, cgroup v1, nor memory.events beside cgroup.controllers, cgroup v2): mount the host's /sys/fs/cgroup there, read-only"
    )]
    NoMemoryHierarchy(PathBuf),
}

/// The memory hierarchy under `dir` (the host's `/sys/fs/cgroup`): v1's `memory` controller, else
/// the v2 unified hierarchy.
pub fn memory_hierarchy(dir: &Path) -> Result<(PathBuf, CgroupVersion), NodeOomError> {
    let v1 = dir.join("memory");
    if v1.join(CgroupVersion::V1.counter_file()).is_file() {
        return Ok((v1, CgroupVersion::V1));
    }
    if dir.join("cgroup.controllers").is_file()
        && std::fs::read_to_string(dir.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|x| x == "memory"))
    {
        return Ok((dir.to_owned(), CgroupVersion::V2));
    }
    Err(NodeOomError::NoMemoryHierarchy(dir.to_owned()))
}

/// One container's cgroup as a scan reads it.
#[derive(Debug, PartialEq, Eq)]
pub struct Seen {
    pub pod_uid: String,
    pub container_id: String,
    pub kills: u64,
    pub limit_bytes: Option<u64>,
}

/// Reads every container cgroup under `root` (bounded by [`SCAN_DEPTH_MAX`] and
/// [`SCAN_DIRS_MAX`]); returns them and whether the scan stopped at its bound.
pub fn scan(root: &Path, version: CgroupVersion) -> (Vec<Seen>, bool) {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_owned(), 0usize)];
    let mut dirs = 0usize;
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            dirs += 1;
            if dirs > SCAN_DIRS_MAX {
                return (out, true);
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            match cgroups::pod_uid(name) {
                Some(uid) => read_pod(&entry.path(), &uid, version, &mut out),
                None if depth < SCAN_DEPTH_MAX => stack.push((entry.path(), depth + 1)),
                None => {}
            }
        }
    }
    (out, false)
}

fn read_pod(pod_dir: &Path, uid: &str, version: CgroupVersion, out: &mut Vec<Seen>) {
    let Ok(entries) = std::fs::read_dir(pod_dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(cgroups::container_id) else { continue };
        let dir = entry.path();
        let Some(kills) =
            std::fs::read_to_string(dir.join(version.counter_file())).ok().as_deref().and_then(cgroups::oom_kills)
        else {
            continue;
        };
        out.push(Seen {
            pod_uid: uid.to_owned(),
            container_id: id.to_owned(),
            kills,
            limit_bytes: std::fs::read_to_string(dir.join(version.limit_file()))
                .ok()
                .as_deref()
                .and_then(cgroups::limit_bytes),
        });
    }
}

/// The counters kept between scans, by container id, within their budget, and the kills seen at
/// the last scan, waiting for this one to show that their container lives on.
///
/// Whether a container's processes run cannot be read from the agent's own container
/// (`cgroup.procs` lists only the PIDs of the reader's PID namespace). So kills seen at one scan
/// are a record at the next when the container's cgroup is still there: the runtime removes it
/// when the container's PID 1 ends, and that kill is then the restart or failure record's. The
/// record is built only if the pod's status shows the same instance running.
#[derive(Debug, Default)]
pub struct Counters {
    last: HashMap<String, u64>,
    /// Kills of the last scan, by container id.
    rose: HashMap<String, u64>,
    scans: u64,
    pub usage: Arc<BudgetUsage>,
}

impl Counters {
    /// Applies one scan: the containers whose counter rose at the previous scan and that are
    /// still there, with those kills (and any since). Containers gone from the scan are forgotten.
    pub fn apply(&mut self, seen: Vec<Seen>) -> Vec<(Seen, u64)> {
        let first = self.scans == 0;
        self.scans += 1;
        self.usage.budget_bytes.store(COUNTER_BUDGET_BYTES as u64, std::sync::atomic::Ordering::Relaxed);
        let budget = COUNTER_BUDGET_BYTES / COUNTER_ENTRY_BYTES;
        let mut next = HashMap::with_capacity(seen.len().min(budget));
        let mut rose = HashMap::new();
        let mut out = Vec::new();
        for s in seen {
            if next.len() >= budget {
                self.usage.shed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
            let kills = match cgroups::reading(self.last.get(&s.container_id).copied(), s.kills, first) {
                Reading::Rose { kills } => kills,
                Reading::Baseline | Reading::Quiet => 0,
            };
            next.insert(s.container_id.clone(), s.kills);
            match self.rose.get(&s.container_id) {
                Some(earlier) => out.push((s, earlier + kills)),
                None if kills > 0 => {
                    rose.insert(s.container_id, kills);
                }
                None => {}
            }
        }
        self.last = next;
        self.rose = rose;
        let kept = self.last.len() + self.rose.len();
        self.usage.bytes.store((kept * COUNTER_ENTRY_BYTES) as u64, std::sync::atomic::Ordering::Relaxed);
        out
    }
}

/// At most this many killed processes' names are kept between two scans (a kill storm names the
/// first ones).
pub const KERNEL_LOG_NAMES_MAX: usize = 1024;

/// The kernel log (`/dev/kmsg`), read from its end at start: the names of the processes the
/// kernel's OOM killer killed in containers' memory cgroups, by container id.
pub struct KernelLog {
    file: std::fs::File,
    names: HashMap<String, String>,
}

impl KernelLog {
    /// Opens `path` (`/dev/kmsg`: needs `CAP_SYSLOG`, or `kernel.dmesg_restrict=0`) without
    /// blocking, positioned at its end: only kills from now on are named.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        use std::io::Seek;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
        file.seek(std::io::SeekFrom::End(0))?;
        Ok(KernelLog { file, names: HashMap::new() })
    }

    /// Reads the records written since the last call (one record a read; records overwritten
    /// before they were read are skipped).
    pub fn read(&mut self) {
        use std::io::Read;
        let mut buf = [0u8; 8192];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    let record = String::from_utf8_lossy(&buf[..n]);
                    if let Some((id, task)) = cgroups::kernel_oom_kill(&record)
                        && self.names.len() < KERNEL_LOG_NAMES_MAX
                    {
                        self.names.insert(id.to_owned(), task.to_owned());
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    /// The name of the last process killed in this container, once.
    pub fn take(&mut self, container_id: &str) -> Option<String> {
        self.names.remove(container_id)
    }

    /// Forgets names of containers no kill record asked for (their container ended).
    pub fn clear(&mut self) {
        self.names.clear();
    }
}

/// What the loop needs.
pub struct NodeOomTask {
    /// The scope's pod APIs (one per namespace, or all), listed with `params` to name a killed
    /// container: only the scope's pods are reported.
    pub pods: Vec<Api<SlimPod>>,
    pub params: ListParams,
    pub client: kube::Client,
    pub root: PathBuf,
    pub version: CgroupVersion,
    pub poll: Duration,
    pub counters: Counters,
    /// `--oom-kill-kernel-log`: names the killed processes.
    pub kernel_log: Option<KernelLog>,
    pub tx: mpsc::Sender<Record>,
    pub progress: Arc<ExportProgress>,
    pub stats: Arc<WatchStats>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Scans every `poll` until stopped; sends a record per container whose OOM-kill counter rose
/// and that lived on (see [`Counters`]).
pub async fn run(mut task: NodeOomTask, stop: CancellationToken) {
    let mut said_bound = false;
    loop {
        let (root, version) = (task.root.clone(), task.version);
        let Ok((seen, bounded)) = tokio::task::spawn_blocking(move || scan(&root, version)).await else { return };
        if bounded && !std::mem::replace(&mut said_bound, true) {
            tracing::warn!(root = %task.root.display(), dirs = SCAN_DIRS_MAX, "The cgroup scan stopped at its bound: some containers' OOM kills are not read.");
        }
        let killed = task.counters.apply(seen);
        if let Some(log) = &mut task.kernel_log {
            log.read();
        }
        if !killed.is_empty() && !send(&mut task, killed).await {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(task.poll) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Names the killed containers from one list of the node's pods, and sends their records.
/// Returns `false` when the pipeline is gone.
async fn send(task: &mut NodeOomTask, killed: Vec<(Seen, u64)>) -> bool {
    let mut pods = Vec::new();
    for api in &task.pods {
        match crate::pod_list::list_from_cache(&task.client, api, &task.params).await {
            Ok(list) => pods.extend(list.items),
            Err(e) => {
                tracing::warn!(error = %e, kills = killed.len(), "Cannot list this node's pods to name OOM-killed containers; these OOM kills are not reported.");
                return true;
            }
        }
    }
    let now = Timestamp::now();
    for (s, count) in killed {
        let process = task.kernel_log.as_mut().and_then(|log| log.take(&s.container_id));
        let kills = OomKills { count, total: s.kills, process };
        let record = pods
            .iter()
            .filter(|p| p.uid() == Some(s.pod_uid.as_str()))
            .find_map(|p| crate::detector::oom_kill_record(p, &s.container_id, kills.clone(), s.limit_bytes, now));
        let Some(record) = record else {
            tracing::debug!(
                pod_uid = s.pod_uid,
                container_id = s.container_id,
                "An OOM-killed container's pod is gone."
            );
            continue;
        };
        if !crate::watch::forward(record, &task.tx, &task.progress, &task.stats, &task.metrics).await {
            return false;
        }
    }
    if let Some(log) = &mut task.kernel_log {
        log.clear();
    }
    true
}
