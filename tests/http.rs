//! The HTTP endpoints of the real binary over loopback: /health, /ready,
//! /ready/{program}, /metrics, errors and headers, shutdown and startup.

#![allow(clippy::unwrap_used, clippy::disallowed_types)]

mod common;

use std::net::TcpListener;
use std::time::Instant;

use common::{alive, get, http, secs, tcp_listeners, wait_until, Kelpie};

const SECURITY_HEADERS: [(&str, &str); 2] = [
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
];

fn assert_common_headers(reply: &common::Reply, what: &str) {
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(reply.header(name), Some(value), "{name} on {what}");
    }
    assert!(
        reply.header("content-type").is_some(),
        "content-type on {what}"
    );
    let id = reply.header("x-request-id").unwrap_or_default();
    assert!(!id.is_empty(), "x-request-id on {what}");
}

fn is_generated_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn health_errors_and_headers() {
    let k = Kelpie::start(
        r#"
[supervisor]
http_listen = "127.0.0.1:0"

[program.web]
command = ["sleep", "1000"]
"#,
    );
    let addr = k.http_addr();
    assert_eq!(tcp_listeners(k.pid()), 1);

    let reply = get(addr, "/health");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptime_seconds"].is_u64(), "{body}");
    assert_common_headers(&reply, "/health");

    let reply = get(addr, "/metrics");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(reply.body.contains("kelpie_up 1"), "{}", reply.body);
    assert_common_headers(&reply, "/metrics");

    // Errors: JSON with a stable code, the request id, and every header.
    for (method, path, status, code) in [
        ("GET", "/nope", 404, "not_found"),
        ("GET", "/health/", 404, "not_found"),
        ("GET", "/ready/nope", 404, "unknown_program"),
        ("POST", "/health", 405, "method_not_allowed"),
        ("DELETE", "/ready", 405, "method_not_allowed"),
        ("PUT", "/nope", 405, "method_not_allowed"),
    ] {
        let what = format!("{method} {path}");
        let reply = http(addr, method, path, &[]);
        assert_eq!(reply.status, status, "{what}");
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let body = reply.json();
        assert_eq!(body["code"], code, "{what}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
        assert_eq!(
            body["request_id"].as_str(),
            reply.header("x-request-id"),
            "{what}"
        );
        assert_common_headers(&reply, &what);
        if status == 405 {
            assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{what}");
        }
    }

    // HEAD: the same status and headers, no body.
    let reply = http(addr, "HEAD", "/health", &[]);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "");
    assert!(reply.header("content-length").is_some_and(|l| l != "0"));
    assert_common_headers(&reply, "HEAD /health");
    let reply = http(addr, "HEAD", "/ready", &[]);
    assert!(reply.status == 200 || reply.status == 503);
    assert_eq!(reply.body, "");

    // Request ids: a sane one is echoed (also into error bodies), anything
    // else is replaced by a generated one, unique per request.
    let reply = http(
        addr,
        "GET",
        "/nope",
        &[("X-Request-Id", "trace-42.abc_DEF")],
    );
    assert_eq!(reply.header("x-request-id"), Some("trace-42.abc_DEF"));
    assert_eq!(reply.json()["request_id"], "trace-42.abc_DEF");
    let long = "x".repeat(129);
    for bad in [long.as_str(), "two words"] {
        let reply = http(addr, "GET", "/health", &[("X-Request-Id", bad)]);
        let id = reply.header("x-request-id").unwrap();
        assert!(is_generated_id(id), "{bad:?} replaced by {id:?}");
    }
    let ids: Vec<String> = (0..5)
        .map(|_| {
            get(addr, "/health")
                .header("x-request-id")
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(ids.iter().all(|id| is_generated_id(id)), "{ids:?}");
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
}

#[test]
fn ready_waits_for_required_programs_only() {
    let k = Kelpie::start(
        r#"
[supervisor]
http_listen = "127.0.0.1:0"

[program.web]
command = ["sleep", "1000"]
start_seconds = "2s"

[program.flaky]
command = ["sh", "-c", "exit 3"]
required = false
"#,
    );
    let addr = k.http_addr();
    k.wait_event("program_started", "web", secs(10.0));

    // web counts as started (and ready) only after 2 s. The event comes
    // from web's actor; the board it feeds is published right after.
    let reply = wait_until("/ready to show web starting", secs(10.0), || {
        let reply = get(addr, "/ready");
        (reply.json()["programs"]["web"]["state"] == "starting").then_some(reply)
    });
    assert_eq!(reply.status, 503, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["reason"], "web:0 is starting");
    let web = &body["programs"]["web"];
    assert_eq!(web["state"], "starting");
    assert_eq!(web["ready"], false);
    assert_eq!(web["required"], true);
    assert_eq!(web["instances"][0]["name"], "web:0");
    assert_eq!(web["instances"][0]["state"], "starting");
    assert!(web["instances"][0]["pid"].is_i64());
    assert_eq!(get(addr, "/ready/web").status, 503);

    // Ready once web runs, although flaky keeps failing.
    let started = Instant::now();
    let reply = wait_until("/ready to turn 200", secs(10.0), || {
        let reply = get(addr, "/ready");
        (reply.status == 200).then_some(reply)
    });
    assert!(
        started.elapsed() < secs(3.0),
        "ready after {:?}",
        started.elapsed()
    );
    let body = reply.json();
    assert_eq!(body["status"], "ready");
    assert!(body.get("reason").is_none(), "{body}");
    assert_eq!(body["programs"]["web"]["state"], "running");
    assert_eq!(body["programs"]["web"]["reason"], serde_json::Value::Null);
    let flaky = &body["programs"]["flaky"];
    assert_eq!(flaky["ready"], false);
    assert_eq!(flaky["required"], false);
    assert!(flaky["reason"].as_str().is_some(), "{flaky}");

    let reply = get(addr, "/ready/web");
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["programs"].as_object().unwrap().len(), 1);
    assert_eq!(body["programs"]["web"]["ready"], true);

    let reply = get(addr, "/ready/flaky");
    assert_eq!(reply.status, 503);
    let body = reply.json();
    assert_eq!(body["status"], "not_ready");
    assert!(
        body["reason"].as_str().unwrap().starts_with("flaky:0 is "),
        "{body}"
    );

    let reply = get(addr, "/ready/nope");
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["code"], "unknown_program");
}

#[test]
fn ready_is_503_during_the_drain_delay_while_programs_still_run() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "127.0.0.1:0"
drain_delay = "3s"

[program.web]
command = ["sleep", "1000"]
start_seconds = "100ms"
"#,
    );
    let addr = k.http_addr();
    let pid = k.started_pid("web", 1);
    wait_until("/ready to turn 200", secs(10.0), || {
        (get(addr, "/ready").status == 200).then_some(())
    });

    let signalled = Instant::now();
    k.signal("TERM");
    let reply = wait_until("/ready to turn 503", secs(2.0), || {
        let reply = get(addr, "/ready");
        (reply.status == 503).then_some(reply)
    });
    assert!(
        signalled.elapsed() < secs(1.0),
        "503 only after {:?}",
        signalled.elapsed()
    );
    let body = reply.json();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["reason"], "shutting down");
    assert_eq!(body["programs"]["web"]["state"], "running");
    assert_eq!(get(addr, "/ready/web").status, 503);
    // Draining: the program still runs and kelpie is alive.
    assert!(alive(pid), "web was stopped during the drain delay");
    assert!(k.events("program_stopping", "web").is_empty());
    let health = get(addr, "/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");

    let status = k.wait_exit(secs(15.0));
    assert_eq!(status.code(), Some(0));
    let stopping = k.wait_event("program_stopping", "web", secs(1.0));
    let shutdown = k.wait_event("shutdown_started", "", secs(1.0));
    assert!(common::between(&shutdown, &stopping) >= secs(2.9));
    // The server is gone with kelpie.
    assert!(std::net::TcpStream::connect_timeout(&addr, secs(1.0)).is_err());
}

#[test]
fn a_port_in_use_exits_1_and_starts_nothing() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut k = Kelpie::start(&format!(
        r#"
[supervisor]
http_listen = "{addr}"

[program.web]
command = ["sleep", "1000"]
"#
    ));
    let status = k.wait_exit(secs(10.0));
    assert_eq!(status.code(), Some(1));
    let expected = format!("cannot listen on {addr}: address already in use");
    let errors: Vec<serde_json::Value> = k
        .all_events()
        .into_iter()
        .filter(|e| e["level"] == "ERROR")
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["message"], expected);
    assert_eq!(errors[0]["event"], "http_listen_failed");
    assert!(k.events("program_started", "").is_empty());
    assert!(k.events("supervisor_started", "").is_empty());
    assert!(k.marked_processes().is_empty());
}

#[test]
fn http_off_listens_nowhere() {
    let k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.web]
command = ["sleep", "1000"]
"#,
    );
    k.wait_event("program_started", "web", secs(10.0));
    assert_eq!(tcp_listeners(k.pid()), 0);
    assert!(k.events("http_listening", "").is_empty());
}
