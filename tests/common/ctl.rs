//! Control commands (`kelpie status`, `start`, …) run as child processes,
//! and collecting any child's output with a deadline.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{secs, BIN};

/// The outcome of one control command.
#[derive(Debug)]
pub struct Ctl {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ctl {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    #[track_caller]
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(self.code, code, "unexpected exit code: {self:#?}");
        self
    }
}

/// Runs `kelpie ARGS… -s socket` to completion (a hung command fails the
/// test after 60 s instead of hanging it).
pub fn ctl_at(socket: &Path, args: &[&str]) -> Ctl {
    let mut child = Command::new(BIN)
        .args(args)
        .arg("-s")
        .arg(socket)
        .env_remove("KELPIE_SOCKET")
        .env_remove("KELPIE_CONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a kelpie control command");
    let (stdout, stderr, status) =
        collect_child(&mut child, secs(60.0), &format!("kelpie {args:?}"));
    Ctl {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

/// Reads a child's stdout and stderr to EOF and reaps it, with a deadline
/// (the child is killed and the test fails when it passes).
pub fn collect_child(
    child: &mut Child,
    timeout: Duration,
    what: &str,
) -> (String, String, ExitStatus) {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut streams: Vec<(bool, Box<dyn Read + Send>)> = Vec::new();
    if let Some(out) = child.stdout.take() {
        streams.push((true, Box::new(out)));
    }
    if let Some(err) = child.stderr.take() {
        streams.push((false, Box::new(err)));
    }
    let count = streams.len();
    for (is_stdout, mut stream) in streams {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            let _ = tx.send((is_stdout, text));
        });
    }
    let deadline = Instant::now() + timeout;
    let (mut stdout, mut stderr) = (String::new(), String::new());
    for _ in 0..count {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((true, text)) => stdout = text,
            Ok((false, text)) => stderr = text,
            Err(_) => {
                let _ = child.kill();
                panic!("timed out after {timeout:?} waiting for {what} to finish");
            }
        }
    }
    // Both pipes reached EOF: the process has exited or is exiting.
    let status = child.wait().unwrap();
    (stdout, stderr, status)
}
