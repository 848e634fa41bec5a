//! The dashboard in a real browser: headless Chromium, driven over the
//! DevTools protocol on a pipe, opens the page of a kelpie running three
//! programs, one of them crash-looping. The one open page shows every
//! program, its state and the crash history, and then, without a reload,
//! a further crash: the page's own polling updates it. A screenshot is
//! kept under target/.
//!
//! Skipped (saying so) where /usr/bin/chromium is missing; .ci/run
//! installs it.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use common::{get, secs, wait_until, Kelpie};

const CHROMIUM: &str = "/usr/bin/chromium";
/// A browser that does not answer a command fails the test instead of
/// hanging it.
const REPLY_LIMIT: Duration = Duration::from_secs(30);
/// The capped length of a program's exit history (src/exit_history.rs).
const EXITS_KEPT: u64 = 20;

/// Chromium with its DevTools protocol on fds 3 (commands in) and 4
/// (replies and events out), each message ended by a NUL byte. Dropping
/// it kills chromium's whole process group, on success and on panic.
struct Browser {
    child: Child,
    commands: File,
    messages: Receiver<Value>,
    next_id: u64,
}

/// A pipe end moved above the fds the child is given (3 and 4), close-on-exec
/// so that only the dup2'd copies reach chromium.
fn high_fd(fd: OwnedFd) -> OwnedFd {
    let raw = fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(10)).expect("dup a pipe end");
    // SAFETY: fcntl just returned `raw` as a new descriptor that nothing
    // else owns.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(raw) }
}

impl Browser {
    fn start(profile: &Path) -> Browser {
        let (to_browser_r, to_browser_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let (from_browser_r, from_browser_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let (to_browser_r, to_browser_w) = (high_fd(to_browser_r), high_fd(to_browser_w));
        let (from_browser_r, from_browser_w) = (high_fd(from_browser_r), high_fd(from_browser_w));
        let (input, output) = (to_browser_r.as_raw_fd(), from_browser_w.as_raw_fd());
        let mut command = Command::new(CHROMIUM);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1280,800",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        // SAFETY: between fork and exec the closure only calls dup2, which
        // is async-signal-safe; `input` and `output` are open (their
        // OwnedFds live until after spawn) and are at least 10, so neither
        // dup2 overwrites the other's source. dup2 clears close-on-exec on
        // the copies, so exactly fds 3 and 4 reach chromium.
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(input, 3) < 0 || libc::dup2(output, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start chromium");
        // Only chromium keeps the pipe ends it uses: its exit ends the reads.
        drop((to_browser_r, from_browser_w));
        let (tx, messages) = mpsc::channel();
        let mut reader = BufReader::new(File::from(from_browser_r));
        std::thread::spawn(move || loop {
            let mut message = Vec::new();
            match reader.read_until(0, &mut message) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if message.last() == Some(&0) {
                message.pop();
            }
            let value = serde_json::from_slice(&message)
                .unwrap_or_else(|e| json!({"unparsed": e.to_string()}));
            if tx.send(value).is_err() {
                return;
            }
        });
        Browser {
            child,
            commands: File::from(to_browser_w),
            messages,
            next_id: 0,
        }
    }

    /// Sends `method` (to the page of `session`, or to the browser) and
    /// returns its result, skipping the events that arrive meanwhile.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("sending {method} to chromium: {e}"));
        let deadline = tokio::time::Instant::now() + REPLY_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let reply = match self.messages.recv_timeout(left) {
                Ok(reply) => reply,
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "timed out after {REPLY_LIMIT:?} waiting for chromium's reply to {method}"
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("chromium closed its DevTools pipe while we waited for the reply to {method}")
                }
            };
            if reply["id"] != id {
                continue;
            }
            assert!(
                reply.get("error").is_none(),
                "chromium refused {method} {params}: {reply}"
            );
            return reply["result"].clone();
        }
    }

    /// Evaluates `expression` in the page and returns its value.
    fn eval(&mut self, session: &str, expression: &str) -> Value {
        let result = self.call(
            Some(session),
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression} threw in the page: {result}"
        );
        result["result"]["value"].clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// What the page shows, read from its DOM (see src/http/dashboard/).
const FACTS: &str = r##"(() => {
  const all = (s) => [...document.querySelectorAll(s)];
  const text = (s) => document.querySelector(s)?.textContent ?? null;
  return {
    marker: window.kelpieTestMarker ?? null,
    programs: all("#rows tr[data-program]").map((r) => r.dataset.program),
    instances: all("#rows tr[data-instance]").map((r) => r.dataset.instance),
    webState: text('tr[data-program="web"] td.state'),
    exits: Number(document.querySelector('tr[data-program="crasher"] [data-exits]')?.dataset.exits ?? -1),
    detailHidden: document.getElementById("detail")?.hidden ?? true,
    detailName: text("#detail-name"),
    verdict: text("#verdict"),
    history: all("#history li.exit").map((li) => li.textContent),
    log: text("#log"),
    conn: text("#conn"),
  };
})()"##;

fn exits_in_json(addr: SocketAddr, program: &str) -> u64 {
    let json = get(addr, "/dashboard.json").json();
    json["programs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == program)
        .map(|p| p["exit_count"].as_u64().unwrap())
        .unwrap_or(0)
}

/// Standard base64 (as in CDP's screenshot data), padding optional.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("{:?} is not base64", c as char),
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut bits, mut count) = (0u32, 0);
    for c in text.bytes().filter(|&c| c != b'=') {
        bits = (bits << 6) | u32::from(value(c));
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

#[test]
fn base64_decoder_matches_known_values() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGVsbG8h"), b"hello!");
    assert_eq!(base64_decode("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
}

#[test]
fn dashboard_renders_programs_and_crash_history_in_chromium() {
    if !Path::new(CHROMIUM).exists() {
        println!("SKIPPED: no chromium at {CHROMIUM}");
        return;
    }
    let k = Kelpie::start(
        r#"
[supervisor]
http_listen = "127.0.0.1:0"

[program.web]
command = ["sh", "-c", "echo web listening; exec sleep 1000"]
start_seconds = "0s"

[program.worker]
command = ["sh", "-c", "echo worker up; exec sleep 1000"]
start_seconds = "0s"
instances = 2

[program.crasher]
command = ["sh", "-c", "echo about to crash; echo segfault >&2; exit 3"]
restart = "always"
max_restarts = 1000
start_seconds = "0s"
backoff = { initial = "700ms", max = "700ms", jitter = 0.0 }
"#,
    );
    let addr = k.http_addr();
    let profile = tempfile::tempdir().unwrap();
    let mut browser = Browser::start(profile.path());
    let target = browser.call(None, "Target.createTarget", json!({"url": "about:blank"}));
    let target_id = target["targetId"].as_str().expect("a targetId").to_string();
    let attached = browser.call(
        None,
        "Target.attachToTarget",
        json!({"targetId": target_id, "flatten": true}),
    );
    let session = attached["sessionId"]
        .as_str()
        .expect("a sessionId")
        .to_string();
    let session = session.as_str();

    k.wait_running("web");
    k.wait_running("worker");
    wait_until("a crash of crasher in the history", secs(15.0), || {
        (exits_in_json(addr, "crasher") >= 1).then_some(())
    });
    let url = format!("http://{addr}/#program=crasher");
    browser.call(Some(session), "Page.navigate", json!({"url": url}));
    let facts = wait_until("the page's first render of crasher", secs(15.0), || {
        let facts = browser.eval(session, FACTS);
        (facts["detailHidden"] == false && facts["exits"].as_i64() >= Some(1)).then_some(facts)
    });
    // Set only now: still there at the end, it shows the document was
    // never reloaded.
    browser.eval(session, "window.kelpieTestMarker = 'same page'");

    let programs = &facts["programs"];
    for program in ["web", "worker", "crasher"] {
        assert!(
            programs.as_array().unwrap().contains(&json!(program)),
            "{program} missing from the page: {facts:#}"
        );
    }
    let instances = facts["instances"].as_array().unwrap();
    assert!(instances.contains(&json!("worker:1")), "{facts:#}");
    assert_eq!(facts["webState"], "running", "{facts:#}");
    // The selected program's panel: its verdict, history and log tail.
    assert_eq!(facts["detailName"], "crasher", "{facts:#}");
    assert!(
        facts["verdict"]
            .as_str()
            .is_some_and(|v| v.contains("code 3")),
        "no verdict on the crashes: {facts:#}"
    );
    let history = facts["history"].as_array().unwrap();
    assert!(
        history
            .iter()
            .any(|e| e.as_str().unwrap().contains("exit code 3")),
        "no crash in the history: {facts:#}"
    );
    assert!(
        facts["log"].as_str().unwrap().contains("about to crash"),
        "no log tail: {facts:#}"
    );
    let first = facts["exits"].as_u64().unwrap();
    let first_history = history.len();
    assert!(
        first < EXITS_KEPT,
        "the history is already full ({first}): the test started too late to see it grow"
    );

    wait_until("a further crash of crasher", secs(15.0), || {
        (exits_in_json(addr, "crasher") > first).then_some(())
    });
    let facts = wait_until(
        &format!("the same open page to show more than {first} exits of crasher"),
        secs(10.0),
        || {
            let facts = browser.eval(session, FACTS);
            (facts["exits"].as_u64().unwrap_or(0) > first).then_some(facts)
        },
    );
    assert_eq!(
        facts["marker"], "same page",
        "the page was reloaded: {facts:#}"
    );
    assert!(
        facts["history"].as_array().unwrap().len() > first_history,
        "the crash history did not grow past {first_history}: {facts:#}"
    );
    assert_eq!(facts["conn"], "", "{facts:#}");

    let shot = browser.call(
        Some(session),
        "Page.captureScreenshot",
        json!({"format": "png"}),
    );
    let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dashboard.png");
    std::fs::write(&path, &png).unwrap();
    let written = std::fs::read(&path).unwrap();
    assert!(
        written.starts_with(b"\x89PNG\r\n\x1a\n") && written.len() > 1000,
        "no PNG screenshot at {} ({} bytes)",
        path.display(),
        written.len()
    );
    println!("screenshot: {}", path.display());
}
