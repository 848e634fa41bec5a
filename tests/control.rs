//! The control commands against a running kelpie: output shapes, waiting,
//! exit codes (0, 1, 69, 78), `logs -f`, sticky `stop`, and `start`
//! clearing `failed`.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::io::{BufRead, BufReader};

use common::{alive, ctl_at, secs, wait_until, Kelpie};

const CONFIG: &str = r#"
[supervisor]
http_listen = "off"

[program.web]
command = ["sh", "-c", "trap 'echo got-usr1' USR1; echo web-up; while :; do sleep 1 & wait; done"]
instances = 2
start_seconds = "100ms"

[program.job]
command = ["sh", "-c", "echo job-done"]
type = "oneshot"
required = false

[program.manual]
command = ["sleep", "1000"]
autostart = false
required = false
start_seconds = "0s"
"#;

fn start() -> Kelpie {
    let k = Kelpie::start(CONFIG);
    k.wait_control();
    k.wait_nth(2, "both web instances running", secs(10.0), |e| {
        common::is(e, "program_running", "web")
    });
    k.wait_event("program_completed", "job", secs(10.0));
    // Events come before the status board catches up.
    k.wait_running("web");
    wait_until("status to show job completed", secs(10.0), || {
        (k.state("job").as_deref() == Some("exited")).then_some(())
    });
    k
}

fn stop(mut k: Kelpie) {
    k.signal("TERM");
    assert!(k.wait_exit(secs(15.0)).success());
}

#[test]
fn status_table_and_json_shape() {
    let k = start();
    let json = k.ctl(&["status", "--json"]).expect(0).json();
    assert_eq!(json["shutting_down"], false);
    let programs = json["programs"].as_array().unwrap();
    let names: Vec<&str> = programs
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "job", "manual"]);
    let web = &programs[0];
    assert_eq!(web["state"], "running");
    assert_eq!(web["ready"], true);
    assert_eq!(web["type"], "service");
    assert_eq!(web["stopped_by_user"], false);
    let instances = web["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 2);
    for (n, instance) in instances.iter().enumerate() {
        assert_eq!(instance["name"], format!("web:{n}"));
        assert_eq!(instance["index"], n);
        assert_eq!(instance["slot"], n, "no roll yet: the slot is the index");
        assert!(alive(instance["pid"].as_i64().unwrap() as i32));
        assert!(instance["uptime_seconds"].is_u64());
        assert!(instance["started_at"].is_f64());
        assert_eq!(instance["restarts"], 0);
    }
    let job = &programs[1];
    assert_eq!(job["type"], "oneshot");
    assert_eq!(job["state"], "exited");
    assert_eq!(job["instances"][0]["last_exit"]["code"], 0);
    assert_eq!(job["instances"][0]["last_exit"]["kind"], "success");
    assert_eq!(job["instances"][0]["last_exit"]["text"], "exit code 0");
    assert_eq!(programs[2]["state"], "stopped");
    assert!(programs[2]["instances"][0]["pid"].is_null());

    let table = k.ctl(&["status"]).expect(0).stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{table}");
    for (line, name, state) in [
        (1, "web:0", "running"),
        (2, "web:1", "running"),
        (3, "job", "exited"),
        (4, "manual", "stopped"),
    ] {
        let columns: Vec<&str> = lines[line].split_whitespace().collect();
        assert_eq!(columns[0], name, "{table}");
        assert_eq!(columns[1], state, "{table}");
    }
    assert!(!table.contains('\x1b'), "no color when not a terminal");

    let one = k.ctl(&["status", "--json", "job"]).expect(0).json();
    assert_eq!(one["programs"].as_array().unwrap().len(), 1);
    let unknown = k.ctl(&["status", "nope"]).expect(1);
    assert!(
        unknown.stderr.contains("no such program: nope"),
        "{unknown:?}"
    );
    stop(k);
}

#[test]
fn start_stop_restart_wait_for_the_outcome() {
    let k = start();
    let before = k.pids("web");

    let out = k.ctl(&["stop", "web"]).expect(0);
    assert!(out.stdout.contains("web: stopped"), "{out:?}");
    // stop returned: no process of the program is left.
    assert_eq!(k.pids("web"), vec![None, None]);
    for pid in before.iter().flatten() {
        assert!(!alive(*pid as i32), "{pid} is gone when stop returns");
    }
    let status = k.ctl(&["status", "--json", "web"]).expect(0).json();
    assert_eq!(status["programs"][0]["stopped_by_user"], true);

    let out = k.ctl(&["start", "web", "--json"]).expect(0).json();
    assert_eq!(out["ok"], true);
    assert_eq!(out["results"][0]["program"], "web");
    assert_eq!(out["results"][0]["state"], "running");
    let started = k.pids("web");
    assert!(
        started.iter().all(Option::is_some),
        "start returned with both running"
    );

    k.ctl(&["restart", "web"]).expect(0);
    let restarted = k.pids("web");
    for (old, new) in started.iter().zip(&restarted) {
        assert!(new.is_some() && new != old, "{started:?} -> {restarted:?}");
    }

    // autostart = false: started by request.
    k.ctl(&["start", "manual"]).expect(0);
    assert!(k.pids("manual")[0].is_some());

    // --all, and --no-wait returns at once with the action accepted.
    let out = k
        .ctl(&["stop", "--all", "--no-wait", "--json"])
        .expect(0)
        .json();
    assert!(out["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["message"] == "accepted"));
    wait_until("every program down", secs(10.0), || {
        let json = k.ctl(&["status", "--json"]).expect(0).json();
        json["programs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| {
                p["instances"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|i| i["pid"].is_null())
            })
            .then_some(())
    });

    let out = k.ctl(&["start", "nope"]).expect(1);
    assert!(out.stderr.contains("no such program: nope"), "{out:?}");
    stop(k);
}

#[test]
fn a_failed_start_says_why_and_exits_1() {
    let k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.flaky]
command = ["sh", "-c", "test -e {dir}/broken && { echo broken >&2; exit 3; }; exec sleep 1000"]
autostart = false
start_seconds = "300ms"
backoff = { initial = "5s" }
max_restarts = 0
"#,
    );
    k.wait_control();
    std::fs::write(k.path("broken"), "").unwrap();
    let out = k.ctl(&["start", "flaky"]).expect(1);
    assert!(
        out.stderr.contains("flaky: ERROR flaky:0") && out.stderr.contains("exit code 3"),
        "the failure names the instance and its exit: {out:?}"
    );
    // max_restarts = 0: failed for good.
    wait_until("flaky to be failed", secs(10.0), || {
        (k.state("flaky").as_deref() == Some("failed")).then_some(())
    });
    // start clears `failed` (and the backoff): once fixed, it runs.
    std::fs::remove_file(k.path("broken")).unwrap();
    let out = k.ctl(&["start", "flaky", "--json"]).expect(0).json();
    assert_eq!(out["results"][0]["state"], "running", "{out}");
    assert!(k.pids("flaky")[0].is_some());
    let mut k = k;
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

#[test]
fn stop_sticks_across_a_crash_and_a_reload() {
    let config = |version: &str| {
        format!(
            r#"
[supervisor]
http_listen = "off"

[program.crashy]
command = ["sh", "-c", "test -e {{dir}}/crash && {{ echo crashing; exit 1; }}; exec sleep 1000"]
environment = {{ VERSION = "{version}" }}
start_seconds = "0s"
backoff = {{ initial = "300ms", max = "300ms", jitter = 0.0 }}
max_restarts = 1000

[program.other]
command = ["sleep", "1000"]
start_seconds = "0s"
"#
        )
    };
    let mut k = Kelpie::start_with(
        &config("1"),
        common::Options {
            wrapper: Some("touch crash"),
            ..common::Options::default()
        },
    );
    k.wait_control();
    k.wait_event("program_restart_scheduled", "crashy", secs(10.0));
    // Stopped while crash-looping (in backoff): it stays stopped.
    k.ctl(&["stop", "crashy"]).expect(0);
    let starts = k.events("program_started", "crashy").len();

    // An unchanged reload and a reload that changes crashy's config both
    // leave it stopped; the other program is untouched.
    k.ctl(&["reload"]).expect(0);
    k.rewrite_config(&config("2"));
    let reply = k.ctl(&["reload", "--json"]).expect(0).json();
    assert_eq!(reply["plan"][0]["action"], "restart", "{reply}");
    k.wait_nth(2, "the second reload", secs(5.0), |e| {
        e["event"] == "config_reloaded"
    });
    k.wait_event("program_reconfigured", "crashy", secs(5.0));
    // The supervisor launches a rebuilt program in the same step that logs
    // `program_reconfigured`, before it answers any later request: were the
    // stop forgotten, this status would already show it starting.
    let status = k.ctl(&["status", "--json", "crashy"]).expect(0).json();
    assert_eq!(status["programs"][0]["state"], "stopped", "{status}");
    assert_eq!(status["programs"][0]["stopped_by_user"], true, "{status}");
    assert_eq!(
        k.events("program_started", "crashy").len(),
        starts,
        "no start after stop"
    );

    // start brings it back (with the new config), fixed.
    std::fs::remove_file(k.path("crash")).unwrap();
    let out = k.ctl(&["start", "crashy"]).expect(0);
    assert!(out.stdout.contains("crashy: running"), "{out:?}");
    k.wait_nth(starts + 1, "crashy started again", secs(5.0), |e| {
        common::is(e, "program_started", "crashy")
    });
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

#[test]
fn signal_reaches_every_instance_and_logs_follow() {
    let k = start();
    let mut follow = k.ctl_spawn(&["logs", "web", "-f", "-n", "1"]);
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The last line and the subscription to new ones are taken together:
    // once the replayed line arrives, nothing later can be missed.
    let replayed = rx.recv_timeout(secs(10.0)).expect("the replayed last line");
    assert!(replayed.ends_with("| web-up"), "{replayed}");

    let out = k.ctl(&["signal", "USR1", "web"]).expect(0);
    assert!(
        out.stdout.contains("sent SIGUSR1 to 2 process groups"),
        "{out:?}"
    );
    let mut got = Vec::new();
    while got.len() < 2 {
        let line = rx
            .recv_timeout(secs(10.0))
            .unwrap_or_else(|_| panic!("logs -f received {got:?}, waiting for 2 got-usr1 lines"));
        if line.ends_with("got-usr1") {
            got.push(line);
        }
    }
    got.sort();
    assert_eq!(got, ["web:0 | got-usr1", "web:1 | got-usr1"]);
    follow.kill().unwrap();
    follow.wait().unwrap();

    // Without -f: the recent lines, oldest first, and JSON records.
    let out = k.ctl(&["logs", "job"]).expect(0);
    assert_eq!(out.stdout, "job-done\n");
    // More than is kept (1000 lines) shows everything kept, like tail -n.
    let out = k.ctl(&["logs", "job", "-n", "2000"]).expect(0);
    assert_eq!(out.stdout, "job-done\n");
    let out = k.ctl(&["logs", "web", "-n", "1", "--json"]).expect(0);
    let record: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(record["line"], "got-usr1");
    assert_eq!(record["stream"], "stdout");
    k.ctl(&["logs", "nope"]).expect(1);

    k.ctl(&["signal", "SIGTERM", "manual"]).expect(1);
    k.ctl(&["signal", "NOPE", "web"]).expect(2);
    stop(k);
}

#[test]
fn ready_health_shutdown_and_no_supervisor() {
    let mut k = start();
    let out = k.ctl(&["ready"]).expect(0);
    assert_eq!(out.stdout.trim(), "ready");
    k.ctl(&["ready", "web"]).expect(0);
    k.ctl(&["ready", "nope"]).expect(1);
    let health = k.ctl(&["health", "--json"]).expect(0).json();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["pid"], k.pid());

    // A program stopped on purpose is not waited for; by name, it says
    // why it is not ready.
    k.ctl(&["stop", "web"]).expect(0);
    k.ctl(&["ready"]).expect(0);
    let out = k.ctl(&["ready", "web"]).expect(1);
    assert!(out.stdout.contains("stopped by `kelpie stop`"), "{out:?}");
    k.ctl(&["start", "web"]).expect(0);

    // shutdown waits until kelpie is done.
    let socket = k.socket();
    k.ctl(&["shutdown"]).expect(0);
    assert!(k.wait_exit(secs(10.0)).success());
    assert!(!socket.exists(), "the socket file is removed on exit");

    for verb in [&["status"][..], &["ready"], &["health"], &["stop", "web"]] {
        let out = ctl_at(&socket, verb).expect(69);
        assert!(
            out.stderr.contains(&socket.display().to_string()),
            "the message names the socket: {out:?}"
        );
    }
}

#[test]
fn control_requests_carry_their_id_into_the_events_they_cause() {
    let k = start();
    k.ctl(&["stop", "web"]).expect(0);
    let action = k.wait_event("control_action", "", secs(5.0));
    let id = action["request_id"].as_str().unwrap().to_string();
    assert!(!id.is_empty());
    for event in ["program_stopping", "program_stopped"] {
        let caused = k.wait_nth(1, event, secs(5.0), |e| common::is(e, event, "web"));
        assert_eq!(caused["request_id"], id.as_str(), "{caused}");
    }
    stop(k);
}

#[test]
fn diff_and_reload_refuse_an_invalid_config_with_78() {
    let k = start();
    k.rewrite_config("[program.web]\ncommand = \"sleep 1\"\nbogus = 1\n");
    let out = k.ctl(&["diff"]).expect(78);
    assert!(
        out.stderr
            .contains("supervisor.toml:3:1: program.web.bogus"),
        "{out:?}"
    );
    let out = k.ctl(&["reload", "--json"]).expect(78);
    let error = out.json();
    assert_eq!(error["code"], "config_invalid");
    assert_eq!(error["details"].as_array().unwrap().len(), 1);
    assert_eq!(k.state("web").as_deref(), Some("running"));
    stop(k);
}

/// `stop --all` stops dependents before what they depend on, like a
/// shutdown; `start --all` starts them in dependency order.
#[test]
fn stop_all_follows_reverse_dependency_order() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.db]
command = ["sh", "-c", "trap 'sleep 0.2; exit 0' TERM; echo armed; while :; do sleep 1 & wait; done"]
start_seconds = "0s"

[program.api]
command = ["sh", "-c", "trap 'sleep 0.2; exit 0' TERM; echo armed; while :; do sleep 1 & wait; done"]
start_seconds = "0s"
depends_on = ["db"]
"#,
    );
    k.wait_control();
    k.wait_output("api", "armed", secs(10.0));
    k.wait_output("db", "armed", secs(10.0));
    k.ctl(&["stop", "--all"]).expect(0);
    let api_stopped = k.wait_event("program_stopped", "api", secs(5.0));
    let db_stopping = k.wait_event("program_stopping", "db", secs(5.0));
    assert!(
        common::timestamp(&api_stopped) <= common::timestamp(&db_stopping),
        "db is asked to stop only once api is down"
    );
    k.ctl(&["start", "--all"]).expect(0);
    let db_running = k.wait_nth(2, "db running again", secs(5.0), |e| {
        common::is(e, "program_running", "db")
    });
    let api_started = k.wait_nth(2, "api started again", secs(5.0), |e| {
        common::is(e, "program_started", "api")
    });
    assert!(common::timestamp(&db_running) <= common::timestamp(&api_started));
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

/// Commands find the socket through `-c`: a relative `control_socket`
/// resolves against the config's directory (whatever the working
/// directory), and an otherwise invalid file still names it, so a refused
/// reload reports the errors (78) instead of missing the supervisor (69).
#[test]
fn the_socket_is_found_through_the_config_even_when_it_is_invalid() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"
control_socket = "ctl.sock"

[program.web]
command = ["sleep", "1000"]
"#,
    );
    k.wait_control();
    let config = k.path("supervisor.toml");
    let run = |args: &[&str]| {
        let mut child = std::process::Command::new(common::BIN)
            .args(args)
            .arg("-c")
            .arg(&config)
            .current_dir("/")
            .env_remove("KELPIE_SOCKET")
            .env_remove("KELPIE_CONFIG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (stdout, stderr, status) = common::collect_child(&mut child, secs(30.0), "kelpie");
        (status.code(), stdout, stderr)
    };
    let (code, stdout, _) = run(&["health"]);
    assert_eq!(code, Some(0), "{stdout}");
    std::fs::write(
        &config,
        "[supervisor]\nhttp_listen = \"off\"\ncontrol_socket = \"ctl.sock\"\n\n[program.web]\ncommand = []\n",
    )
    .unwrap();
    let (code, _, stderr) = run(&["reload"]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("program.web.command"), "{stderr}");
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

/// `kelpie status | head -c 1`: a closed pipe ends the command quietly.
#[test]
fn a_closed_stdout_is_not_a_crash() {
    let k = start();
    for args in [&["status", "--json"][..], &["status"], &["logs", "web"]] {
        // A pipe whose reader is already gone: every write fails with EPIPE.
        let (reader, writer) = nix::unistd::pipe().unwrap();
        drop(reader);
        let mut child = std::process::Command::new(common::BIN)
            .args(args)
            .arg("-s")
            .arg(k.socket())
            .stdout(std::process::Stdio::from(writer))
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (_, stderr, status) = common::collect_child(&mut child, secs(30.0), "kelpie status");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(status.code(), Some(0), "{args:?}: {stderr}");
    }
    stop(k);
}
