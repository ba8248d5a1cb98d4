//! Every wire string restart-watcher writes: attribute keys, event and span names, scope identity.
//!
//! Semantic-convention keys come from `opentelemetry-semantic-conventions` (v1.42 schema) wherever the
//! convention defines them; keys in the `restart_watcher.` namespace are our own (semconv asks custom
//! names not to squat `k8s.`). Tests assert the mapping against these constants, never against literals.

use opentelemetry_semantic_conventions::attribute as semconv;

/// The event name of a pod that has not started past the pending threshold (one per episode).
pub const EVENT_NAME_POD_START_FAILURE: &str = "restart_watcher.pod.start_failure";
/// The event name of the end of a pod's start failure (it started, failed, or was deleted).
pub const EVENT_NAME_POD_START_FAILURE_ENDED: &str = "restart_watcher.pod.start_failure_ended";
/// The event name of a rollout whose new revision fails where the previous did not.
pub const EVENT_NAME_ROLLOUT_REGRESSION: &str = "restart_watcher.workload.rollout_regression";
/// The span name of a rollout regression.
pub const SPAN_NAME_ROLLOUT: &str = "workload rollout";
/// The span name of a pod's start failure.
pub const SPAN_NAME_POD_START: &str = "pod start";
/// The OTel event name of a restart record (`LogRecord.event_name`) and of its span event.
pub const EVENT_NAME: &str = "restart_watcher.container.restart";
/// The event name of a start failure: a container that cannot start (one per episode).
pub const EVENT_NAME_START_FAILURE: &str = "restart_watcher.container.start_failure";
/// The event name of the end of a start-failure episode (the container started, or its pod went).
pub const EVENT_NAME_START_FAILURE_ENDED: &str = "restart_watcher.container.start_failure_ended";
/// The event name of a container that failed and will not be restarted.
pub const EVENT_NAME_FAILURE: &str = "restart_watcher.container.failure";
/// The event name of a pod's eviction or preemption.
pub const EVENT_NAME_EVICTION: &str = "restart_watcher.pod.eviction";
/// The event name of a pod-wide restart (sandbox recreation, restart-all).
pub const EVENT_NAME_POD_RESTART: &str = "restart_watcher.pod.restart";
/// The event name of an OOM kill that restarted nothing (node mode, opt-in).
pub const EVENT_NAME_OOM_KILL: &str = "restart_watcher.container.oom_kill";
/// The name of the span covering the life of the terminated container instance (low cardinality).
pub const SPAN_NAME: &str = "container run";
/// The name of the span of a start-failure episode.
pub const SPAN_NAME_START_FAILURE: &str = "container start";
/// The name of the span of an eviction.
pub const SPAN_NAME_EVICTION: &str = "pod eviction";
/// The name of the span of a pod-wide restart.
pub const SPAN_NAME_POD_RESTART: &str = "pod restart";
/// The name of the span of an OOM kill that restarted nothing.
pub const SPAN_NAME_OOM_KILL: &str = "container oom kill";
/// Instrumentation scope name: the agent's own identity.
pub const SCOPE_NAME: &str = "restart-watcher";
/// Instrumentation scope version.
pub const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The semantic-conventions schema the attribute keys follow.
pub const SCHEMA_URL: &str = opentelemetry_semantic_conventions::SCHEMA_URL;

// ---- resource: the restarted container ----
pub const SERVICE_NAME: &str = semconv::SERVICE_NAME;
pub const SERVICE_NAMESPACE: &str = semconv::SERVICE_NAMESPACE;
pub const SERVICE_INSTANCE_ID: &str = semconv::SERVICE_INSTANCE_ID;
pub const SERVICE_VERSION: &str = semconv::SERVICE_VERSION;
pub const K8S_CLUSTER_NAME: &str = semconv::K8S_CLUSTER_NAME;
pub const K8S_CLUSTER_UID: &str = semconv::K8S_CLUSTER_UID;
pub const K8S_NAMESPACE_NAME: &str = semconv::K8S_NAMESPACE_NAME;
pub const K8S_POD_NAME: &str = semconv::K8S_POD_NAME;
pub const K8S_POD_UID: &str = semconv::K8S_POD_UID;
pub const K8S_NODE_NAME: &str = semconv::K8S_NODE_NAME;
pub const K8S_NODE_UID: &str = semconv::K8S_NODE_UID;
pub const K8S_CONTAINER_NAME: &str = semconv::K8S_CONTAINER_NAME;
pub const K8S_CONTAINER_RESTART_COUNT: &str = semconv::K8S_CONTAINER_RESTART_COUNT;
pub const CONTAINER_ID: &str = semconv::CONTAINER_ID;
pub const CONTAINER_RUNTIME_NAME: &str = semconv::CONTAINER_RUNTIME_NAME;
pub const CONTAINER_IMAGE_NAME: &str = semconv::CONTAINER_IMAGE_NAME;
pub const CONTAINER_IMAGE_TAGS: &str = semconv::CONTAINER_IMAGE_TAGS;
pub const CONTAINER_IMAGE_REPO_DIGESTS: &str = semconv::CONTAINER_IMAGE_REPO_DIGESTS;
/// The image's manifest digest (`sha256:...`), from the container status's `imageID`.
pub const OCI_MANIFEST_DIGEST: &str = semconv::OCI_MANIFEST_DIGEST;
pub const K8S_REPLICASET_NAME: &str = semconv::K8S_REPLICASET_NAME;
pub const K8S_REPLICASET_UID: &str = semconv::K8S_REPLICASET_UID;
pub const K8S_DEPLOYMENT_NAME: &str = semconv::K8S_DEPLOYMENT_NAME;
pub(crate) const K8S_DEPLOYMENT_UID: &str = semconv::K8S_DEPLOYMENT_UID;
pub(crate) const K8S_STATEFULSET_NAME: &str = semconv::K8S_STATEFULSET_NAME;
pub(crate) const K8S_STATEFULSET_UID: &str = semconv::K8S_STATEFULSET_UID;
pub(crate) const K8S_DAEMONSET_NAME: &str = semconv::K8S_DAEMONSET_NAME;
pub(crate) const K8S_DAEMONSET_UID: &str = semconv::K8S_DAEMONSET_UID;
pub(crate) const K8S_JOB_NAME: &str = semconv::K8S_JOB_NAME;
pub(crate) const K8S_JOB_UID: &str = semconv::K8S_JOB_UID;
pub(crate) const K8S_CRONJOB_NAME: &str = semconv::K8S_CRONJOB_NAME;
pub(crate) const K8S_CRONJOB_UID: &str = semconv::K8S_CRONJOB_UID;
/// Prefix of the opt-in pod label attributes: `k8s.pod.label.<key>`.
pub const K8S_POD_LABEL_PREFIX: &str = "k8s.pod.label.";

// ---- record attributes: what happened ----
pub const K8S_CONTAINER_STATUS_LAST_TERMINATED_REASON: &str = semconv::K8S_CONTAINER_STATUS_LAST_TERMINATED_REASON;
pub const PROCESS_EXIT_CODE: &str = semconv::PROCESS_EXIT_CODE;
pub const ERROR_TYPE: &str = semconv::ERROR_TYPE;
pub const K8S_CONTAINER_STATUS_STATE: &str = semconv::K8S_CONTAINER_STATUS_STATE;
pub const K8S_CONTAINER_STATUS_REASON: &str = semconv::K8S_CONTAINER_STATUS_REASON;
/// Evictions: the pod's `status.reason` (`Evicted`, ...) and `status.phase`.
pub const K8S_POD_STATUS_REASON: &str = semconv::K8S_POD_STATUS_REASON;
pub const K8S_POD_STATUS_PHASE: &str = semconv::K8S_POD_STATUS_PHASE;
pub const CONTAINER_KIND: &str = "restart_watcher.container.kind";
pub const TERMINATION_SIGNAL: &str = "restart_watcher.termination.signal";
pub const TERMINATION_SIGNAL_NAME: &str = "restart_watcher.termination.signal_name";
pub const TERMINATION_STARTED_AT: &str = "restart_watcher.termination.started_at";
pub const TERMINATION_MESSAGE: &str = "restart_watcher.termination.message";
pub const RESTARTS_MISSED: &str = "restart_watcher.restarts.missed";
pub const RESTART_ID: &str = "restart_watcher.restart.id";
/// The new `restartCount` after this restart ("restart #N"); the resource's
/// `k8s.container.restart_count` is that of the instance that died (N - 1).
pub const RESTART_COUNT: &str = "restart_watcher.restart_count";
pub const DETECTED_LATE: &str = "restart_watcher.detected_late";
pub const CAUSE: &str = "restart_watcher.cause";
/// In `CrashLoopBackOff`: the back-off delay before the next start, in seconds (int).
pub const CRASH_LOOP_BACK_OFF: &str = "restart_watcher.crash_loop.back_off";
/// Opt-in: the last log lines of the terminated instance (redacted, capped).
pub(crate) const PREVIOUS_LOGS: &str = "restart_watcher.previous_logs";
/// What kind of fault the cause is: `application`, `resource`, `configuration`, `infrastructure`
/// or `unknown`.
pub const CAUSE_CATEGORY: &str = "restart_watcher.cause.category";
/// The kubelet's message of a start failure, or the eviction's message (redacted, capped).
pub const STATUS_MESSAGE: &str = "restart_watcher.status.message";
/// Start failures: the observed attempts of the episode (int).
pub const START_FAILURE_ATTEMPTS: &str = "restart_watcher.start_failure.attempts";
/// Start failures: the waiting reason that opened the episode.
pub(crate) const START_FAILURE_REASON: &str = "restart_watcher.start_failure.reason";
/// The end of a start-failure episode: how long it lasted, in seconds (double).
pub const START_FAILURE_DURATION: &str = "restart_watcher.start_failure.duration";
/// The end of a start-failure episode: `started` or `pod_deleted`.
pub const START_FAILURE_OUTCOME: &str = "restart_watcher.start_failure.outcome";
/// Evictions: the `DisruptionTarget` condition's reason, else the pod's `status.reason`.
pub const EVICTION_REASON: &str = "restart_watcher.eviction.reason";
/// OOM kills: the memory limit in force when the container was killed, in bytes (int).
pub const MEMORY_LIMIT: &str = "restart_watcher.memory.limit";
/// OOM kills: whose limit it was, `container` or `pod` (pod-level resources).
pub const MEMORY_LIMIT_SOURCE: &str = "restart_watcher.memory.limit_source";
/// OOM kills: the container's memory request, in bytes (int).
pub const MEMORY_REQUEST: &str = "restart_watcher.memory.request";
/// OOM kills: the pod's QoS class (`Guaranteed`, `Burstable`, `BestEffort`).
pub const POD_QOS_CLASS: &str = "restart_watcher.pod.qos_class";
/// Pod-wide restarts: what fired it, `sandbox`, `container` (a `RestartAllContainers` rule) or
/// `unknown` (the firing exit was not observed).
pub const POD_RESTART_TRIGGER: &str = "restart_watcher.pod_restart.trigger";
/// Pod-wide restarts fired by a container: its name.
pub const POD_RESTART_TRIGGER_CONTAINER: &str = "restart_watcher.pod_restart.trigger.container";
/// Pod-wide restarts fired by a container: that container's own cause.
pub const POD_RESTART_TRIGGER_CAUSE: &str = "restart_watcher.pod_restart.trigger.cause";
/// Pod-wide restarts: the containers restarted (string array).
pub const POD_RESTART_CONTAINERS: &str = "restart_watcher.pod_restart.containers";
/// Pod-wide restarts: their new restart counts, in the order of the containers (int array).
pub const POD_RESTART_RESTART_COUNTS: &str = "restart_watcher.pod_restart.restart_counts";
/// A container restarted with its pod: the pod-wide restart's `restart_watcher.restart.id`.
pub const POD_RESTART_ID: &str = "restart_watcher.pod_restart.id";
/// Resize restarts: the memory limit before and after, in bytes (int).
pub const RESIZE_MEMORY_LIMIT_BEFORE: &str = "restart_watcher.resize.memory.limit.before";
pub const RESIZE_MEMORY_LIMIT_AFTER: &str = "restart_watcher.resize.memory.limit.after";
/// Resize restarts: the CPU limit before and after, in cores (double).
pub const RESIZE_CPU_LIMIT_BEFORE: &str = "restart_watcher.resize.cpu.limit.before";
pub const RESIZE_CPU_LIMIT_AFTER: &str = "restart_watcher.resize.cpu.limit.after";
/// OOM kills that restarted nothing: the kills since the last record (int).
pub const OOM_KILL_COUNT: &str = "restart_watcher.oom_kill.count";
/// OOM kills that restarted nothing: the killed process's name, from the kernel log.
pub const OOM_KILL_PROCESS: &str = "restart_watcher.oom_kill.process";
/// Image-pull start failures: why (`not_found`, `unauthorized`, `timeout`, `unreachable`,
/// `rate_limited`, `tls`, `other`), from the kubelet's message.
pub const IMAGE_PULL_REASON: &str = "restart_watcher.image_pull.reason";
/// Image-pull start failures: the registry's host (`docker.io` for Docker Hub's short names).
pub const IMAGE_PULL_REGISTRY: &str = "restart_watcher.image_pull.registry";
/// The Deployment revision the pod runs (its ReplicaSet's `deployment.kubernetes.io/revision`).
pub const REVISION: &str = "restart_watcher.revision";
/// The pod's template hash: `pod-template-hash` (Deployments) or `controller-revision-hash`
/// (StatefulSets, DaemonSets).
pub const REVISION_HASH: &str = "restart_watcher.revision.hash";
/// `true` on the first failure the agent saw of a workload's revision (absent otherwise).
pub const REVISION_FIRST_FAILURE: &str = "restart_watcher.revision.first_failure";
/// A rollout regression: when the rollout began (RFC 3339: its new revision's first pod's creation).
pub const ROLLOUT_STARTED_AT: &str = "restart_watcher.rollout.started_at";
/// A rollout regression: the window after the rollout in which its failures count, in seconds.
pub const ROLLOUT_WINDOW: &str = "restart_watcher.rollout.window";
/// A rollout regression: the new revision's failures within the window.
pub const ROLLOUT_FAILURES: &str = "restart_watcher.rollout.failures";
/// A rollout regression: the new revision's pods that failed within the window.
pub const ROLLOUT_FAILING_PODS: &str = "restart_watcher.rollout.failing_pods";
/// A rollout regression: the previous revision's pods that failed in the window before the rollout.
pub const ROLLOUT_PREVIOUS_FAILING_PODS: &str = "restart_watcher.rollout.previous_failing_pods";
/// Storm control: how many restarts a coalesced record stands for (int).
pub(crate) const RESTARTS_COALESCED: &str = "restart_watcher.restarts.coalesced";

// ---- Kubernetes names the agent reads ----
/// Pod annotation that sets `service.name` (semconv k8s-attributes guide, highest priority).
pub const ANNOTATION_SERVICE_NAME: &str = "resource.opentelemetry.io/service.name";
/// The prefix of the pod annotations that set resource attributes (semconv's k8s guide).
pub const ANNOTATION_PREFIX: &str = "resource.opentelemetry.io/";
/// Pod annotation that sets `service.namespace`.
pub const ANNOTATION_SERVICE_NAMESPACE: &str = "resource.opentelemetry.io/service.namespace";
/// Well-known label used for `service.name` after the annotation.
pub const LABEL_APP_INSTANCE: &str = "app.kubernetes.io/instance";
/// Well-known label used for `service.version` after the annotation (opt-in).
pub const LABEL_APP_VERSION: &str = "app.kubernetes.io/version";
/// Well-known label used for `service.name` after `app.kubernetes.io/instance`.
pub const LABEL_APP_NAME: &str = "app.kubernetes.io/name";

/// Longest termination message copied into a record, in bytes (cut at a char boundary).
pub const TERMINATION_MESSAGE_MAX_BYTES: usize = 4 * 1024;
