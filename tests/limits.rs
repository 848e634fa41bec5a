//! Resource limits a program starts with: `rlimits` set before exec.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::Kelpie;

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
