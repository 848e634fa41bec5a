//! Resource limits: `rlimits` set before exec, and `memory_restart`.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::{is, secs, wait_until, Kelpie};
use serde_json::Value;

/// The soft and hard columns of one `/proc/PID/limits` line.
fn limit(pid: i64, label: &str) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} in /proc/{pid}/limits:\n{limits}"));
    let mut columns = line[label.len()..].split_whitespace();
    (
        columns.next().unwrap().to_string(),
        columns.next().unwrap().to_string(),
    )
}

/// Each configured rlimit is the program's soft and hard limit; the
/// program without `rlimits` keeps kelpie's own.
#[test]
fn rlimits_are_set_before_exec() {
    let k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.limited]
command = ["sleep", "1000"]
start_seconds = "0s"
rlimits = { nofile = 4321, core = 0, fsize = "unlimited" }

[program.plain]
command = ["sleep", "1000"]
start_seconds = "0s"
"#,
    );
    k.wait_control();
    let limited = k.wait_running("limited")[0];
    let plain = k.wait_running("plain")[0];
    assert_eq!(
        limit(limited, "Max open files"),
        ("4321".to_string(), "4321".to_string())
    );
    assert_eq!(
        limit(limited, "Max core file size"),
        ("0".to_string(), "0".to_string())
    );
    assert_eq!(
        limit(limited, "Max file size"),
        ("unlimited".to_string(), "unlimited".to_string())
    );
    assert_eq!(
        limit(plain, "Max open files"),
        limit(k.pid() as i64, "Max open files"),
        "a program without rlimits gets kelpie's own"
    );
}

/// Grows to `mib` MiB and stays there.
fn grower(mib: u32) -> String {
    format!(
        "[\"python3\", \"{}/tests/fixtures/grow_memory.py\", \"{mib}\"]",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The program's `restarts` and instance pids from `status --json`.
fn restarts_and_pids(k: &Kelpie, program: &str) -> (u64, Vec<Option<i64>>) {
    let status = k.ctl(&["status", "--json"]).expect(0).json();
    let entry: &Value = status["programs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == program)
        .unwrap_or_else(|| panic!("{program} not in status: {status}"));
    let pids = entry["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["pid"].as_i64())
        .collect();
    (entry["restarts"].as_u64().unwrap(), pids)
}

/// A program whose memory stays above `memory_restart` for
/// `memory_restart_after` is restarted (each new process too, as it grows
/// again); one below it over the same time is left alone.
#[test]
fn memory_restart_restarts_a_growing_program() {
    let k = Kelpie::start(&format!(
        r#"
[supervisor]
http_listen = "off"

[program.grows]
command = {}
start_seconds = "0s"
memory_restart = "30MB"
memory_restart_after = "1s"

[program.steady]
command = {}
start_seconds = "0s"
memory_restart = "30MB"
memory_restart_after = "1s"
"#,
        grower(64),
        grower(0)
    ));
    k.wait_control();
    let first = k.wait_running("grows")[0];
    let steady = k.wait_running("steady")[0];
    k.wait_output("steady", "grown", secs(10.0));

    let restart = k.wait_nth(1, "the memory_restart of grows", secs(20.0), |e| {
        is(e, "memory_restart", "grows")
    });
    assert_eq!(restart["level"], "WARN", "{restart}");
    assert_eq!(restart["pid"], first, "{restart}");
    assert_eq!(restart["instance"], 0, "{restart}");
    assert_eq!(restart["threshold_bytes"], 30_000_000, "{restart}");
    assert_eq!(restart["after_ms"], 1000, "{restart}");
    assert!(
        restart["rss_bytes"].as_u64().unwrap() > 30_000_000,
        "{restart}"
    );
    // Stopped gracefully (SIGTERM ends python at once), then started again.
    let stopping = k.wait_event("program_stopping", "grows", secs(10.0));
    assert_eq!(stopping["signal"], "TERM", "{stopping}");
    let (restarts, pids) = wait_until(
        "grows to run again with a new pid and one restart counted",
        secs(20.0),
        || {
            let (restarts, pids) = restarts_and_pids(&k, "grows");
            (restarts >= 1 && pids[0].is_some_and(|pid| pid != first)).then_some((restarts, pids))
        },
    );
    let second = pids[0].unwrap();

    // The new process grows again and is restarted in turn: by now the
    // steady one has run under the threshold for two whole windows.
    let again = k.wait_nth(2, "the second memory_restart of grows", secs(20.0), |e| {
        is(e, "memory_restart", "grows")
    });
    assert_eq!(again["pid"], second, "{again}");
    wait_until(
        "the restarts of grows to count the second memory restart",
        secs(20.0),
        || (restarts_and_pids(&k, "grows").0 > restarts).then_some(()),
    );

    assert!(
        k.events("memory_restart", "steady").is_empty(),
        "steady stayed under memory_restart"
    );
    assert_eq!(restarts_and_pids(&k, "steady"), (0, vec![Some(steady)]));
}

/// The sampler exists only while a program sets `memory_restart`: not at
/// startup without it, started by the reload that adds it, ended by the
/// reload that removes it.
#[test]
fn memory_sampling_runs_only_while_a_program_sets_memory_restart() {
    let plain = r#"
[supervisor]
http_listen = "off"

[program.plain]
command = ["sleep", "1000"]
start_seconds = "0s"
"#;
    let k = Kelpie::start(plain);
    k.wait_control();
    k.wait_running("plain");
    let sampler = |k: &Kelpie, event: &str| {
        k.all_events()
            .iter()
            .filter(|e| e["event"] == event)
            .count()
    };
    assert_eq!(sampler(&k, "memory_sampler_started"), 0);

    k.rewrite_config(&format!(
        "{plain}\n[program.watched]\ncommand = [\"sleep\", \"1000\"]\nmemory_restart = \"1GB\"\nmemory_restart_after = \"2s\"\n"
    ));
    k.ctl(&["reload"]).expect(0);
    let started = k.wait_event("memory_sampler_started", "", secs(10.0));
    assert_eq!(started["interval_ms"], 500, "{started}");

    k.rewrite_config(plain);
    k.ctl(&["reload"]).expect(0);
    k.wait_event("memory_sampler_stopped", "", secs(10.0));
    assert_eq!(sampler(&k, "memory_sampler_started"), 1);
}
