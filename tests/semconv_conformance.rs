//! Every attribute on every record kind speaks semantic conventions exactly: each key is one the
//! `opentelemetry-semantic-conventions` crate defines (its experimental set included) or is under
//! `restart_watcher.`, and each value has the type semconv gives the key. The types are read from
//! the crate's own source (the examples of each constant's documentation: `"x"` a string, `127` an
//! int, `[...]` an array), found through `cargo metadata`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use jiff::Timestamp;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};
use restart_watcher::detector::Detector;
use restart_watcher::export::convert::{self, MappingConfig};
use restart_watcher::record::{OomKills, Record, RecordKind};
use restart_watcher_test_support::pods::{c, pod};
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Type {
    Str,
    Int,
    Double,
    Bool,
    StrArray,
    IntArray,
}

/// Semconv's keys as the crate defines them, with their types where its documentation gives an
/// example (`None`: no example to read a type from).
fn semconv_keys() -> BTreeMap<String, Option<Type>> {
    let source = std::fs::read_to_string(crate_dir().join("src/attribute.rs")).expect("the crate's attribute.rs");
    let lines: Vec<&str> = source.lines().collect();
    let mut keys = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix("pub const ") else { continue };
        // rustfmt puts a long value on the next line.
        let Some(value) = rest.split('"').nth(1).or_else(|| lines.get(i + 1)?.split('"').nth(1)) else { continue };
        // The doc block above the constant, up to the previous item.
        let doc: Vec<&str> =
            lines[..i].iter().rev().take_while(|l| l.starts_with("///") || l.starts_with("#[")).copied().collect();
        let doc: Vec<&str> = doc.into_iter().rev().collect();
        let example = doc.iter().skip_while(|l| !l.contains("# Examples")).find_map(|l| l.strip_prefix("/// - `"));
        let next =
            doc.iter().skip_while(|l| !l.contains("# Examples")).skip_while(|l| !l.starts_with("/// - `[")).nth(1);
        let ty = example.and_then(|e| match e.chars().next()? {
            '"' => Some(Type::Str),
            '[' => Some(if next.is_some_and(|n| n.trim_start_matches('/').trim().starts_with('"')) {
                Type::StrArray
            } else {
                Type::IntArray
            }),
            't' | 'f' => Some(Type::Bool),
            d if d.is_ascii_digit() || d == '-' => {
                Some(if e.trim_end_matches('`').contains('.') { Type::Double } else { Type::Int })
            }
            _ => None,
        });
        keys.insert(value.to_owned(), ty);
    }
    keys
}

/// The crate's source as cargo unpacked it: the version `Cargo.lock` pins, under the registry of
/// `$CARGO_HOME` (`~/.cargo`).
fn crate_dir() -> PathBuf {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).expect("Cargo.lock");
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"opentelemetry-semantic-conventions\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map(|v| v.trim_end_matches('"').to_owned())
        .expect("opentelemetry-semantic-conventions in Cargo.lock");
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cargo"));
    let name = format!("opentelemetry-semantic-conventions-{version}");
    std::fs::read_dir(home.join("registry/src"))
        .expect("cargo's registry sources")
        .flatten()
        .map(|index| index.path().join(&name))
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| panic!("{name} under {}", home.display()))
}

fn type_of(v: &Value) -> Option<Type> {
    match v {
        Value::StringValue(_) => Some(Type::Str),
        Value::IntValue(_) => Some(Type::Int),
        Value::DoubleValue(_) => Some(Type::Double),
        Value::BoolValue(_) => Some(Type::Bool),
        Value::ArrayValue(a) => match a.values.first().and_then(|x| x.value.as_ref()) {
            Some(Value::IntValue(_)) => Some(Type::IntArray),
            _ => Some(Type::StrArray),
        },
        _ => None,
    }
}

/// One record of every kind, from the detector: a restart with its workload, a start failure and
/// its end, a terminal failure, an eviction, a pod-wide restart with its children, a resize
/// restart, and an OOM kill that restarted nothing.
fn every_kind() -> Vec<Record> {
    let at = |s: &str| -> Timestamp { s.parse().unwrap() };
    let mut out = Vec::new();
    let mut d = Detector::default();
    let uid = "4239abf7-1206-49a7-8747-9f93b9b7d16d";
    let web = || pod(uid).named("shop", "web-0").never();
    out.extend(d.apply(
        &web().app(c("web", 0).waiting_msg("ContainerCreating", "")).app(c("job", 0)).slim(),
        at("2026-11-20T10:00:00Z"),
    ));
    out.extend(d.apply(
        &web().app(c("web", 0).waiting_msg("ErrImagePull", "not found")).app(c("job", 0)).slim(),
        at("2026-11-20T10:00:05Z"),
    ));
    let started = web().app(c("web", 0).running_since("2026-11-20T10:01:35Z")).app(c("job", 0).ended(
        "OOMKilled",
        137,
        "2026-11-20T10:01:00Z",
    ));
    out.extend(d.apply(&started.slim(), at("2026-11-20T10:01:40Z")));
    let evicted = json!({"phase": "Failed", "reason": "Evicted", "conditions": [{"type": "DisruptionTarget", "status": "True",
        "reason": "TerminationByKubelet", "lastTransitionTime": "2026-11-20T10:02:00Z"}]});
    let gone = web().app(c("web", 0).ended("Error", 137, "2026-11-20T10:02:01Z")).app(c("job", 0).ended(
        "OOMKilled",
        137,
        "2026-11-20T10:01:00Z",
    ));
    out.extend(d.apply(&gone.status(evicted).slim(), at("2026-11-20T10:02:05Z")));

    let rule = json!({"restartPolicy": "Never",
        "restartPolicyRules": [{"action": "RestartAllContainers", "exitCodes": {"operator": "In", "values": [42]}}]});
    let limits = |mem: &str| json!({"limits": {"memory": mem, "cpu": "500m"}, "requests": {"memory": "16Mi"}});
    let api = |n: u32| {
        pod("11111111-2222-3333-4444-555555555555")
            .named("shop", "api-0")
            .container_spec("worker", rule.clone())
            .app(c("api", n).field("resources", limits("64Mi")))
    };
    let mut d = Detector::default();
    d.apply(&api(0).app(c("worker", 0)).slim(), at("2026-11-20T10:00:00Z"));
    let fired = api(0).app(c("worker", 0).ended("Error", 42, "2026-11-20T10:03:00Z"));
    d.apply(
        &fired.status(json!({"conditions": [{"type": "AllContainersRestarting", "status": "True"}]})).slim(),
        at("2026-11-20T10:03:01Z"),
    );
    let rac = |name: &str| {
        c(name, 1)
            .waiting("RestartingAllContainers")
            .terminated(json!({"reason": "RestartingAllContainers", "exitCode": 137}))
    };
    let restarted =
        pod("11111111-2222-3333-4444-555555555555").named("shop", "api-0").container_spec("worker", rule.clone());
    out.extend(d.apply(
        &restarted.app(rac("api").field("resources", limits("64Mi"))).app(rac("worker")).slim(),
        at("2026-11-20T10:03:02Z"),
    ));

    let mut d = Detector::default();
    let db = |n: u32, mem: &str| {
        pod("99999999-2222-3333-4444-555555555555")
            .named("shop", "db-0")
            .app(c("db", n).field("resources", limits(mem)))
    };
    d.apply(&db(0, "64Mi").slim(), at("2026-11-20T10:00:00Z"));
    d.apply(
        &db(0, "64Mi").status(json!({"conditions": [{"type": "PodResizeInProgress", "status": "True"}]})).slim(),
        at("2026-11-20T10:04:00Z"),
    );
    let resized = pod("99999999-2222-3333-4444-555555555555")
        .named("shop", "db-0")
        .app(c("db", 1).died("Error", 137, "2026-11-20T10:04:01Z").field("resources", limits("96Mi")));
    out.extend(d.apply(&resized.slim(), at("2026-11-20T10:04:02Z")));

    let mut oom = out
        .iter()
        .find(|r| r.kind == RecordKind::Restart && r.container.name == "db")
        .cloned()
        .expect("the resize restart");
    oom.kind = RecordKind::OomKill;
    oom.terminated = None;
    oom.cause = restart_watcher::record::Cause::OomKilled;
    oom.resize = None;
    oom.oom_kills = Some(Box::new(OomKills { count: 1, total: 1, process: Some("exe".into()) }));
    out.push(oom);
    // Enrichment's own: the node's uid.
    for r in &mut out {
        r.pod.node_uid = Some("1eb3a0c6-0477-4080-a9cb-0cb7db65c6a2".into());
    }
    out
}

#[test]
fn every_attribute_of_every_record_kind_is_a_semconv_key_of_its_type_or_restart_watchers_own() {
    let semconv = semconv_keys();
    assert!(semconv.len() > 500, "the crate's keys were read: {}", semconv.len());
    for (key, ty) in [
        ("process.exit.code", Type::Int),
        ("container.image.tags", Type::StrArray),
        ("k8s.pod.name", Type::Str),
        ("k8s.container.status.last_terminated_reason", Type::Str),
    ] {
        assert_eq!(semconv.get(key), Some(&Some(ty)), "the crate's documentation read right for {key}");
    }
    let records = every_kind();
    let kinds: std::collections::BTreeSet<_> = records.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds.len(), RecordKind::ALL.len(), "one record of each kind: {kinds:?}");
    let cfg = MappingConfig {
        cluster_name: Some("prod".into()),
        cluster_uid: Some("7b3c1f2e-0c4d-4e5f-8a9b-0123456789ab".into()),
        ..Default::default()
    };
    let mut checked = 0;
    let mut untyped = std::collections::BTreeSet::new();
    for ev in &records {
        let span = convert::span(ev);
        let lists: [(&str, Vec<KeyValue>); 4] = [
            ("resource", convert::resource_attributes(ev, &cfg)),
            ("log record", convert::log_record(ev).attributes),
            ("span", span.attributes.clone()),
            ("span event", span.events[0].attributes.clone()),
        ];
        for (place, attrs) in lists {
            for kv in attrs {
                let value = kv.value.and_then(|v| v.value).expect("a value");
                checked += 1;
                if kv.key.starts_with("restart_watcher.") {
                    continue;
                }
                let Some(ty) = semconv.get(&kv.key) else {
                    panic!("{} record, {place}: {} is neither a semconv key nor restart_watcher's", ev.kind, kv.key);
                };
                match ty {
                    Some(ty) => assert_eq!(type_of(&value), Some(*ty), "{} record, {place}: {}", ev.kind, kv.key),
                    None => {
                        untyped.insert(kv.key.clone());
                    }
                }
            }
        }
    }
    assert!(checked > 200, "{checked} attributes checked");
    // The keys whose documentation in the crate gives no example: their types, from the semconv
    // registry (docs/events.md says them too).
    let registry: BTreeMap<&str, Type> = [("k8s.container.restart_count", Type::Int)].into();
    for key in &untyped {
        assert!(registry.contains_key(key.as_str()), "{key}: no type in the crate's documentation nor here");
    }
}
