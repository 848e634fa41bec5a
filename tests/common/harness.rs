//! `Kelpie`: the real binary run on a config in a temporary directory,
//! its JSON log lines collected as they come, and waits on them with a
//! deadline.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::{
    ctl_at, is, is_guardian, marked_including_guardian, marked_processes, secs, wait_until, Ctl,
};

pub const BIN: &str = env!("CARGO_BIN_EXE_kelpie");

/// A unique marker put into every program's environment, so that tests can
/// find every descendant in /proc, even ones that left the process group.
pub fn marker() -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("kt{}x{}x{}", std::process::id(), n, nanos % 1_000_000_000)
}

#[derive(Default)]
struct Log {
    lines: Vec<String>,
    events: Vec<Value>,
    /// stdout and stderr both reach EOF when kelpie exits.
    closed_streams: u32,
}

pub struct Kelpie {
    child: Child,
    log: Arc<(Mutex<Log>, Condvar)>,
    dir: tempfile::TempDir,
    pub marker: String,
    status: Option<ExitStatus>,
}

pub struct Options {
    pub format: &'static str,
    /// Shell prefix run before exec'ing kelpie (e.g. to open extra fds).
    pub wrapper: Option<&'static str>,
    /// When set, kelpie's stdout is not read until a message arrives (to
    /// exercise back-pressure).
    pub stdout_gate: Option<std::sync::mpsc::Receiver<()>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            format: "json",
            wrapper: None,
            stdout_gate: None,
        }
    }
}

impl Kelpie {
    /// Writes `config` (with `{marker}` and `{dir}` substituted) and starts
    /// `kelpie run` on it.
    pub fn start(config: &str) -> Self {
        Self::start_with(config, Options::default())
    }

    pub fn start_with(config: &str, options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let marker = marker();
        let config = config
            .replace("{marker}", &marker)
            .replace("{dir}", dir.path().to_str().unwrap());
        let path = dir.path().join("supervisor.toml");
        std::fs::write(&path, config).unwrap();
        let mut command = match options.wrapper {
            Some(prefix) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("{prefix}; exec \"$0\" run -c \"$1\""))
                    .arg(BIN)
                    .arg(&path);
                c
            }
            None => {
                let mut c = Command::new(BIN);
                c.arg("run").arg("-c").arg(&path);
                c
            }
        };
        command
            .current_dir(dir.path())
            .env("KELPIE_LOG_FORMAT", options.format)
            .env("KELPIE_LOG", "debug")
            .env("KELPIE_TEST_MARKER", &marker)
            // The default control socket (and notify sockets) go into the
            // test's own directory, so parallel tests never collide.
            .env("XDG_RUNTIME_DIR", dir.path())
            .env_remove("KELPIE_CONFIG")
            .env_remove("KELPIE_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start kelpie");
        let log: Arc<(Mutex<Log>, Condvar)> = Arc::default();
        let mut gate = options.stdout_gate;
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            let gate = gate.take();
            std::thread::spawn(move || {
                if let Some(gate) = gate {
                    let _ = gate.recv();
                }
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let (lock, cvar) = &*log;
                    let mut log = lock.lock().unwrap();
                    if let Ok(value) = serde_json::from_str::<Value>(&line) {
                        if value.is_object() {
                            log.events.push(value);
                        }
                    }
                    log.lines.push(line);
                    cvar.notify_all();
                }
                let (lock, cvar) = &*log;
                lock.lock().unwrap().closed_streams += 1;
                cvar.notify_all();
            });
        }
        Kelpie {
            child,
            log,
            dir,
            marker,
            status: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Replaces the config file (with `{marker}` and `{dir}` substituted),
    /// for reload tests.
    pub fn rewrite_config(&self, config: &str) {
        let config = config
            .replace("{marker}", &self.marker)
            .replace("{dir}", self.dir.path().to_str().unwrap());
        std::fs::write(self.dir.path().join("supervisor.toml"), config).unwrap();
    }

    /// The pid of each instance of `program`, from `status --json`.
    pub fn pids(&self, program: &str) -> Vec<Option<i64>> {
        let status = self.ctl(&["status", "--json"]).expect(0).json();
        let programs = status["programs"].as_array().unwrap();
        let entry = programs
            .iter()
            .find(|p| p["name"] == program)
            .unwrap_or_else(|| panic!("{program} not in status: {status}"));
        entry["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["pid"].as_i64())
            .collect()
    }

    /// Waits until `status` shows every instance of `program` running with
    /// a pid (log events come before the status board is updated) and
    /// returns the pids.
    pub fn wait_running(&self, program: &str) -> Vec<i64> {
        wait_until(
            &format!("status to show {program} running"),
            secs(10.0),
            || {
                let status = self.ctl(&["status", "--json"]).expect(0).json();
                let entry = status["programs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["name"] == program)?
                    .clone();
                let instances = entry["instances"].as_array()?;
                let pids: Vec<i64> = instances
                    .iter()
                    .filter(|i| i["state"] == "running")
                    .filter_map(|i| i["pid"].as_i64())
                    .collect();
                (pids.len() == instances.len()).then_some(pids)
            },
        )
    }

    /// The state of `program` from `status --json`, or None if it is not
    /// listed.
    pub fn state(&self, program: &str) -> Option<String> {
        let status = self.ctl(&["status", "--json"]).expect(0).json();
        status["programs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == program)
            .map(|p| p["state"].as_str().unwrap().to_string())
    }

    /// The control socket of a config that does not set one.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("kelpie.sock")
    }

    /// Waits until kelpie serves its control socket.
    pub fn wait_control(&self) {
        self.wait_event("control_listening", "", secs(10.0));
    }

    /// Runs a control command (`kelpie -s <socket> ARGS…`) to completion.
    pub fn ctl(&self, args: &[&str]) -> Ctl {
        ctl_at(&self.socket(), args)
    }

    /// Starts a control command without waiting for it (e.g. `logs -f`).
    pub fn ctl_spawn(&self, args: &[&str]) -> Child {
        Command::new(BIN)
            .args(args)
            .arg("-s")
            .arg(self.socket())
            .env_remove("KELPIE_SOCKET")
            .env_remove("KELPIE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start a kelpie control command")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Waits until `check` over all output so far returns `Some`.
    fn wait_log<T>(&self, timeout: Duration, what: &str, check: impl Fn(&Log) -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.log;
        let mut log = lock.lock().unwrap();
        loop {
            if let Some(found) = check(&log) {
                return found;
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n--- kelpie output ---\n{}",
                    log.lines.join("\n")
                );
            }
            log = cvar.wait_timeout(log, deadline - now).unwrap().0;
        }
    }

    /// Waits for the `n`-th (1-based) event matching `pred`.
    pub fn wait_nth(
        &self,
        n: usize,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        self.wait_log(timeout, what, |log| {
            log.events.iter().filter(|e| pred(e)).nth(n - 1).cloned()
        })
    }

    pub fn wait_event(&self, event: &str, program: &str, timeout: Duration) -> Value {
        self.wait_nth(1, &format!("{event} of {program}"), timeout, |e| {
            is(e, event, program)
        })
    }

    /// Waits for `program` to print exactly `line` (JSON mode).
    pub fn wait_output(&self, program: &str, line: &str, timeout: Duration) -> Value {
        self.wait_nth(1, &format!("{program} to print {line:?}"), timeout, |e| {
            is(e, "program_output", program) && e["line"] == line
        })
    }

    pub fn wait_line(&self, text: &str, timeout: Duration) -> String {
        // Scans only lines not seen yet: floods of output stay linear.
        let scanned = std::cell::Cell::new(0);
        self.wait_log(timeout, &format!("a line containing {text:?}"), |log| {
            let from = scanned.replace(log.lines.len());
            log.lines[from..].iter().find(|l| l.contains(text)).cloned()
        })
    }

    pub fn events(&self, event: &str, program: &str) -> Vec<Value> {
        let log = self.log.0.lock().unwrap();
        log.events
            .iter()
            .filter(|e| is(e, event, program))
            .cloned()
            .collect()
    }

    pub fn all_events(&self) -> Vec<Value> {
        self.log.0.lock().unwrap().events.clone()
    }

    pub fn lines(&self) -> Vec<String> {
        self.log.0.lock().unwrap().lines.clone()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for kelpie to exit (and its output to be read completely):
    /// its stdout and stderr close when it exits, since programs never
    /// inherit them.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.wait_log(timeout, "kelpie to exit", |log| {
            (log.closed_streams == 2).then_some(())
        });
        let status = self.child.wait().unwrap();
        self.status = Some(status);
        status
    }

    /// The address kelpie's HTTP server listens on, from its
    /// `http_listening` event. Test configs use `http_listen =
    /// "127.0.0.1:0"`, so parallel tests never race for a port.
    pub fn http_addr(&self) -> SocketAddr {
        let event = self.wait_event("http_listening", "", Duration::from_secs(10));
        event["addr"]
            .as_str()
            .expect("addr")
            .parse()
            .expect("socket address")
    }

    /// The pid of the `n`-th start of `program` (1-based).
    pub fn started_pid(&self, program: &str, n: usize) -> i32 {
        let event = self.wait_nth(
            n,
            &format!("start {n} of {program}"),
            Duration::from_secs(10),
            |e| is(e, "program_started", program),
        );
        event["pid"].as_i64().expect("pid") as i32
    }

    /// The guardian of this kelpie, if it has one running.
    pub fn guardian(&self) -> Option<i32> {
        marked_including_guardian(&self.marker)
            .into_iter()
            .find(|&pid| is_guardian(pid))
    }

    /// Pids of live processes carrying this test's marker.
    pub fn marked_processes(&self) -> Vec<i32> {
        let me = self.pid();
        marked_processes(&self.marker)
            .into_iter()
            .filter(|&p| p != me)
            .collect()
    }
}

impl Drop for Kelpie {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for pid in marked_including_guardian(&self.marker) {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
    }
}
