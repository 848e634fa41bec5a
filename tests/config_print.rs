//! `kelpie config`: the effective config, every default filled in, that
//! `kelpie check` accepts and that prints the same when read back.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::process::{Command, Stdio};

use common::{collect_child, secs, BIN};

fn kelpie(args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("KELPIE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (stdout, stderr, status) = collect_child(&mut child, secs(30.0), "kelpie");
    (status.code().unwrap_or(-1), stdout, stderr)
}

#[test]
fn the_effective_config_is_valid_and_stable() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/supervisor.toml.example");
    let (code, printed, stderr) = kelpie(&["config", "-c", example]);
    assert_eq!(code, 0, "{stderr}");
    // Defaults the example leaves out are spelled out.
    assert!(printed.contains("success_codes = [0]"), "{printed}");
    assert!(printed.contains("stop_signal = \"TERM\""), "{printed}");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("effective.toml");
    std::fs::write(&copy, &printed).unwrap();
    let (code, _, stderr) = kelpie(&["check", "-c", copy.to_str().unwrap()]);
    assert_eq!(code, 0, "check accepts the printed config: {stderr}");
    let (code, again, _) = kelpie(&["config", "-c", copy.to_str().unwrap()]);
    assert_eq!(code, 0);
    // Only the header line (naming the file) may differ.
    let body = |text: &str| text.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&printed), body(&again), "it re-imports unchanged");
}

#[test]
fn an_invalid_config_prints_its_errors_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[program.a]\ncommand = []\n").unwrap();
    let (code, stdout, stderr) = kelpie(&["config", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 78);
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("bad.toml:2:11: program.a.command"),
        "{stderr}"
    );
}
