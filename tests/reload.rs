//! Reload (SIGHUP, `kelpie reload`) and `kelpie diff`: unchanged programs
//! keep their processes, changed ones restart, added ones start, removed
//! ones stop, and an invalid file changes nothing.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::{alive, secs, wait_until, Kelpie};

const BASE: &str = r#"
[supervisor]
http_listen = "127.0.0.1:0"

[program.steady]
command = ["sleep", "1000"]
start_seconds = "0s"

[program.changing]
command = ["sh", "-c", "echo changing-v1; exec sleep 1000"]
start_seconds = "0s"

[program.leaving]
command = ["sleep", "1000"]
start_seconds = "0s"
"#;

const NEXT: &str = r#"
[supervisor]
http_listen = "127.0.0.1:0"

[program.steady]
command = ["sleep", "1000"]
start_seconds = "0s"

[program.changing]
command = ["sh", "-c", "exec sleep 2000"]
start_seconds = "0s"

[program.arriving]
command = ["sleep", "1000"]
start_seconds = "0s"
"#;

fn pid(k: &Kelpie, program: &str) -> i64 {
    k.wait_running(program)[0]
}

#[test]
fn reload_applies_exactly_the_difference() {
    let mut k = Kelpie::start(BASE);
    k.wait_control();
    for program in ["steady", "changing", "leaving"] {
        k.wait_event("program_running", program, secs(5.0));
    }
    let steady = pid(&k, "steady");
    let changing = pid(&k, "changing");
    let leaving = pid(&k, "leaving");

    k.rewrite_config(NEXT);
    let diff = k.ctl(&["diff", "--json"]).expect(0).json();
    let actions: Vec<(String, String)> = diff["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["program"].as_str().unwrap().to_string(),
                p["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("steady", "unchanged"),
        ("changing", "restart"),
        ("arriving", "start"),
        ("leaving", "stop"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(actions, expected, "{diff}");
    assert_eq!(diff["applied"], false);
    assert_eq!(diff["plan"][1]["changes"][0], "command");
    // diff changed nothing.
    assert_eq!(pid(&k, "changing"), changing);
    assert_eq!(k.state("arriving"), None);

    let reply = k.ctl(&["reload", "--json"]).expect(0).json();
    assert_eq!(reply["applied"], true, "{reply}");
    k.wait_event("config_reloaded", "", secs(5.0));
    k.wait_nth(2, "changing restarted", secs(10.0), |e| {
        common::is(e, "program_running", "changing")
    });
    k.wait_event("program_running", "arriving", secs(10.0));
    k.wait_event("program_removed", "leaving", secs(10.0));

    assert_eq!(
        pid(&k, "steady"),
        steady,
        "an unchanged program keeps its pid"
    );
    assert_eq!(k.events("program_started", "steady").len(), 1);
    let restarted = pid(&k, "changing");
    assert_ne!(restarted, changing);
    assert!(
        !alive(changing as i32),
        "the old process of a changed program is gone"
    );
    assert!(
        !alive(leaving as i32),
        "a removed program's process is gone"
    );
    assert_eq!(k.state("leaving"), None, "a removed program leaves status");
    let metrics = common::get(k.http_addr(), "/metrics").body;
    assert!(
        !metrics.contains("program=\"leaving\""),
        "a removed program leaves /metrics"
    );
    assert!(metrics.contains("kelpie_program_state{program=\"arriving\",state=\"running\"} 1"));
    let cmdline = std::fs::read_to_string(format!("/proc/{restarted}/cmdline")).unwrap();
    assert!(
        cmdline.contains("2000"),
        "the new command runs: {cmdline:?}"
    );

    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

#[test]
fn an_invalid_config_changes_nothing_and_reports_every_error() {
    let mut k = Kelpie::start(BASE);
    k.wait_control();
    k.wait_event("program_running", "steady", secs(5.0));
    let before: Vec<i64> = ["steady", "changing", "leaving"]
        .iter()
        .map(|p| pid(&k, p))
        .collect();
    k.rewrite_config(
        "[supervisor]\nhttp_listen = \"off\"\n\n\
         [program.steady]\ncommand = [\"sleep\", \"1000\"]\nstop_timeout = \"soon\"\n\n\
         [program.changing]\ncommand = []\n",
    );
    let out = k.ctl(&["reload"]).expect(78);
    assert!(
        out.stderr
            .contains("supervisor.toml:6:16: program.steady.stop_timeout"),
        "first error with line:col: {out:?}"
    );
    assert!(
        out.stderr
            .contains("supervisor.toml:9:11: program.changing.command"),
        "second error with line:col: {out:?}"
    );
    let refused = k.wait_event("config_reload_refused", "", secs(5.0));
    assert_eq!(refused["errors"], 2);
    let after: Vec<i64> = ["steady", "changing", "leaving"]
        .iter()
        .map(|p| pid(&k, p))
        .collect();
    assert_eq!(before, after, "every program keeps running untouched");
    // diff refuses the same way.
    k.ctl(&["diff"]).expect(78);
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

#[test]
fn sighup_applies_a_change_like_reload() {
    let mut k = Kelpie::start(BASE);
    k.wait_control();
    k.wait_event("program_running", "changing", secs(5.0));
    let steady = pid(&k, "steady");
    let changing = pid(&k, "changing");
    k.rewrite_config(NEXT);
    k.signal("HUP");
    let reloaded = k.wait_event("config_reloaded", "", secs(5.0));
    assert_eq!(reloaded["restarted"], 1, "{reloaded}");
    assert_eq!(reloaded["started"], 1);
    assert_eq!(reloaded["stopped"], 1);
    k.wait_event("program_running", "arriving", secs(10.0));
    wait_until("changing to restart", secs(10.0), || {
        let now = k.pids("changing")[0]?;
        (now != changing).then_some(())
    });
    assert_eq!(pid(&k, "steady"), steady);
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

/// Changed programs restart in dependency order: the dependent stops
/// first, the dependency starts first.
#[test]
fn changed_programs_restart_in_dependency_order() {
    let config = |version: &str| {
        format!(
            r#"
[supervisor]
http_listen = "off"

[program.db]
command = ["sleep", "1000"]
environment = {{ VERSION = "{version}" }}
start_seconds = "300ms"

[program.api]
command = ["sleep", "1000"]
environment = {{ VERSION = "{version}" }}
start_seconds = "0s"
depends_on = ["db"]
"#
        )
    };
    let mut k = Kelpie::start(&config("1"));
    k.wait_control();
    k.wait_event("program_running", "api", secs(5.0));
    k.rewrite_config(&config("2"));
    k.ctl(&["reload"]).expect(0);
    let api_stopped = k.wait_event("program_stopped", "api", secs(10.0));
    let db_stopped = k.wait_event("program_stopped", "db", secs(10.0));
    let db_ready = k.wait_nth(2, "db ready again", secs(10.0), |e| {
        common::is(e, "program_ready", "db")
    });
    let api_started = k.wait_nth(2, "api started again", secs(10.0), |e| {
        common::is(e, "program_started", "api")
    });
    assert!(
        common::timestamp(&api_stopped) <= common::timestamp(&db_stopped),
        "api (the dependent) stops before db"
    );
    assert!(
        common::timestamp(&db_ready) <= common::timestamp(&api_started),
        "api starts only once the new db is ready"
    );
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

/// A `stop` given while a reload is restarting the program returns once it
/// is down, and the program stays down with its new config.
#[test]
fn a_stop_during_a_reload_restart_wins() {
    let config = |version: &str| {
        format!(
            r#"
[supervisor]
http_listen = "off"

[program.slow]
command = ["sh", "-c", "trap 'sleep 0.5; exit 0' TERM; echo armed; while :; do sleep 1 & wait; done"]
environment = {{ VERSION = "{version}" }}
start_seconds = "0s"
"#
        )
    };
    let mut k = Kelpie::start(&config("1"));
    k.wait_control();
    k.wait_output("slow", "armed", secs(10.0));
    k.rewrite_config(&config("2"));
    k.ctl(&["reload"]).expect(0);
    k.wait_event("program_stopping", "slow", secs(5.0));
    // Still stopping (its TERM handler takes 0.5 s) when the stop arrives.
    k.ctl(&["stop", "slow"]).expect(0);
    k.wait_event("program_reconfigured", "slow", secs(5.0));
    let status = k.ctl(&["status", "--json", "slow"]).expect(0).json();
    assert_eq!(status["programs"][0]["state"], "stopped", "{status}");
    assert_eq!(status["programs"][0]["stopped_by_user"], true);
    assert_eq!(k.events("program_started", "slow").len(), 1);
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}
