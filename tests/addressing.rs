//! Addressing in the command line and the endpoints: one instance
//! (`web:1`), every member of a group (`backend`), and the connection
//! options given before the verb (`kelpie -s SOCK status`).

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::process::{Command, Stdio};

use common::{alive, collect_child, get, secs, wait_until, Kelpie, BIN};

const WEB: &str = r#"
[supervisor]
http_listen = "127.0.0.1:0"

[program.web]
command = ["sleep", "1000"]
instances = 2
start_seconds = "0s"
"#;

/// The pid of every instance of `program` as `status --json` shows it.
fn pids(k: &Kelpie, program: &str) -> Vec<Option<i64>> {
    k.pids(program)
}

#[test]
fn stop_start_and_restart_address_one_instance() {
    let k = Kelpie::start(WEB);
    k.wait_control();
    let before = k.wait_running("web");

    let stop = k.ctl(&["stop", "web:1"]).expect(0);
    assert_eq!(stop.stdout.trim(), "web:1: stopped", "{stop:?}");
    assert_eq!(
        pids(&k, "web"),
        [Some(before[0]), None],
        "only web:1 was stopped"
    );
    assert!(alive(before[0] as i32), "web:0 keeps its process");
    assert!(!alive(before[1] as i32), "web:1's process is gone");
    let status = k.ctl(&["status", "--json"]).expect(0).json();
    let web = &status["programs"][0];
    assert_eq!(web["stopped_by_user"], false, "the program is not: {web}");
    assert_eq!(web["instances"][1]["stopped_by_user"], true, "{web}");
    assert_eq!(web["instances"][0]["stopped_by_user"], false, "{web}");
    // `status` narrows to the instance too.
    let one = k.ctl(&["status", "web:1", "--json"]).expect(0).json();
    let instances = one["programs"][0]["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 1, "{one}");
    assert_eq!(instances[0]["name"], "web:1");
    let table = k.ctl(&["status", "web:1"]).expect(0).stdout;
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{table}");
    assert!(rows[0].starts_with("web:1  stopped"), "{table}");
    assert!(rows[0].ends_with("stopped by `kelpie stop`"), "{table}");

    // The instance comes back only when asked, the other one untouched.
    k.ctl(&["start", "web:1"]).expect(0);
    let after_start = k.wait_running("web");
    assert_eq!(after_start[0], before[0]);
    assert_ne!(after_start[1], before[1]);

    let restart = k.ctl(&["restart", "web:0"]).expect(0);
    assert_eq!(restart.stdout.trim(), "web:0: running", "{restart:?}");
    let after_restart = k.wait_running("web");
    assert_ne!(after_restart[0], before[0], "web:0 was restarted");
    assert_eq!(after_restart[1], after_start[1], "web:1 was not");

    let signal = k.ctl(&["signal", "TERM", "web:1"]).expect(0);
    assert_eq!(
        signal.stdout.trim(),
        "web:1: sent SIGTERM to 1 process group",
        "{signal:?}"
    );

    let out_of_range = k.ctl(&["stop", "web:5"]).expect(1);
    assert_eq!(
        out_of_range.stderr.trim(),
        "kelpie: no such instance: web:5 (web has 2 instances)"
    );
    let rolling = k.ctl(&["restart", "--rolling", "web:0"]).expect(1);
    assert!(
        rolling
            .stderr
            .contains("--rolling replaces every instance of web"),
        "{rolling:?}"
    );
}

#[test]
fn a_group_name_addresses_every_member() {
    let k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.db]
command = ["sleep", "1000"]
start_seconds = "0s"

[program.api]
command = ["sleep", "1000"]
start_seconds = "0s"

[program.other]
command = ["sleep", "1000"]
start_seconds = "0s"

[group.backend]
programs = ["api", "db"]
"#,
    );
    k.wait_control();
    let before = ["db", "api", "other"].map(|p| k.wait_running(p)[0]);
    let restart = k.ctl(&["restart", "backend"]).expect(0);
    // In the group's order.
    assert_eq!(
        restart.stdout.lines().collect::<Vec<_>>(),
        ["api: running", "db: running"],
        "{restart:?}"
    );
    let after = ["db", "api", "other"].map(|p| k.wait_running(p)[0]);
    assert_ne!(after[0], before[0], "db restarted");
    assert_ne!(after[1], before[1], "api restarted");
    assert_eq!(after[2], before[2], "other is not in the group");

    let unknown = k.ctl(&["stop", "backend", "nope", "web:0"]).expect(1);
    assert_eq!(
        unknown.stderr.trim(),
        "kelpie: no such programs: nope, web:0"
    );
}

#[test]
fn ready_answers_for_one_instance() {
    let k = Kelpie::start(WEB);
    let addr = k.http_addr();
    k.wait_control();
    k.wait_running("web");
    wait_until("/ready/web:0 to turn 200", secs(10.0), || {
        (get(addr, "/ready/web:0").status == 200).then_some(())
    });
    k.ctl(&["stop", "web:1"]).expect(0);
    let reply = get(addr, "/ready/web:1");
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(
        reply.json()["reason"],
        "web:1 was stopped by `kelpie stop`",
        "{}",
        reply.body
    );
    assert_eq!(get(addr, "/ready/web:0").status, 200);
    assert_eq!(get(addr, "/ready/web:2").status, 404);

    k.ctl(&["ready", "web:0"]).expect(0);
    let one = k.ctl(&["ready", "web:1", "--json"]).expect(1).json();
    assert_eq!(one["ready"], false, "{one}");
    // An instance stopped on purpose does not hold the program's (or
    // kelpie's) readiness down.
    assert_eq!(get(addr, "/ready").status, 200);
    k.ctl(&["ready", "web"]).expect(0);
}

/// `kelpie OPTIONS VERB …`: the connection options before the verb.
fn kelpie_before(args: &[&str]) -> common::Ctl {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("KELPIE_SOCKET")
        .env_remove("KELPIE_CONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (stdout, stderr, status) = collect_child(&mut child, secs(60.0), &format!("{args:?}"));
    common::Ctl {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

#[test]
fn connection_options_go_before_or_after_the_verb() {
    let k = Kelpie::start(WEB);
    k.wait_control();
    k.wait_running("web");
    let socket = k.socket();
    let socket = socket.to_str().unwrap();
    let status = kelpie_before(&["-s", socket, "status", "--json"]).expect(0);
    assert_eq!(status.json()["programs"][0]["name"], "web");
    kelpie_before(&["--socket", socket, "--timeout", "5s", "ready"]).expect(0);
    kelpie_before(&["-s", socket, "stop", "web:0"]).expect(0);
    // After the verb wins over before it.
    let missing = k.path("missing.sock");
    kelpie_before(&["-s", missing.to_str().unwrap(), "health", "-s", socket]).expect(0);
    let nowhere = kelpie_before(&["-s", missing.to_str().unwrap(), "health"]).expect(69);
    assert!(nowhere.stderr.contains("missing.sock"), "{nowhere:?}");
    // -c before the verb: the config file of `check` (and of the socket lookup).
    let config = k.path("supervisor.toml");
    let check = kelpie_before(&["-c", config.to_str().unwrap(), "check"]).expect(0);
    assert!(
        check.stdout.contains("OK (1 program, 2 instances)"),
        "{check:?}"
    );
    // Options a verb has no use for are a usage error, not ignored.
    let usage = kelpie_before(&["-s", socket, "check"]).expect(2);
    assert!(usage.stderr.contains("-s/--socket"), "{usage:?}");
}
