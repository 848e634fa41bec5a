//! `kelpie why`: the crash history of a program, with its verdict, against
//! the real binary: a crash loop, a program that failed after
//! `max_restarts`, a `kelpie stop`, and an OOM kill by the kernel in a
//! memory-limited cgroup (skipped, saying why, where none can be made).

// Test code: a panic is the failure report, and std's Instant is fine
// for a test's deadline.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    clippy::disallowed_types
)]

mod common;

use std::path::{Path, PathBuf};

use serde_json::Value;

use common::{ctl_at, secs, wait_until, Kelpie};

/// `kelpie why NAME --json`, which must succeed.
fn history(k: &Kelpie, name: &str) -> Value {
    k.ctl(&["why", name, "--json"]).expect(0).json()
}

fn exits(reply: &Value) -> Vec<Value> {
    reply["exits"].as_array().unwrap().clone()
}

fn lines_of(exit: &Value) -> Vec<String> {
    exit["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_crash_loop_shows_its_exits_newest_first_with_their_last_lines() {
    let k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.crashy]
command = ["sh", "-c", "echo boom; kill -SEGV $$"]
backoff = { initial = "200ms", multiplier = 2.0, max = "400ms", jitter = 0.0 }
max_restarts = 1000
"#,
    );
    k.wait_control();
    // Three exits, each with the line its process wrote (a pipe is read
    // to its end after the exit, so the newest may lack it for a moment).
    let reply = wait_until(
        "three exits of crashy with their output",
        secs(20.0),
        || {
            let reply = history(&k, "crashy");
            let exits = exits(&reply);
            let complete = exits.len() >= 3 && exits.iter().all(|e| lines_of(e) == ["boom"]);
            complete.then_some(reply)
        },
    );
    let exits = exits(&reply);
    let verdict = reply["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with(&format!("crash-looping: {} exits in ", exits.len())),
        "{verdict}"
    );
    assert!(verdict.contains("all SIGSEGV after ~"), "{verdict}");
    // Newest first: times go back, pids differ.
    let times: Vec<&str> = exits.iter().map(|e| e["time"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "not newest first");
    let mut pids: Vec<i64> = exits.iter().map(|e| e["pid"].as_i64().unwrap()).collect();
    pids.dedup();
    assert_eq!(pids.len(), exits.len(), "one exit per process");
    for exit in &exits {
        assert_eq!(exit["signal"], "SEGV", "{exit}");
        assert_eq!(exit["by_kelpie"], false, "{exit}");
        assert_eq!(exit["oom"], false, "{exit}");
        assert_eq!(exit["decision"]["action"], "restart", "{exit}");
        assert!(exit["time"].as_str().unwrap().ends_with('Z'), "{exit}");
    }
    // The delays of the backoff curve, oldest exit first (while the first
    // exit is still kept).
    let delays: Vec<f64> = exits
        .iter()
        .rev()
        .map(|e| e["decision"]["delay_seconds"].as_f64().unwrap())
        .collect();
    if exits.len() < 20 {
        assert_eq!(delays[..3], [0.2, 0.4, 0.4], "{delays:?}");
    }
    assert!(delays[1..].iter().all(|&d| d == 0.4), "{delays:?}");

    let text = k.ctl(&["why", "crashy"]).expect(0);
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert!(lines[0].starts_with("crashy: crash-looping: "), "{text:?}");
    assert_eq!(lines[1], "", "{text:?}");
    assert!(
        lines[2].contains("crashy:0  pid ") && lines[2].contains("signal SEGV after"),
        "{text:?}"
    );
    assert!(lines[2].contains("-> restart after "), "{text:?}");
    assert!(lines.contains(&"    boom"), "{text:?}");

    // One instance, and one that does not exist.
    let one = history(&k, "crashy:0");
    assert_eq!(one["instance"], 0);
    let missing = k.ctl(&["why", "crashy:1"]).expect(1);
    assert!(missing.stderr.contains("no such program"), "{missing:?}");
}

#[test]
fn a_program_that_gave_up_says_failed() {
    let k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.quitter]
command = ["sh", "-c", "echo bye; exit 3"]
max_restarts = 2
restart_window = "1m"
backoff = { initial = "50ms", max = "50ms", jitter = 0.0 }
"#,
    );
    k.wait_event("program_failed", "quitter", secs(10.0));
    let reply = history(&k, "quitter");
    assert_eq!(reply["state"], "failed");
    let verdict = reply["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with("failed after 3 exits in ")
            && verdict.contains("all exit code 3")
            && verdict.ends_with("restarted 2 times within 1m; giving up"),
        "{verdict}"
    );
    let exits = exits(&reply);
    assert_eq!(exits.len(), 3);
    assert_eq!(exits[0]["code"], 3);
    assert_eq!(exits[0]["decision"]["action"], "failed");
    let reason = exits[0]["decision"]["reason"].as_str().unwrap();
    assert!(reason.contains("giving up"), "{reason}");
    for older in &exits[1..] {
        assert_eq!(older["decision"]["action"], "restart", "{older}");
        assert_eq!(older["decision"]["delay_seconds"], 0.05, "{older}");
    }
    let text = k.ctl(&["why", "quitter"]).expect(0);
    assert!(
        text.stdout.starts_with("quitter: failed after 3 exits"),
        "{text:?}"
    );
    assert!(
        text.stdout.contains("-> failed: exited with exit code 3"),
        "{text:?}"
    );
    assert!(text.stdout.contains("    bye"), "{text:?}");
}

#[test]
fn a_kelpie_stop_is_kelpies_doing() {
    let k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.calm]
command = ["sleep", "1000"]
"#,
    );
    k.wait_control();
    let pid = k.wait_running("calm")[0];
    let before = k.ctl(&["why", "calm"]).expect(0);
    assert_eq!(before.stdout, "calm: running; no exits recorded\n");
    k.ctl(&["stop", "calm"]).expect(0);
    let text = k.ctl(&["why", "calm"]).expect(0);
    assert!(
        text.stdout
            .starts_with(&format!("calm: stopped by kelpie (pid {pid} at ")),
        "{text:?}"
    );
    assert!(text.stdout.contains("killed by SIGTERM after"), "{text:?}");
    let reply = history(&k, "calm");
    let exit = &exits(&reply)[0];
    assert_eq!(exit["pid"], pid);
    assert_eq!(exit["by_kelpie"], true);
    assert_eq!(exit["signal"], "TERM");
    assert_eq!(exit["decision"]["action"], "stopped");
    assert_eq!(exit["kelpie_reason"], Value::Null);

    // No such program: 1; no supervisor: 69.
    let missing = k.ctl(&["why", "nope"]).expect(1);
    assert!(
        missing.stderr.contains("no such program: nope"),
        "{missing:?}"
    );
    let json = k.ctl(&["why", "nope", "--json"]).expect(1);
    assert_eq!(json.json()["code"], "no_such_program");
    ctl_at(&k.path("absent.sock"), &["why", "calm"]).expect(69);
}

/// A memory cgroup with a limit, made for one test and removed after it.
struct LimitedCgroup {
    dir: PathBuf,
}

impl LimitedCgroup {
    const LIMIT: u64 = 64 * 1024 * 1024;

    /// Under the v1 memory hierarchy, else the v2 unified one (with the
    /// memory controller enabled for the root's children).
    fn create() -> Result<Self, String> {
        if !nix::unistd::Uid::effective().is_root() {
            return Err("not root: cannot make a memory cgroup".into());
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
        let mut v1 = None;
        let mut v2 = None;
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mount = left.split(' ').nth(4).unwrap_or_default();
            let right: Vec<&str> = right.split(' ').collect();
            match right.first() {
                Some(&"cgroup")
                    if right
                        .get(2)
                        .is_some_and(|o| o.split(',').any(|o| o == "memory")) =>
                {
                    v1 = Some(PathBuf::from(mount))
                }
                Some(&"cgroup2") => v2 = Some(PathBuf::from(mount)),
                _ => {}
            }
        }
        let name = format!("kelpie-why-test-{}", std::process::id());
        let (dir, limits): (PathBuf, Vec<(&str, String, bool)>) = match (v1, v2) {
            (Some(root), _) => (
                root.join(name),
                vec![
                    ("memory.limit_in_bytes", Self::LIMIT.to_string(), true),
                    // No swapping instead of the OOM kill, where swap exists.
                    (
                        "memory.memsw.limit_in_bytes",
                        Self::LIMIT.to_string(),
                        false,
                    ),
                    ("memory.swappiness", "0".into(), false),
                ],
            ),
            (None, Some(root)) => {
                let controllers = std::fs::read_to_string(root.join("cgroup.controllers"))
                    .map_err(|e| format!("{}: {e}", root.display()))?;
                if !controllers.split_whitespace().any(|c| c == "memory") {
                    return Err("the cgroup v2 hierarchy has no memory controller".into());
                }
                let subtree = root.join("cgroup.subtree_control");
                let enabled = std::fs::read_to_string(&subtree).unwrap_or_default();
                if !enabled.split_whitespace().any(|c| c == "memory") {
                    std::fs::write(&subtree, "+memory")
                        .map_err(|e| format!("cannot enable the memory controller: {e}"))?;
                }
                (
                    root.join(name),
                    vec![
                        ("memory.max", Self::LIMIT.to_string(), true),
                        ("memory.swap.max", "0".into(), false),
                    ],
                )
            }
            (None, None) => return Err("no cgroup hierarchy with a memory controller".into()),
        };
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let cgroup = LimitedCgroup { dir };
        for (file, value, required) in limits {
            let result = std::fs::write(cgroup.dir.join(file), &value);
            if let (Err(e), true) = (result, required) {
                return Err(format!("cannot set {file}: {e}"));
            }
        }
        Ok(cgroup)
    }

    fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }
}

impl Drop for LimitedCgroup {
    fn drop(&mut self) {
        // Its last process may take a moment to be gone after kelpie.
        let empty = |dir: &Path| {
            std::fs::read_to_string(dir.join("cgroup.procs")).map_or(true, |p| p.trim().is_empty())
        };
        let deadline = std::time::Instant::now() + secs(10.0);
        while !empty(&self.dir) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            eprintln!("could not remove {}: {e}", self.dir.display());
        }
    }
}

#[test]
fn an_oom_kill_by_the_kernel_is_named() {
    let cgroup = match LimitedCgroup::create() {
        Ok(cgroup) => cgroup,
        Err(reason) => {
            println!("SKIPPED: {reason}");
            return;
        }
    };
    if std::fs::File::open("/dev/kmsg").is_err() {
        println!("SKIPPED: the kernel log (/dev/kmsg) cannot be read here");
        return;
    }
    if !std::process::Command::new("python3")
        .args(["-c", "pass"])
        .status()
        .is_ok_and(|s| s.success())
    {
        println!("SKIPPED: no python3 to allocate memory with");
        return;
    }
    // The program moves itself into the limited cgroup, then allocates
    // (and writes) 1 MiB at a time until the kernel kills it.
    let hog = format!(
        "echo $$ > {} && echo allocating && exec python3 -c 'b = [bytes(1 << 20) + b\\\"x\\\" for _ in iter(int, 1)]'",
        cgroup.procs().display()
    );
    let k = Kelpie::start(&format!(
        r#"
[supervisor]
http_listen = "off"

[program.hog]
command = ["sh", "-c", "{hog}"]
restart = "never"
"#
    ));
    let exited = k.wait_event("program_exited", "hog", secs(60.0));
    assert_eq!(exited["status"], "signal KILL", "{exited}");
    let pid = exited["pid"].as_i64().unwrap();
    let oom = k.wait_event("program_oom_killed", "hog", secs(20.0));
    assert_eq!(oom["pid"], pid);
    assert_eq!(oom["evidence"], "kernel_log");
    let reply = history(&k, "hog");
    let exit = &exits(&reply)[0];
    assert_eq!(exit["pid"], pid);
    assert_eq!(exit["oom"], true, "{exit}");
    assert_eq!(exit["oom_evidence"], "kernel_log");
    assert_eq!(exit["by_kelpie"], false);
    assert_eq!(exit["decision"]["action"], "exited");
    assert!(lines_of(exit).contains(&"allocating".to_string()), "{exit}");
    let verdict = reply["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with(&format!("killed by the kernel OOM killer (pid {pid} at ")),
        "{verdict}"
    );
    let text = k.ctl(&["why", "hog"]).expect(0);
    assert!(text.stdout.contains("(the kernel OOM killer"), "{text:?}");
    drop(k);
    drop(cgroup);
}
