//! No survivors: a stopped program's escaped daemons (double fork,
//! setsid) are stopped with it, and everything kelpie started dies with
//! kelpie even when kelpie is SIGKILLed.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::{alive, secs, wait_until, Kelpie};

/// Live processes (not zombies) whose environment holds `variable`.
fn processes_with(variable: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if !zombie && environ.split(|b| *b == 0).any(|v| v == variable.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

const CONFIG: &str = r#"
[supervisor]
http_listen = "off"

# A double fork (the subshell exits at once, its child is reparented) and
# a setsid daemon: both leave the program's process group.
[program.daemonizer]
command = ["sh", "-c", "(sleep 1000 &); setsid sleep 1000 & echo forked; while :; do sleep 1 & wait; done"]
start_seconds = "0s"
stop_timeout = "2s"

[program.bystander]
command = ["sleep", "1000"]
start_seconds = "0s"
"#;

#[test]
fn stopping_a_program_stops_the_daemons_it_left() {
    let mut k = Kelpie::start(CONFIG);
    k.wait_control();
    k.wait_output("daemonizer", "forked", secs(10.0));
    let mine = "KELPIE_PROGRAM=daemonizer";
    // The leader, its sleep loop child, and two escaped sleeps.
    wait_until("the daemonizer's processes", secs(10.0), || {
        (processes_with(mine).len() >= 3).then_some(())
    });
    let bystander = k.wait_running("bystander")[0];
    k.ctl(&["stop", "daemonizer"]).expect(0);
    let swept = k.wait_event("escaped_processes", "daemonizer", secs(5.0));
    assert!(swept["count"].as_u64().unwrap() >= 1, "{swept}");
    wait_until("no process of daemonizer left", secs(5.0), || {
        processes_with(mine).is_empty().then_some(())
    });
    assert!(alive(bystander as i32), "other programs are not touched");
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
    assert!(k.marked_processes().is_empty());
}

#[test]
fn sigkill_of_kelpie_leaves_no_process_it_started() {
    let k = Kelpie::start(CONFIG);
    k.wait_control();
    k.wait_output("daemonizer", "forked", secs(10.0));
    k.wait_running("bystander");
    wait_until("the daemonizer's processes", secs(10.0), || {
        (processes_with("KELPIE_PROGRAM=daemonizer").len() >= 3).then_some(())
    });
    let before = k.marked_processes();
    assert!(before.len() >= 4, "{before:?}");
    let guardian = k.guardian().expect("a guardian process");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(k.pid()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("every process kelpie started to be gone", secs(1.0), || {
        k.marked_processes().is_empty().then_some(())
    });
    wait_until("the guardian to exit after its sweep", secs(1.0), || {
        (!alive(guardian)).then_some(())
    });
}

#[test]
fn a_clean_exit_waits_for_the_guardian() {
    // This test process adopts orphans: a guardian that outlived kelpie
    // would stay visible here (running, or as our unreaped zombie) instead
    // of vanishing into init, so the check below does not depend on timing.
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let mut k = Kelpie::start(CONFIG);
    k.wait_control();
    k.wait_running("bystander");
    let guardian = k.guardian().expect("a guardian process");
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
    assert!(
        !std::path::Path::new(&format!("/proc/{guardian}")).exists(),
        "the guardian {guardian} outlived kelpie's clean exit (kelpie must reap it first)"
    );
    assert!(k.marked_processes().is_empty());
}
