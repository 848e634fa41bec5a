//! Dependency gating at start and reverse-dependency order at shutdown.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::{is, secs, timestamp, Kelpie};

/// A oneshot that must complete gates a service; the service starts only
/// after the oneshot exited successfully.
#[test]
fn completed_oneshot_gates_a_service() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.migrate]
type = "oneshot"
command = ["sh", "-c", "sleep 0.3; echo migrated"]

[program.web]
command = ["sleep", "1000"]
depends_on = { migrate = "completed" }
"#,
    );
    let web_started = k.wait_event("program_started", "web", secs(10.0));
    let migrate_exited = k.events("program_exited", "migrate");
    assert_eq!(
        migrate_exited.len(),
        1,
        "web started before migrate finished"
    );
    assert!(timestamp(&migrate_exited[0]) <= timestamp(&web_started));
    assert_eq!(migrate_exited[0]["reason"], "success");
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

/// A oneshot that fails (restart = never) blocks its dependents: they are
/// `failed` with the reason, and never started.
#[test]
fn failed_oneshot_blocks_dependents() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.migrate]
type = "oneshot"
restart = "never"
command = ["sh", "-c", "exit 3"]

[program.web]
command = ["sleep", "1000"]
depends_on = { migrate = "completed" }

[program.independent]
command = ["sleep", "1000"]
start_seconds = "0s"
"#,
    );
    let failed = k.wait_event("program_failed", "web", secs(10.0));
    assert_eq!(failed["reason"], "dependency \"migrate\" failed");
    k.wait_event("program_running", "independent", secs(10.0));
    assert!(k.events("program_started", "web").is_empty());
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

/// db ← api ← web: start in dependency order (each waits for its
/// dependency to be ready), stop in reverse order on SIGTERM.
#[test]
fn dependency_start_order_and_reverse_stop_order() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

# web takes 300 ms to stop, so "sidecar stops meanwhile" does not hinge
# on how fast a bare `sleep` dies.
[program.web]
command = ["sh", "-c", "trap 'sleep 0.3; exit 0' TERM; sleep 1000 & wait"]
start_seconds = "200ms"
depends_on = ["api"]

[program.api]
command = ["sleep", "1000"]
start_seconds = "200ms"
depends_on = { db = "ready" }

[program.db]
command = ["sleep", "1000"]
start_seconds = "200ms"

[program.sidecar]
command = ["sleep", "1000"]
start_seconds = "200ms"
"#,
    );
    k.wait_event("program_running", "web", secs(10.0));
    let started = |p: &str| timestamp(&k.events("program_started", p)[0]);
    let running = |p: &str| timestamp(&k.events("program_running", p)[0]);
    assert!(
        running("db") <= started("api"),
        "api started before db was ready"
    );
    assert!(
        running("api") <= started("web"),
        "web started before api was ready"
    );
    assert!(
        started("sidecar") < running("db"),
        "independent programs do not wait"
    );

    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
    let stopping = |p: &str| timestamp(&k.events("program_stopping", p)[0]);
    let stopped = |p: &str| timestamp(&k.events("program_stopped", p)[0]);
    assert!(
        stopped("web") <= stopping("api"),
        "api stopped before web was down"
    );
    assert!(
        stopped("api") <= stopping("db"),
        "db stopped before api was down"
    );
    assert!(
        stopping("sidecar") < stopped("web"),
        "independent programs stop in parallel"
    );
    let events = k.all_events();
    let complete = events
        .iter()
        .position(|e| is(e, "shutdown_complete", ""))
        .unwrap();
    let last_stop = events
        .iter()
        .rposition(|e| is(e, "program_stopped", ""))
        .unwrap();
    assert!(last_stop < complete);
}

/// "started" only needs the dependency's process to exist.
#[test]
fn started_condition_does_not_wait_for_start_seconds() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.slow]
command = ["sleep", "1000"]
start_seconds = "5s"

[program.eager]
command = ["sleep", "1000"]
depends_on = { slow = "started" }
"#,
    );
    let eager = k.wait_event("program_started", "eager", secs(3.0));
    assert!(k.events("program_running", "slow").is_empty());
    let slow = &k.events("program_started", "slow")[0];
    assert!(timestamp(slow) <= timestamp(&eager));
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

/// A dependency that exited for good (restart = "never") can never become
/// ready: its dependents fail with the reason instead of waiting forever.
#[test]
fn exited_dependency_blocks_dependents() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.once]
command = ["sh", "-c", "exit 0"]
restart = "never"

[program.follower]
command = ["sleep", "1000"]
depends_on = ["once"]
"#,
    );
    let failed = k.wait_event("program_failed", "follower", secs(5.0));
    assert_eq!(
        failed["reason"],
        "dependency \"once\" exited and will not be restarted"
    );
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

/// A dependency that failed for good and is then fixed and started by
/// hand unblocks its dependents: they start on their own once it is
/// ready, without a `kelpie start` each.
#[test]
fn a_fixed_dependency_unblocks_its_dependents() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.db]
command = ["sh", "-c", "test -e {dir}/fixed || { echo broken >&2; exit 3; }; exec sleep 1000"]
start_seconds = "200ms"
max_restarts = 0

[program.api]
command = ["sleep", "1000"]
start_seconds = "0s"
depends_on = { db = "ready" }

[program.web]
command = ["sleep", "1000"]
start_seconds = "0s"
depends_on = ["api"]
"#,
    );
    let blocked = k.wait_event("program_failed", "web", secs(10.0));
    assert_eq!(blocked["reason"], "dependency \"api\" failed");
    assert_eq!(
        k.events("program_failed", "api")[0]["reason"],
        "dependency \"db\" failed"
    );
    std::fs::write(k.path("fixed"), "").unwrap();
    k.ctl(&["start", "db"]).expect(0);
    k.wait_event("program_running", "api", secs(10.0));
    k.wait_event("program_running", "web", secs(10.0));
    assert_eq!(k.events("program_unblocked", "api").len(), 1);
    assert_eq!(k.state("web").as_deref(), Some("running"));
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}
