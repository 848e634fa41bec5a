//! Supervision groups: `one_for_all` and `rest_for_one` restarts (stop
//! order reverse, start order forward), the group's own intensity, and
//! manual actions that never trigger a strategy.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::{alive, secs, timestamp, wait_until, Kelpie};

fn config(strategy: &str, extra: &str) -> String {
    let mut config = String::from("[supervisor]\nhttp_listen = \"off\"\n");
    for name in ["a", "b", "c"] {
        config.push_str(&format!(
            "\n[program.{name}]\n\
             command = [\"sh\", \"-c\", \"echo up; while :; do sleep 1 & wait; done\"]\n\
             start_seconds = \"0s\"\n\
             backoff = {{ initial = \"50ms\", jitter = 0.0 }}\n"
        ));
    }
    config.push_str(&format!(
        "\n[group.g]\nprograms = [\"a\", \"b\", \"c\"]\nstrategy = \"{strategy}\"\n{extra}"
    ));
    config
}

fn start(config: &str) -> (Kelpie, [i64; 3]) {
    let k = Kelpie::start(config);
    k.wait_control();
    let pids = ["a", "b", "c"].map(|p| k.wait_running(p)[0]);
    (k, pids)
}

fn kill(pid: i64) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

/// The n-th (1-based) event `name` of `program`.
fn nth(k: &Kelpie, n: usize, name: &str, program: &str) -> serde_json::Value {
    k.wait_nth(n, &format!("{name} #{n} of {program}"), secs(10.0), |e| {
        common::is(e, name, program)
    })
}

#[test]
fn one_for_all_restarts_every_member_stopping_in_reverse_and_starting_in_order() {
    let (mut k, [a, b, c]) = start(&config("one_for_all", ""));
    kill(b);
    let restart = k.wait_event("group_restart", "b", secs(5.0));
    assert_eq!(restart["group"], "g");
    assert_eq!(restart["programs"], "a,b,c");
    k.wait_event("group_restart_complete", "", secs(10.0));
    let now = ["a", "b", "c"].map(|p| k.wait_running(p)[0]);
    for (old, new) in [a, b, c].iter().zip(&now) {
        assert_ne!(
            old,
            new,
            "every member got a new process: {:?} -> {now:?}",
            [a, b, c]
        );
        assert!(!alive(*old as i32));
    }
    // Stops: c, then a (b had crashed); each only after the previous is down.
    let c_stopped = nth(&k, 1, "program_stopped", "c");
    let a_stopping = nth(&k, 1, "program_stopping", "a");
    assert!(
        timestamp(&c_stopped) <= timestamp(&a_stopping),
        "c stops before a"
    );
    // Starts: a, b, c.
    let starts = ["a", "b", "c"].map(|p| timestamp(&nth(&k, 2, "program_started", p)));
    let a_stopped = nth(&k, 1, "program_stopped", "a");
    assert!(
        timestamp(&a_stopped) <= starts[0],
        "starts begin once all are down"
    );
    assert!(
        starts[0] <= starts[1] && starts[1] <= starts[2],
        "start order a, b, c"
    );
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

#[test]
fn rest_for_one_restarts_the_crashed_member_and_those_after_it() {
    let (mut k, [a, b, c]) = start(&config("rest_for_one", ""));
    kill(b);
    let restart = k.wait_event("group_restart", "b", secs(5.0));
    assert_eq!(restart["programs"], "b,c");
    k.wait_event("group_restart_complete", "", secs(10.0));
    let now = ["a", "b", "c"].map(|p| k.wait_running(p)[0]);
    assert_eq!(now[0], a, "a, listed before b, keeps its process");
    assert_ne!(now[1], b);
    assert_ne!(now[2], c);
    assert!(k.events("program_stopping", "a").is_empty());
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

#[test]
fn manual_actions_on_a_member_do_not_trigger_the_strategy() {
    let (mut k, [a, b, c]) = start(&config("one_for_all", ""));
    k.ctl(&["restart", "b"]).expect(0);
    k.ctl(&["stop", "c"]).expect(0);
    k.ctl(&["start", "c"]).expect(0);
    let now = ["a", "b", "c"].map(|p| k.wait_running(p)[0]);
    assert_eq!(now[0], a, "a untouched");
    assert_ne!(now[1], b);
    assert_ne!(now[2], c);
    assert!(k.events("group_restart", "").is_empty(), "no group restart");
    assert!(k.all_events().iter().all(|e| e["event"] != "group_restart"));
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

#[test]
fn exceeding_the_group_intensity_fails_the_group() {
    let (mut k, [_, b, _]) = start(&config(
        "one_for_all",
        "max_restarts = 1\nrestart_window = \"1m\"\n",
    ));
    kill(b);
    k.wait_event("group_restart_complete", "", secs(10.0));
    let b2 = k.wait_running("b")[0];
    kill(b2);
    let failed = k.wait_event("group_failed", "", secs(5.0));
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("more than 1 restarts"),
        "{failed}"
    );
    wait_until("every member stopped", secs(10.0), || {
        let status = k.ctl(&["status", "--json"]).expect(0).json();
        status["programs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["instances"][0]["pid"].is_null())
            .then_some(status)
    });
    let out = k.ctl(&["ready"]).expect(1);
    assert!(out.stdout.contains("group \"g\" failed"), "{out:?}");
    // kelpie keeps running (on_failure = keep-running); start revives it.
    k.ctl(&["start", "--all"]).expect(0);
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

#[test]
fn a_failed_group_with_on_failure_shutdown_exits_1() {
    let (mut k, [a, _, _]) = start(&config(
        "one_for_one",
        "max_restarts = 0\non_failure = \"shutdown\"\n",
    ));
    kill(a);
    k.wait_event("group_failed", "", secs(5.0));
    let status = k.wait_exit(secs(15.0));
    assert_eq!(status.code(), Some(1));
    assert!(k.marked_processes().is_empty());
}

/// A group restart keeps each member's backoff and intensity (it is not a
/// `kelpie start`): a member that keeps crashing reaches `failed` by its
/// own `max_restarts` and the storm ends, the others running. Group
/// restarts count as restarts, and a member stopped by `kelpie stop` is
/// left stopped without stalling the restart.
#[test]
fn group_restarts_keep_member_intensity_and_skip_stopped_members() {
    let mut config = String::from("[supervisor]\nhttp_listen = \"off\"\n");
    for (name, command) in [
        ("a", "while :; do sleep 1 & wait; done"),
        (
            "b",
            "test -e {dir}/crash && exit 1; while :; do sleep 1 & wait; done",
        ),
        ("c", "while :; do sleep 1 & wait; done"),
    ] {
        config.push_str(&format!(
            "\n[program.{name}]\ncommand = [\"sh\", \"-c\", \"{command}\"]\n\
             start_seconds = \"0s\"\nbackoff = {{ initial = \"20ms\", jitter = 0.0 }}\n\
             max_restarts = 2\nrestart_window = \"1m\"\n"
        ));
    }
    config.push_str("\n[group.g]\nprograms = [\"a\", \"b\", \"c\"]\nstrategy = \"one_for_all\"\n");
    let (mut k, [_, b, _]) = start(&config);
    k.ctl(&["stop", "c"]).expect(0);
    std::fs::write(k.path("crash"), "").unwrap();
    kill(b);
    wait_until("b to fail by its own max_restarts", secs(15.0), || {
        (k.state("b").as_deref() == Some("failed")).then_some(())
    });
    k.wait_nth(1, "the last group restart", secs(10.0), |e| {
        e["event"] == "group_restart_complete"
    });
    let restarts = k.events("group_restart", "").len();
    assert!(
        restarts <= 4,
        "{restarts} group restarts: the storm was not bounded"
    );
    k.wait_running("a");
    let status = k.ctl(&["status", "--json", "a", "c"]).expect(0).json();
    assert!(
        status["programs"][0]["restarts"].as_u64().unwrap() >= 1,
        "{status}"
    );
    assert_eq!(
        status["programs"][1]["state"], "stopped",
        "c stays stopped: {status}"
    );
    assert_eq!(status["programs"][1]["stopped_by_user"], true);
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}
