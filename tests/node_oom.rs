//! Node mode's OOM-kill counters, read from cgroup trees laid out as the kubelet lays them out
//! (`cgroupfs` on cgroup v1, `systemd` on cgroup v2), in a temporary directory: what a scan finds,
//! and which readings make records. The real kernel's counters are `tests/real_node.rs`'s.

use std::path::Path;

use restart_watcher::node_oom::{Counters, memory_hierarchy, scan};
use restart_watcher::rules::cgroups::CgroupVersion;

const UID: &str = "4239abf7-1206-49a7-8747-9f93b9b7d16d";

fn id(c: char) -> String {
    c.to_string().repeat(64)
}

/// A container cgroup with `kills` OOM kills and a 32 MiB limit.
fn container(dir: &Path, version: CgroupVersion, kills: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let (counter, limit) = match version {
        CgroupVersion::V1 => (format!("oom_kill_disable 0\nunder_oom 0\noom_kill {kills}\n"), "33554432\n"),
        CgroupVersion::V2 => {
            (format!("low 0\nhigh 0\nmax 3\noom 1\noom_kill {kills}\noom_group_kill 0\n"), "33554432\n")
        }
    };
    std::fs::write(dir.join(version.counter_file()), counter).unwrap();
    std::fs::write(dir.join(version.limit_file()), limit).unwrap();
}

#[test]
fn a_cgroupfs_v1_tree_is_found_under_its_cgroup_root_and_kills_in_a_container_that_stays_are_one_record() {
    let host = tempfile::tempdir().unwrap();
    let memory = host.path().join("memory");
    std::fs::create_dir_all(&memory).unwrap();
    std::fs::write(memory.join("memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n").unwrap();
    let (root, version) = memory_hierarchy(host.path()).unwrap();
    assert_eq!((root.as_path(), version), (memory.as_path(), CgroupVersion::V1));
    let pod = memory.join("rw-node-1/kubepods/burstable").join(format!("pod{UID}"));
    let (worker, ended) = (pod.join(id('a')), pod.join(id('b')));
    container(&worker, version, 0);
    container(&ended, version, 0);
    let mut counters = Counters::default();
    let mut scan_now = || counters.apply(scan(&root, version).0);
    assert!(scan_now().is_empty(), "the first scan is a baseline");
    container(&worker, version, 2);
    container(&ended, version, 1);
    assert!(scan_now().is_empty(), "kills wait a scan for their container to be seen living on");
    // The container whose PID 1 was killed is gone (the runtime removed its cgroup); the other
    // stays, with one more kill meanwhile.
    std::fs::remove_dir_all(&ended).unwrap();
    container(&worker, version, 3);
    let killed = scan_now();
    assert_eq!(killed.len(), 1, "{killed:?}");
    let (seen, count) = &killed[0];
    assert_eq!(
        (seen.pod_uid.as_str(), seen.container_id.as_str(), *count, seen.limit_bytes),
        (UID, id('a').as_str(), 3, Some(33_554_432))
    );
    assert!(scan_now().is_empty(), "no new kill, no record");
    // A container that appears after the first scan counts from 0.
    container(&pod.join(id('c')), version, 1);
    assert!(scan_now().is_empty());
    let killed = scan_now();
    assert_eq!(killed.iter().map(|(s, n)| (s.container_id.clone(), *n)).collect::<Vec<_>>(), vec![(id('c'), 1)]);
    assert_eq!(counters.usage.bytes.load(std::sync::atomic::Ordering::Relaxed), 2 * 128);
}

#[test]
fn a_systemd_v2_tree_names_its_pods_and_containers_by_slice_and_scope() {
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
    let (root, version) = memory_hierarchy(host.path()).unwrap();
    assert_eq!(version, CgroupVersion::V2);
    let pod = root
        .join("kubepods.slice/kubepods-besteffort.slice")
        .join(format!("kubepods-besteffort-pod{}.slice", UID.replace('-', "_")));
    let scope = pod.join(format!("cri-containerd-{}.scope", id('d')));
    container(&scope, version, 0);
    container(&root.join("system.slice/containerd.service"), version, 0);
    let mut counters = Counters::default();
    counters.apply(scan(&root, version).0);
    container(&scope, version, 1);
    assert!(counters.apply(scan(&root, version).0).is_empty());
    let killed = counters.apply(scan(&root, version).0);
    assert_eq!(
        killed.iter().map(|(s, n)| (s.pod_uid.clone(), s.container_id.clone(), *n)).collect::<Vec<_>>(),
        vec![(UID.to_owned(), id('d'), 1)]
    );
}

#[test]
fn a_directory_without_a_memory_hierarchy_is_refused_with_what_to_mount() {
    let host = tempfile::tempdir().unwrap();
    let err = memory_hierarchy(host.path()).unwrap_err().to_string();
    assert!(err.contains("mount the host's /sys/fs/cgroup there, read-only"), "{err}");
}
