//! `kelpie config`: the effective config, every default filled in, that
//! `kelpie check` accepts and that prints the same when read back; its
//! header says which config it is, and `--running` asks the supervisor for
//! the one it runs.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{collect_child, ctl_at, secs, Kelpie, BIN};

fn kelpie(args: &[&str]) -> (i32, String, String) {
    kelpie_with(args, &[])
}

fn kelpie_with(args: &[&str], env: &[(&str, &Path)]) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .env_remove("KELPIE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (stdout, stderr, status) = collect_child(&mut child, secs(30.0), "kelpie");
    (status.code().unwrap_or(-1), stdout, stderr)
}

#[test]
fn the_effective_config_is_valid_and_stable() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/supervisor.toml.example");
    let (code, printed, stderr) = kelpie(&["config", "-c", example]);
    assert_eq!(code, 0, "{stderr}");
    // Defaults the example leaves out are spelled out.
    assert!(printed.contains("success_codes = [0]"), "{printed}");
    assert!(printed.contains("stop_signal = \"TERM\""), "{printed}");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("effective.toml");
    std::fs::write(&copy, &printed).unwrap();
    let (code, _, stderr) = kelpie(&["check", "-c", copy.to_str().unwrap()]);
    assert_eq!(code, 0, "check accepts the printed config: {stderr}");
    let (code, again, _) = kelpie(&["config", "-c", copy.to_str().unwrap()]);
    assert_eq!(code, 0);
    // Only the header line (naming the file) may differ.
    let body = |text: &str| text.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&printed), body(&again), "it re-imports unchanged");
}

#[test]
fn an_invalid_config_prints_its_errors_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[program.a]\ncommand = []\n").unwrap();
    let (code, stdout, stderr) = kelpie(&["config", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 78);
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("bad.toml:2:11: program.a.command"),
        "{stderr}"
    );
}

const RUNNING: &str = r#"
[supervisor]
http_listen = "off"
shutdown_timeout = "7s"

[program.web]
command = ["sleep", "1000"]
start_seconds = "0s"
environment = { VERSION = "v1" }
"#;

/// The same program changed, a live `[supervisor]` key and one that only
/// applies when kelpie restarts.
const EDITED: &str = r#"
[supervisor]
http_listen = "127.0.0.1:0"
shutdown_timeout = "9s"

[program.web]
command = ["sleep", "1000"]
start_seconds = "0s"
environment = { VERSION = "v2" }
"#;

/// Everything after the header line.
fn body(text: &str) -> String {
    text.lines().skip(1).collect::<Vec<_>>().join("\n")
}

fn header(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

#[test]
fn config_says_it_prints_the_file_and_running_asks_the_supervisor() {
    let mut k = Kelpie::start(RUNNING);
    k.wait_control();
    let file = k.path("supervisor.toml");
    let file = file.to_str().unwrap();
    // The default control socket depends on it: read the file as kelpie
    // did.
    let runtime_dir = k.dir().to_path_buf();
    let kelpie = |args: &[&str]| kelpie_with(args, &[("XDG_RUNTIME_DIR", &runtime_dir)]);

    // Unchanged file: both print the same config, under different headers.
    let (code, disk, stderr) = kelpie(&["config", "-c", file]);
    assert_eq!(code, 0, "{stderr}");
    let running = k.ctl(&["config", "--running"]).expect(0).stdout;
    assert_eq!(
        header(&disk),
        format!(
            "# kelpie config: {file} as on disk, every default filled in \
             (not necessarily what is running; see `kelpie config --running`)"
        )
    );
    assert!(
        header(&running).starts_with(&format!(
            "# kelpie config --running: the config the running supervisor uses, loaded from {file} at "
        )),
        "{running}"
    );
    assert_eq!(body(&disk), body(&running));

    // Edited on disk, not reloaded: the file shows the edit, the
    // supervisor still the config it started with.
    k.rewrite_config(EDITED);
    let (code, disk, stderr) = kelpie(&["config", "-c", file]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        disk.contains("environment = { VERSION = \"v2\" }"),
        "{disk}"
    );
    assert!(header(&disk).contains("as on disk"), "{disk}");
    let running = k.ctl(&["config", "--running"]).expect(0).stdout;
    assert!(
        running.contains("environment = { VERSION = \"v1\" }"),
        "{running}"
    );
    assert!(running.contains("shutdown_timeout = \"7s\""), "{running}");
    assert!(!running.contains("v2"), "{running}");

    // Reloaded: the new config runs, except the key that waits for a
    // restart of kelpie, which shows the value in use.
    k.ctl(&["reload"]).expect(0);
    let running = k.ctl(&["config", "--running"]).expect(0).stdout;
    assert!(
        running.contains("environment = { VERSION = \"v2\" }"),
        "{running}"
    );
    assert!(running.contains("shutdown_timeout = \"9s\""), "{running}");
    assert!(running.contains("http_listen = \"off\""), "{running}");
    assert!(disk.contains("http_listen = \"127.0.0.1:0\""), "{disk}");

    // A refused reload changes nothing.
    k.rewrite_config("[program.web]\ncommand = []\n");
    k.ctl(&["reload"]).expect(78);
    let after = k.ctl(&["config", "--running"]).expect(0).stdout;
    assert_eq!(body(&after), body(&running), "{after}");

    // No supervisor: 69 and the socket named, like every control command.
    let socket = k.socket();
    k.ctl(&["shutdown"]).expect(0);
    assert!(k.wait_exit(secs(10.0)).success());
    let out = ctl_at(&socket, &["config", "--running"]).expect(69);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains("no kelpie supervisor is running at")
            && out.stderr.contains(&socket.display().to_string()),
        "{out:?}"
    );
    // Reading the file needs no supervisor.
    k.rewrite_config(EDITED);
    let (code, _, stderr) = kelpie(&["config", "-c", file]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn socket_options_need_running() {
    let (code, stdout, stderr) = kelpie(&["config", "-s", "/nonexistent.sock"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("--running"), "{stderr}");
}
