//! kelpie as PID 1 (inside `unshare --pid --fork --mount-proc`, as in a
//! container): orphaned grandchildren are reaped, no exit status of a
//! program is lost to the orphan reaping, SIGTERM drains, and forwarded
//! signals reach the programs. Skipped, saying why, where a PID namespace
//! cannot be created.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::process::{Command, Stdio};

use common::{is_guardian, secs, wait_until, Kelpie, Options};

fn pid_namespace() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("a PID namespace needs root".into());
    }
    let mut child = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    let (_, stderr, status) = common::collect_child(&mut child, secs(10.0), "unshare");
    if status.success() {
        Ok(())
    } else {
        Err(format!("unshare --pid failed: {}", stderr.trim()))
    }
}

/// Starts kelpie as PID 1 of a new PID namespace. Returns the harness
/// (whose child is `unshare`) and kelpie's pid as seen from here.
fn start(config: &str) -> Option<(Kelpie, i32)> {
    if let Err(why) = pid_namespace() {
        println!("SKIPPED: {why}");
        return None;
    }
    let k = Kelpie::start_with(
        config,
        Options {
            wrapper: Some("exec unshare --pid --fork --mount-proc \"$0\" run -c \"$1\"; :"),
            ..Options::default()
        },
    );
    k.wait_control();
    // unshare forks: kelpie is its only child.
    let kelpie = wait_until("kelpie inside the namespace", secs(10.0), || {
        children_of(k.pid()).into_iter().next()
    });
    let status = std::fs::read_to_string(format!("/proc/{kelpie}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(
        nspid.trim_end().ends_with("\t1"),
        "kelpie is PID 1 in its namespace: {nspid}"
    );
    Some((k, kelpie))
}

/// (pid, state) of every process whose parent is `parent`.
fn children_with_state(parent: i32) -> Vec<(i32, char)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: i32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == parent {
            found.push((pid, state));
        }
    }
    found
}

fn children_of(parent: i32) -> Vec<i32> {
    children_with_state(parent)
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

fn zombies_of(parent: i32) -> usize {
    children_with_state(parent)
        .iter()
        .filter(|(_, state)| *state == 'Z')
        .count()
}

fn signal(pid: i32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).unwrap();
}

#[test]
fn orphans_in_bursts_leave_no_zombie() {
    let Some((mut k, kelpie)) = start(
        r#"
[supervisor]
http_listen = "off"

# 1000 orphans in 10 bursts: each subshell exits at once and its short
# sleep is reparented to PID 1 (kelpie), then exits.
[program.orphaner]
command = ["sh", "-c", "for b in 1 2 3 4 5 6 7 8 9 10; do for i in $(seq 100); do (sleep 0.05 &); done; done; echo burst-done; exec sleep 1000"]
start_seconds = "0s"
"#,
    ) else {
        return;
    };
    k.wait_output("orphaner", "burst-done", secs(60.0));
    // The last orphans exit within 50 ms; their zombies must be gone
    // within a second of that.
    wait_until("no zombie child of kelpie", secs(1.1), || {
        (zombies_of(kelpie) == 0 && children_of(kelpie).len() <= 2).then_some(())
    });
    let reaped = {
        signal(kelpie, nix::sys::signal::Signal::SIGTERM);
        assert!(
            k.wait_exit(secs(15.0)).success(),
            "SIGTERM to PID 1 drains and exits 0"
        );
        k.wait_event("shutdown_complete", "", secs(1.0))
    };
    assert!(
        reaped["orphans_reaped"].as_u64().unwrap() >= 1000,
        "every orphan was reaped by kelpie: {reaped}"
    );
}

#[test]
fn no_exit_status_is_lost_to_orphan_reaping() {
    let Some((mut k, kelpie)) = start(
        r#"
[supervisor]
http_listen = "off"

# Exits with 3 right after leaving an orphan behind, 300 times.
[program.flapper]
command = ["sh", "-c", "(sleep 0.01 &); (true &); exit 3"]
start_seconds = "0s"
backoff = { initial = "1ms", max = "1ms", jitter = 0.0 }
max_restarts = 299
restart_window = "10m"

# Orphans all along, to reap concurrently with the flapper's exits.
[program.storm]
command = ["sh", "-c", "while :; do (true &); (sleep 0.001 &); sleep 0.005; done"]
start_seconds = "0s"
"#,
    ) else {
        return;
    };
    // 1 start + 299 restarts = 300 spawns, then `failed`.
    k.wait_event("program_failed", "flapper", secs(120.0));
    let started = k.events("program_started", "flapper").len();
    let exits = k.events("program_exited", "flapper");
    assert_eq!(started, 300);
    assert_eq!(exits.len(), 300, "one exit per spawn");
    for exit in &exits {
        assert_eq!(
            exit["status"], "exit code 3",
            "a status was lost or mangled: {exit}"
        );
    }
    // The storm still makes orphans, so a zombie may exist for the moment
    // between its exit and kelpie's reap; what must not happen is that one
    // stays. Every zombie seen now is gone within a second.
    let seen: Vec<i32> = children_with_state(kelpie)
        .into_iter()
        .filter(|(_, state)| *state == 'Z')
        .map(|(pid, _)| pid)
        .collect();
    wait_until(
        &format!("kelpie to reap the zombies {seen:?}"),
        secs(1.0),
        || {
            let still: Vec<i32> = children_with_state(kelpie)
                .into_iter()
                .filter(|(pid, state)| *state == 'Z' && seen.contains(pid))
                .map(|(pid, _)| pid)
                .collect();
            still.is_empty().then_some(())
        },
    );
    signal(kelpie, nix::sys::signal::Signal::SIGTERM);
    assert!(k.wait_exit(secs(15.0)).success());
}

#[test]
fn forwarded_signals_reach_programs_under_pid_1() {
    let Some((mut k, kelpie)) = start(
        r#"
[supervisor]
http_listen = "off"
forward_signals = ["USR1"]

[program.listener]
command = ["sh", "-c", "trap 'echo got-usr1' USR1; echo armed; while :; do sleep 1 & wait; done"]
start_seconds = "0s"
"#,
    ) else {
        return;
    };
    k.wait_output("listener", "armed", secs(10.0));
    // No guardian as PID 1: the kernel empties the namespace when it dies.
    let guardians: Vec<i32> = children_of(kelpie)
        .into_iter()
        .filter(|&pid| is_guardian(pid))
        .collect();
    assert!(
        guardians.is_empty(),
        "guardian processes under PID 1: {guardians:?}"
    );
    signal(kelpie, nix::sys::signal::Signal::SIGUSR1);
    k.wait_output("listener", "got-usr1", secs(5.0));
    // SIGINT, like Ctrl-C: PID 1 has no default action, kelpie handles it.
    signal(kelpie, nix::sys::signal::Signal::SIGINT);
    assert!(k.wait_exit(secs(15.0)).success());
    assert!(k.marked_processes().is_empty());
}
