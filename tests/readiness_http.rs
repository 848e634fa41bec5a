//! What orchestrators see: /ready and /ready/{program} follow each kind of
//! readiness probe, and /metrics is valid Prometheus text with the right
//! numbers after crashes.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{get, secs, wait_until, Kelpie};

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Waits for a fixture's go-file, then runs the rest of the command.
fn gated(flag: &str, then: &str) -> String {
    format!("while [ ! -f {{dir}}/{flag} ]; do sleep 0.05; done; {then}")
}

#[test]
fn ready_follows_each_probe_kind() {
    let tcp_port = free_port();
    let http_port = free_port();
    let config = format!(
        r#"
[supervisor]
http_listen = "127.0.0.1:0"

[program.by_exec]
start_seconds = "0s"
command = ["sleep", "1000"]
readiness = {{ exec = ["test", "-f", "{{dir}}/exec"], interval = "100ms", failure_threshold = 1 }}

[program.by_tcp]
start_seconds = "0s"
command = ["sleep", "1000"]
readiness = {{ tcp = "127.0.0.1:{tcp_port}", interval = "100ms", failure_threshold = 1 }}

[program.by_http]
start_seconds = "0s"
command = ["sh", "-c", "{http}"]
readiness = {{ http = "http://127.0.0.1:{http_port}/", interval = "100ms", failure_threshold = 1 }}

[program.by_notify]
start_seconds = "0s"
command = ["sh", "-c", "{notify}"]
readiness = {{ notify = true }}

[program.by_log]
start_seconds = "0s"
command = ["sh", "-c", "{log}"]
readiness = {{ log = "accepting connections" }}
"#,
        http = gated("http", &format!("exec python3 -m http.server --bind 127.0.0.1 {http_port}")),
        notify = gated(
            "notify",
            "exec python3 -c 'import os,socket,time; s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM); s.connect(os.environ[\\\"NOTIFY_SOCKET\\\"]); s.send(b\\\"READY=1\\\"); time.sleep(1000)'"
        ),
        log = gated("log", "echo accepting connections; exec sleep 1000"),
    );
    let mut k = Kelpie::start(&config);
    let addr = k.http_addr();
    let programs = ["by_exec", "by_tcp", "by_http", "by_notify", "by_log"];
    for program in programs {
        k.wait_event("program_started", program, secs(5.0));
    }
    // Active probes report failures first.
    for program in ["by_exec", "by_tcp", "by_http"] {
        k.wait_event("probe_failed", program, secs(5.0));
    }
    let mut tcp_listener = None;
    for (i, program) in programs.iter().enumerate() {
        let reply = get(addr, &format!("/ready/{program}"));
        assert_eq!(reply.status, 503, "{program} before its probe passed");
        let body = reply.json();
        assert_eq!(body["status"], "not_ready");
        assert!(body["reason"].as_str().unwrap().contains(program), "{body}");
        assert_eq!(body["programs"][*program]["ready"], false);
        let overall = get(addr, "/ready");
        assert_eq!(overall.status, 503, "/ready with {program} not ready");

        // Make this one ready.
        match *program {
            "by_tcp" => {
                tcp_listener = Some(std::net::TcpListener::bind(("127.0.0.1", tcp_port)).unwrap())
            }
            "by_exec" => std::fs::write(k.path("exec"), "").unwrap(),
            other => std::fs::write(k.path(other.trim_start_matches("by_")), "").unwrap(),
        }
        wait_until(&format!("/ready/{program} to turn 200"), secs(10.0), || {
            (get(addr, &format!("/ready/{program}")).status == 200).then_some(())
        });
        let body = get(addr, &format!("/ready/{program}")).json();
        assert_eq!(body["status"], "ready");
        assert_eq!(body["programs"][*program]["ready"], true);
        assert_eq!(body["programs"][*program]["state"], "running");
        let last = i + 1 == programs.len();
        assert_eq!(get(addr, "/ready").status == 200, last, "after {program}");
    }
    // A readiness failure after being ready turns /ready back to 503.
    drop(tcp_listener);
    wait_until("/ready/by_tcp to turn 503 again", secs(10.0), || {
        let reply = get(addr, "/ready/by_tcp");
        (reply.status == 503).then(|| reply.json())
    });
    assert_eq!(get(addr, "/ready").status, 503);
    assert_eq!(get(addr, "/ready/nope").status, 404);
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// After three crashes and a stable run, /metrics says so, and promtool
/// accepts the exposition.
#[test]
fn metrics_after_crashes() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "127.0.0.1:0"

[program.flaky]
command = ["sh", "-c", "n=$(cat {dir}/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > {dir}/n; echo attempt $n; [ $n -le 3 ] && exit 3; exec sleep 1000"]
restart = "on-failure"
start_seconds = "300ms"
backoff = { initial = "10ms", jitter = 0.0 }

[program.steady]
command = ["sh", "-c", "echo out; echo err >&2; exec sleep 1000"]
start_seconds = "0s"
"#,
    );
    let addr = k.http_addr();
    k.wait_nth(4, "the fourth start", secs(10.0), |e| {
        common::is(e, "program_started", "flaky")
    });
    k.wait_event("program_running", "flaky", secs(10.0));
    k.wait_output("steady", "err", secs(5.0));
    // The events above come from the actors; the board they feed is
    // published right after, so wait for /metrics to show it.
    let text = wait_until("flaky running in /metrics", secs(10.0), || {
        let text = get(addr, "/metrics").body;
        let running = r#"kelpie_program_state{program="flaky",state="running"}"#;
        (metric(&text, running) == Some(1.0)).then_some(text)
    });
    assert_eq!(
        metric(&text, r#"kelpie_program_restarts_total{program="flaky"}"#),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"kelpie_program_exits_total{program="flaky",reason="failure"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        metric(&text, r#"kelpie_program_last_exit_code{program="flaky"}"#),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"kelpie_program_state{program="flaky",state="running"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"kelpie_program_state{program="flaky",state="backoff"}"#
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(&text, r#"kelpie_program_ready{program="flaky"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, r#"kelpie_program_restarts_total{program="steady"}"#),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"kelpie_log_lines_total{program="steady",stream="stderr"}"#
        ),
        Some(1.0)
    );
    assert!(
        metric(
            &text,
            r#"kelpie_program_resident_memory_bytes{program="steady"}"#
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(metric(&text, "kelpie_up"), Some(1.0));
    assert_eq!(metric(&text, "kelpie_shutting_down"), Some(0.0));

    match which("promtool") {
        None => eprintln!(
            "SKIPPED promtool check: promtool is not installed (apt-get install prometheus)"
        ),
        Some(promtool) => {
            let mut child = Command::new(promtool)
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool rejected /metrics:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(tool))
            .find(|p| p.is_file())
    })
}

/// A program stopped on purpose (`kelpie stop`) or not started with
/// `autostart = false` is not waited for by /ready; started, it counts
/// again. kelpie_program_enabled says which are meant to run.
#[test]
fn ready_ignores_programs_not_meant_to_run() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "127.0.0.1:0"

[program.web]
command = ["sleep", "1000"]
start_seconds = "0s"

[program.admin]
command = ["sleep", "1000"]
start_seconds = "300ms"
autostart = false

[program.worker]
command = ["sleep", "1000"]
start_seconds = "0s"
"#,
    );
    let addr = k.http_addr();
    let reply = wait_until("/ready to turn 200 without admin", secs(10.0), || {
        let reply = get(addr, "/ready");
        (reply.status == 200).then_some(reply)
    });
    let body = reply.json();
    assert_eq!(body["programs"]["admin"]["enabled"], false, "{body}");
    assert_eq!(body["programs"]["admin"]["ready"], false, "{body}");
    assert_eq!(
        get(addr, "/ready/admin").status,
        503,
        "admin itself is not ready"
    );

    k.ctl(&["stop", "worker"]).expect(0);
    let reply = get(addr, "/ready");
    assert_eq!(
        reply.status, 200,
        "a stopped program is not waited for: {}",
        reply.body
    );
    let metrics = get(addr, "/metrics").body;
    assert_eq!(
        metric(&metrics, "kelpie_program_enabled{program=\"worker\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(&metrics, "kelpie_program_enabled{program=\"web\"}"),
        Some(1.0)
    );

    // Started, admin counts: /ready waits for it, then is ready again.
    k.ctl(&["start", "admin"]).expect(0);
    assert_eq!(
        get(addr, "/ready").status,
        200,
        "admin is ready when start returns"
    );
    assert_eq!(
        get(addr, "/ready").json()["programs"]["admin"]["enabled"],
        true
    );
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}
