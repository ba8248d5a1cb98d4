//! Key-value pairs of OTLP attributes, by the type of their value.

use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};

pub(crate) fn kv_str(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

pub(crate) fn kv_int(key: &str, value: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(value))
}

pub(crate) fn kv_double(key: &str, value: f64) -> KeyValue {
    kv(key, any_value::Value::DoubleValue(value))
}

pub(crate) fn kv_bool(key: &str, value: bool) -> KeyValue {
    kv(key, any_value::Value::BoolValue(value))
}

pub(crate) fn kv_str_array(key: &str, values: Vec<String>) -> KeyValue {
    kv_array(key, values.into_iter().map(any_value::Value::StringValue))
}

pub(crate) fn kv_int_array(key: &str, values: Vec<i64>) -> KeyValue {
    kv_array(key, values.into_iter().map(any_value::Value::IntValue))
}

fn kv_array(key: &str, values: impl Iterator<Item = any_value::Value>) -> KeyValue {
    let values = values.map(|v| AnyValue { value: Some(v) }).collect();
    kv(key, any_value::Value::ArrayValue(ArrayValue { values }))
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}
