//! Stopping: signal, deadline, SIGKILL to the whole group; shutdown bounds;
//! nothing left behind.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::{between, secs, Kelpie};

/// A program that ignores SIGTERM is SIGKILLed after stop_timeout, and the
/// stop takes stop_timeout ± 0.5 s.
#[test]
fn term_ignoring_program_is_killed_after_stop_timeout() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.stubborn]
# An ignored signal stays ignored across exec.
command = ["sh", "-c", "trap '' TERM; echo armed; exec sleep 1000"]
stop_timeout = "1s"
start_seconds = "0s"
"#,
    );
    k.wait_output("stubborn", "armed", secs(5.0));
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
    let stopping = k.wait_event("program_stopping", "stubborn", secs(1.0));
    let stopped = k.wait_event("program_stopped", "stubborn", secs(1.0));
    let took = between(&stopping, &stopped);
    assert!(
        took >= secs(0.95) && took <= secs(1.5),
        "stop took {took:?}"
    );
    k.wait_event("program_stop_timeout", "stubborn", secs(1.0));
    let exit = k.wait_event("program_exited", "stubborn", secs(1.0));
    assert_eq!(exit["reason"], "killed");
    assert!(k.marked_processes().is_empty());
}

/// A shell pipeline is a process group of three; stopping it leaves none,
/// even when every member ignores SIGTERM.
#[test]
fn pipelines_leave_no_process_behind() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.pipe]
command = ["sh", "-c", "sleep 1000 | cat"]
environment = { KELPIE_TEST_MARKER = "{marker}" }
start_seconds = "0s"

[program.deafpipe]
command = ["sh", "-c", "trap '' TERM; echo armed; sleep 1000 | cat"]
stop_timeout = "500ms"
start_seconds = "0s"
"#,
    );
    k.wait_event("program_running", "pipe", secs(5.0));
    k.wait_output("deafpipe", "armed", secs(5.0));
    // sh + sleep + cat for each program.
    common::wait_until("both pipelines to run", secs(5.0), || {
        (k.marked_processes().len() >= 6).then_some(())
    });
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
    assert_eq!(
        k.marked_processes(),
        Vec::<i32>::new(),
        "processes left behind"
    );
}

/// The leader exits on SIGTERM but a member of its group ignores it: the
/// stop is only done once the member is gone (SIGKILL at stop_timeout).
#[test]
fn stop_waits_for_the_whole_process_group() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.family]
command = ["sh", "-c", "(trap '' TERM; exec sleep 1000) & exec sleep 1000"]
stop_timeout = "800ms"
start_seconds = "0s"
"#,
    );
    k.wait_event("program_running", "family", secs(5.0));
    // Both have exec'd `sleep`, so the member's TERM trap is in place.
    common::wait_until("both sleeps", secs(5.0), || {
        let sleeps = k
            .marked_processes()
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "sleep")
            })
            .count();
        (sleeps >= 2).then_some(())
    });
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
    let exited = k.wait_event("program_exited", "family", secs(1.0));
    let stopped = k.wait_event("program_stopped", "family", secs(1.0));
    assert_eq!(exited["status"], "signal TERM", "the leader obeyed TERM");
    let stopping = k.wait_event("program_stopping", "family", secs(1.0));
    let took = between(&stopping, &stopped);
    assert!(
        took >= secs(0.75),
        "stop finished before the ignoring member was killed: {took:?}"
    );
    assert!(k.marked_processes().is_empty());
}

/// A second SIGINT during a graceful shutdown kills everything at once.
#[test]
fn second_sigint_kills_at_once() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"
shutdown_timeout = "60s"

[program.stubborn]
command = ["sh", "-c", "trap '' TERM INT; echo armed; exec sleep 1000"]
stop_timeout = "30s"
start_seconds = "0s"
"#,
    );
    k.wait_output("stubborn", "armed", secs(5.0));
    k.signal("INT");
    let first = k.wait_event("program_stopping", "stubborn", secs(5.0));
    k.signal("INT");
    assert!(k.wait_exit(secs(5.0)).success());
    let forced = k.wait_event("shutdown_forced", "", secs(1.0));
    let complete = k.wait_event("shutdown_complete", "", secs(1.0));
    assert!(between(&first, &complete) < secs(2.0));
    assert!(between(&forced, &complete) < secs(1.0));
    assert!(k.marked_processes().is_empty());
}

/// shutdown_timeout bounds the whole shutdown, whatever stop_timeout says.
#[test]
fn shutdown_timeout_bounds_everything() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"
shutdown_timeout = "1s"

[program.stubborn]
command = ["sh", "-c", "trap '' TERM; echo armed; exec sleep 1000"]
stop_timeout = "30s"
start_seconds = "0s"
"#,
    );
    k.wait_output("stubborn", "armed", secs(5.0));
    k.signal("TERM");
    assert!(k.wait_exit(secs(5.0)).success());
    let started = k.wait_event("shutdown_started", "", secs(1.0));
    let complete = k.wait_event("shutdown_complete", "", secs(1.0));
    let took = between(&started, &complete);
    // Upper bound leaves room for a loaded 2-core CI machine.
    assert!(
        took >= secs(0.95) && took < secs(2.0),
        "shutdown took {took:?}"
    );
    k.wait_event("shutdown_timeout", "", secs(1.0));
    assert!(k.marked_processes().is_empty());
}

/// on_failure = "shutdown": kelpie stops everything and exits 1.
#[test]
fn on_failure_shutdown_exits_1() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.critical]
command = ["sh", "-c", "sleep 0.2; exit 1"]
max_restarts = 1
backoff = { initial = "10ms", jitter = 0.0 }
on_failure = "shutdown"

[program.bystander]
command = ["sleep", "1000"]
"#,
    );
    let status = k.wait_exit(secs(10.0));
    assert_eq!(status.code(), Some(1));
    k.wait_event("program_failed", "critical", secs(1.0));
    k.wait_event("program_stopped", "bystander", secs(1.0));
    assert!(k.marked_processes().is_empty());
}

/// A crashed leader's leftover children are stopped before the restart,
/// so two generations never run side by side.
#[test]
fn crash_leftovers_are_stopped_before_restart() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.leaky]
command = ["sh", "-c", "sleep 1000 & exec sleep 0.2"]
backoff = { initial = "10ms", jitter = 0.0 }
max_restarts = 100
"#,
    );
    k.wait_nth(3, "third start", secs(10.0), |e| {
        common::is(e, "program_started", "leaky")
    });
    // Each generation is one sh plus one background sleep at most.
    let alive = k.marked_processes().len();
    assert!(
        alive <= 2,
        "{alive} processes: leftovers survived a restart"
    );
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
    assert!(k.marked_processes().is_empty());
}

/// Descendants that left their program's process group (setsid, double
/// fork) are reparented to kelpie (a subreaper) and are stopped at the end
/// of the shutdown instead of outliving kelpie.
#[test]
fn escaped_daemons_are_swept_at_shutdown() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.daemonizer]
command = ["sh", "-c", "setsid sleep 1000 & (sleep 1000 &); exec sleep 1000"]
start_seconds = "0s"
"#,
    );
    k.wait_event("program_running", "daemonizer", secs(5.0));
    // Counting processes is not enough: a forked shell that has not exec'd
    // `setsid` yet is still in the group and dies with it. Wait until all
    // three are `sleep`, one of them leading a session of its own.
    common::wait_until("three sleeps, one in its own session", secs(5.0), || {
        let stats: Vec<(String, i32, i32)> = k
            .marked_processes()
            .into_iter()
            .filter_map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                let open = stat.find('(')?;
                let close = stat.rfind(')')?;
                let comm = stat[open + 1..close].to_string();
                let session = stat[close + 2..].split(' ').nth(3)?.parse().ok()?;
                Some((comm, pid, session))
            })
            .collect();
        let sleeps = stats.iter().filter(|(comm, _, _)| comm == "sleep").count();
        let own_session = stats
            .iter()
            .any(|(comm, pid, session)| comm == "sleep" && pid == session);
        (stats.len() == 3 && sleeps == 3 && own_session).then_some(())
    });
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
    let swept = k.wait_event("escaped_processes", "", secs(1.0));
    // The setsid'd sleep left the group; the double-forked one did not and
    // went down with the group.
    assert_eq!(swept["count"], 1, "{swept}");
    assert_eq!(
        k.marked_processes(),
        Vec::<i32>::new(),
        "escaped daemons survived kelpie"
    );
}

/// A group member whose parent left the group and never reaps it stays a
/// zombie forever; that must not keep a crash clean-up (and so the restart)
/// pending.
#[test]
fn unreaped_zombie_members_do_not_block_a_restart() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.tangled]
command = ["sh", "-c", "(sleep 1000 & exec setsid sleep 1000) & sleep 0.3; exit 1"]
stop_timeout = "300ms"
backoff = { initial = "10ms", jitter = 0.0 }
max_restarts = 100
"#,
    );
    k.wait_nth(2, "a restart after the clean-up", secs(10.0), |e| {
        common::is(e, "program_started", "tangled")
    });
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
    assert_eq!(k.marked_processes(), Vec::<i32>::new());
}

/// SIGTERM right after startup: instances told to start are not mistaken
/// for stopped; each gets its graceful stop before kelpie reports done.
#[test]
fn shutdown_right_after_start_stops_gracefully() {
    let mut config = String::from(
        r#"
[supervisor]
http_listen = "off"

[program.main]
command = ["sh", "-c", "trap 'echo graceful; exit 0' TERM; echo up; while :; do sleep 0.05; done"]
start_seconds = "0s"
"#,
    );
    // Many idle programs make the supervisor's start-up take a while.
    for i in 0..300 {
        config.push_str(&format!(
            "\n[program.idle{i}]\ncommand = [\"sleep\", \"1\"]\nautostart = false\n"
        ));
    }
    let mut k = Kelpie::start(&config);
    k.wait_event("supervisor_started", "", secs(10.0));
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
    let events = k.all_events();
    let complete = events
        .iter()
        .position(|e| common::is(e, "shutdown_complete", ""))
        .unwrap();
    if let Some(started) = events
        .iter()
        .position(|e| common::is(e, "program_started", "main"))
    {
        let stopped = events
            .iter()
            .position(|e| common::is(e, "program_stopped", "main"))
            .expect("a started program is stopped");
        assert!(started < stopped && stopped < complete);
    }
    assert!(
        k.events("program_actor_lost", "").is_empty(),
        "a group was killed by the actor's drop"
    );
    assert!(k.marked_processes().is_empty());
}

/// What a run left behind (a daemon that escaped its group) is stopped
/// when that run ends, by a restart or a crash, not only at shutdown:
/// three restarts and a `kill -9` of the main process leave at most the
/// current run's daemon.
#[test]
fn escaped_daemons_do_not_pile_up_across_restarts() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.p]
command = ["sh", "-c", "setsid sleep 997 & exec sleep 998"]
start_seconds = "0s"
stop_timeout = "2s"
backoff = { initial = "10ms", jitter = 0.0 }
"#,
    );
    k.wait_control();
    let daemons = |k: &Kelpie| -> Vec<i32> {
        k.marked_processes()
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.starts_with(b"sleep\0997"))
            })
            .collect()
    };
    let one_daemon = |k: &Kelpie, what: &str| {
        common::wait_until(what, secs(10.0), || (daemons(k).len() == 1).then_some(()))
    };
    one_daemon(&k, "the first run's daemon");
    for n in 1..=3 {
        k.ctl(&["restart", "p"]).expect(0);
        one_daemon(&k, &format!("one daemon after restart {n}"));
    }
    let main = k.wait_running("p")[0] as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(main),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    k.wait_nth(5, "the restart after the kill", secs(10.0), |e| {
        common::is(e, "program_started", "p")
    });
    one_daemon(&k, "one daemon after the kill -9");
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
    assert_eq!(daemons(&k), Vec::<i32>::new(), "daemons survived kelpie");
}
