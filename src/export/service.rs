//! The service a container's records belong to, as semconv's non-normative Kubernetes guide
//! (`docs/non-normative/k8s-attributes.md`) derives `service.*`, and the pod's
//! `resource.opentelemetry.io/<key>` annotations as resource attributes. The well-known labels
//! count only when asked for (`--service-from-labels`).

use opentelemetry_proto::tonic::common::v1::KeyValue;

use super::kv::kv_str;
use crate::keys;
use crate::record::PodInfo;

/// The pod's `resource.opentelemetry.io/<key>` annotations, as (`<key>`, value), non-empty.
pub(crate) fn annotated(pod: &PodInfo) -> impl Iterator<Item = (&str, &String)> {
    pod.annotations
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(keys::ANNOTATION_PREFIX)?, v)))
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
}

fn annotation<'a>(pod: &'a PodInfo, key: &str) -> Option<&'a str> {
    annotated(pod).find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
}

fn label<'a>(pod: &'a PodInfo, key: &str, labels: bool) -> Option<&'a str> {
    pod.labels.get(key).map(String::as_str).filter(|v| labels && !v.is_empty())
}

/// The `service.*` attributes of a record about `container` (empty: the pod) running `image`.
pub(crate) fn service_attributes(pod: &PodInfo, container: &str, image: &str, labels: bool) -> Vec<KeyValue> {
    let mut attrs = vec![
        kv_str(keys::SERVICE_NAME, service_name(pod, container, labels)),
        kv_str(keys::SERVICE_NAMESPACE, service_namespace(pod)),
        kv_str(keys::SERVICE_INSTANCE_ID, service_instance_id(pod, container)),
    ];
    if let Some(version) = service_version(pod, image, labels) {
        attrs.push(kv_str(keys::SERVICE_VERSION, version));
    }
    attrs
}

/// `service.name`: the annotation; with `labels`, the `app.kubernetes.io/instance` and
/// `app.kubernetes.io/name` labels; the workload names from the most specific owner up; the pod
/// name; the container name.
pub fn service_name(pod: &PodInfo, container: &str, labels: bool) -> String {
    let candidates = [
        annotation(pod, keys::SERVICE_NAME),
        label(pod, keys::LABEL_APP_INSTANCE, labels),
        label(pod, keys::LABEL_APP_NAME, labels),
        crate::rules::owners::workload(&pod.owners).map(|r| r.name.as_str()),
        Some(pod.name.as_str()),
        Some(container),
    ];
    candidates.into_iter().flatten().find(|s| !s.is_empty()).unwrap_or_default().to_owned()
}

/// `service.namespace`: the annotation, else the Kubernetes namespace.
pub fn service_namespace(pod: &PodInfo) -> String {
    annotation(pod, keys::SERVICE_NAMESPACE).unwrap_or(&pod.namespace).to_owned()
}

/// `service.version`: the annotation; with `labels`, the `app.kubernetes.io/version` label; the
/// image's tag, with its digest when the reference pins one (`1.8.2@sha256:...`), else the digest.
pub fn service_version(pod: &PodInfo, image: &str, labels: bool) -> Option<String> {
    if let Some(v) = annotation(pod, keys::SERVICE_VERSION).or_else(|| label(pod, keys::LABEL_APP_VERSION, labels)) {
        return Some(v.to_owned());
    }
    let digest = image.split_once('@').map(|(_, d)| d).filter(|d| !d.is_empty());
    match (split_image(image).1.filter(|t| !t.is_empty()), digest) {
        (Some(tag), Some(digest)) => Some(format!("{tag}@{digest}")),
        (Some(tag), None) => Some(tag.to_owned()),
        (None, digest) => digest.map(str::to_owned),
    }
}

/// `service.instance.id`: the annotation, else `<namespace>.<pod>.<container>` (`<namespace>.<pod>`
/// for a record about the pod).
pub fn service_instance_id(pod: &PodInfo, container: &str) -> String {
    if let Some(id) = annotation(pod, keys::SERVICE_INSTANCE_ID) {
        return id.to_owned();
    }
    if container.is_empty() {
        format!("{}.{}", pod.namespace, pod.name)
    } else {
        format!("{}.{}.{}", pod.namespace, pod.name, container)
    }
}

/// Splits an image reference into (name, tag): `repo/app:1.2` -> (`repo/app`, `1.2`). A digest
/// reference (`repo/app@sha256:...`) has no tag.
pub fn split_image(image: &str) -> (&str, Option<&str>) {
    let without_digest = image.split_once('@').map_or(image, |(n, _)| n);
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    match without_digest[last_slash..].rfind(':') {
        Some(i) => {
            let at = last_slash + i;
            (&without_digest[..at], Some(&without_digest[at + 1..]))
        }
        None => (without_digest, None),
    }
}
