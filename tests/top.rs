//! `kelpie top` against a running kelpie: `--once` prints a plain frame,
//! no terminal is a usage error, and the live view, run in a real
//! terminal (a detached tmux session of fixed size), shows the programs,
//! restarts the selected one with a key, and leaves the terminal as it
//! found it on `q`, SIGTERM and SIGHUP.

// Test code: a panic is the failure report; tmux is a tool run to
// completion, not a supervised child.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{collect_child, secs, wait_until, Kelpie, BIN};

const CONFIG: &str = r#"
[supervisor]
http_listen = "off"

# Uses some CPU in bursts, so its CPU% is more than zero without taking a
# whole core from the machine.
[program.alpha]
command = ["sh", "-c", "while :; do i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; sleep 0.1; done"]
start_seconds = "100ms"

[program.bravo]
command = ["sleep", "1000"]
start_seconds = "100ms"

[program.charlie]
command = ["sleep", "1000"]
start_seconds = "100ms"
"#;

const PROGRAMS: [&str; 3] = ["alpha", "bravo", "charlie"];

fn start() -> Kelpie {
    let k = Kelpie::start(CONFIG);
    k.wait_control();
    for program in PROGRAMS {
        k.wait_running(program);
    }
    k
}

/// `kelpie top ARGS -s SOCK` run to completion with no terminal.
fn top(socket: &Path, args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .arg("top")
        .args(args)
        .arg("-s")
        .arg(socket)
        .env_remove("KELPIE_SOCKET")
        .env_remove("KELPIE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (stdout, stderr, status) = collect_child(&mut child, secs(60.0), "kelpie top");
    (status.code().unwrap_or(-1), stdout, stderr)
}

#[test]
fn once_prints_one_plain_frame_of_every_program() {
    let mut k = start();
    let (code, stdout, stderr) = top(&k.socket(), &["--once", "--sort", "name"]);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(!stdout.contains('\x1b'), "no escape codes: {stdout:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "STATE", "READY", "PID", "UPTIME", "RESTARTS", "CPU%", "RSS"]
    );
    for (line, program) in lines[1..].iter().zip(PROGRAMS) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells.len(), 8, "{line}");
        assert_eq!(&cells[..3], [program, "running", "yes"], "{line}");
        let pid = k.pids(program)[0].unwrap().to_string();
        assert_eq!(cells[3], pid, "{line}");
        let cpu: f64 = cells[6]
            .parse()
            .unwrap_or_else(|_| panic!("CPU% in {line}"));
        let rss = cells[7];
        assert!(
            rss.ends_with('K') || rss.ends_with('M'),
            "memory is counted: {line}"
        );
        if program == "alpha" {
            assert!(cpu > 0.0, "alpha computes: {line}");
        } else {
            assert!(cpu < 1.0, "{program} sleeps: {line}");
        }
    }
    k.signal("TERM");
    assert!(k.wait_exit(secs(15.0)).success());
}

#[test]
fn without_a_terminal_or_a_supervisor_it_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("none.sock");
    let (code, stdout, stderr) = top(&socket, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("terminal") && stderr.contains("--once"),
        "{stderr}"
    );

    let (code, _, stderr) = top(&socket, &["--once"]);
    assert_eq!(code, 69, "{stderr}");
    assert!(
        stderr.contains("no kelpie supervisor is running at"),
        "{stderr}"
    );
    let (code, _, stderr) = top(&socket, &["--once", "--interval", "100ms"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("at least 1s"), "{stderr}");
}

/// `GET path` on the control socket: the status and the body.
fn get(socket: &Path, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(secs(30.0))).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

#[test]
fn the_usage_route_counts_each_instance_when_asked() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.web]
command = ["sh", "-c", "while :; do i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; sleep 0.1; done"]
instances = 2
start_seconds = "100ms"

[program.db]
command = ["sh", "-c", "sleep 1000 & wait"]
start_seconds = "100ms"
"#,
    );
    k.wait_control();
    let web = k.wait_running("web");
    let db = k.wait_running("db");
    let usage = |what: &str| {
        let (status, body) = get(&k.socket(), "GET", "/v1/usage");
        assert_eq!(status, 200, "{what}: {body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let first = usage("first");
    let programs = first["programs"].as_array().unwrap();
    let names: Vec<&str> = programs
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "db"], "{first}");
    let instances = programs[0]["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 2, "{first}");
    for (instance, pid) in instances.iter().zip(&web) {
        assert_eq!(instance["pid"].as_i64(), Some(*pid), "{first}");
        assert!(instance["rss_bytes"].as_u64().unwrap() > 0, "{first}");
        assert!(instance["processes"].as_u64().unwrap() >= 1, "{first}");
    }
    // db's shell and its sleep: the whole tree.
    let db_usage = &programs[1]["instances"][0];
    assert_eq!(db_usage["pid"].as_i64(), Some(db[0]), "{first}");
    assert_eq!(db_usage["processes"], 2, "{first}");
    let sum: u64 = instances
        .iter()
        .map(|i| i["rss_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(programs[0]["rss_bytes"].as_u64(), Some(sum), "{first}");
    // The counter grows with the work done.
    let cpu = |reply: &serde_json::Value| {
        reply["programs"][0]["instances"][0]["cpu_seconds"]
            .as_f64()
            .unwrap()
    };
    let before = cpu(&first);
    wait_until("web:0's CPU counter to grow", secs(20.0), || {
        (cpu(&usage("again")) > before).then_some(())
    });
    let (status, _) = get(&k.socket(), "POST", "/v1/usage");
    assert_eq!(status, 405);
    k.signal("TERM");
    assert!(k.wait_exit(secs(15.0)).success());
}

/// A tmux server of its own (`-L`), killed when the test ends.
struct Tmux {
    name: String,
}

impl Tmux {
    /// A detached 100×30 session running `sh`, or `None` without tmux.
    fn start(dir: &Path) -> Option<Self> {
        let found = Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return None;
        }
        let tmux = Tmux {
            name: format!("kelpie-top-{}", std::process::id()),
        };
        let status = tmux
            .command()
            .args(["new-session", "-d", "-s", "top", "-x", "100", "-y", "30"])
            .args(["-c", dir.to_str().unwrap()])
            .args(["env", "PS1=$ ", "sh"])
            .status()
            .unwrap();
        assert!(status.success(), "tmux new-session failed");
        Some(tmux)
    }

    fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command.args(["-L", &self.name, "-f", "/dev/null"]);
        command.env_remove("TMUX");
        command
    }

    /// Keys as tmux names them (`Enter`, `q`), or literal text.
    fn keys(&self, keys: &[&str]) {
        let status = self
            .command()
            .args(["send-keys", "-t", "top"])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success(), "tmux send-keys {keys:?}");
    }

    /// Types a shell command line and runs it.
    fn type_line(&self, line: &str) {
        let status = self
            .command()
            .args(["send-keys", "-t", "top", "-l", line])
            .status()
            .unwrap();
        assert!(status.success(), "tmux send-keys -l {line:?}");
        self.keys(&["Enter"]);
    }

    /// What the pane shows; with `escapes`, with its colors and
    /// attributes as escape sequences.
    fn capture(&self, escapes: bool) -> String {
        let mut command = self.command();
        command.args(["capture-pane", "-p", "-t", "top"]);
        if escapes {
            command.arg("-e");
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "tmux capture-pane");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits until the pane shows what `check` looks for.
    fn wait_for(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        wait_until(&format!("the pane to show {what}"), secs(20.0), || {
            let screen = self.capture(false);
            check(&screen).then_some(screen)
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").status();
    }
}

/// Whether `screen` shows the top view with every program.
fn shows_programs(screen: &str) -> bool {
    screen.contains("NAME")
        && PROGRAMS.iter().all(|p| {
            screen
                .lines()
                .any(|l| l.starts_with(p) && l.contains("running"))
        })
}

/// The line shown in reverse video (the selected row), without escapes.
fn selected_line(screen_with_escapes: &str) -> Option<String> {
    let line = screen_with_escapes
        .lines()
        .find(|l| l.contains("\x1b[7m"))?;
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI sequences: ESC [ parameters final-letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    Some(plain)
}

/// Starts `kelpie top` in the pane through a shell that records its pid
/// and, once it exits, prints its exit status.
fn run_top(tmux: &Tmux, socket: &Path, pid_file: &Path) {
    let _ = std::fs::remove_file(pid_file);
    tmux.type_line(&format!(
        "sh -c 'echo $$ > {pid}; exec {bin} top -s {socket} --sort name'; echo \"top exited $?\"",
        pid = pid_file.display(),
        bin = BIN,
        socket = socket.display(),
    ));
}

fn read_pid(pid_file: &Path) -> i32 {
    wait_until("the pid file of kelpie top", secs(10.0), || {
        std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()
    })
}

/// The terminal settings (`stty -g`) of the pane's terminal, written to
/// `file` by its shell.
fn stty(tmux: &Tmux, file: &Path) -> String {
    let _ = std::fs::remove_file(file);
    let done = format!("{}.done", file.display());
    let _ = std::fs::remove_file(&done);
    tmux.type_line(&format!("stty -g > {} && touch {done}", file.display()));
    wait_until("stty to report the terminal settings", secs(10.0), || {
        Path::new(&done).exists().then_some(())
    });
    std::fs::read_to_string(file).unwrap()
}

#[test]
fn the_live_view_restarts_a_program_with_a_key_and_restores_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let Some(tmux) = Tmux::start(dir.path()) else {
        println!("SKIPPED: no tmux");
        return;
    };
    let mut k = start();
    let socket: PathBuf = k.socket();
    let pid_file = dir.path().join("top.pid");

    // Something on the screen before top, to find again after it.
    tmux.type_line("echo before-top");
    tmux.wait_for("the shell's output", |s| {
        s.lines().any(|l| l == "before-top")
    });
    let settings = stty(&tmux, &dir.path().join("before.stty"));

    run_top(&tmux, &socket, &pid_file);
    let screen = tmux.wait_for("every program", shows_programs);
    // The view has the screen to itself: the alternate screen.
    assert!(!screen.contains("before-top"), "{screen}");
    assert!(screen.starts_with("kelpie top  3 programs"), "{screen}");

    // Sorted by name, the cursor starts on alpha: one down is bravo.
    tmux.keys(&["j"]);
    wait_until("bravo to be selected", secs(10.0), || {
        selected_line(&tmux.capture(true)).filter(|l| l.starts_with("bravo"))
    });
    let before: Vec<i64> = PROGRAMS.iter().map(|p| k.pids(p)[0].unwrap()).collect();
    tmux.keys(&["R"]);
    let restarted = wait_until("bravo to run under a new pid", secs(20.0), || {
        let pids = k.wait_running("bravo");
        (pids[0] != before[1]).then_some(pids[0])
    });
    assert_eq!(k.pids("alpha")[0], Some(before[0]), "alpha untouched");
    assert_eq!(k.pids("charlie")[0], Some(before[2]), "charlie untouched");
    // The outcome is on the status line, and the new pid in the table.
    tmux.wait_for("the restart's outcome and the new pid", |s| {
        s.lines().any(|l| l.starts_with("bravo: "))
            && s.lines()
                .any(|l| l.starts_with("bravo") && l.contains(&restarted.to_string()))
    });

    // q: the shell's screen is back, as it was, and so are its settings.
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("top to have exited", |s| s.contains("top exited 0"));
    assert!(
        screen.lines().any(|l| l == "before-top"),
        "the screen before top is back: {screen}"
    );
    assert!(!screen.contains("RESTARTS"), "{screen}");
    assert_eq!(stty(&tmux, &dir.path().join("after-q.stty")), settings);

    // SIGTERM and SIGHUP: the same, with the signal's exit status.
    for (signal, code) in [
        (nix::sys::signal::Signal::SIGTERM, 143),
        (nix::sys::signal::Signal::SIGHUP, 129),
    ] {
        let marker = format!("before-{signal}");
        tmux.type_line(&format!("clear; echo {marker}"));
        tmux.wait_for("the shell's output", |s| s.lines().any(|l| l == marker));
        run_top(&tmux, &socket, &pid_file);
        tmux.wait_for("every program", shows_programs);
        let pid = read_pid(&pid_file);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).unwrap();
        let exited = format!("top exited {code}");
        let screen = tmux.wait_for(&format!("top to have exited on {signal}"), |s| {
            s.contains(&exited)
        });
        assert!(
            screen.lines().any(|l| l == marker),
            "{signal}: the screen before top is back: {screen}"
        );
        assert!(!screen.contains("RESTARTS"), "{signal}: {screen}");
        assert_eq!(
            stty(&tmux, &dir.path().join(format!("after-{signal}.stty"))),
            settings,
            "{signal}: terminal settings"
        );
    }

    k.signal("TERM");
    assert!(k.wait_exit(secs(15.0)).success());
}
