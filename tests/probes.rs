//! Readiness and liveness probes of every kind, observed through kelpie's
//! lifecycle events (the HTTP view of the same state is in tests/http*.rs).

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::{is, secs, timestamp, Kelpie};

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A server that starts listening 0.5 s after its process starts.
fn late_http_server(port: u16) -> String {
    format!(r#"["sh", "-c", "sleep 0.5; exec python3 -m http.server --bind 127.0.0.1 {port}"]"#)
}

fn assert_ready_only_after_failures(k: &Kelpie, program: &str) {
    let ready = k.wait_event("program_ready", program, secs(10.0));
    let failures = k.events("probe_failed", program);
    assert!(
        !failures.is_empty(),
        "the probe should fail before the server listens"
    );
    assert!(timestamp(&failures[0]) < timestamp(&ready));
    assert_eq!(failures[0]["probe"], "readiness");
}

#[test]
fn tcp_readiness() {
    let port = free_port();
    let mut k = Kelpie::start(&format!(
        r#"
[supervisor]
http_listen = "off"

[program.server]
command = {}
readiness = {{ tcp = "127.0.0.1:{port}", interval = "100ms", timeout = "500ms", failure_threshold = 1 }}
"#,
        late_http_server(port)
    ));
    assert_ready_only_after_failures(&k, "server");
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

#[test]
fn http_readiness_needs_a_2xx_or_3xx() {
    let port = free_port();
    let other = free_port();
    let mut k = Kelpie::start(&format!(
        r#"
[supervisor]
http_listen = "off"

[program.server]
command = {}
readiness = {{ http = "http://127.0.0.1:{port}/", interval = "100ms", timeout = "500ms" }}

[program.wrongpath]
command = ["python3", "-m", "http.server", "--bind", "127.0.0.1", "{other}"]
readiness = {{ http = "http://127.0.0.1:{other}/no/such/page", interval = "100ms", timeout = "500ms" }}
"#,
        late_http_server(port)
    ));
    assert_ready_only_after_failures(&k, "server");
    let failure = k.wait_nth(2, "404 failures", secs(10.0), |e| {
        is(e, "probe_failed", "wrongpath") && e["detail"].as_str().unwrap().contains("HTTP 404")
    });
    assert_eq!(
        failure["detail"],
        format!("GET http://127.0.0.1:{other}/no/such/page: HTTP 404")
    );
    assert!(k.events("program_ready", "wrongpath").is_empty());
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

#[test]
fn exec_readiness_and_timeouts_leave_no_probe_behind() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.flagged]
command = ["sh", "-c", "sleep 0.5; touch {dir}/flag; exec sleep 1000"]
readiness = { exec = ["test", "-f", "{dir}/flag"], interval = "100ms" }

[program.slowprobe]
command = ["sleep", "1000"]
readiness = { exec = ["sleep", "30"], interval = "100ms", timeout = "200ms" }
"#,
    );
    assert_ready_only_after_failures(&k, "flagged");
    let failures = k.wait_nth(3, "probe timeouts", secs(10.0), |e| {
        is(e, "probe_failed", "slowprobe")
    });
    assert_eq!(failures["detail"], "no answer within 200ms");
    // Each timed-out probe was killed: at most the one in flight remains
    // beside the two programs.
    let alive = k.marked_processes().len();
    assert!(
        alive <= 3,
        "{alive} processes: timed-out exec probes leaked"
    );
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
    assert_eq!(k.marked_processes(), Vec::<i32>::new());
}

#[test]
fn notify_readiness_and_status() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.notifier]
command = ["python3", "-c", "import os, socket, time\ntime.sleep(0.3)\ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\ns.connect(os.environ['NOTIFY_SOCKET'])\ns.send(b'STATUS=warming up\\nREADY=1')\ntime.sleep(1000)"]
readiness = { notify = true }

[program.plain]
command = ["sh", "-c", "echo notify=${NOTIFY_SOCKET-unset}; exec sleep 1000"]
"#,
    );
    let started = k.wait_event("program_started", "notifier", secs(5.0));
    let ready = k.wait_event("program_ready", "notifier", secs(10.0));
    assert!(common::between(&started, &ready) >= secs(0.25));
    k.wait_nth(1, "plain's output", secs(5.0), |e| {
        is(e, "program_output", "plain")
    });
    let line = &k.events("program_output", "plain")[0]["line"];
    assert_eq!(line, "notify=unset", "only notify programs get a socket");
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

#[test]
fn log_readiness() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.logger]
command = ["sh", "-c", "echo booting; sleep 0.3; echo 'listening on port 8080'; exec sleep 1000"]
readiness = { log = "listening on port [0-9]+" }
"#,
    );
    let ready = k.wait_event("program_ready", "logger", secs(10.0));
    let booting = k.wait_nth(1, "the first line", secs(5.0), |e| {
        is(e, "program_output", "logger") && e["line"] == "booting"
    });
    // The 0.3 s pause separates the lines: 'booting' alone did not match.
    assert!(common::between(&booting, &ready) >= secs(0.25));
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

/// A dependent waits until its dependency's readiness probe passes, which
/// the test itself controls.
#[test]
fn ready_dependency_waits_for_the_probe() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.db]
command = ["sleep", "1000"]
start_seconds = "0s"
readiness = { exec = ["test", "-f", "{dir}/db-ready"], interval = "100ms", failure_threshold = 1 }

[program.api]
command = ["sleep", "1000"]
depends_on = { db = "ready" }
"#,
    );
    k.wait_nth(3, "db's probe to fail a few times", secs(10.0), |e| {
        is(e, "probe_failed", "db")
    });
    assert!(
        k.events("program_started", "api").is_empty(),
        "api started before db was ready"
    );
    std::fs::write(k.path("db-ready"), "").unwrap();
    let ready = k.wait_event("program_ready", "db", secs(10.0));
    let api = k.wait_event("program_started", "api", secs(10.0));
    assert!(timestamp(&ready) <= timestamp(&api));
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

/// failure_threshold liveness failures restart the instance; the restart
/// counts like a crash.
#[test]
fn liveness_failure_restarts_the_instance() {
    let port = free_port();
    let mut k = Kelpie::start(&format!(
        r#"
[supervisor]
http_listen = "off"

[program.zombie]
command = ["sleep", "1000"]
liveness = {{ tcp = "127.0.0.1:{port}", interval = "100ms", failure_threshold = 2 }}
backoff = {{ initial = "10ms", jitter = 0.0 }}
"#
    ));
    let failed = k.wait_event("program_liveness_failed", "zombie", secs(10.0));
    assert!(
        failed["detail"]
            .as_str()
            .unwrap()
            .contains("Connection refused"),
        "{failed}"
    );
    k.wait_nth(2, "the restart", secs(10.0), |e| {
        is(e, "program_started", "zombie")
    });
    let exits = k.events("program_exited", "zombie");
    assert_eq!(
        exits[0]["status"], "signal TERM",
        "stopped with its stop signal"
    );
    let scheduled = k.events("program_restart_scheduled", "zombie");
    assert_eq!(scheduled.len(), 1);
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

/// Not ready within start_timeout: the attempt is a failure and restarts.
#[test]
fn start_timeout_restarts_a_never_ready_program() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.hopeless]
command = ["sleep", "1000"]
start_timeout = "500ms"
readiness = { exec = ["false"], interval = "100ms" }
backoff = { initial = "10ms", jitter = 0.0 }
"#,
    );
    let first = k.wait_event("program_started", "hopeless", secs(5.0));
    let timeout = k.wait_event("program_start_timeout", "hopeless", secs(5.0));
    let took = common::between(&first, &timeout);
    assert!(
        took >= secs(0.45) && took < secs(1.5),
        "start_timeout fired after {took:?}"
    );
    k.wait_nth(2, "the restart", secs(10.0), |e| {
        is(e, "program_started", "hopeless")
    });
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

/// A port base `b` with both `b0` and `b1` (as text: `b * 10` and
/// `b * 10 + 1`) free right now.
fn free_port_pair_base() -> u16 {
    for _ in 0..100 {
        let base = free_port() / 10;
        if base < 1000 {
            continue;
        }
        let both =
            (0..2).all(|i| std::net::TcpListener::bind(("127.0.0.1", base * 10 + i)).is_ok());
        if both {
            return base;
        }
    }
    panic!("no free pair of ports found");
}

/// Each instance listens on a port of its own (`PORT` from
/// `${KELPIE_INSTANCE}`) and its readiness probe asks that port, so one
/// instance going unhealthy is seen on that instance only.
#[test]
fn each_instance_is_probed_at_its_own_expanded_address() {
    let base = free_port_pair_base();
    let config = format!(
        r#"
[program.web]
instances = 2
start_seconds = "0s"
command = ["sh", "-c", "exec python3 -m http.server --bind 127.0.0.1 --directory \"$DOCS\" \"$PORT\""]
environment = {{ PORT = "{base}${{KELPIE_INSTANCE}}", DOCS = "{{dir}}/docs${{KELPIE_INSTANCE}}" }}
readiness = {{ http = "http://127.0.0.1:{base}${{KELPIE_INSTANCE}}/ok", interval = "100ms", failure_threshold = 1 }}
"#
    );
    let k = Kelpie::start(&config);
    for i in 0..2 {
        let docs = k.path(&format!("docs{i}"));
        std::fs::create_dir(&docs).unwrap();
        std::fs::write(docs.join("ok"), "").unwrap();
    }
    let ready = |instance: u64| {
        move |e: &serde_json::Value| is(e, "program_ready", "web") && e["instance"] == instance
    };
    let both_ready = [
        k.wait_nth(1, "web:0 ready", secs(10.0), ready(0)),
        k.wait_nth(1, "web:1 ready", secs(10.0), ready(1)),
    ]
    .iter()
    .map(timestamp)
    .max()
    .unwrap();

    // Only instance 1's server stops passing its check.
    std::fs::remove_file(k.path("docs1").join("ok")).unwrap();
    let not_ready = k.wait_nth(1, "web:1 not ready", secs(10.0), |e| {
        is(e, "program_not_ready", "web")
    });
    assert_eq!(not_ready["instance"], 1, "{not_ready}");
    // Failures while the servers were still starting do not count.
    let failed: Vec<_> = k
        .events("probe_failed", "web")
        .into_iter()
        .filter(|e| timestamp(e) > both_ready)
        .collect();
    assert!(
        !failed.is_empty() && failed.iter().all(|e| e["instance"] == 1),
        "only web:1's probe fails: {failed:?}"
    );
    let detail = failed[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("127.0.0.1:{base}1/ok")),
        "the probe asks web:1's own port: {detail}"
    );
    let status = k.ctl(&["status", "--json"]).expect(0).json();
    let instances = status["programs"][0]["instances"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(instances[0]["ready"], true, "{status}");
    assert_eq!(instances[1]["ready"], false, "{status}");
}
