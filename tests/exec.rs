//! `kelpie exec`: the config-less init for one command. Exit statuses like
//! a shell, signals forwarded to the command's group, stop timeout,
//! restarts, leftovers stopped, zombies reaped (as subreaper and as PID 1),
//! and the terminal handed to the command with working job control.

// Test code: a panic is the failure report, and std's Instant is fine for
// test deadlines.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    clippy::disallowed_types
)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{alive, collect_child, marked_processes, marker, secs, wait_until, BIN};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// What the reader threads report.
enum Output {
    Line { stdout: bool, line: String },
    Eof,
}

/// A running `kelpie exec` (or a wrapper around it) whose stdout and
/// stderr lines are read as they come.
struct Exec {
    child: Child,
    stdin: Option<ChildStdin>,
    output: mpsc::Receiver<Output>,
    stdout: Vec<String>,
    stderr: Vec<String>,
    closed: usize,
    marker: String,
    /// The commands' working directory, removed with the test.
    _dir: tempfile::TempDir,
    finished: bool,
}

struct Outcome {
    code: i32,
    stdout: Vec<String>,
    stderr: String,
}

impl Outcome {
    fn count(&self, line: &str) -> usize {
        self.stdout.iter().filter(|l| l.as_str() == line).count()
    }
}

impl Exec {
    /// `kelpie exec ARGS…`
    fn start(args: &[&str]) -> Self {
        let mut command = Command::new(BIN);
        command.arg("exec").args(args);
        Self::spawn(command)
    }

    /// Any command line (e.g. `unshare … kelpie exec …`).
    fn spawn(mut command: Command) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let marker = marker();
        let mut child = command
            .current_dir(dir.path())
            // Inherited by every descendant: finds leftovers in /proc.
            .env("KELPIE_TEST_MARKER", &marker)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kelpie exec");
        let (tx, output) = mpsc::channel();
        let streams: [(bool, Box<dyn std::io::Read + Send>); 2] = [
            (true, Box::new(child.stdout.take().unwrap())),
            (false, Box::new(child.stderr.take().unwrap())),
        ];
        for (stdout, stream) in streams {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let _ = tx.send(Output::Line { stdout, line });
                }
                let _ = tx.send(Output::Eof);
            });
        }
        Self {
            stdin: child.stdin.take(),
            child,
            output,
            stdout: Vec::new(),
            stderr: Vec::new(),
            closed: 0,
            marker,
            _dir: dir,
            finished: false,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Reads output until `found` returns Some, or panics at the deadline.
    fn wait_for<T>(&mut self, what: &str, mut found: impl FnMut(&Self) -> Option<T>) -> T {
        let timeout = secs(10.0);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = found(self) {
                return value;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(Output::Line { stdout: true, line }) => self.stdout.push(line),
                Ok(Output::Line {
                    stdout: false,
                    line,
                }) => self.stderr.push(line),
                Ok(Output::Eof) => self.closed += 1,
                Err(_) => panic!(
                    "timed out after {timeout:?} waiting for {what}; stdout: {:?}; stderr: {:?}",
                    self.stdout, self.stderr
                ),
            }
        }
    }

    /// Waits for a stdout line starting with `prefix` and returns it.
    fn wait_line(&mut self, prefix: &str) -> String {
        self.wait_for(&format!("a stdout line starting with {prefix:?}"), |exec| {
            exec.stdout.iter().find(|l| l.starts_with(prefix)).cloned()
        })
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// Ends the command's input (the orphan tests' command waits for it).
    fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    /// Waits (bounded) for kelpie to exit: its stdout and stderr close once
    /// it and every process holding them are gone.
    fn finish(mut self, timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        while self.closed < 2 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(Output::Line { stdout: true, line }) => self.stdout.push(line),
                Ok(Output::Line {
                    stdout: false,
                    line,
                }) => self.stderr.push(line),
                Ok(Output::Eof) => self.closed += 1,
                Err(_) => panic!(
                    "kelpie exec did not finish within {timeout:?}; stdout: {:?}; stderr: {:?}",
                    self.stdout, self.stderr
                ),
            }
        }
        let status = self.child.wait().unwrap();
        self.finished = true;
        let stderr: String = self.stderr.iter().map(|l| format!("{l}\n")).collect();
        let code = status.code().unwrap_or_else(|| {
            panic!("kelpie itself died of a signal: {status:?}; stderr: {stderr}")
        });
        Outcome {
            code,
            stdout: std::mem::take(&mut self.stdout),
            stderr,
        }
    }
}

impl Drop for Exec {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for pid in marked_processes(&self.marker) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

fn run(args: &[&str]) -> Outcome {
    Exec::start(args).finish(secs(20.0))
}

#[test]
fn exit_codes_are_propagated() {
    for code in [0, 1, 255] {
        let script = format!("exit {code}");
        let out = run(&["--", "sh", "-c", &script]);
        assert_eq!(out.code, code, "stderr: {}", out.stderr);
        assert_eq!(out.stderr, "", "kelpie is silent on a normal exit");
    }
}

#[test]
fn death_by_signal_is_128_plus_the_signal() {
    let out = run(&["--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.code, 143, "stderr: {}", out.stderr);
    let out = run(&["--", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.code, 137, "stderr: {}", out.stderr);
}

#[test]
fn the_double_dash_is_optional_and_arguments_pass_through() {
    let out = run(&["sh", "-c", "echo \"$1|$2\"; exit 3", "arg0", "--flag", "-x"]);
    assert_eq!(out.code, 3, "stderr: {}", out.stderr);
    assert_eq!(out.stdout, ["--flag|-x"]);
}

#[test]
fn a_missing_command_is_127_with_one_line() {
    let out = run(&["--", "kelpie-no-such-command-xyz", "arg"]);
    assert_eq!(out.code, 127);
    assert_eq!(
        out.stderr,
        "kelpie: kelpie-no-such-command-xyz: command not found\n"
    );
    let out = run(&["--", "/no/such/dir/tool"]);
    assert_eq!(out.code, 127);
    assert_eq!(
        out.stderr,
        "kelpie: /no/such/dir/tool: no such file or directory\n"
    );
}

#[test]
fn a_file_that_is_not_executable_is_126() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script.sh");
    std::fs::write(&path, "#!/bin/sh\necho should-not-run\n").unwrap();
    let path = path.to_str().unwrap();
    let out = run(&["--", path]);
    assert_eq!(out.code, 126);
    assert_eq!(out.stderr, format!("kelpie: {path}: permission denied\n"));
    assert!(out.stdout.is_empty());
}

#[test]
fn no_command_is_a_usage_error() {
    let out = run(&[]);
    assert_eq!(out.code, 2, "stderr: {}", out.stderr);
    assert!(out.stderr.contains("<CMD>"), "{}", out.stderr);
    let out = run(&["--restart", "sometimes", "--", "true"]);
    assert_eq!(out.code, 2, "stderr: {}", out.stderr);
}

#[test]
fn usr1_is_forwarded_and_the_childs_code_returned() {
    let mut exec = Exec::start(&[
        "--",
        "sh",
        "-c",
        "trap 'echo got-usr1; exit 7' USR1; echo ready; while :; do sleep 1 & wait; done",
    ]);
    exec.wait_line("ready");
    exec.signal(Signal::SIGUSR1);
    let out = exec.finish(secs(10.0));
    assert_eq!(out.stdout, ["ready", "got-usr1"]);
    assert_eq!(out.code, 7, "stderr: {}", out.stderr);
}

/// Each catchable signal kelpie gets reaches the command; real-time ones
/// too (34 + 3 = SIGRTMIN+3 on glibc, by number since sh has no name).
/// SIGINT and SIGTERM stop the command and are tested below.
#[test]
fn catchable_signals_are_forwarded() {
    let names = [
        "HUP", "QUIT", "USR1", "USR2", "ALRM", "WINCH", "TSTP", "CONT", "URG", "37",
    ];
    let list = names.join(" ");
    // The background `sleep` ignores them all (set in its subshell before
    // exec), so only the traps react.
    let script = format!(
        "for s in {list}; do trap \"echo got-$s\" $s; done; trap 'echo got-TERM; exit 0' TERM; \
         echo ready; while :; do (trap '' {list}; exec sleep 1) & wait; done"
    );
    let mut exec = Exec::start(&["--", "sh", "-c", &script]);
    exec.wait_line("ready");
    for name in names {
        let raw = name
            .parse::<i32>()
            .unwrap_or_else(|_| format!("SIG{name}").parse::<Signal>().unwrap() as i32);
        // nix's kill cannot name real-time signals.
        // SAFETY: kill(2) only sends a signal to kelpie, our child.
        let sent = unsafe { libc::kill(exec.pid(), raw) };
        assert_eq!(sent, 0, "kill -{name}");
        exec.wait_line(&format!("got-{name}"));
    }
    exec.signal(Signal::SIGTERM);
    let out = exec.finish(secs(10.0));
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(out.count("got-TERM"), 1);
}

/// Like tini's pgroup test: the leader ignores the signal, a grandchild in
/// the same group acts on it.
#[test]
fn signals_reach_the_whole_process_group() {
    let mut exec = Exec::start(&[
        "--",
        "sh",
        "-c",
        "trap 'echo leader-got-usr2' USR2; \
         sh -c 'trap \"echo grandchild-got-usr2; exit 0\" USR2; echo ready; while :; do sleep 1 & wait; done'; \
         exit 5",
    ]);
    exec.wait_line("ready");
    exec.signal(Signal::SIGUSR2);
    exec.wait_line("grandchild-got-usr2");
    let out = exec.finish(secs(10.0));
    assert_eq!(out.code, 5, "stderr: {}", out.stderr);
}

#[test]
fn term_is_forwarded_then_the_group_is_killed_after_the_stop_timeout() {
    let mut exec = Exec::start(&[
        "--stop-timeout",
        "500ms",
        "--",
        "sh",
        "-c",
        // The ignored disposition is inherited by the sleeps: the whole
        // group ignores TERM.
        "trap '' TERM; sleep 1000 & echo ready; while :; do sleep 1 & wait; done",
    ]);
    exec.wait_line("ready");
    let marker = exec.marker.clone();
    let sent = Instant::now();
    exec.signal(Signal::SIGTERM);
    let out = exec.finish(secs(10.0));
    let took = sent.elapsed();
    assert_eq!(out.code, 137, "stderr: {}", out.stderr);
    assert!(
        took >= secs(0.45) && took < secs(5.0),
        "SIGKILL after the 500ms stop timeout, took {took:?}"
    );
    assert_eq!(marked_processes(&marker), Vec::<i32>::new(), "survivors");
}

#[test]
fn a_second_term_kills_at_once() {
    let mut exec = Exec::start(&[
        "--stop-timeout",
        "60s",
        "--",
        "sh",
        "-c",
        "trap 'echo got-term' TERM; echo ready; while :; do sleep 1 & wait; done",
    ]);
    exec.wait_line("ready");
    exec.signal(Signal::SIGTERM);
    // The first one was handled (signals of one kind coalesce).
    exec.wait_line("got-term");
    let sent = Instant::now();
    exec.signal(Signal::SIGTERM);
    let out = exec.finish(secs(20.0));
    assert_eq!(out.code, 137, "stderr: {}", out.stderr);
    assert!(sent.elapsed() < secs(5.0), "took {:?}", sent.elapsed());
}

#[test]
fn on_failure_restarts_until_the_command_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("failed-once");
    let script = format!(
        "if [ -e '{0}' ]; then echo second; exit 0; fi; touch '{0}'; echo first; exit 3",
        flag.display()
    );
    let out = run(&["--restart", "on-failure", "--", "sh", "-c", &script]);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(out.stdout, ["first", "second"]);
    assert!(
        out.stderr
            .contains("kelpie: sh exited (exit code 3); restarting in"),
        "{}",
        out.stderr
    );
}

#[test]
fn never_is_the_default_and_on_failure_does_not_restart_success() {
    let out = run(&["--", "sh", "-c", "echo once; exit 4"]);
    assert_eq!(
        (out.code, out.stdout.as_slice()),
        (4, &["once".to_string()][..])
    );
    let out = run(&["--restart", "on-failure", "--", "sh", "-c", "echo once"]);
    assert_eq!(
        (out.code, out.stdout.as_slice()),
        (0, &["once".to_string()][..])
    );
}

#[test]
fn term_stops_an_always_restarted_command_with_its_status() {
    let mut exec = Exec::start(&[
        "--restart",
        "always",
        "--",
        "sh",
        "-c",
        "trap 'echo stopping; exit 0' TERM; echo running; while :; do sleep 1 & wait; done",
    ]);
    exec.wait_line("running");
    exec.signal(Signal::SIGTERM);
    let out = exec.finish(secs(10.0));
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(out.stdout, ["running", "stopping"], "not restarted");
}

#[test]
fn term_while_waiting_to_restart_exits_with_the_last_status() {
    let mut exec = Exec::start(&["--restart", "always", "--", "sh", "-c", "exit 9"]);
    // The backoff doubles from 100ms: wait until kelpie announces a delay
    // long enough that the SIGTERM surely lands in it.
    exec.wait_for("a restart delay of 0.5s or more", |exec| {
        exec.stderr
            .iter()
            .find(|line| {
                line.rsplit_once("restarting in ")
                    .and_then(|(_, delay)| delay.trim_end_matches('s').parse::<f64>().ok())
                    .is_some_and(|delay| delay >= 0.5)
            })
            .cloned()
    });
    exec.signal(Signal::SIGTERM);
    let out = exec.finish(secs(10.0));
    assert_eq!(out.code, 9, "stderr: {}", out.stderr);
}

/// What the command leaves behind when it exits (a member of its group, a
/// `setsid` escapee reparented to kelpie, one that ignores SIGTERM) is
/// stopped before kelpie exits with the command's code.
#[test]
fn leftovers_are_stopped_when_the_command_exits() {
    let mut exec = Exec::start(&[
        "--stop-timeout",
        "500ms",
        "--",
        "sh",
        "-c",
        "sleep 1000 & echo member=$!; \
         setsid sleep 1000 & echo escaped=$!; \
         (trap '' TERM; exec sleep 1000) & echo stubborn=$!; \
         exit 4",
    ]);
    let pids: Vec<i32> = ["member=", "escaped=", "stubborn="]
        .iter()
        .map(|prefix| {
            let line = exec.wait_line(prefix);
            line[prefix.len()..].parse().unwrap()
        })
        .collect();
    let marker = exec.marker.clone();
    let out = exec.finish(secs(10.0));
    assert_eq!(out.code, 4, "stderr: {}", out.stderr);
    for pid in pids {
        assert!(!alive(pid), "{pid} survived");
    }
    assert_eq!(marked_processes(&marker), Vec::<i32>::new(), "survivors");
}

/// The command gets a parent-death signal: if kelpie is SIGKILLed (no
/// chance to stop anything), the command does not run on unsupervised.
#[test]
fn a_killed_kelpie_takes_its_command_along() {
    let mut exec = Exec::start(&["--", "sh", "-c", "echo pid=$$; exec sleep 1000"]);
    let line = exec.wait_line("pid=");
    let pid: i32 = line["pid=".len()..].parse().unwrap();
    assert!(alive(pid));
    exec.signal(Signal::SIGKILL);
    wait_until("the command to die with kelpie", secs(10.0), || {
        (!alive(pid)).then_some(())
    });
}

/// Children of `parent` (from /proc): (pid, state, command name).
fn children_of(parent: i32) -> Vec<(i32, char, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map(|(_, c)| c).unwrap_or("");
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: i32 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if ppid == parent {
            found.push((pid, state, comm.to_string()));
        }
    }
    found
}

/// The command orphans grandchildren: some exit at once, some keep
/// running until the test kills them. All must be reparented to kelpie
/// (`kelpie_pid`) and reaped: no zombie child of kelpie remains.
fn orphans_are_reaped(exec: &mut Exec, kelpie_pid: i32) {
    exec.wait_line("ready");
    let sleepers = wait_until("three orphans reparented to kelpie", secs(10.0), || {
        let orphans: Vec<i32> = children_of(kelpie_pid)
            .into_iter()
            .filter(|(_, state, comm)| comm == "sleep" && *state != 'Z')
            .map(|(pid, _, _)| pid)
            .collect();
        (orphans.len() == 3).then_some(orphans)
    });
    for pid in sleepers {
        kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    }
    let leftover = wait_until("no zombie or orphan left", secs(10.0), || {
        let children = children_of(kelpie_pid);
        children
            .iter()
            .all(|(_, state, comm)| *state != 'Z' && comm != "sleep")
            .then_some(children)
    });
    // Only the command itself (sh, blocked reading stdin) is left.
    assert_eq!(leftover.len(), 1, "{leftover:?}");
}

const ORPHANS: &str = "echo ppid=$PPID; \
    for i in 1 2 3; do (exec sleep 1000 &); (true &); done; \
    echo ready; read line; exit 0";

#[test]
fn orphans_are_reaped_as_subreaper() {
    let mut exec = Exec::start(&["--", "sh", "-c", ORPHANS]);
    let pid = exec.pid();
    orphans_are_reaped(&mut exec, pid);
    exec.close_stdin();
    let out = exec.finish(secs(10.0));
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
}

/// Can this test create a PID namespace (root, unshare present)?
fn pid_namespace_available() -> Result<(), String> {
    let mut probe = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    let (_, stderr, status) = collect_child(&mut probe, secs(10.0), "unshare probe");
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "unshare --pid --fork --mount-proc failed: {}",
            stderr.trim()
        ))
    }
}

/// kelpie as PID 1 of a new PID namespace: orphans are reparented to it
/// (there is no one else), it reaps them all, and SIGTERM, which the
/// kernel drops for a PID 1 without a handler, is forwarded.
#[test]
fn as_pid_1_orphans_are_reaped_and_term_is_forwarded() {
    if let Err(why) = pid_namespace_available() {
        println!("SKIPPED: {why}");
        return;
    }
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--fork", "--mount-proc", "--kill-child", BIN])
        .args(["exec", "--", "sh", "-c", ORPHANS]);
    let mut exec = Exec::spawn(command);
    let unshare = exec.pid();
    // unshare forks kelpie, which is PID 1 inside and has a host pid here.
    let kelpie = wait_until("kelpie under unshare", secs(10.0), || {
        children_of(unshare).first().map(|(pid, _, _)| *pid)
    });
    assert_eq!(exec.wait_line("ppid="), "ppid=1", "kelpie is PID 1");
    orphans_are_reaped(&mut exec, kelpie);
    kill(Pid::from_raw(kelpie), Signal::SIGTERM).unwrap();
    let out = exec.finish(secs(10.0));
    assert_eq!(
        out.code, 143,
        "sh died of the forwarded SIGTERM: {}",
        out.stderr
    );
}

/// Drives kelpie on a pseudo-terminal under a minimal job-control shell
/// (python3's pty module) that resumes a stopped job in the foreground
/// (`fg`). Mode "fg": kelpie starts in the foreground, the command owns the
/// terminal, Ctrl-Z suspends kelpie's job. Mode "bg": kelpie starts in the
/// background, the command is stopped reading the terminal, which suspends
/// kelpie's job. Then `fg` must hand the terminal to the command, and
/// Ctrl-C end it without a restart despite `--restart always`.
const JOB_CONTROL: &str = r#"
import os, pty, re, select, signal, sys, time

kelpie, mode = sys.argv[1], sys.argv[2]
CHILD = ('set -- $(cat /proc/$$/stat); echo "pgrp=$5 tpgid=$8"; read line; echo "read=$line"; '
         'set -- $(cat /proc/$$/stat); echo "again pgrp=$5 tpgid=$8"; exec sleep 1000')

pid, fd = pty.fork()
if pid == 0:
    try:
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        job = os.fork()
        if job == 0:
            os.setpgid(0, 0)
            if mode == "fg":
                os.tcsetpgrp(0, os.getpgrp())
            signal.signal(signal.SIGTTOU, signal.SIG_DFL)
            os.execv(kelpie, [kelpie, "exec", "--restart", "always", "--", "sh", "-c", CHILD])
        try:
            os.setpgid(job, job)
        except OSError:
            pass
        if mode == "fg":
            os.tcsetpgrp(0, job)
        while True:
            _, status = os.waitpid(job, os.WUNTRACED)
            if os.WIFSTOPPED(status):
                os.tcsetpgrp(0, os.getpgrp())
                print("job-stopped", flush=True)
                os.tcsetpgrp(0, job)
                os.killpg(job, signal.SIGCONT)
                continue
            print("job-exit=%d" % os.waitstatus_to_exitcode(status), flush=True)
            break
    finally:
        os._exit(0)

buf = b""
def fail(why):
    print("FAIL:", why)
    print("--- terminal transcript ---")
    print(buf.decode(errors="replace"))
    os.killpg(pid, signal.SIGKILL)
    sys.exit(1)

def expect(pattern, timeout=10.0):
    global buf
    deadline = time.monotonic() + timeout
    rx = re.compile(pattern.encode())
    while True:
        m = rx.search(buf)
        if m:
            buf = buf[m.end():]
            return m
        left = deadline - time.monotonic()
        if left <= 0:
            fail("timed out waiting for %r" % pattern)
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            if not data:
                fail("terminal closed while waiting for %r" % pattern)
            buf += data

m = expect(r"pgrp=(\d+) tpgid=(\d+)")
if mode == "fg":
    if m.group(1) != m.group(2):
        fail("the command does not own the terminal: %r" % m.group(0))
    os.write(fd, b"\x1a")
elif m.group(1) == m.group(2):
    fail("a background kelpie gave the command the terminal: %r" % m.group(0))
expect(r"job-stopped")
os.write(fd, b"hello\n")
expect(r"read=hello")
m = expect(r"again pgrp=(\d+) tpgid=(\d+)")
if m.group(1) != m.group(2):
    fail("the command did not get the terminal back after fg: %r" % m.group(0))
os.write(fd, b"\x03")
m = expect(r"job-exit=(-?\d+)")
if m.group(1) != b"130":
    fail("kelpie should exit 130 after Ctrl-C, got %r" % m.group(1))
os.waitpid(pid, 0)
print("PTY-OK")
"#;

#[test]
fn the_terminal_goes_to_the_command_and_job_control_works() {
    let python = Command::new("python3")
        .args(["-c", "import pty"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(python, Ok(status) if status.success()) {
        println!("SKIPPED: python3 with the pty module is not available");
        return;
    }
    for mode in ["fg", "bg"] {
        let mut child = Command::new("python3")
            .args(["-c", JOB_CONTROL, BIN, mode])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (stdout, stderr, status) = collect_child(&mut child, secs(60.0), "the pty driver");
        assert!(
            status.success() && stdout.contains("PTY-OK"),
            "mode {mode}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
    }
}

#[test]
fn help_documents_the_options() {
    let mut child = Command::new(BIN)
        .args(["exec", "--help"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (stdout, _, status) = collect_child(&mut child, secs(10.0), "kelpie exec --help");
    assert!(status.success());
    for text in [
        "--restart",
        "on-failure",
        "--stop-timeout",
        "[default: 10s]",
    ] {
        assert!(stdout.contains(text), "{text} missing:\n{stdout}");
    }
}
