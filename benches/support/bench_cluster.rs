//! What the benches against a real control plane share: a cluster of kwok nodes
//! (tests/support/cluster.sh), its client, many pods on it, and process measures.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

/// Requests in flight while populating.
pub const CONCURRENCY: usize = 64;
/// The namespaces the pods are spread over.
pub const NAMESPACES: [&str; 4] = ["bench-a", "bench-b", "bench-c", "bench-d"];

/// A running bench cluster; stopped on drop.
pub struct BenchCluster {
    pub dir: PathBuf,
    pub env: HashMap<String, String>,
    pub nodes: usize,
}

impl BenchCluster {
    /// Starts a cluster with `nodes` kwok nodes (`node-0` ...), with `apiserver_args`.
    pub fn start(name: &str, nodes: usize, apiserver_args: &[&str]) -> BenchCluster {
        let dir = std::env::temp_dir().join(format!("rw-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let names: Vec<String> = (0..nodes).map(|i| format!("node-{i}")).collect();
        let out = Command::new("tests/support/cluster.sh")
            .arg("start")
            .arg(&dir)
            .args(["--nodes", &names.join(",")])
            .args(apiserver_args)
            .env("RW_OWNER_PID", std::process::id().to_string())
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "the bench cluster did not start");
        let env = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect();
        BenchCluster { dir, env, nodes }
    }

    pub fn kubeconfig(&self) -> &str {
        &self.env["ADMIN_KUBECONFIG"]
    }

    pub async fn client(&self) -> Client {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig()).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
        Client::try_from(config).unwrap()
    }

    /// The pid of a component (`apiserver`, `etcd`, ...).
    pub fn pid(&self, component: &str) -> u32 {
        std::fs::read_to_string(self.dir.join(format!("{component}.pid"))).unwrap().trim().parse().unwrap()
    }
}

impl Drop for BenchCluster {
    fn drop(&mut self) {
        let _ = Command::new("tests/support/cluster.sh").arg("stop").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn pod_json(ns: &str, i: usize, owner_uid: &str, nodes: usize) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("app-{i:06}"), "namespace": ns,
            "labels": {"app.kubernetes.io/name": "app", "pod-template-hash": "5d4c8b7a9", "team": "payments"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x".repeat(600)},
            // A real owner (the garbage collector deletes pods whose owner does not exist) that no
            // controller acts on: the pods keep their size and nothing else touches them.
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "app-owner",
                                 "uid": owner_uid, "controller": false}]},
        "spec": {"nodeName": format!("node-{}", i % nodes),
            "initContainers": [{"name": "migrate", "image": "registry.example.com/migrate:1.0"}],
            "containers": [
            {"name": "app", "image": "registry.example.com/app:1.0", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}},
            {"name": "envoy", "image": "envoyproxy/envoy:v1.31.0"}]}
    }))
    .unwrap()
}

/// Creates `pods` pods spread over the namespaces and `nodes` nodes; returns once kwok runs them all.
pub async fn populate(client: &Client, pods: usize, nodes: usize) {
    let namespaces = NAMESPACES;
    let nsapi: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let mut owners = std::collections::HashMap::new();
    for ns in namespaces {
        let obj = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        nsapi.create(&PostParams::default(), &obj).await.unwrap();
        // The namespace's default ServiceAccount comes from the controller-manager; pods wait for it.
        let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), ns);
        while sa.get_opt("default").await.unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let cm: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), ns);
        let obj = serde_json::from_value(json!({"metadata": {"name": "app-owner"}})).unwrap();
        let uid = cm.create(&PostParams::default(), &obj).await.unwrap().metadata.uid.unwrap();
        owners.insert(ns, uid);
    }
    let owners = &owners;
    futures::stream::iter(0..pods)
        .map(|i| {
            let ns = namespaces[i % namespaces.len()];
            let api: Api<Pod> = Api::namespaced(client.clone(), ns);
            async move {
                let pod = pod_json(ns, i, &owners[ns], nodes);
                api.create(&PostParams::default(), &pod).await?;
                Ok::<_, kube::Error>(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    // The simulated kubelets start every pod (Pending -> Running) before anything is measured.
    let all: Api<Pod> = Api::all(client.clone());
    let pending = kube::api::ListParams::default().fields("status.phase=Pending").limit(1);
    while !all.list(&pending).await.unwrap().items.is_empty() {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Resident memory of a process, in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    proc_status_mib(pid, "VmRSS:")
}

/// The process's peak RSS so far (`VmHWM`), in MiB.
#[allow(dead_code)]
pub fn peak_rss_mib(pid: u32) -> f64 {
    proc_status_mib(pid, "VmHWM:")
}

fn proc_status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 =
        status.lines().find(|l| l.starts_with(field)).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    kb / 1024.0
}
