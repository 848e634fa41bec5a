//! Reading kelpie's JSON events: which event it is, and when it happened.

use std::time::{Duration, SystemTime};

use serde_json::Value;

pub fn is(event: &Value, name: &str, program: &str) -> bool {
    event["event"] == name && (program.is_empty() || event["program"] == program)
}

/// The wall-clock time kelpie stamped on an event.
pub fn timestamp(event: &Value) -> SystemTime {
    let text = event["timestamp"].as_str().expect("timestamp");
    humantime::parse_rfc3339_weak(text.trim_end_matches('Z')).expect("rfc3339 timestamp")
}

pub fn between(a: &Value, b: &Value) -> Duration {
    timestamp(b)
        .duration_since(timestamp(a))
        .expect("events in order")
}
