//! Shared helpers: load a JSON fixture, parse it into a wire type, write it back, and check
//! that nothing was lost or renamed.

#![allow(dead_code)]

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

pub fn fixture(path: &str) -> Value {
    let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {full}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {full}: {e}"))
}

/// JSON numbers compared by value: `2` and `2.0` are the same number to every Mesos client.
pub fn normalize(v: Value) -> Value {
    match v {
        Value::Number(n) => Value::from(n.as_f64().expect("finite number")),
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, normalize(v))).collect()),
        other => other,
    }
}

#[track_caller]
pub fn assert_json_eq(actual: &Value, expected: &Value) {
    let (a, e) = (normalize(actual.clone()), normalize(expected.clone()));
    if a != e {
        panic!(
            "JSON differs\n--- expected\n{}\n--- actual\n{}",
            serde_json::to_string_pretty(&e).unwrap(),
            serde_json::to_string_pretty(&a).unwrap()
        );
    }
}

/// Parses the fixture as `T`, serializes it again and requires the same JSON back.
#[track_caller]
pub fn roundtrip<T: DeserializeOwned + Serialize>(path: &str) -> T {
    let original = fixture(path);
    let parsed: T = serde_json::from_value(original.clone()).unwrap_or_else(|e| panic!("{path}: {e}"));
    let written = serde_json::to_value(&parsed).unwrap();
    assert_json_eq(&written, &original);
    // And the written form parses to the same value again.
    let again: T = serde_json::from_value(written.clone()).unwrap();
    assert_json_eq(&serde_json::to_value(&again).unwrap(), &written);
    parsed
}

/// Every fixture file in a fixture directory, sorted.
pub fn fixtures_in(dir: &str) -> Vec<String> {
    let full = format!("{}/tests/fixtures/{dir}", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&full)
        .unwrap_or_else(|e| panic!("list {full}: {e}"))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    names.sort();
    names
}
