//! The one way tests and benches build Pod JSON: `pod(uid).app(c("web", 1).died(..))`.
//!
//! By default a pod is what the API server writes (metadata with `managedFields`, a spec, a
//! status with image fields). `bare()` leaves only what a recording made with `kubectl get -w`
//! or written by hand has: the names, the uid and the fields set on the builder. A container
//! status (`c(..).json()`) is also what a status patch through the cluster carries.

use restart_watcher::pod::SlimPod;
use serde_json::{Value, json};

/// A container status to put in a pod.
#[derive(Clone)]
pub struct C {
    pub name: String,
    pub restarts: u32,
    pub last: Option<Value>,
    pub state: Value,
    pub id: Option<String>,
    /// Other fields of the status (`ready`, `started`, `image`, ...), over the defaults.
    pub fields: serde_json::Map<String, Value>,
    /// Only `name`, `restartCount`, `state`, `lastState` (when set) and `fields`.
    pub bare: bool,
}

/// A container `name` with `restarts`, running, no last termination.
pub fn c(name: &str, restarts: u32) -> C {
    C {
        name: name.to_owned(),
        restarts,
        last: None,
        state: json!({"running": {"startedAt": "2026-11-20T10:00:00Z"}}),
        id: None,
        fields: serde_json::Map::new(),
        bare: false,
    }
}

impl C {
    /// Sets `lastState.terminated`.
    pub fn died(mut self, reason: &str, exit_code: i32, finished_at: &str) -> C {
        self.last = Some(json!({"terminated": {
            "reason": reason, "exitCode": exit_code,
            "startedAt": "2026-11-20T09:00:00Z", "finishedAt": finished_at,
            "containerID": format!("containerd://{}{}", self.name, self.restarts)}}));
        self
    }
    /// Sets the current state to running since `started_at`.
    pub fn running_since(mut self, started_at: &str) -> C {
        self.state = json!({"running": {"startedAt": started_at}});
        self
    }
    /// Sets the current state to waiting with `reason`.
    pub fn waiting(mut self, reason: &str) -> C {
        self.state = json!({"waiting": {"reason": reason, "message": "back-off 40s restarting failed container"}});
        self
    }
    /// Sets the current state to waiting with `reason` and the kubelet's `message`.
    pub fn waiting_msg(mut self, reason: &str, message: &str) -> C {
        self.state = json!({"waiting": {"reason": reason, "message": message}});
        self
    }
    /// Sets the current state to terminated (a container that ended and has not restarted).
    pub fn ended(mut self, reason: &str, exit_code: i32, finished_at: &str) -> C {
        self.state = json!({"terminated": {
            "reason": reason, "exitCode": exit_code,
            "startedAt": "2026-11-20T09:00:00Z", "finishedAt": finished_at,
            "containerID": format!("containerd://{}{}-end", self.name, self.restarts)}});
        self
    }
    /// Sets the container's `lastState.terminated` to a termination of `reason` that never ran
    /// (`StartError`), with no `startedAt`.
    pub fn died_unstarted(mut self, reason: &str, exit_code: i32) -> C {
        self.last = Some(json!({"terminated": {"reason": reason, "exitCode": exit_code,
            "finishedAt": "2026-11-20T10:00:00Z"}}));
        self
    }
    /// Sets the current state to terminated without having run (the kubelet's final status of a
    /// container still waiting when its pod went away: `ContainerStatusUnknown`, 137).
    pub fn ended_unstarted(mut self, reason: &str, exit_code: i32) -> C {
        self.state = json!({"terminated": {"reason": reason, "exitCode": exit_code,
            "message": "The container could not be located when the pod was terminated"}});
        self
    }
    /// Sets `lastState.terminated` to exactly these fields (no defaults): `terminated(json!({..}))`.
    pub fn terminated(mut self, terminated: Value) -> C {
        self.last = Some(json!({ "terminated": terminated }));
        self
    }
    /// Sets the current state as given (`{"running": {}}`, `{"waiting": {..}}`, ...).
    pub fn state(mut self, state: Value) -> C {
        self.state = state;
        self
    }
    /// Leaves the current state out (as some hand-written recordings do).
    pub fn without_state(self) -> C {
        self.state(Value::Null)
    }
    /// Sets the status's `containerID` (the current instance).
    pub fn id(mut self, container_id: &str) -> C {
        self.id = Some(container_id.to_owned());
        self
    }
    /// Sets another field of the status (`ready`, `started`, `image`, `imageID`).
    pub fn field(mut self, key: &str, value: impl Into<Value>) -> C {
        self.fields.insert(key.to_owned(), value.into());
        self
    }
    /// Only the fields set on the builder (see [`C::bare`](C#structfield.bare)).
    pub fn bare(mut self) -> C {
        self.bare = true;
        self
    }
    /// The container status as JSON.
    pub fn json(&self) -> Value {
        let mut v = if self.bare {
            json!({"name": self.name, "restartCount": self.restarts, "state": self.state})
        } else {
            json!({"name": self.name, "restartCount": self.restarts, "ready": true,
                   "image": format!("registry.example.com/{}:1.0", self.name),
                   "imageID": format!("registry.example.com/{}@sha256:0123", self.name),
                   "state": self.state, "lastState": {}})
        };
        if let Some(last) = &self.last {
            v["lastState"] = last.clone();
        }
        if self.state.is_null() {
            v.as_object_mut().map(|o| o.remove("state"));
        }
        if let Some(id) = &self.id {
            v["containerID"] = json!(id);
        }
        for (k, val) in &self.fields {
            v[k] = val.clone();
        }
        v
    }
}

/// Builds a Pod object.
#[derive(Clone)]
pub struct PodB {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub app: Vec<C>,
    pub init: Vec<C>,
    pub sidecars: Vec<String>,
    pub ephemeral: Vec<C>,
    pub extra_status: Value,
    pub extra_meta: Value,
    pub restart_policy: Option<String>,
    pub with_status: bool,
    /// Only the names, the uid and what was set (see [`PodB::bare`]).
    pub bare: bool,
    /// `spec.nodeName` (`node-a` unless set; a bare pod has none unless set).
    pub node: Option<String>,
    /// More fields of a container's spec, by name (`restartPolicy`, `restartPolicyRules`).
    pub container_specs: Vec<(String, Value)>,
}

pub fn pod(uid: &str) -> PodB {
    PodB {
        uid: uid.to_owned(),
        name: format!("pod-{uid}"),
        namespace: "shop".into(),
        app: vec![],
        init: vec![],
        sidecars: vec![],
        ephemeral: vec![],
        extra_status: json!({}),
        extra_meta: json!({}),
        restart_policy: None,
        with_status: true,
        bare: false,
        node: None,
        container_specs: vec![],
    }
}

impl PodB {
    pub fn named(mut self, ns: &str, name: &str) -> Self {
        self.namespace = ns.into();
        self.name = name.into();
        self
    }
    pub fn app(mut self, c: C) -> Self {
        self.app.push(c);
        self
    }
    pub fn init(mut self, c: C) -> Self {
        self.init.push(c);
        self
    }
    /// An init container with `restartPolicy: Always` (a native sidecar).
    pub fn sidecar(mut self, c: C) -> Self {
        self.sidecars.push(c.name.clone());
        self.init.push(c);
        self
    }
    pub fn ephemeral(mut self, c: C) -> Self {
        self.ephemeral.push(c);
        self
    }
    pub fn ready(mut self, ready: bool) -> Self {
        self.extra_status = json!({"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}],
                                   "podIP": if ready {"10.0.0.1"} else {"10.0.0.2"}});
        self
    }
    /// `spec.restartPolicy: Never`.
    pub fn never(mut self) -> Self {
        self.restart_policy = Some("Never".to_owned());
        self
    }
    /// Sets (or adds) fields of the status: `phase`, `reason`, `message`, `conditions`.
    pub fn status(mut self, fields: Value) -> Self {
        if let (Some(into), Some(from)) = (self.extra_status.as_object_mut(), fields.as_object()) {
            into.extend(from.clone());
        }
        self
    }
    /// Sets (or adds) metadata fields: `creationTimestamp`, `deletionTimestamp`, ...
    pub fn meta(mut self, fields: Value) -> Self {
        if let (Some(into), Some(from)) = (self.extra_meta.as_object_mut(), fields.as_object()) {
            into.extend(from.clone());
        }
        self
    }
    pub fn without_status(mut self) -> Self {
        self.with_status = false;
        self
    }
    /// `spec.nodeName`.
    pub fn on_node(mut self, node: &str) -> Self {
        self.node = Some(node.to_owned());
        self
    }
    /// Adds fields to the spec of the container (app or init) `name`: its own `restartPolicy` and
    /// `restartPolicyRules` (`json!({"restartPolicy": "Never", "restartPolicyRules": [..]})`).
    pub fn container_spec(mut self, name: &str, fields: Value) -> Self {
        self.container_specs.push((name.to_owned(), fields));
        self
    }
    /// `spec.restartPolicy` as given (`Always`, `OnFailure`, `Never`).
    pub fn restart_policy(mut self, policy: &str) -> Self {
        self.restart_policy = Some(policy.to_owned());
        self
    }
    /// Only what a hand-written or `kubectl get -w` recording has: metadata `name`, `namespace`,
    /// `uid`, the containers' names in the spec, the statuses, and the fields set on the builder
    /// (no `managedFields`, labels, node, phase or image fields).
    pub fn bare(mut self) -> Self {
        self.bare = true;
        self
    }
    /// The pod as a watch event of `kind` (`ADDED`, `MODIFIED`, `DELETED`).
    pub fn event(&self, kind: &str) -> Value {
        json!({"type": kind, "object": self.json()})
    }
    pub fn json(&self) -> Value {
        if self.bare {
            return self.bare_json();
        }
        let init_specs: Vec<Value> = self
            .init
            .iter()
            .map(|c| {
                if self.sidecars.contains(&c.name) {
                    json!({"name": c.name, "image": "x", "restartPolicy": "Always"})
                } else {
                    json!({"name": c.name, "image": "x"})
                }
            })
            .collect();
        let mut v = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid,
                         "resourceVersion": "1", "labels": {"app.kubernetes.io/name": "shop-app"},
                         "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}]},
            "spec": {"nodeName": self.node.as_deref().unwrap_or("node-a"), "initContainers": init_specs,
                     "containers": self.app.iter().map(|c| json!({"name": c.name, "image": "x"})).collect::<Vec<_>>()},
        });
        if let Some(policy) = &self.restart_policy {
            v["spec"]["restartPolicy"] = json!(policy);
        }
        for (name, fields) in &self.container_specs {
            for key in ["containers", "initContainers"] {
                for c in v["spec"][key].as_array_mut().into_iter().flatten().filter(|c| c["name"] == *name) {
                    merge(c, fields);
                }
            }
        }
        if let Some(extra) = self.extra_meta.as_object() {
            for (k, val) in extra {
                v["metadata"][k] = val.clone();
            }
        }
        if self.with_status {
            let mut status = json!({
                "phase": "Running",
                "containerStatuses": self.app.iter().map(C::json).collect::<Vec<_>>(),
                "initContainerStatuses": self.init.iter().map(C::json).collect::<Vec<_>>(),
                "ephemeralContainerStatuses": self.ephemeral.iter().map(C::json).collect::<Vec<_>>(),
            });
            if let Some(extra) = self.extra_status.as_object() {
                for (k, val) in extra {
                    status[k] = val.clone();
                }
            }
            v["status"] = status;
        }
        v
    }
    fn bare_json(&self) -> Value {
        let mut v = json!({"kind": "Pod", "apiVersion": "v1",
                           "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid}});
        merge(&mut v["metadata"], &self.extra_meta);
        let mut spec = json!({});
        if let Some(node) = &self.node {
            spec["nodeName"] = json!(node);
        }
        if let Some(policy) = &self.restart_policy {
            spec["restartPolicy"] = json!(policy);
        }
        let mut status = json!({});
        for (list, statuses) in [("initContainers", &self.init), ("containers", &self.app)] {
            if statuses.is_empty() {
                continue;
            }
            let specs: Vec<Value> = statuses
                .iter()
                .map(|c| match self.sidecars.contains(&c.name) {
                    true => json!({"name": c.name, "restartPolicy": "Always"}),
                    false => json!({"name": c.name}),
                })
                .collect();
            spec[list] = json!(specs);
            let key = if list == "containers" { "containerStatuses" } else { "initContainerStatuses" };
            status[key] = statuses.iter().map(|c| c.clone().bare().json()).collect();
        }
        if !self.ephemeral.is_empty() {
            status["ephemeralContainerStatuses"] = self.ephemeral.iter().map(|c| c.clone().bare().json()).collect();
        }
        v["spec"] = spec;
        if self.with_status {
            merge(&mut status, &self.extra_status);
            v["status"] = status;
        }
        v
    }
    pub fn slim(&self) -> SlimPod {
        serde_json::from_value(self.json()).expect("builder produces a decodable pod")
    }
}

/// Sets each field of the object `from` on the object `into`.
fn merge(into: &mut Value, from: &Value) {
    if let Some(from) = from.as_object() {
        for (k, val) in from {
            into[k] = val.clone();
        }
    }
}

/// Runs `input` through the library's replay with a default detector: the restart counts emitted,
/// the stats, and how it ended.
pub fn replay_counts(
    input: impl std::io::Read,
) -> (Vec<u32>, restart_watcher::replay::ReplayStats, Result<(), restart_watcher::replay::ReplayError>) {
    let mut d = restart_watcher::detector::Detector::default();
    let mut stats = restart_watcher::replay::ReplayStats::default();
    let mut got = Vec::new();
    let r = restart_watcher::replay::replay(
        input,
        "t",
        &mut d,
        jiff::Timestamp::now,
        |e| {
            got.push(e.restart_count);
            true
        },
        &mut stats,
    );
    (got, stats, r)
}
