//! Program output: relayed lines (text and JSON), overlong lines, log files
//! with rotation, discard, and back-pressure instead of unbounded memory.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::{secs, Kelpie, Options};

#[test]
fn text_relay_prefixes_each_line_with_the_instance() {
    let mut k = Kelpie::start_with(
        r#"
[supervisor]
http_listen = "off"

[program.web]
command = ["sh", "-c", "echo hello; echo oops >&2; printf 'no newline at end'"]
instances = 2
restart = "never"
"#,
        Options {
            format: "text",
            ..Options::default()
        },
    );
    for line in [
        "web:0 | hello",
        "web:1 | hello",
        "web:0 | oops",
        "web:1 | oops",
        "web:1 | no newline at end",
    ] {
        let found = k.wait_line(line, secs(5.0));
        assert_eq!(found, line, "relayed lines carry nothing but the prefix");
    }
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

#[test]
fn json_relay_records_program_instance_stream_and_line() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.api]
command = ["sh", "-c", "echo 'quote \" and \\ backslash'; echo err >&2"]
restart = "never"
"#,
    );
    let out = k.wait_nth(1, "stdout record", secs(5.0), |e| {
        common::is(e, "program_output", "api") && e["stream"] == "stdout"
    });
    assert_eq!(out["line"], "quote \" and \\ backslash");
    assert_eq!(out["instance"], 0);
    assert_eq!(out["level"], "INFO");
    assert!(out["timestamp"].is_string());
    let err = k.wait_nth(1, "stderr record", secs(5.0), |e| {
        common::is(e, "program_output", "api") && e["stream"] == "stderr"
    });
    assert_eq!(err["line"], "err");
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

#[test]
fn overlong_lines_are_split_at_16_kib() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.long]
command = ["sh", "-c", "head -c 40000 /dev/zero | tr '\\0' x; echo; echo after"]
restart = "never"
"#,
    );
    k.wait_nth(1, "the line after", secs(5.0), |e| {
        common::is(e, "program_output", "long") && e["line"] == "after"
    });
    let lengths: Vec<usize> = k
        .events("program_output", "long")
        .iter()
        .map(|e| e["line"].as_str().unwrap().len())
        .collect();
    assert_eq!(lengths, vec![16384, 16384, 40000 - 2 * 16384, 5]);
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

#[test]
fn file_mode_rotates_and_discard_drops() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.chatty]
command = ["sh", "-c", "i=0; while [ $i -lt 400 ]; do echo \"line $i padded to be a bit longer\"; i=$((i+1)); done"]
restart = "never"
log = { mode = "file", file = "logs/chatty.log", max_size = "4KiB", keep = 2 }

[program.silent]
command = ["sh", "-c", "echo should not appear"]
restart = "never"
log = { mode = "discard" }
"#,
    );
    k.wait_event("program_exited", "chatty", secs(10.0));
    k.wait_event("program_exited", "silent", secs(10.0));
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
    let log = k.path("logs/chatty.log");
    let current = std::fs::read_to_string(&log).unwrap();
    assert!(
        current.ends_with("line 399 padded to be a bit longer\n"),
        "{current}"
    );
    for name in ["logs/chatty.log", "logs/chatty.log.1", "logs/chatty.log.2"] {
        let size = std::fs::metadata(k.path(name)).unwrap().len();
        assert!(size <= 4096 && size > 0, "{name} is {size} bytes");
    }
    assert!(!k.path("logs/chatty.log.3").exists(), "keep = 2");
    let one = std::fs::read_to_string(k.path("logs/chatty.log.1")).unwrap();
    let last_rotated: u32 = one
        .lines()
        .last()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let first_current: u32 = current
        .lines()
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(last_rotated + 1, first_current, "no line lost at rotation");
    assert!(
        k.events("program_output", "chatty").is_empty(),
        "file mode is not relayed"
    );
    assert!(k.events("program_output", "silent").is_empty());
    assert!(!k.lines().iter().any(|l| l.contains("should not appear")));
}

/// While kelpie's stdout is not read, a child writing a lot blocks in
/// write(2) instead of kelpie buffering its output; once the reader
/// resumes, every line arrives, in order.
#[test]
fn slow_output_reader_applies_back_pressure() {
    let (open_gate, gate) = std::sync::mpsc::channel();
    let mut k = Kelpie::start_with(
        r#"
[supervisor]
http_listen = "off"

[program.flood]
command = ["sh", "-c", "seq 1 1000000; touch {dir}/flood-done"]
restart = "never"
"#,
        Options {
            format: "text",
            stdout_gate: Some(gate),
            ..Options::default()
        },
    );
    // Wait until `seq` is blocked writing into its full pipe.
    common::wait_until("seq to block on its full pipe", secs(10.0), || {
        k.marked_processes().into_iter().find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/wchan"))
                .is_ok_and(|w| w.contains("pipe_write"))
                && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "seq")
        })
    });
    assert!(
        !k.path("flood-done").exists(),
        "seq finished although nobody read"
    );
    let rss_kib: u64 = std::fs::read_to_string(format!("/proc/{}/status", k.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next().map(|n| n.parse().unwrap()))
        .unwrap();
    assert!(
        rss_kib < 40 * 1024,
        "kelpie holds {rss_kib} KiB while output is blocked"
    );
    open_gate.send(()).unwrap();
    k.wait_line("flood:0 | 1000000", secs(60.0));
    let numbers: Vec<u64> = k
        .lines()
        .iter()
        .filter_map(|l| l.strip_prefix("flood:0 | "))
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(numbers.len(), 1_000_000);
    assert!(
        numbers.iter().enumerate().all(|(i, n)| *n == i as u64 + 1),
        "lines out of order or lost"
    );
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}
