// Children are reaped with waitpid by pid: kelpie's clippy.toml disallows
// `Child::wait` (the reaper owns every wait in the product code), which
// clippy's zombie lint does not know about.
#![allow(clippy::zombie_processes)]

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write as _;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::text::{escape, push_f64, push_u64};
use super::*;
use crate::state::{Phase, Snapshot};
use crate::status::{Board, InstanceStatus, ProgramStatus};

/// Every kelpie family, its type and its label names, as docs/metrics.md
/// lists them.
const FAMILIES: &[(&str, &str, &[&str])] = &[
    ("kelpie_build_info", "gauge", &["version"]),
    ("kelpie_up", "gauge", &[]),
    ("kelpie_shutting_down", "gauge", &[]),
    ("kelpie_program_state", "gauge", &["program", "state"]),
    ("kelpie_program_ready", "gauge", &["program"]),
    ("kelpie_program_enabled", "gauge", &["program"]),
    ("kelpie_program_instances_running", "gauge", &["program"]),
    ("kelpie_program_restarts_total", "counter", &["program"]),
    (
        "kelpie_program_exits_total",
        "counter",
        &["program", "reason"],
    ),
    ("kelpie_program_last_exit_code", "gauge", &["program"]),
    (
        "kelpie_program_start_time_seconds",
        "gauge",
        &["program", "instance"],
    ),
    ("kelpie_program_cpu_seconds_total", "counter", &["program"]),
    (
        "kelpie_program_resident_memory_bytes",
        "gauge",
        &["program"],
    ),
    ("kelpie_program_backoff_seconds", "gauge", &["program"]),
    (
        "kelpie_probe_duration_seconds",
        "histogram",
        &["program", "probe"],
    ),
    (
        "kelpie_probe_failures_total",
        "counter",
        &["program", "probe"],
    ),
    ("kelpie_log_lines_total", "counter", &["program", "stream"]),
    ("kelpie_restart_budget_available", "gauge", &[]),
    ("kelpie_restarts_delayed_total", "counter", &["program"]),
    ("kelpie_http_requests_total", "counter", &["path", "code"]),
];

mod exposition_parser;
mod scrape_benchmark;

use exposition_parser::{family_of, Exposition, Sample};

/// Kills and reaps process groups the tests started, also on panic.
struct Groups(Vec<i32>);

impl Groups {
    /// `argv` in a new process group of its own (like kelpie's programs),
    /// dying with the test process if that is killed outright.
    fn spawn(&mut self, argv: &[&str]) -> i32 {
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches only the child.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn");
        let pid = child.id() as i32;
        self.0.push(pid);
        pid
    }

    /// Like `spawn`, with the process's stdout piped to the test.
    fn spawn_piped(&mut self, argv: &[&str]) -> (i32, std::process::ChildStdout) {
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches only the child.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn");
        let pid = child.id() as i32;
        self.0.push(pid);
        (pid, child.stdout.take().expect("piped stdout"))
    }
}

impl Drop for Groups {
    fn drop(&mut self) {
        for &pgid in &self.0 {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        for &pgid in &self.0 {
            // Only the leader is our child; the rest are reparented.
            let _ = waitpid(Pid::from_raw(pgid), None);
        }
    }
}

fn instance(phase: Phase, pid: Option<i32>, started: Option<SystemTime>) -> InstanceStatus {
    let mut snapshot = Snapshot::initial();
    snapshot.phase = phase;
    snapshot.pid = pid;
    snapshot.ready = phase == Phase::Running;
    InstanceStatus {
        snapshot,
        started_at: started,
        ack: 0,
        held: false,
        slot: 0,
    }
}

fn program(name: &str, oneshot: bool, instances: Vec<InstanceStatus>) -> Arc<ProgramStatus> {
    Arc::new(ProgramStatus {
        name: name.into(),
        required: true,
        oneshot,
        instances,
        reason: None,
        stopped_by_user: false,
        enabled: true,
    })
}

/// A board like a real one: a two-instance service with real processes, a
/// crash-looping worker, a finished oneshot, a stopped program and a name
/// with every allowed punctuation character.
fn realistic(groups: &mut Groups) -> Board {
    let web0 = groups.spawn(&["sh", "-c", "sleep 60 & sleep 60 & wait"]);
    let web1 = groups.spawn(&["sleep", "60"]);
    let started = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
    let mut worker = instance(Phase::Backoff, None, None);
    worker.snapshot.backoff = Duration::from_millis(2500);
    worker.snapshot.restarts = 3;
    let mut migrate = instance(Phase::Exited, None, None);
    migrate.snapshot.last_exit_kind = Some(ExitKind::Success);
    Board {
        shutting_down: false,
        programs: vec![
            program(
                "web",
                false,
                vec![
                    instance(Phase::Running, Some(web0), Some(started)),
                    instance(Phase::Running, Some(web1), Some(started)),
                ],
            ),
            program(
                "worker",
                false,
                vec![worker, instance(Phase::Running, None, None)],
            ),
            program("migrate", true, vec![migrate]),
            // Stopped with `kelpie stop`.
            Arc::new(ProgramStatus {
                stopped_by_user: true,
                enabled: false,
                ..(*program("cron", false, vec![instance(Phase::Stopped, None, None)])).clone()
            }),
            program(
                "odd.name_1-x",
                false,
                vec![instance(Phase::Starting, None, None)],
            ),
        ],
    }
}

fn record_events(m: &Metrics) {
    m.program_exited("worker", ExitKind::Failure, ExitStatus::Code(3));
    m.program_exited("worker", ExitKind::Failure, ExitStatus::Code(1));
    m.program_exited("worker", ExitKind::Killed, ExitStatus::Signal(9));
    m.program_exited("migrate", ExitKind::Success, ExitStatus::Code(0));
    m.program_restarted("worker", 1);
    m.program_restarted("worker", 2);
    m.restart_delayed("worker");
    for ms in [0, 3, 7, 40, 2000, 20_000] {
        m.probe_result("web", "readiness", Duration::from_millis(ms), ms < 1000);
    }
    m.probe_result("web", "liveness", Duration::from_micros(300), true);
    m.probe_result("web", "startup", Duration::from_micros(300), true);
    m.probe_result("worker", "liveness", Duration::from_secs(1), false);
    for _ in 0..5 {
        m.log_line("web", Stream::Stdout);
    }
    m.log_line("web", Stream::Stderr);
    let counter = m.log_line_counter("worker", Stream::Stderr);
    counter.inc();
    counter.inc();
    for (path, code) in [
        ("/health", 200),
        ("/health", 200),
        ("/ready", 503),
        ("/ready/web", 200),
        ("/ready/nope", 404),
        ("/metrics", 200),
        ("/wp-admin/../etc", 404),
        ("/ready/a/b", 404),
    ] {
        m.http_request(path, code);
    }
    m.set_restart_budget_available(Some(5));
}

fn promtool_check(text: &str) {
    let Some(promtool) = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("promtool"))
            .find(|p| p.is_file())
    }) else {
        eprintln!(
            "SKIPPED: promtool not on PATH; `promtool check metrics` was not run \
             (apt-get install prometheus). The structural checks still ran."
        );
        return;
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let mut stdout = String::new();
    let mut stderr = String::new();
    use std::io::Read as _;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = waitpid(Pid::from_raw(child.id() as i32), None).unwrap();
    assert!(
        matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)),
        "promtool check metrics failed ({status:?}):\n{stdout}{stderr}\n--- output ---\n{text}"
    );
    // promtool exits 0 on lint warnings too; kelpie wants none.
    assert!(
        stdout.trim().is_empty() && stderr.trim().is_empty(),
        "promtool lint findings:\n{stdout}{stderr}"
    );
}

#[test]
fn a_realistic_scrape_passes_promtool_and_matches_the_spec() {
    let mut groups = Groups(Vec::new());
    let board = realistic(&mut groups);
    let m = Metrics::new().unwrap();
    record_events(&m);
    let text = m.render(&board);
    promtool_check(&text);

    let e = Exposition::parse(&text);
    for (name, kind, labels) in FAMILIES {
        assert_eq!(
            e.types.get(*name).map(String::as_str),
            Some(*kind),
            "TYPE of {name}"
        );
        assert!(e.helps.contains(*name), "HELP of {name}");
        let samples = e.family(name);
        assert!(!samples.is_empty(), "no samples of {name}");
        for s in samples {
            let mut want: BTreeSet<&str> = labels.iter().copied().collect();
            if s.name.ends_with("_bucket") && *kind == "histogram" {
                want.insert("le");
            }
            let got: BTreeSet<&str> = s.labels.keys().map(String::as_str).collect();
            assert_eq!(got, want, "labels of {s:?}");
        }
    }
    // Nothing but those families and process_*.
    for name in e.types.keys() {
        assert!(
            FAMILIES.iter().any(|(n, _, _)| n == name) || name.starts_with("process_"),
            "unexpected family {name}"
        );
    }
    for process in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(e.types.contains_key(process), "{process}");
    }

    // Values.
    fn p(name: &str) -> [(&'static str, &str); 1] {
        [("program", name)]
    }
    assert_eq!(
        e.get(
            "kelpie_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert_eq!(e.get("kelpie_up", &[]), Some(1.0));
    assert_eq!(e.get("kelpie_shutting_down", &[]), Some(0.0));
    for (program, current) in [
        ("web", "running"),
        ("worker", "backoff"),
        ("migrate", "exited"),
        ("cron", "stopped"),
        ("odd.name_1-x", "starting"),
    ] {
        for phase in Phase::ALL {
            let want = if phase.as_str() == current { 1.0 } else { 0.0 };
            assert_eq!(
                e.get(
                    "kelpie_program_state",
                    &[("program", program), ("state", phase.as_str())]
                ),
                Some(want),
                "{program} {phase:?}"
            );
        }
    }
    assert_eq!(e.get("kelpie_program_ready", &p("web")), Some(1.0));
    assert_eq!(e.get("kelpie_program_ready", &p("migrate")), Some(1.0));
    assert_eq!(e.get("kelpie_program_ready", &p("worker")), Some(0.0));
    assert_eq!(e.get("kelpie_program_enabled", &p("web")), Some(1.0));
    assert_eq!(e.get("kelpie_program_enabled", &p("cron")), Some(0.0));
    assert_eq!(
        e.get("kelpie_program_instances_running", &p("web")),
        Some(2.0)
    );
    assert_eq!(
        e.get("kelpie_program_instances_running", &p("worker")),
        Some(0.0)
    );
    assert_eq!(
        e.get("kelpie_program_restarts_total", &p("worker")),
        Some(3.0)
    );
    assert_eq!(
        e.get("kelpie_program_restarts_total", &p("cron")),
        Some(0.0)
    );
    let exits = |program: &str, reason: &str| {
        e.get(
            "kelpie_program_exits_total",
            &[("program", program), ("reason", reason)],
        )
    };
    assert_eq!(exits("worker", "failure"), Some(2.0));
    assert_eq!(exits("worker", "killed"), Some(1.0));
    assert_eq!(exits("worker", "success"), Some(0.0));
    assert_eq!(exits("migrate", "success"), Some(1.0));
    assert_eq!(exits("cron", "signal"), Some(0.0), "pre-initialised");
    assert_eq!(
        e.get("kelpie_program_last_exit_code", &p("worker")),
        Some(137.0)
    );
    assert_eq!(
        e.get("kelpie_program_last_exit_code", &p("migrate")),
        Some(0.0)
    );
    assert_eq!(e.get("kelpie_program_last_exit_code", &p("cron")), None);
    let start = |program: &str, instance: &str| {
        e.get(
            "kelpie_program_start_time_seconds",
            &[("program", program), ("instance", instance)],
        )
    };
    assert_eq!(start("web", "0"), Some(1_700_000_000.25));
    assert_eq!(start("web", "1"), Some(1_700_000_000.25));
    assert_eq!(e.family("kelpie_program_start_time_seconds").len(), 2);
    assert_eq!(
        e.get("kelpie_program_backoff_seconds", &p("worker")),
        Some(2.5)
    );
    assert_eq!(
        e.get("kelpie_program_backoff_seconds", &p("web")),
        Some(0.0)
    );
    // web's groups: sh + 2 sleeps, and a sleep; real memory.
    let web_rss = e
        .get("kelpie_program_resident_memory_bytes", &p("web"))
        .unwrap();
    assert!(web_rss > 100_000.0, "web rss {web_rss}");
    assert_eq!(
        e.get("kelpie_program_resident_memory_bytes", &p("cron")),
        Some(0.0)
    );
    assert!(
        e.get("kelpie_program_cpu_seconds_total", &p("web"))
            .unwrap()
            >= 0.0
    );

    let bucket = |le: &str| {
        e.get(
            "kelpie_probe_duration_seconds_bucket",
            &[("program", "web"), ("probe", "readiness"), ("le", le)],
        )
    };
    assert_eq!(bucket("0.001"), Some(1.0));
    assert_eq!(bucket("0.005"), Some(2.0));
    assert_eq!(bucket("0.01"), Some(3.0));
    assert_eq!(bucket("0.05"), Some(4.0));
    assert_eq!(bucket("2.5"), Some(5.0));
    assert_eq!(bucket("10"), Some(5.0));
    assert_eq!(bucket("+Inf"), Some(6.0));
    let probe = |name: &str, program: &str, probe: &str| {
        e.get(name, &[("program", program), ("probe", probe)])
    };
    assert_eq!(
        probe("kelpie_probe_duration_seconds_count", "web", "readiness"),
        Some(6.0)
    );
    let sum = probe("kelpie_probe_duration_seconds_sum", "web", "readiness").unwrap();
    assert!((sum - 22.05).abs() < 1e-9, "{sum}");
    assert_eq!(
        probe("kelpie_probe_failures_total", "web", "readiness"),
        Some(2.0)
    );
    assert_eq!(
        probe("kelpie_probe_failures_total", "web", "liveness"),
        Some(0.0)
    );
    assert_eq!(
        probe("kelpie_probe_failures_total", "worker", "liveness"),
        Some(1.0)
    );
    assert_eq!(
        probe("kelpie_probe_failures_total", "cron", "liveness"),
        None
    );
    assert!(
        !text.contains("startup"),
        "unknown probe names make no series"
    );
    let lines = |program: &str, stream: &str| {
        e.get(
            "kelpie_log_lines_total",
            &[("program", program), ("stream", stream)],
        )
    };
    assert_eq!(lines("web", "stdout"), Some(5.0));
    assert_eq!(lines("web", "stderr"), Some(1.0));
    assert_eq!(lines("worker", "stderr"), Some(2.0));
    assert_eq!(lines("cron", "stdout"), Some(0.0));
    assert_eq!(e.get("kelpie_restart_budget_available", &[]), Some(5.0));
    assert_eq!(
        e.get("kelpie_restarts_delayed_total", &p("worker")),
        Some(1.0)
    );
    assert_eq!(e.get("kelpie_restarts_delayed_total", &p("web")), Some(0.0));
    let http = |path: &str, code: &str| {
        e.get(
            "kelpie_http_requests_total",
            &[("path", path), ("code", code)],
        )
    };
    assert_eq!(http("/health", "200"), Some(2.0));
    assert_eq!(http("/ready", "503"), Some(1.0));
    assert_eq!(http("/ready/{program}", "200"), Some(1.0));
    assert_eq!(http("/ready/{program}", "404"), Some(1.0));
    assert_eq!(http("/metrics", "200"), Some(1.0));
    assert_eq!(http("other", "404"), Some(2.0));
    assert_eq!(e.family("kelpie_http_requests_total").len(), 6);
}

#[test]
fn shutting_down_and_no_budget() {
    let m = Metrics::new().unwrap();
    m.set_restart_budget_available(Some(0));
    let board = Board {
        shutting_down: true,
        programs: vec![],
    };
    let e = Exposition::parse(&m.render(&board));
    assert_eq!(e.get("kelpie_shutting_down", &[]), Some(1.0));
    assert_eq!(e.get("kelpie_restart_budget_available", &[]), Some(0.0));
    m.set_restart_budget_available(None);
    let text = m.render(&board);
    assert!(!text.contains("kelpie_restart_budget_available"));
    // An empty board still makes a valid exposition.
    promtool_check(&text);
}

#[test]
fn remove_program_removes_every_series_of_that_program_and_only_those() {
    let mut groups = Groups(Vec::new());
    let board = realistic(&mut groups);
    let m = Metrics::new().unwrap();
    record_events(&m);
    let before = Exposition::parse(&m.render(&board));
    let worker_families: BTreeSet<&str> = before
        .with_program("worker")
        .iter()
        .map(|s| family_of(&s.name, &before.types))
        .collect();
    // Every per-program event family has a worker series to remove.
    for family in [
        "kelpie_program_exits_total",
        "kelpie_program_last_exit_code",
        "kelpie_probe_duration_seconds",
        "kelpie_probe_failures_total",
        "kelpie_log_lines_total",
        "kelpie_restarts_delayed_total",
        "kelpie_program_restarts_total",
    ] {
        assert!(worker_families.contains(family), "{family}");
    }

    // The reload: counters dropped, then a board without the program.
    m.remove_program("worker");
    let mut reloaded = board.clone();
    reloaded.programs.retain(|p| p.name != "worker");
    let after = Exposition::parse(&m.render(&reloaded));
    assert!(after.with_program("worker").is_empty());
    assert!(!m.programs.read().unwrap().contains_key("worker"));

    // Everything else is untouched (CPU may have moved on in between).
    let others = |e: &Exposition| -> Vec<Sample> {
        e.samples
            .iter()
            .filter(|s| {
                s.labels.contains_key("program")
                    && s.labels["program"] != "worker"
                    && s.name != "kelpie_program_cpu_seconds_total"
                    && s.name != "kelpie_program_resident_memory_bytes"
            })
            .cloned()
            .collect()
    };
    assert_eq!(others(&before), others(&after));
    assert_eq!(
        after.get(
            "kelpie_program_exits_total",
            &[("program", "migrate"), ("reason", "success")]
        ),
        Some(1.0)
    );

    // Counters are dropped even if the board still lists the program (the
    // supervisor publishes the new board after telling metrics), and a
    // program added again under that name starts from zero.
    let again = Exposition::parse(&m.render(&board));
    let worker: Vec<&Sample> = again.with_program("worker");
    assert!(worker
        .iter()
        .filter(|s| s.name.ends_with("_total") && s.name != "kelpie_program_cpu_seconds_total")
        .all(|s| s.value == 0.0));
    assert!(
        worker
            .iter()
            .all(|s| !s.name.starts_with("kelpie_probe_")
                && s.name != "kelpie_program_last_exit_code")
    );
}

#[test]
fn cpu_of_a_process_group_is_counted_and_survives_its_exit() {
    let mut groups = Groups(Vec::new());
    // Half a second of CPU time in a child of the group leader: a fixed
    // amount of CPU, not of work, so a fast machine does not finish early.
    let pgid = groups.spawn(&[
        "sh",
        "-c",
        "python3 -c 'import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass'; sleep 0.3",
    ]);
    let board = |alive: bool| Board {
        shutting_down: false,
        programs: vec![program(
            "burn",
            false,
            vec![instance(
                if alive { Phase::Running } else { Phase::Exited },
                alive.then_some(pgid),
                None,
            )],
        )],
    };
    let m = Metrics::new().unwrap();
    let cpu = |text: &str| {
        Exposition::parse(text)
            .get("kelpie_program_cpu_seconds_total", &[("program", "burn")])
            .unwrap()
    };
    let mut last = 0.0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    // Scrape while it runs; the leader outlives the busy child by 0.3 s, so
    // the child's last ticks are seen before the group goes away.
    while Path::new(&format!("/proc/{pgid}")).exists() && tokio::time::Instant::now() < deadline {
        let now = cpu(&m.render(&board(true)));
        assert!(now >= last, "cpu went back from {last} to {now}");
        last = now;
        let status = nix::sys::wait::waitpid(
            Pid::from_raw(pgid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
        if !matches!(status, Ok(nix::sys::wait::WaitStatus::StillAlive)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(last >= 0.4, "the busy loop's 0.5 s of CPU was seen: {last}");
    let after = cpu(&m.render(&board(false)));
    assert!(after >= last, "after exit {after} < {last}");
}

/// The instance's main process forks a child that stays in its group and a
/// child that calls `setsid` (like a postgres backend): both burn half a
/// second of CPU, and the one in its own session holds 64 MiB.
const FAMILY: &str = r#"
import ctypes, os, sys, time
def burn(seconds):
    t = time.process_time()
    while time.process_time() - t < seconds:
        pass
def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
if os.fork() == 0:
    burn(0.5)
    say("grouped %d" % os.getpid())
    time.sleep(600)
    os._exit(0)
escaped = os.fork()
if escaped == 0:
    os.setsid()
    # Not in the test's process group: die with the main process.
    ctypes.CDLL(None).prctl(1, 9, 0, 0, 0)
    held = b"x" * (64 << 20)
    burn(0.5)
    say("escaped %d" % os.getpid())
    time.sleep(600)
    os._exit(0)
os.waitpid(escaped, 0)
say("reaped")
time.sleep(600)
"#;

/// Kills a process the test knows by pid (one outside its process groups).
struct KillOnDrop(Option<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

#[test]
fn descendants_in_their_own_session_are_counted_once_and_their_cpu_survives_them() {
    let mut groups = Groups(Vec::new());
    let (pid, stdout) = groups.spawn_piped(&["python3", "-c", FAMILY]);
    let (lines, from_family) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let next_line = |awaited: &str| {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        from_family
            .recv_timeout(left)
            .unwrap_or_else(|err| panic!("waiting for the line {awaited:?}: {err}"))
    };
    let mut escaped = KillOnDrop(None);
    let mut grouped = None;
    let mut seen = BTreeSet::new();
    while seen.len() < 2 {
        let line = next_line("grouped and escaped <pid>");
        match line.split_once(' ') {
            Some(("escaped", child)) => {
                escaped.0 = Some(child.parse().expect("a pid"));
                seen.insert("escaped");
            }
            Some(("grouped", child)) => {
                grouped = Some(child.parse::<i32>().expect("a pid"));
                seen.insert("grouped");
            }
            _ => panic!("unexpected line {line:?}"),
        }
    }
    let escaped_pid = escaped.0.expect("escaped pid");
    // It really is in another session and another group.
    let stat = crate::procfs::read_stat(escaped_pid).expect("stat of the escaped child");
    assert_eq!(stat.session, escaped_pid, "{stat:?}");
    assert_eq!(stat.ppid, pid, "{stat:?}");

    let board = Board {
        shutting_down: false,
        programs: vec![program(
            "family",
            false,
            vec![instance(Phase::Running, Some(pid), None)],
        )],
    };
    let m = Metrics::new().unwrap();
    let usage = |text: &str| {
        let e = Exposition::parse(text);
        let get = |family| e.get(family, &[("program", "family")]).unwrap();
        (
            get("kelpie_program_cpu_seconds_total"),
            get("kelpie_program_resident_memory_bytes"),
        )
    };
    let (cpu, rss) = usage(&m.render(&board));
    assert!(
        rss >= f64::from(64u32 << 20),
        "the escaped child's 64 MiB are counted: {rss}"
    );
    // The three processes' own CPU, read beside the metric: interpreter
    // start-up costs more on a loaded machine, so only this sum is a fixed
    // point. A process counted twice (it is both in the group and in the
    // tree) would add at least its 0.5 s of burning.
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let own: f64 = [Some(pid), grouped, Some(escaped_pid)]
        .into_iter()
        .map(|p| {
            let p = p.expect("the grouped child's pid");
            let stat = crate::procfs::read_stat(p).expect("stat of a family member");
            (stat.utime + stat.stime) as f64 / ticks
        })
        .sum();
    assert!(own >= 0.9, "both children burnt their 0.5 s: {own}");
    assert!(
        (cpu - own).abs() < 0.25,
        "both children's CPU, each once: {cpu} against their own {own}"
    );
    assert_eq!(lock(&m.scanner).scan(&board)[0].processes, 3);

    // The escaped child exits and its parent reaps it: its CPU stays.
    let _ = nix::sys::signal::kill(Pid::from_raw(escaped_pid), Signal::SIGKILL);
    escaped.0 = None;
    assert_eq!(next_line("reaped"), "reaped");
    let (after, rss_after) = usage(&m.render(&board));
    assert!(after >= cpu, "cpu went back from {cpu} to {after}");
    assert!(
        rss_after < f64::from(64u32 << 20),
        "the exited child's memory is gone: {rss_after}"
    );
    assert_eq!(lock(&m.scanner).scan(&board)[0].processes, 2);
}

#[test]
fn integers_are_written_as_display_writes_them() {
    let mut out = String::new();
    let mut expected = String::new();
    for n in (0..1000)
        .chain([9_999, 10_000, 123_456_789, u64::from(u32::MAX)])
        .chain([u64::MAX - 1, u64::MAX])
    {
        super::text::push_u64(&mut out, n);
        out.push(' ');
        expected.push_str(&format!("{n} "));
    }
    assert_eq!(out, expected);
}

#[test]
fn bucket_labels_match_the_bounds() {
    assert_eq!(PROBE_BUCKET_ENDS.len(), PROBE_BUCKETS.len() + 1);
    let bounds = PROBE_BUCKETS.iter().copied().chain([f64::INFINITY]);
    for (bound, end) in bounds.zip(PROBE_BUCKET_ENDS) {
        let le = end
            .strip_prefix(",le=\"")
            .and_then(|e| e.strip_suffix("\"} "))
            .unwrap();
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap()
        };
        assert_eq!(le, bound, "{end}");
    }
}

#[test]
fn exit_codes_use_the_shell_convention() {
    assert_eq!(exit_code(ExitStatus::Code(0)), 0);
    assert_eq!(exit_code(ExitStatus::Code(3)), 3);
    assert_eq!(exit_code(ExitStatus::Signal(15)), 143);
}

#[test]
fn http_paths_fold_into_a_fixed_route_set() {
    for (path, route) in [
        ("/health", "/health"),
        ("/ready", "/ready"),
        ("/metrics", "/metrics"),
        ("/ready/web", "/ready/{program}"),
        ("/ready/{program}", "/ready/{program}"),
        ("/ready/", "other"),
        ("/ready/a/b", "other"),
        ("/", "other"),
        ("/health/", "other"),
        ("/x\"y\\z\n", "other"),
    ] {
        assert_eq!(http_route(path), route, "{path:?}");
    }
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(escape("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    assert!(matches!(escape("web-1.x_y"), Cow::Borrowed("web-1.x_y")));
    let mut out = String::new();
    for n in [0, 7, 10, 1234567890, u64::MAX] {
        push_u64(&mut out, n);
        out.push(' ');
    }
    assert_eq!(out, format!("0 7 10 1234567890 {} ", u64::MAX));
    let mut out = String::new();
    for v in [0.0, 2.5, 1e-7, f64::NAN, f64::INFINITY] {
        push_f64(&mut out, v);
        out.push(' ');
    }
    assert_eq!(out, "0 2.5 0.0000001 NaN +Inf ");
}

#[test]
fn program_names_are_escaped_in_every_family() {
    // Config validation keeps names plain; the exposition stays valid even
    // if that ever changes.
    let name = "we\"ird\\na\nme";
    let board = Board {
        shutting_down: false,
        programs: vec![program(
            name,
            false,
            vec![instance(Phase::Running, Some(1), Some(SystemTime::now()))],
        )],
    };
    let m = Metrics::new().unwrap();
    m.probe_result(name, "readiness", Duration::from_millis(5), true);
    m.program_exited(name, ExitKind::Signal, ExitStatus::Signal(15));
    let text = m.render(&board);
    promtool_check(&text);
    let e = Exposition::parse(&text);
    let series = e.with_program(name);
    assert!(series.len() > 30, "{}", series.len());
    assert_eq!(
        e.get("kelpie_program_last_exit_code", &[("program", name)]),
        Some(143.0)
    );
}
