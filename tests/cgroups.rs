//! cgroup v2 containment on a real hierarchy: each test creates a cgroup
//! of its own under the test process's cgroup and gives it to kelpie as
//! `cgroup_root` (or moves kelpie into it for `auto`). Where cgroup v2 is
//! not writable, or a limit's controller is not offered, the test prints
//! SKIPPED with the reason and passes without asserting anything else.

// Test code: a panic is the failure report.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    clippy::disallowed_types
)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{alive, is, marker, secs, wait_until, Kelpie, Options};
use serde_json::Value;

/// A cgroup made for one test, killed and removed (with everything kelpie
/// made in it) when the test ends.
struct Sandbox {
    dir: PathBuf,
}

impl Sandbox {
    /// `Err` is why this machine cannot run the test.
    fn new() -> Result<Self, String> {
        let proc_cgroup =
            std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        let own = proc_cgroup
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or("the test runs in no cgroup v2 hierarchy")?
            .to_string();
        let mountinfo =
            std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
        let mount = mountinfo
            .lines()
            .find_map(|line| {
                let (left, right) = line.split_once(" - ")?;
                (right.split(' ').next()? == "cgroup2")
                    .then(|| left.split(' ').nth(4).map(str::to_string))
                    .flatten()
                    .filter(|_| left.split(' ').nth(3) == Some("/"))
            })
            .ok_or("no cgroup v2 hierarchy is mounted at its root")?;
        let parent = Path::new(&mount).join(own.trim_start_matches('/'));
        if !parent.join("cgroup.kill").exists() && own != "/" {
            return Err(format!(
                "{} has no cgroup.kill (Linux before 5.14)",
                parent.display()
            ));
        }
        // Controllers for the sandbox, where the parent can give them (it
        // cannot when it holds processes and is not the root).
        let offered =
            std::fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
        for controller in offered.split_whitespace() {
            if ["memory", "pids", "cpu"].contains(&controller) {
                let _ = std::fs::write(
                    parent.join("cgroup.subtree_control"),
                    format!("+{controller}"),
                );
            }
        }
        let dir = parent.join(format!("kelpie-test-{}", marker()));
        std::fs::create_dir(&dir)
            .map_err(|e| format!("cgroup v2 is not writable here ({}: {e})", dir.display()))?;
        let sandbox = Self { dir };
        // Moving processes in must work too (a read-only or foreign
        // hierarchy allows neither).
        if !sandbox.dir.join("cgroup.kill").exists() {
            return Err(format!(
                "{} has no cgroup.kill (Linux before 5.14)",
                sandbox.dir.display()
            ));
        }
        Ok(sandbox)
    }

    /// Makes the sandbox's children get `controller`, or says why not.
    fn offer(&self, controller: &str) -> Result<(), String> {
        let offered =
            std::fs::read_to_string(self.dir.join("cgroup.controllers")).unwrap_or_default();
        if !offered.split_whitespace().any(|c| c == controller) {
            return Err(format!(
                "the {controller} controller is not available to {} (cgroup.controllers: {:?})",
                self.dir.display(),
                offered.trim()
            ));
        }
        Ok(())
    }

    fn path(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    fn child(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        dirs.push(self.dir.clone());
        for dir in dirs {
            let _ = std::fs::write(dir.join("cgroup.kill"), "1");
            let emptied = (0..400).any(|_| {
                let empty = !populated(&dir);
                if !empty {
                    std::thread::sleep(Duration::from_millis(5));
                }
                empty
            });
            if emptied {
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }
}

fn populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .map(|events| events.lines().any(|l| l == "populated 1"))
        .unwrap_or(false)
}

fn members(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

fn sandbox_or_skip(test: &str) -> Option<Sandbox> {
    match Sandbox::new() {
        Ok(sandbox) => Some(sandbox),
        Err(why) => {
            println!("SKIPPED {test}: {why}");
            None
        }
    }
}

/// A sandbox whose children get `controller`, or `None` (SKIPPED printed).
fn sandbox_offering(test: &str, controller: &str) -> Option<Sandbox> {
    let sandbox = sandbox_or_skip(test)?;
    match sandbox.offer(controller) {
        Ok(()) => Some(sandbox),
        Err(why) => {
            println!("SKIPPED {test}: {why}");
            None
        }
    }
}

/// kelpie with `programs` (TOML) and `sandbox` as its cgroup root.
fn start_in(sandbox: &Sandbox, http_listen: &str, programs: &str) -> Kelpie {
    Kelpie::start(&format!(
        "[supervisor]\nhttp_listen = \"{http_listen}\"\ncgroup_root = \"{}\"\n\n{programs}",
        sandbox.path()
    ))
}

fn stat_field(pid: i32, index: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split(" ").nth(index - 3).map(str::to_string)
}

/// Shell that starts a daemon which leaves its process group and session
/// (a double fork and `setsid`), sheds kelpie's environment (so no run-id
/// sweep can find it), ignores SIGTERM and writes its pid to the file
/// named by `$f`: only the cgroup still knows it is the program's.
const ESCAPE: &str =
    r#"(setsid env -i sh -c 'trap "" TERM; echo $$ > "$0"; exec sleep 1000' "$f" &); "#;

/// `script` as a TOML string holding a shell command line.
fn toml_string(script: &str) -> String {
    format!("\"{}\"", script.replace('\\', "\\\\").replace('"', "\\\""))
}

fn pid_in(file: &Path) -> i32 {
    wait_until(&format!("a pid in {}", file.display()), secs(10.0), || {
        std::fs::read_to_string(file)
            .ok()?
            .trim()
            .parse::<i32>()
            .ok()
    })
}

#[test]
fn an_escaped_daemon_is_killed_with_its_cgroup_on_stop() {
    let Some(sandbox) = sandbox_or_skip("an_escaped_daemon_is_killed_with_its_cgroup_on_stop")
    else {
        return;
    };
    let k = Kelpie::start(&format!(
        r#"
[supervisor]
http_listen = "off"
cgroup_root = "{root}"

[program.esc]
command = ["sh", "-c", {script}, "{{dir}}/daemon.pid"]
start_seconds = "0s"
stop_timeout = "1s"
"#,
        root = sandbox.path(),
        script = toml_string(&format!("f=\"$0\"; {ESCAPE}exec sleep 1000")),
    ));
    k.wait_control();
    let leader = k.wait_running("esc")[0] as i32;
    let daemon = pid_in(&k.path("daemon.pid"));
    let cgroup = sandbox.child("esc.0");
    wait_until("the daemon in the instance's cgroup", secs(5.0), || {
        members(&cgroup).contains(&daemon).then_some(())
    });
    assert!(
        members(&cgroup).contains(&leader),
        "the leader is in {}",
        cgroup.display()
    );
    // The escape is real: another session and group, no run id.
    assert_ne!(
        stat_field(daemon, 5),
        stat_field(leader, 5),
        "process group"
    );
    assert_ne!(stat_field(daemon, 6), stat_field(leader, 6), "session");
    let environ = std::fs::read(format!("/proc/{daemon}/environ")).unwrap();
    assert!(!String::from_utf8_lossy(&environ).contains("KELPIE_RUN_ID"));

    k.ctl(&["stop", "esc"]).expect(0);
    assert!(
        !alive(daemon),
        "the escaped daemon {daemon} survived the stop"
    );
    assert!(
        !cgroup.exists(),
        "{} is removed once empty",
        cgroup.display()
    );
    let stopping = k.wait_event("program_stopping", "esc", secs(5.0));
    let timed_out = k.wait_event("program_stop_timeout", "esc", secs(5.0));
    assert!(
        common::between(&stopping, &timed_out) >= secs(0.9),
        "SIGKILL only after stop_timeout"
    );
}

#[test]
fn a_crashed_instances_leftovers_are_killed_before_it_restarts() {
    let Some(sandbox) =
        sandbox_or_skip("a_crashed_instances_leftovers_are_killed_before_it_restarts")
    else {
        return;
    };
    let k = Kelpie::start(&format!(
        r#"
[supervisor]
http_listen = "off"
cgroup_root = "{root}"

[program.crashy]
command = ["sh", "-c", {script}, "{{dir}}/daemon"]
start_seconds = "0s"
stop_timeout = "500ms"
backoff = {{ initial = "10ms", max = "10ms" }}
"#,
        root = sandbox.path(),
        script = toml_string(&format!(
            "f=\"$0.$$\"; {ESCAPE}while [ ! -s \"$f\" ]; do sleep 0.01; done; exit 3"
        )),
    ));
    let leader = k.started_pid("crashy", 1);
    let first = pid_in(&k.path(&format!("daemon.{leader}")));
    k.wait_nth(1, "the first exit of crashy", secs(10.0), |e| {
        is(e, "program_exited", "crashy")
    });
    let restarted = k.wait_nth(2, "the restart of crashy", secs(10.0), |e| {
        is(e, "program_started", "crashy")
    });
    assert!(
        !alive(first),
        "the first run's daemon {first} was still alive when the restart began: {restarted}"
    );
    // Cleaned up by a stop of the crashed run (the daemon ignores SIGTERM,
    // so it took the SIGKILL), not found in the way by the restart's
    // spawn, which would kill it and fail once.
    k.wait_event("program_stop_timeout", "crashy", secs(1.0));
    assert!(k.events("program_spawn_failed", "crashy").is_empty());
}

#[test]
fn auto_uses_kelpies_own_cgroup_when_it_is_kelpies_alone() {
    let Some(sandbox) = sandbox_or_skip("auto_uses_kelpies_own_cgroup_when_it_is_kelpies_alone")
    else {
        return;
    };
    let wrapper: &'static str =
        Box::leak(format!("echo $$ > '{}/cgroup.procs'", sandbox.path()).into_boxed_str());
    let k = Kelpie::start_with(
        r#"
[supervisor]
http_listen = "off"

[program.web]
command = ["sleep", "1000"]
start_seconds = "0s"
"#,
        Options {
            wrapper: Some(wrapper),
            ..Options::default()
        },
    );
    k.wait_control();
    let ready = k.wait_nth(1, "cgroups_ready", secs(10.0), |e| {
        e["event"] == "cgroups_ready"
    });
    assert_eq!(ready["root"], sandbox.path(), "{ready}");
    let web = k.wait_running("web")[0] as i32;
    assert_eq!(members(&sandbox.child("web.0")), [web]);
    let supervisor = members(&sandbox.child("supervisor"));
    assert!(
        supervisor.contains(&k.pid()),
        "kelpie moved itself into the leaf: {supervisor:?}"
    );
    assert!(
        members(&sandbox.dir).is_empty(),
        "no process left in the root"
    );
}

/// systemd's `DelegateSubgroup=supervisor` starts kelpie in the leaf
/// already: the delegated cgroup is its parent.
#[test]
fn auto_takes_the_parent_of_a_supervisor_leaf_kelpie_starts_in() {
    let Some(sandbox) =
        sandbox_or_skip("auto_takes_the_parent_of_a_supervisor_leaf_kelpie_starts_in")
    else {
        return;
    };
    let leaf = sandbox.child("supervisor");
    std::fs::create_dir(&leaf).unwrap();
    let wrapper: &'static str =
        Box::leak(format!("echo $$ > '{}/cgroup.procs'", leaf.display()).into_boxed_str());
    let k = Kelpie::start_with(
        r#"
[supervisor]
http_listen = "off"

[program.web]
command = ["sleep", "1000"]
start_seconds = "0s"
"#,
        Options {
            wrapper: Some(wrapper),
            ..Options::default()
        },
    );
    let ready = k.wait_nth(1, "cgroups_ready", secs(10.0), |e| {
        e["event"] == "cgroups_ready"
    });
    assert_eq!(ready["root"], sandbox.path(), "{ready}");
    let web = k.wait_running("web")[0] as i32;
    assert_eq!(members(&sandbox.child("web.0")), [web]);
    assert!(members(&leaf).contains(&k.pid()));
    assert!(!leaf.join("supervisor").exists(), "no leaf below the leaf");
}

#[test]
fn auto_leaves_a_shared_cgroup_alone_and_says_why() {
    let Some(sandbox) = sandbox_or_skip("auto_leaves_a_shared_cgroup_alone_and_says_why") else {
        return;
    };
    // A sleeper moved in before kelpie: the cgroup is not kelpie's alone.
    let wrapper: &'static str = Box::leak(
        format!(
            "echo $$ > '{}/cgroup.procs'; sleep 1000 & true",
            sandbox.path()
        )
        .into_boxed_str(),
    );
    let k = Kelpie::start_with(
        r#"
[supervisor]
http_listen = "off"

[program.web]
command = ["sleep", "1000"]
start_seconds = "0s"
memory_max = "64MiB"
"#,
        Options {
            wrapper: Some(wrapper),
            ..Options::default()
        },
    );
    let warning = k.wait_nth(1, "cgroups_unavailable", secs(10.0), |e| {
        e["event"] == "cgroups_unavailable"
    });
    let message = warning["message"].as_str().unwrap();
    assert!(
        message.contains("also holds 1 other process(es)"),
        "{message}"
    );
    assert!(
        message.contains("these limits do not apply: web: memory_max"),
        "{message}"
    );
    let web = k.wait_running("web")[0] as i32;
    assert!(
        members(&sandbox.dir).contains(&web),
        "the program runs where kelpie runs"
    );
    assert!(!sandbox.child("web.0").exists());
}

/// The `kelpie why`-style history of `program` as JSON.
fn last_exit(k: &Kelpie, program: &str) -> Value {
    let history = k.ctl(&["why", program, "--json"]).expect(0).json();
    history["exits"][0].clone()
}

#[test]
fn memory_max_gets_the_program_oom_killed_and_reported_as_oom() {
    let Some(sandbox) = sandbox_offering(
        "memory_max_gets_the_program_oom_killed_and_reported_as_oom",
        "memory",
    ) else {
        return;
    };
    let k = start_in(
        &sandbox,
        "127.0.0.1:0",
        r#"[program.hog]
command = ["python3", "-c", "import time; b = bytearray(b'x') * (100 << 20); time.sleep(1000)"]
start_seconds = "0s"
restart = "never"
memory_max = "20MB"
"#,
    );
    let exited = k.wait_event("program_exited", "hog", secs(20.0));
    assert_eq!(exited["status"], "signal KILL", "{exited}");
    k.wait_event("program_oom_killed", "hog", secs(10.0));
    let exit = last_exit(&k, "hog");
    assert_eq!(exit["oom"], true, "{exit}");
    assert_eq!(exit["oom_evidence"], "instance_cgroup", "{exit}");
    let metrics = wait_until("exits_total reason=oom", secs(10.0), || {
        let body = common::get(k.http_addr(), "/metrics").body;
        body.contains("kelpie_program_exits_total{program=\"hog\",reason=\"oom\"} 1")
            .then_some(body)
    });
    assert!(
        metrics.contains("kelpie_program_exits_total{program=\"hog\",reason=\"signal\"} 0"),
        "an OOM kill is not also counted as a signal"
    );
    // The actor hears the answer just after the history does.
    wait_until("status to show the OOM kill", secs(10.0), || {
        let status = k.ctl(&["status", "hog", "--json"]).expect(0).json();
        (status["programs"][0]["instances"][0]["last_exit"]["kind"] == "oom").then_some(())
    });
}

#[test]
fn pids_max_stops_a_fork_bomb_at_the_limit() {
    let Some(sandbox) = sandbox_offering("pids_max_stops_a_fork_bomb_at_the_limit", "pids") else {
        return;
    };
    let k = start_in(
        &sandbox,
        "off",
        r#"[program.bomb]
command = ["sh", "-c", "for i in $(seq 1 50); do sleep 1000 & done; wait"]
start_seconds = "0s"
pids_max = 10
"#,
    );
    k.wait_running("bomb");
    let cgroup = sandbox.child("bomb.0");
    wait_until("pids.events to count refused forks", secs(10.0), || {
        let events = std::fs::read_to_string(cgroup.join("pids.events")).ok()?;
        let refused: u64 = events
            .lines()
            .find_map(|l| l.strip_prefix("max "))?
            .trim()
            .parse()
            .ok()?;
        (refused > 0).then_some(())
    });
    let current: u64 = std::fs::read_to_string(cgroup.join("pids.current"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(current, 10, "the fork bomb is held at pids_max");
    assert_eq!(members(&cgroup).len(), 10);
}

#[test]
fn cpu_max_holds_a_busy_loop_near_its_share() {
    let Some(sandbox) = sandbox_offering("cpu_max_holds_a_busy_loop_near_its_share", "cpu") else {
        return;
    };
    let k = start_in(
        &sandbox,
        "off",
        r#"[program.spin]
command = ["sh", "-c", "while :; do :; done"]
start_seconds = "0s"
cpu_max = "20%"
"#,
    );
    k.wait_running("spin");
    let stat = sandbox.child("spin.0").join("cpu.stat");
    let usage = || -> u64 {
        let text = std::fs::read_to_string(&stat).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (used_before, at) = (usage(), std::time::Instant::now());
    // A measurement window, not a wait for a condition: the share is
    // defined over time.
    std::thread::sleep(Duration::from_secs(2));
    let share = (usage() - used_before) as f64 / at.elapsed().as_micros() as f64 * 100.0;
    assert!(
        (12.0..=28.0).contains(&share),
        "the busy loop used {share:.1}% of a CPU"
    );
}
