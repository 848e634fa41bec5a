//! `kelpie restart --rolling`: three instances of an HTTP server sharing a
//! port (SO_REUSEPORT) are replaced one at a time under continuous load
//! with zero failed requests; a replacement that never becomes ready
//! aborts the roll and leaves the old instances serving. A reload of a
//! changed program with `reload = "rolling"` ships the change the same way.
//! With an http readiness probe on a health port per `${KELPIE_SLOT}`, each
//! replacement's own probe is awaited, not answered by the old instance.
//!
//! Runs kelpie in a network namespace of its own with
//! `net.ipv4.tcp_migrate_req = 1`: without it the kernel resets connections
//! still queued on a listener when that listener closes, whatever the
//! supervisor does. (Skipped, saying why, where namespaces are
//! unavailable.)

// Test code: a panic is the failure report, and std's Instant is fine for
// timing a blocking control command (no tokio timer is involved).
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    clippy::disallowed_types
)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::{alive, secs, Kelpie, Options};

const NETNS: &str = "ip link set lo up && echo 1 > /proc/sys/net/ipv4/tcp_migrate_req";

fn namespaces_available() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("needs root for a network namespace".into());
    }
    let probe = Command::new("unshare")
        .args(["--net", "sh", "-c", NETNS])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match probe {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "unshare --net with tcp_migrate_req failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run unshare: {e}")),
    }
}

fn config(fixtures: &str) -> String {
    config_with(fixtures, "restart", "1")
}

fn config_with(fixtures: &str, reload: &str, version: &str) -> String {
    format!(
        r#"
[supervisor]
http_listen = "off"

[program.web]
command = ["python3", "{fixtures}/reuseport_server.py"]
instances = 3
environment = {{ PORT = "8080", BROKEN_FLAG = "{{dir}}/broken", VERSION = "{version}" }}
reload = "{reload}"
start_seconds = "0s"
start_timeout = "3s"
stop_timeout = "5s"

[program.web.readiness]
log = "^listening$"
"#
    )
}

/// How long the slow-starting server takes before it listens.
const STARTUP_DELAY: f64 = 1.0;

/// The service port is shared; each instance answers its readiness probe on
/// a health port of its own, `health` being that port's template.
fn config_health(fixtures: &str, health: &str) -> String {
    format!(
        r#"
[supervisor]
http_listen = "off"

[program.web]
command = ["python3", "{fixtures}/reuseport_server.py"]
instances = 3
environment = {{ PORT = "8080", HEALTH_PORT = "{health}", STARTUP_DELAY = "{STARTUP_DELAY}" }}
start_seconds = "0s"
start_timeout = "5s"
stop_timeout = "5s"

[program.web.readiness]
http = "http://127.0.0.1:{health}/health"
interval = "100ms"
"#
    )
}

fn start() -> Option<Kelpie> {
    start_config(config)
}

fn start_config(config: impl FnOnce(&str) -> String) -> Option<Kelpie> {
    if let Err(why) = namespaces_available() {
        println!("SKIPPED: {why}");
        return None;
    }
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    // The wrapper runs before exec'ing kelpie, so kelpie keeps the test's
    // child pid; `unshare --net` without --fork execs in place.
    let k = Kelpie::start_with(
        &config(fixtures),
        Options {
            wrapper: Some(concat!(
                "exec unshare --net sh -c '",
                "ip link set lo up && echo 1 > /proc/sys/net/ipv4/tcp_migrate_req",
                " && exec \"$0\" \"$@\"' \"$0\" run -c \"$1\"; :"
            )),
            ..Options::default()
        },
    );
    Some(k)
}

/// Load from inside kelpie's network namespace.
struct Poller {
    child: std::process::Child,
}

impl Poller {
    fn start(k: &Kelpie) -> Self {
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/proc/{}/ns/net", k.pid()))
            .args(["python3", &format!("{fixtures}/http_poller.py")])
            .env("PORT", "8080")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the poller");
        // "polling" comes after the first successful request; a poller
        // that cannot reach the server fails the test at the deadline.
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let _ = tx.send((first, reader));
        });
        let (line, reader) = rx
            .recv_timeout(secs(15.0))
            .expect("the poller's first successful request");
        assert_eq!(line.trim(), "polling");
        // Nothing else is printed until the end: the buffer is empty.
        child.stdout = Some(reader.into_inner());
        Self { child }
    }

    /// Stops the load and returns its tally.
    fn finish(mut self) -> serde_json::Value {
        drop(self.child.stdin.take());
        let (stdout, _, status) = common::collect_child(&mut self.child, secs(30.0), "the poller");
        assert!(status.success(), "poller failed: {stdout}");
        serde_json::from_str(stdout.trim()).unwrap()
    }
}

#[test]
fn rolling_restart_under_load_fails_no_request() {
    let Some(mut k) = start() else { return };
    k.wait_control();
    for n in 1..=3 {
        k.wait_nth(n, "every instance ready", secs(15.0), |e| {
            common::is(e, "program_ready", "web")
        });
    }
    let old = k.wait_running("web");
    let poller = Poller::start(&k);

    let out = k.ctl(&["restart", "--rolling", "web"]).expect(0);
    let tally = poller.finish();

    assert_eq!(
        tally["failed"], 0,
        "failed requests during the roll: {tally}\n{out:?}"
    );
    assert!(tally["ok"].as_u64().unwrap() > 50, "the load ran: {tally}");
    let new: Vec<i64> = k.pids("web").into_iter().map(Option::unwrap).collect();
    for pid in &old {
        assert!(
            !new.contains(pid),
            "every instance was replaced: {old:?} -> {new:?}"
        );
        assert!(!alive(*pid as i32), "old process {pid} is gone");
    }
    let served: Vec<i64> = tally["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap())
        .collect();
    assert!(
        served.iter().any(|p| new.contains(p)),
        "new instances served requests: {served:?} new {new:?}"
    );
    // One at a time: each old instance was stopped only after its
    // replacement was ready.
    let replaced = k.events("rolling_restart_replaced", "web");
    assert_eq!(replaced.len(), 3);
    k.wait_event("rolling_restart_complete", "web", secs(5.0));

    k.signal("TERM");
    assert!(k.wait_exit(secs(15.0)).success());
}

#[test]
fn a_replacement_that_never_becomes_ready_aborts_the_roll() {
    let Some(mut k) = start() else { return };
    k.wait_control();
    for n in 1..=3 {
        k.wait_nth(n, "every instance ready", secs(15.0), |e| {
            common::is(e, "program_ready", "web")
        });
    }
    let old = k.wait_running("web");
    std::fs::File::create(k.path("broken"))
        .unwrap()
        .write_all(b"")
        .unwrap();
    let poller = Poller::start(&k);

    let out = k.ctl(&["restart", "--rolling", "web"]).expect(1);
    assert!(
        out.stdout.contains("aborted") || out.stderr.contains("aborted"),
        "the failure says the roll was aborted: {out:?}"
    );
    let tally = poller.finish();
    assert_eq!(
        tally["failed"], 0,
        "the old instances kept serving: {tally}"
    );
    let after: Vec<i64> = k.pids("web").into_iter().map(Option::unwrap).collect();
    assert_eq!(old, after, "old instances intact");
    k.wait_event("rolling_restart_aborted", "web", secs(5.0));
    // The broken replacement is gone, not left running beside them.
    common::wait_until("the broken replacement to be stopped", secs(10.0), || {
        (k.marked_processes().len() == 3).then_some(())
    });

    k.signal("TERM");
    assert!(k.wait_exit(secs(15.0)).success());
}

#[test]
fn a_rolling_reload_under_load_fails_no_request() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let Some(mut k) = start_config(|f| config_with(f, "rolling", "1")) else {
        return;
    };
    k.wait_control();
    for n in 1..=3 {
        k.wait_nth(n, "every instance ready", secs(15.0), |e| {
            common::is(e, "program_ready", "web")
        });
    }
    let old = k.wait_running("web");
    let poller = Poller::start(&k);

    k.rewrite_config(&config_with(fixtures, "rolling", "2"));
    let out = k.ctl(&["reload"]).expect(0);
    assert!(
        out.stdout.contains("~ web  roll (environment)"),
        "the plan says the change rolls: {out:?}"
    );
    k.wait_event("rolling_restart_complete", "web", secs(30.0));
    let tally = poller.finish();

    assert_eq!(
        tally["failed"], 0,
        "failed requests during the rolling reload: {tally}"
    );
    let new: Vec<i64> = k.pids("web").into_iter().map(Option::unwrap).collect();
    for pid in &old {
        assert!(
            !new.contains(pid),
            "every instance was replaced: {old:?} -> {new:?}"
        );
    }
    for pid in &new {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(
            environ.split(|&b| b == 0).any(|v| v == b"VERSION=2"),
            "instance {pid} runs the new config"
        );
    }
    assert_eq!(k.events("rolling_restart_replaced", "web").len(), 3);
    // Taken over: the same file again is unchanged.
    let out = k.ctl(&["diff"]).expect(0);
    assert!(out.stdout.contains("  web  unchanged"), "{out:?}");

    k.signal("TERM");
    assert!(k.wait_exit(secs(15.0)).success());
}

#[test]
fn a_rolling_restart_awaits_each_replacements_own_health_port() {
    let Some(mut k) = start_config(|f| config_health(f, "910${KELPIE_SLOT}")) else {
        return;
    };
    k.wait_control();
    for n in 1..=3 {
        k.wait_nth(n, "every instance ready", secs(15.0), |e| {
            common::is(e, "program_ready", "web")
        });
    }
    let old = k.wait_running("web");
    assert_eq!(slots(&k), [0, 1, 2]);
    let poller = Poller::start(&k);

    let began = std::time::Instant::now();
    let out = k.ctl(&["restart", "--rolling", "web"]).expect(0);
    let took = began.elapsed();
    let tally = poller.finish();
    println!("the roll took {took:?} under load: {tally}");

    assert_eq!(
        tally["failed"], 0,
        "failed requests during the roll: {tally}\n{out:?}"
    );
    assert!(
        tally["ok"].as_u64().unwrap() >= 120,
        "the load ran: {tally}"
    );
    // A replacement is ready only once it listens, STARTUP_DELAY after it
    // started; an old instance answering its probe would end the roll
    // sooner.
    assert!(
        took >= secs(3.0 * STARTUP_DELAY),
        "the roll took {took:?}, less than {STARTUP_DELAY}s for each of 3 replacements"
    );
    let new: Vec<i64> = k.pids("web").into_iter().map(Option::unwrap).collect();
    for pid in &old {
        assert!(
            !new.contains(pid),
            "every instance was replaced: {old:?} -> {new:?}"
        );
    }
    assert_eq!(
        slots(&k),
        [3, 4, 5],
        "the replacements took the other slots"
    );
    for (n, pid) in new.iter().enumerate() {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
        let slot = n + 3;
        for expected in [
            format!("KELPIE_INSTANCE={n}"),
            format!("KELPIE_SLOT={slot}"),
            format!("HEALTH_PORT=910{slot}"),
        ] {
            assert!(
                vars.contains(&expected.as_bytes()),
                "web:{n} (pid {pid}) has {expected}"
            );
        }
    }
    k.wait_event("rolling_restart_complete", "web", secs(5.0));

    k.signal("TERM");
    assert!(k.wait_exit(secs(15.0)).success());
}

/// Each instance's `slot` from `status --json`.
fn slots(k: &Kelpie) -> Vec<u64> {
    let status = k.ctl(&["status", "--json"]).expect(0).json();
    let web = status["programs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "web")
        .unwrap()
        .clone();
    web["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["slot"].as_u64().unwrap())
        .collect()
}
