//! The memory a container had when it ended, what an OOM kill is read against: its limit as the
//! kubelet reports it in the container's status (after any in-place resize), else the pod-level
//! limit; its request; the pod's QoS class. Quantities are Kubernetes' (`32Mi`, `1G`, `512e6`).

use crate::pod::{SlimContainerStatus, SlimPod};
use crate::record::MemoryContext;

/// The memory context of `status`'s container in `pod`.
pub(crate) fn context(pod: &SlimPod, status: &SlimContainerStatus) -> MemoryContext {
    let own = status.resources.limits.memory.as_deref().and_then(bytes);
    let pod_level = pod.spec.resources.limits.memory.as_deref().and_then(bytes);
    MemoryContext {
        limit_bytes: own.or(pod_level),
        limit_is_pod_level: own.is_none() && pod_level.is_some(),
        request_bytes: status
            .resources
            .requests
            .memory
            .as_deref()
            .and_then(bytes)
            .or_else(|| pod.spec.resources.requests.memory.as_deref().and_then(bytes)),
        qos_class: pod.status.qos_class.clone(),
    }
}

/// A Kubernetes quantity in bytes: a decimal number with a binary (`Ki`..`Ei`) or decimal
/// (`k`, `M`..`E`, `m`) suffix or an exponent (`e6`); `None` when it is not one or not a whole
/// number of bytes within `u64`.
pub(crate) fn bytes(quantity: &str) -> Option<u64> {
    let b = value(quantity)?.ceil();
    (b.is_finite() && b >= 0.0 && b < u64::MAX as f64).then_some(b as u64)
}

/// A CPU quantity in millicores (`500m` -> 500, `2` -> 2000), rounded up; `None` when it is not one.
pub(crate) fn millicores(quantity: &str) -> Option<u64> {
    let m = (value(quantity)? * 1000.0).ceil();
    (m.is_finite() && m >= 0.0 && m < u64::MAX as f64).then_some(m as u64)
}

/// The value of a quantity with its suffix applied.
fn value(quantity: &str) -> Option<f64> {
    let q = quantity.trim();
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+')).unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse().ok()?),
        _ => return None,
    };
    Some(value * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_in_bytes() {
        for (q, want) in [
            ("32Mi", Some(33_554_432)),
            ("1Gi", Some(1_073_741_824)),
            ("128974848", Some(128_974_848)),
            ("129e6", Some(129_000_000)),
            ("129M", Some(129_000_000)),
            ("123Mi", Some(128_974_848)),
            ("1.5Gi", Some(1_610_612_736)),
            ("100m", Some(1)),
            ("0", Some(0)),
            ("", None),
            ("lots", None),
            ("12Xi", None),
            ("-1Mi", None),
        ] {
            assert_eq!(bytes(q), want, "{q:?}");
        }
    }

    #[test]
    fn cpu_quantities_in_millicores() {
        for (q, want) in [("500m", Some(500)), ("2", Some(2000)), ("0.25", Some(250)), ("1.5", Some(1500)), ("x", None)]
        {
            assert_eq!(millicores(q), want, "{q:?}");
        }
    }

    #[test]
    fn the_limit_in_force_is_the_containers_then_the_pods() {
        let pod = |container_limit: &str, pod_limit: &str| -> (SlimPod, SlimContainerStatus) {
            let mut resources = serde_json::json!({});
            if !container_limit.is_empty() {
                resources = serde_json::json!({"limits": {"memory": container_limit}, "requests": {"memory": "16Mi"}});
            }
            let mut spec = serde_json::json!({});
            if !pod_limit.is_empty() {
                spec = serde_json::json!({"resources": {"limits": {"memory": pod_limit}}});
            }
            let pod: SlimPod = serde_json::from_value(serde_json::json!({"spec": spec,
                "status": {"qosClass": "Burstable", "containerStatuses": [{"name": "app", "resources": resources}]}}))
            .unwrap();
            let status = pod.status.container_statuses[0].clone();
            (pod, status)
        };
        let (p, s) = pod("32Mi", "");
        let c = context(&p, &s);
        assert_eq!((c.limit_bytes, c.limit_is_pod_level, c.request_bytes), (Some(33_554_432), false, Some(16_777_216)));
        assert_eq!(c.qos_class.as_deref(), Some("Burstable"));
        let (p, s) = pod("", "1Gi");
        let c = context(&p, &s);
        assert_eq!((c.limit_bytes, c.limit_is_pod_level, c.request_bytes), (Some(1_073_741_824), true, None));
        let (p, s) = pod("", "");
        assert_eq!(context(&p, &s).limit_bytes, None);
    }
}
