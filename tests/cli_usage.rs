//! The command-line surface through the real binary: usage errors exit 2
//! with a message before any connection is tried, `--help` lists every
//! verb, and the completion scripts know the subcommands and options.

use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Every verb of docs/cli.md that this binary offers.
const VERBS: &[&str] = &[
    "run",
    "check",
    "status",
    "start",
    "stop",
    "restart",
    "signal",
    "reload",
    "diff",
    "logs",
    "shutdown",
    "ready",
    "health",
    "config",
    "top",
    "completions",
];

/// A bound on one invocation; only reached if the binary hangs (usage
/// errors and help exit within milliseconds).
const HANG_LIMIT: Duration = Duration::from_secs(60);

/// Runs `kelpie ARGS` with no kelpie environment, so nothing here can
/// reach a supervisor that happens to run on the machine.
fn kelpie(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_kelpie"))
        .args(args)
        .env_remove("KELPIE_SOCKET")
        .env_remove("KELPIE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kelpie");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // A test process has no reaper; waiting on its own child here is
        // what the reaper rule protects in the supervisor itself.
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(HANG_LIMIT) {
        Ok(output) => output.expect("wait for kelpie"),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("kelpie {args:?} did not exit within {HANG_LIMIT:?}");
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_usage_error(args: &[&str], expected: &str) {
    let output = kelpie(args);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(
        output.stdout.is_empty(),
        "{args:?}: {}",
        text(&output.stdout)
    );
    assert!(
        stderr.contains(expected),
        "{args:?}: expected {expected:?} in {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
}

#[test]
fn completions_are_generated_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let output = kelpie(&["completions", shell]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{shell}: {}",
            text(&output.stderr)
        );
        let script = text(&output.stdout);
        for word in ["restart", "rolling", "status", "logs", "socket"] {
            assert!(script.contains(word), "{shell}: no {word:?}");
        }
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    assert_usage_error(&["completions", "tcsh"], "tcsh");
}

#[test]
fn actions_need_names_or_all() {
    for verb in ["start", "stop", "restart"] {
        assert_usage_error(&[verb], "<NAME|--all>");
    }
    assert_usage_error(&["signal", "TERM"], "<NAME|--all>");
}

#[test]
fn names_and_all_conflict() {
    assert_usage_error(&["start", "web", "--all"], "cannot be used with");
    assert_usage_error(&["stop", "--all", "web"], "cannot be used with");
}

#[test]
fn an_unknown_signal_is_a_usage_error() {
    assert_usage_error(&["signal", "NOPE", "web"], "unknown signal \"NOPE\"");
    assert_usage_error(&["signal", "0", "--all"], "unknown signal \"0\"");
}

#[test]
fn a_bad_timeout_is_a_usage_error() {
    assert_usage_error(&["stop", "web", "--timeout", "soon"], "invalid duration");
    assert_usage_error(&["status", "--timeout", "30"], "30s");
}

#[test]
fn logs_lines_must_be_a_count() {
    assert_usage_error(&["logs", "web", "-n", "many"], "many");
    // NAME is optional (every program), but only one.
    assert_usage_error(&["logs", "web", "db"], "db");
}

#[test]
fn help_lists_every_verb() {
    let output = kelpie(&["--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = text(&output.stdout);
    for verb in VERBS {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{verb} "))),
            "{verb} missing from:\n{help}"
        );
    }
}

#[test]
fn every_verb_has_help() {
    for verb in VERBS {
        let output = kelpie(&[verb, "--help"]);
        assert_eq!(output.status.code(), Some(0), "{verb}");
        let help = text(&output.stdout);
        assert!(
            help.contains(&format!("Usage: kelpie {verb}")),
            "{verb}: {help}"
        );
    }
}
