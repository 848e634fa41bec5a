//! Signals kelpie receives: forwarded ones reach every running program's
//! group; SIGHUP does not kill kelpie.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::{secs, Kelpie};

#[test]
fn forwarded_signals_reach_every_program_group() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"
forward_signals = ["USR1", "SIGUSR2"]

[program.listener]
command = ["sh", "-c", "trap 'echo got-usr1' USR1; trap 'echo got-usr2' USR2; echo armed; while :; do sleep 0.05; done"]
instances = 2
"#,
    );
    for n in 1..=2 {
        k.wait_nth(n, "trap armed", secs(5.0), |e| {
            common::is(e, "program_output", "listener") && e["line"] == "armed"
        });
    }
    k.signal("USR1");
    for n in 1..=2 {
        k.wait_nth(n, "USR1 delivered", secs(5.0), |e| {
            common::is(e, "program_output", "listener") && e["line"] == "got-usr1"
        });
    }
    k.signal("USR2");
    for n in 1..=2 {
        k.wait_nth(n, "USR2 delivered", secs(5.0), |e| {
            common::is(e, "program_output", "listener") && e["line"] == "got-usr2"
        });
    }
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

#[test]
fn sighup_reloads_and_an_unchanged_config_touches_nothing() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.steady]
command = ["sleep", "1000"]
start_seconds = "0s"
"#,
    );
    let started = k.wait_event("program_started", "steady", secs(5.0));
    k.signal("HUP");
    let reloaded = k.wait_event("config_reloaded", "", secs(5.0));
    assert_eq!(reloaded["unchanged"], 1, "{reloaded}");
    assert_eq!(reloaded["restarted"], 0, "{reloaded}");
    assert_eq!(k.events("program_started", "steady").len(), 1);
    assert_eq!(
        k.marked_processes(),
        vec![started["pid"].as_i64().unwrap() as i32]
    );
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}
