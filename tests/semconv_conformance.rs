//! Every attribute on every record kind speaks semantic conventions exactly: each key is one the
//! `opentelemetry-semantic-conventions` crate defines (its experimental set included) or is under
//! `restart_watcher.`, and each value has the type semconv gives the key. The types are read from
//! the crate's own source (the examples of each constant's documentation: `"x"` a string, `127` an
//! int, `[...]` an array), found through `cargo metadata`.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};
use restart_watcher::export::convert::{self, MappingConfig};
use restart_watcher::record::RecordKind;
use restart_watcher_test_support::samples;

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
    let source = std::fs::read_to_string(samples::semconv_crate_dir().join("src/attribute.rs"))
        .expect("the crate's attribute.rs");
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
    let records = samples::every_kind();
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
