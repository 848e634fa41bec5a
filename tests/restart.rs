//! Crash handling: the backoff curve, its reset after a stable run, restart
//! intensity, and the restart policies.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::{between, secs, Kelpie};

/// Delays between consecutive starts of a program that exits at once follow
/// initial * multiplier^k, capped at max.
#[test]
fn crash_restarts_with_growing_delays() {
    let k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.crashy]
command = ["sh", "-c", "exit 1"]
backoff = { initial = "200ms", multiplier = 2.0, max = "800ms", jitter = 0.0 }
max_restarts = 100
"#,
    );
    let starts: Vec<_> = (1..=6)
        .map(|n| {
            k.wait_nth(n, "start of crashy", secs(10.0), |e| {
                common::is(e, "program_started", "crashy")
            })
        })
        .collect();
    let expected = [200u64, 400, 800, 800, 800];
    for (i, want) in expected.iter().enumerate() {
        let gap = between(&starts[i], &starts[i + 1]).as_millis() as u64;
        // The gap also contains the run itself and the exit notification.
        assert!(
            gap >= *want && gap <= want + 150,
            "gap {} was {gap} ms, expected {want} ms (+150 ms tolerance)",
            i + 1
        );
    }
    let scheduled: Vec<u64> = k
        .events("program_restart_scheduled", "crashy")
        .iter()
        .take(5)
        .map(|e| e["delay_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(scheduled, expected);
}

/// A run that lasts start_seconds resets the curve to `initial`.
#[test]
fn stable_run_resets_backoff() {
    let k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.flappy]
# Runs 1 and 2 crash at once; run 3 stays up 1.5 s before crashing.
command = ["sh", "-c", "n=$(cat {dir}/count 2>/dev/null || echo 0); n=$((n+1)); echo $n > {dir}/count; [ $n -eq 3 ] && sleep 1.5; exit 1"]
start_seconds = "1s"
backoff = { initial = "100ms", multiplier = 4.0, max = "10s", jitter = 0.0 }
max_restarts = 100
"#,
    );
    k.wait_nth(4, "fourth start", secs(10.0), |e| {
        common::is(e, "program_started", "flappy")
    });
    let delays: Vec<u64> = k
        .events("program_restart_scheduled", "flappy")
        .iter()
        .take(3)
        .map(|e| e["delay_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(
        delays,
        vec![100, 400, 100],
        "the third run lasted longer than start_seconds"
    );
    let running = k.events("program_running", "flappy");
    assert_eq!(running.len(), 1, "only the long run counted as started");
}

/// More than max_restarts within restart_window: `failed`, and no more
/// spawns.
#[test]
fn intensity_exceeded_fails_and_stops_spawning() {
    let k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.doomed]
command = ["sh", "-c", "exit 7"]
backoff = { initial = "20ms", multiplier = 1.0, jitter = 0.0 }
max_restarts = 3
restart_window = "60s"

# Witness: completes well after `doomed` would have restarted again.
[program.witness]
type = "oneshot"
command = ["sleep", "1"]
"#,
    );
    let failed = k.wait_event("program_failed", "doomed", secs(10.0));
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("restarted 3 times within 1m"),
        "{failed}"
    );
    k.wait_event("program_completed", "witness", secs(10.0));
    assert_eq!(
        k.events("program_started", "doomed").len(),
        4,
        "1 start + 3 restarts"
    );
    let last_exit = k.events("program_exited", "doomed");
    assert_eq!(last_exit.last().unwrap()["status"], "exit code 7");
}

/// always restarts any exit; on-failure only failures; never nothing.
#[test]
fn restart_policies() {
    let k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.always_ok]
command = ["sh", "-c", "exit 0"]
restart = "always"
backoff = { initial = "50ms", jitter = 0.0 }

[program.onfail_ok]
command = ["sh", "-c", "exit 0"]
restart = "on-failure"

[program.onfail_bad]
command = ["sh", "-c", "exit 2"]
restart = "on-failure"
backoff = { initial = "50ms", jitter = 0.0 }

[program.onfail_custom]
command = ["sh", "-c", "exit 3"]
restart = "on-failure"
success_codes = [0, 3]

[program.never_bad]
command = ["sh", "-c", "exit 1"]
restart = "never"

[program.witness]
type = "oneshot"
command = ["sleep", "1"]
"#,
    );
    k.wait_nth(3, "third start of always_ok", secs(10.0), |e| {
        common::is(e, "program_started", "always_ok")
    });
    k.wait_nth(3, "third start of onfail_bad", secs(10.0), |e| {
        common::is(e, "program_started", "onfail_bad")
    });
    k.wait_event("program_completed", "witness", secs(10.0));
    for name in ["onfail_ok", "onfail_custom", "never_bad"] {
        assert_eq!(
            k.events("program_started", name).len(),
            1,
            "{name} must not restart"
        );
        assert!(
            k.events("program_restart_scheduled", name).is_empty(),
            "{name}"
        );
    }
    let exits = k.events("program_exited", "onfail_custom");
    assert_eq!(exits[0]["reason"], "success", "3 is a success code");
    let exits = k.events("program_exited", "never_bad");
    assert_eq!(exits[0]["reason"], "failure");
}

/// `backoff_seconds` (and the status text built from it) is the time left
/// until the restart, counting down, not the delay scheduled when the
/// backoff began.
#[test]
fn backoff_shows_the_time_left() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.crashy]
command = ["sh", "-c", "exit 1"]
start_seconds = "0s"
backoff = { initial = "5s", max = "5s", jitter = 0.0 }
"#,
    );
    k.wait_control();
    let left = |k: &Kelpie| -> Option<f64> {
        let status = k.ctl(&["status", "crashy", "--json"]).expect(0).json();
        status["programs"][0]["instances"][0]["backoff_seconds"].as_f64()
    };
    let first = common::wait_until("crashy to be in backoff", secs(10.0), || left(&k));
    assert!(first <= 5.0, "at most the delay: {first}");
    let later = common::wait_until("the time left to go down", secs(3.0), || {
        left(&k).filter(|&now| now < first - 0.2)
    });
    assert!(later > 0.0, "{later}");
    let table = k.ctl(&["status", "crashy"]).expect(0).stdout;
    assert!(!table.contains("restart in 5.0s"), "{table}");
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}
