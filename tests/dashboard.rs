//! The dashboard in a real browser: headless Chromium loads the page of a
//! kelpie running three programs, one of them crash-looping, and the
//! rendered DOM shows every program, its state and the crash history,
//! which grows after a further crash. A screenshot is kept under target/.
//!
//! Skipped (saying so) where /usr/bin/chromium is missing; .ci/run
//! installs it.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{get, secs, wait_until, Kelpie};

const CHROMIUM: &str = "/usr/bin/chromium";
/// A hung browser fails the test instead of hanging it.
const BROWSER_LIMIT: Duration = Duration::from_secs(60);

fn chromium(profile: &Path, args: &[String]) -> String {
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut { stdout }, &mut text);
        let _ = tx.send((text, child.wait()));
    });
    match rx.recv_timeout(BROWSER_LIMIT) {
        Ok((text, status)) => {
            assert!(status.unwrap().success(), "chromium failed: {text}");
            text
        }
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("chromium {args:?} did not finish within {BROWSER_LIMIT:?}");
        }
    }
}

fn dump_dom(profile: &Path, url: &str) -> String {
    chromium(profile, &["--dump-dom".to_string(), url.to_string()])
}

/// The number in `data-exits="N"` of `program`'s row.
fn exits_in_dom(dom: &str, program: &str) -> u64 {
    let row = dom
        .find(&format!("data-program=\"{program}\""))
        .unwrap_or_else(|| panic!("no row for {program} in the DOM:\n{dom}"));
    let rest = &dom[row..];
    let at = rest.find("data-exits=\"").expect("an exits cell") + "data-exits=\"".len();
    rest[at..].split('"').next().unwrap().parse().unwrap()
}

fn exits_in_json(addr: SocketAddr, program: &str) -> u64 {
    let json = get(addr, "/dashboard.json").json();
    json["programs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == program)
        .map(|p| p["exits"].as_array().unwrap().len() as u64)
        .unwrap_or(0)
}

#[test]
fn dashboard_renders_programs_and_crash_history_in_chromium() {
    if !Path::new(CHROMIUM).exists() {
        println!("SKIPPED: no chromium");
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
    k.wait_running("web");
    k.wait_running("worker");
    wait_until("two crashes of crasher in the history", secs(15.0), || {
        (exits_in_json(addr, "crasher") >= 2).then_some(())
    });
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}/#program=crasher");
    let dom = dump_dom(profile.path(), &url);

    for program in ["web", "worker", "crasher"] {
        assert!(
            dom.contains(&format!("data-program=\"{program}\"")),
            "{program} missing from the DOM:\n{dom}"
        );
    }
    assert!(dom.contains("data-instance=\"worker:1\""), "{dom}");
    assert!(dom.contains("state-running\">running<"), "{dom}");
    // The selected program's panel: its verdict, history and log tail.
    assert!(dom.contains("id=\"detail-name\">crasher<"), "{dom}");
    assert!(
        dom.contains("class=\"exit\""),
        "no crash history in the DOM:\n{dom}"
    );
    assert!(dom.contains("exit code 3"), "{dom}");
    assert!(
        dom.contains("about to crash"),
        "no log tail in the DOM:\n{dom}"
    );
    let first = exits_in_dom(&dom, "crasher");
    assert!(first >= 2, "{dom}");

    wait_until("a further crash of crasher", secs(15.0), || {
        (exits_in_json(addr, "crasher") > first).then_some(())
    });
    let dom = dump_dom(profile.path(), &url);
    let second = exits_in_dom(&dom, "crasher");
    assert!(
        second > first,
        "the history did not grow in the DOM: {first} then {second}"
    );

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        profile.path(),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,800".to_string(),
            url,
        ],
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 1000, "no screenshot at {}", shot.display());
    println!("screenshot: {}", shot.display());
}
