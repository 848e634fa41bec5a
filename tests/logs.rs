//! `kelpie logs` against a running kelpie: every program merged in time
//! order, `--timestamps`, one instance (`web:1`), the mark where a new
//! process takes over, and `-f` across a reload that rebuilds or removes
//! the program.

// Test code: a panic is the failure report.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    clippy::disallowed_types
)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use common::{secs, wait_until, Kelpie};

/// A running `kelpie logs -f`: its stdout lines as they come.
struct Follow {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Follow {
    fn start(k: &Kelpie, args: &[&str]) -> Follow {
        let mut child = k.ctl_spawn(args);
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Follow {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line, which must arrive within 10 s.
    fn next(&mut self, what: &str) -> String {
        match self.lines.recv_timeout(secs(10.0)) {
            Ok(line) => {
                self.seen.push(line.clone());
                line
            }
            Err(_) => panic!(
                "logs -f: no line within 10 s, waiting for {what}; got so far: {:?}",
                self.seen
            ),
        }
    }

    /// Lines until one equal to `line` (which is returned with those before).
    fn until(&mut self, line: &str) -> Vec<String> {
        let mut got = Vec::new();
        loop {
            let next = self.next(line);
            got.push(next.clone());
            if next == line {
                return got;
            }
        }
    }

    /// Waits for the command to exit by itself; its status and stderr.
    fn exit(mut self, what: &str) -> (i32, String) {
        let mut stderr = String::new();
        let mut err = self.child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = err.read_to_string(&mut stderr);
            let _ = tx.send(stderr);
        });
        let stderr = match rx.recv_timeout(secs(10.0)) {
            Ok(stderr) => stderr,
            Err(_) => {
                let _ = self.child.kill();
                panic!(
                    "logs -f did not exit within 10 s after {what}; stdout: {:?}",
                    self.seen
                );
            }
        };
        let status = self.child.wait().unwrap();
        (status.code().unwrap_or(-1), stderr)
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stop(mut k: Kelpie) {
    k.signal("TERM");
    assert!(k.wait_exit(secs(15.0)).success());
}

/// `b` starts once `a` runs, so `a`'s first line is older than `b`'s.
const TWO: &str = r#"
[supervisor]
http_listen = "off"

[program.a]
command = ["sh", "-c", "trap 'echo a-usr1' USR1; echo a-first; while :; do sleep 1 & wait; done"]
start_seconds = "100ms"

[program.b]
command = ["sh", "-c", "trap 'echo b-usr1' USR1; echo b-second; while :; do sleep 1 & wait; done"]
start_seconds = "100ms"
depends_on = ["a"]
"#;

fn start_two() -> Kelpie {
    let k = Kelpie::start(TWO);
    k.wait_control();
    k.wait_output("b", "b-second", secs(10.0));
    k.wait_running("a");
    k.wait_running("b");
    k
}

fn parse_time(text: &str) -> SystemTime {
    assert_eq!(text.len(), 24, "RFC 3339 with milliseconds: {text:?}");
    assert!(text.ends_with('Z'), "UTC: {text:?}");
    humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

#[test]
fn logs_without_a_name_merges_every_program_in_time_order() {
    let started = SystemTime::now() - Duration::from_millis(1);
    let k = start_two();
    k.ctl(&["signal", "USR1", "a"]).expect(0);
    k.wait_output("a", "a-usr1", secs(10.0));

    let out = k.ctl(&["logs"]).expect(0);
    assert_eq!(
        out.stdout, "a:0 | a-first\nb:0 | b-second\na:0 | a-usr1\n",
        "{out:?}"
    );
    let out = k.ctl(&["logs", "-n", "2"]).expect(0);
    assert_eq!(out.stdout, "b:0 | b-second\na:0 | a-usr1\n", "{out:?}");

    // --timestamps: the time kelpie read each line, first.
    let out = k.ctl(&["logs", "--timestamps"]).expect(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out:?}");
    let mut previous = started;
    for (line, text) in lines
        .iter()
        .zip(["a:0 | a-first", "b:0 | b-second", "a:0 | a-usr1"])
    {
        let (time, rest) = line.split_once(' ').unwrap();
        assert_eq!(rest, text);
        let time = parse_time(time);
        assert!(time >= previous && time <= SystemTime::now(), "{line}");
        previous = time;
    }

    // --json: each record names its program and carries the time.
    let out = k.ctl(&["logs", "--json"]).expect(0);
    let records: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let programs: Vec<&str> = records
        .iter()
        .map(|r| r["program"].as_str().unwrap())
        .collect();
    assert_eq!(programs, ["a", "b", "a"]);
    for record in &records {
        assert_eq!(record["instance"], 0);
        parse_time(record["time"].as_str().unwrap());
    }

    // A named program keeps its lines unprefixed unless --prefix.
    assert_eq!(k.ctl(&["logs", "a"]).expect(0).stdout, "a-first\na-usr1\n");
    assert_eq!(
        k.ctl(&["logs", "b", "--prefix"]).expect(0).stdout,
        "b:0 | b-second\n"
    );
    stop(k);
}

#[test]
fn logs_follow_without_a_name_follows_every_program() {
    let k = start_two();
    let mut follow = Follow::start(&k, &["logs", "-f", "-n", "1"]);
    // The replayed line: the subscriptions are taken, nothing later is lost.
    assert_eq!(follow.next("the replayed last line"), "b:0 | b-second");
    k.ctl(&["signal", "USR1", "b"]).expect(0);
    assert_eq!(follow.next("b's USR1 line"), "b:0 | b-usr1");
    k.ctl(&["signal", "USR1", "a"]).expect(0);
    assert_eq!(follow.next("a's USR1 line"), "a:0 | a-usr1");

    // A program a reload adds is followed too.
    k.rewrite_config(&format!(
        "{TWO}\n[program.c]\ncommand = [\"sh\", \"-c\", \"echo c-added; exec sleep 1000\"]\n"
    ));
    k.ctl(&["reload"]).expect(0);
    assert_eq!(follow.next("the added program's line"), "c:0 | c-added");
    drop(follow);
    stop(k);
}

const INSTANCES: &str = r#"
[supervisor]
http_listen = "off"

[program.web]
command = ["sh", "-c", "echo web-$KELPIE_INSTANCE; exec sleep 1000"]
instances = 2
"#;

#[test]
fn logs_of_one_instance() {
    let k = Kelpie::start(INSTANCES);
    k.wait_control();
    k.wait_output("web", "web-0", secs(10.0));
    k.wait_output("web", "web-1", secs(10.0));

    assert_eq!(k.ctl(&["logs", "web:1"]).expect(0).stdout, "web-1\n");
    assert_eq!(k.ctl(&["logs", "web:0"]).expect(0).stdout, "web-0\n");
    let out = k.ctl(&["logs", "web:1", "--json"]).expect(0);
    let record: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(record["instance"], 1);
    assert_eq!(record["program"], "web");
    // The whole program: both, prefixed as before.
    let out = k.ctl(&["logs", "web"]).expect(0);
    let mut lines: Vec<&str> = out.stdout.lines().collect();
    lines.sort();
    assert_eq!(lines, ["web:0 | web-0", "web:1 | web-1"]);

    let out = k.ctl(&["logs", "web:2"]).expect(1);
    assert!(out.stderr.contains("no such program: web:2"), "{out:?}");
    stop(k);
}

const RESTARTING: &str = r#"
[supervisor]
http_listen = "off"

[program.p]
command = ["sh", "-c", "echo started $$; exec sleep 1000"]
start_seconds = "100ms"
"#;

#[test]
fn a_restart_is_marked_in_the_log_stream() {
    let k = Kelpie::start(RESTARTING);
    k.wait_control();
    let first = k.wait_running("p")[0];
    let mut follow = Follow::start(&k, &["logs", "p", "-f", "-n", "1"]);
    assert_eq!(follow.next("the replayed line"), format!("started {first}"));

    // A crash: the restart policy starts a new process.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let second = k.started_pid("p", 2);
    assert_eq!(
        follow.next("the restart mark"),
        format!("--- p:0 restarted (pid {first} → {second}) ---")
    );
    assert_eq!(
        follow.next("the new process's line"),
        format!("started {second}")
    );
    drop(follow);

    // `kelpie restart` too, and the marks are kept in the tail.
    k.ctl(&["restart", "p"]).expect(0);
    let third = k.started_pid("p", 3);
    wait_until("the third process's line in logs", secs(10.0), || {
        let out = k.ctl(&["logs", "p"]).expect(0);
        out.stdout
            .contains(&format!("started {third}"))
            .then_some(())
    });
    let out = k.ctl(&["logs", "p"]).expect(0);
    assert_eq!(
        out.stdout,
        format!(
            "started {first}\n--- p:0 restarted (pid {first} → {second}) ---\nstarted {second}\n\
             --- p:0 restarted (pid {second} → {third}) ---\nstarted {third}\n"
        )
    );
    // In JSON a mark is an event, not a fake output line.
    let out = k.ctl(&["logs", "p", "--json", "-n", "2"]).expect(0);
    let mark: serde_json::Value = serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(mark["event"], "restarted", "{mark}");
    assert_eq!(mark["program"], "p");
    assert_eq!(mark["instance"], 0);
    assert_eq!(mark["pid"], third);
    assert_eq!(mark["previous_pid"], second);
    assert!(mark.get("line").is_none(), "{mark}");
    parse_time(mark["time"].as_str().unwrap());
    stop(k);
}

const RELOAD_V1: &str = r#"
[supervisor]
http_listen = "off"

[program.p]
command = ["sh", "-c", "echo v1; exec sleep 1000"]

[program.other]
command = ["sleep", "1000"]
"#;

#[test]
fn follow_goes_on_across_a_reload_and_ends_when_the_program_is_removed() {
    let k = Kelpie::start(RELOAD_V1);
    k.wait_control();
    k.wait_output("p", "v1", secs(10.0));
    let mut follow = Follow::start(&k, &["logs", "p", "-f", "-n", "1"]);
    assert_eq!(follow.next("the replayed line"), "v1");

    // A changed command: the program is rebuilt; following goes on with
    // the new program's output.
    k.rewrite_config(&RELOAD_V1.replace("echo v1", "echo v2"));
    k.ctl(&["reload"]).expect(0);
    let got = follow.until("v2");
    assert_eq!(got.len(), 2, "a restart mark, then v2: {got:?}");
    assert!(got[0].starts_with("--- p:0 restarted (pid "), "{got:?}");

    // Removed: a last notice on stderr, exit 0.
    k.rewrite_config(
        "[supervisor]\nhttp_listen = \"off\"\n\n[program.other]\ncommand = [\"sleep\", \"1000\"]\n",
    );
    k.ctl(&["reload"]).expect(0);
    let (code, stderr) = follow.exit("the reload that removed p");
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("kelpie: p was removed by a reload"),
        "{stderr:?}"
    );
    stop(k);
}

#[test]
fn follow_ends_quietly_at_shutdown() {
    let mut k = Kelpie::start(RELOAD_V1);
    k.wait_control();
    k.wait_output("p", "v1", secs(10.0));
    let mut follow = Follow::start(&k, &["logs", "-f", "-n", "1"]);
    follow.next("the replayed line");
    k.signal("TERM");
    assert!(k.wait_exit(secs(15.0)).success());
    let (code, stderr) = follow.exit("the shutdown");
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("removed"), "{stderr:?}");
}
