//! The memory cgroups of a node's containers, read purely: which directory is a pod's or a
//! container's (the kubelet's `cgroupfs` and `systemd` layouts, containerd, CRI-O and Docker), the
//! OOM-kill counters of cgroup v1 (`memory.oom_control`) and v2 (`memory.events`), and the rule
//! that turns a counter's readings into OOM kills
//! (`docs/detection.md`, "OOM kills that restart nothing").

/// Which cgroup interface a memory hierarchy speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    /// `memory.oom_control` (`oom_kill N`) and `memory.limit_in_bytes`.
    V1,
    /// `memory.events` (`oom_kill N`) and `memory.max`.
    V2,
}

impl CgroupVersion {
    /// The file holding the OOM-kill counter.
    pub fn counter_file(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "memory.oom_control",
            CgroupVersion::V2 => "memory.events",
        }
    }

    /// The file holding the memory limit.
    pub fn limit_file(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "memory.limit_in_bytes",
            CgroupVersion::V2 => "memory.max",
        }
    }
}

/// The `oom_kill` count of a counter file (both versions write `oom_kill N` on a line of its own);
/// `None` when the kernel does not count them (before 4.13) or the file is not one.
pub fn oom_kills(counter_file: &str) -> Option<u64> {
    counter_file.lines().find_map(|line| line.strip_prefix("oom_kill ")?.trim().parse().ok())
}

/// A memory limit file's value in bytes; `None` for no limit (`max`, or v1's page-rounded
/// `i64::MAX`).
pub fn limit_bytes(limit_file: &str) -> Option<u64> {
    let v: u64 = limit_file.trim().parse().ok()?;
    (v < (i64::MAX as u64) & !0xfff).then_some(v)
}

/// The pod uid a cgroup directory is named after: `pod<uid>` (`cgroupfs`) or
/// `kubepods[-<qos>]-pod<uid with underscores>.slice` (`systemd`).
pub fn pod_uid(dir: &str) -> Option<String> {
    let rest = match dir.strip_suffix(".slice") {
        Some(slice) => &slice[slice.rfind("-pod")? + 4..],
        None => dir.strip_prefix("pod")?,
    };
    let uid = rest.replace('_', "-");
    is_uuid(&uid).then_some(uid)
}

/// The container id a cgroup directory is named after: the bare 64-hex id (`cgroupfs`), or
/// `cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope` (`systemd`).
pub fn container_id(dir: &str) -> Option<&str> {
    let id = match dir.strip_suffix(".scope") {
        Some(scope) => &scope[scope.rfind('-')? + 1..],
        None => dir,
    };
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// The container and process of a kernel log record of an OOM kill in a memory cgroup
/// (`oom-kill:constraint=CONSTRAINT_MEMCG,...,task_memcg=/kubepods/burstable/pod<uid>/<id>,task=worker,pid=42,uid=0`):
/// the container id its `task_memcg` ends with, and the killed process's name.
pub fn kernel_oom_kill(record: &str) -> Option<(&str, &str)> {
    let fields = &record[record.find("oom-kill:")? + "oom-kill:".len()..];
    let field = |key: &str| fields.split(',').find_map(|kv| kv.trim().strip_prefix(key)?.strip_prefix('='));
    let memcg = field("task_memcg")?;
    let id = container_id(memcg.rsplit('/').next()?)?;
    Some((id, field("task").filter(|t| !t.is_empty())?))
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes()
            .enumerate()
            .all(|(i, b)| if matches!(i, 8 | 13 | 18 | 23) { b == b'-' } else { b.is_ascii_hexdigit() })
}

/// What one reading of a container's counter says, against the last reading kept for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// The first reading of a container seen at the agent's first scan: a baseline, silent.
    Baseline,
    /// No new kill (or the counter went down: a new cgroup under a reused name), silent.
    Quiet,
    /// `kills` new OOM kills: a record once the container is seen to live on.
    Rose { kills: u64 },
}

/// The rule: a container first read at the agent's first scan is a baseline; one that appears
/// later counts from 0 (its kills happened while the agent watched).
pub fn reading(last: Option<u64>, now: u64, first_scan: bool) -> Reading {
    let last = match last {
        Some(last) => last,
        None if first_scan => return Reading::Baseline,
        None => 0,
    };
    match now.checked_sub(last) {
        Some(0) | None => Reading::Quiet,
        Some(kills) => Reading::Rose { kills },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_limits() {
        assert_eq!(oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"), Some(3));
        assert_eq!(oom_kills("low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n"), Some(2));
        assert_eq!(oom_kills("oom_kill_disable 0\nunder_oom 0\n"), None);
        assert_eq!(limit_bytes("33554432\n"), Some(33_554_432));
        assert_eq!(limit_bytes("max\n"), None);
        assert_eq!(limit_bytes("9223372036854771712\n"), None);
    }

    #[test]
    fn directories_of_both_drivers() {
        let uid = "4239abf7-1206-49a7-8747-9f93b9b7d16d";
        assert_eq!(pod_uid(&format!("pod{uid}")).as_deref(), Some(uid));
        assert_eq!(pod_uid("kubepods-burstable-pod4239abf7_1206_49a7_8747_9f93b9b7d16d.slice").as_deref(), Some(uid));
        assert_eq!(pod_uid("kubepods-pod4239abf7_1206_49a7_8747_9f93b9b7d16d.slice").as_deref(), Some(uid));
        assert_eq!(pod_uid("burstable"), None);
        assert_eq!(pod_uid("kubepods-burstable.slice"), None);
        let id = "a".repeat(64);
        assert_eq!(container_id(&id), Some(id.as_str()));
        assert_eq!(container_id(&format!("cri-containerd-{id}.scope")), Some(id.as_str()));
        assert_eq!(container_id(&format!("crio-{id}.scope")), Some(id.as_str()));
        assert_eq!(container_id("init.scope"), None);
        assert_eq!(container_id(&format!("pod{uid}")), None);
    }

    #[test]
    fn kernel_log_records_of_memcg_oom_kills() {
        let id = "c".repeat(64);
        let line = format!(
            "6,4348,21158989718,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset={id},mems_allowed=0,\
             oom_memcg=/rw-node-1/kubepods/burstable/pod4239abf7-1206-49a7-8747-9f93b9b7d16d/{id},\
             task_memcg=/rw-node-1/kubepods/burstable/pod4239abf7-1206-49a7-8747-9f93b9b7d16d/{id},task=exe,pid=20513,uid=0"
        );
        assert_eq!(kernel_oom_kill(&line), Some((id.as_str(), "exe")));
        let systemd = format!(
            "oom-kill:constraint=CONSTRAINT_MEMCG,task_memcg=/kubepods.slice/x/cri-containerd-{id}.scope,task=java,pid=7"
        );
        assert_eq!(kernel_oom_kill(&systemd), Some((id.as_str(), "java")));
        assert_eq!(kernel_oom_kill("3,4349,1,-;Memory cgroup out of memory: Killed process 15109 (rw-test)"), None);
        assert_eq!(kernel_oom_kill("oom-kill:constraint=CONSTRAINT_NONE,task_memcg=/,task=x,pid=1"), None);
    }

    #[test]
    fn the_reading_rule() {
        assert_eq!(reading(None, 4, true), Reading::Baseline);
        assert_eq!(reading(None, 1, false), Reading::Rose { kills: 1 });
        assert_eq!(reading(None, 0, false), Reading::Quiet);
        assert_eq!(reading(Some(2), 2, false), Reading::Quiet);
        assert_eq!(reading(Some(2), 5, false), Reading::Rose { kills: 3 });
        assert_eq!(reading(Some(5), 1, false), Reading::Quiet);
    }
}
