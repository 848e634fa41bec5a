//! `kelpie import` as a child process, and making its output runnable in a
//! test (no fixed HTTP port).

use std::path::Path;
use std::process::{Command, Stdio};

use super::{collect_child, secs, Ctl, BIN};

/// Runs `kelpie import ARGS…` in `dir` to completion.
pub fn import_in(dir: &Path, args: &[&str]) -> Ctl {
    let mut full = vec!["import"];
    full.extend_from_slice(args);
    kelpie_in(dir, &full)
}

/// Runs `kelpie ARGS…` (check, config) in `dir` to completion.
pub fn kelpie_in(dir: &Path, args: &[&str]) -> Ctl {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("KELPIE_CONFIG")
        .env_remove("KELPIE_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kelpie");
    let (stdout, stderr, status) =
        collect_child(&mut child, secs(60.0), &format!("kelpie {args:?}"));
    Ctl {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

/// An imported config with `http_listen = "off"`, so tests running it in
/// parallel never compete for the default port.
pub fn without_http(config: &str) -> String {
    match config.find("\n[supervisor]\n") {
        Some(at) => {
            let end = at + "\n[supervisor]\n".len();
            format!(
                "{}http_listen = \"off\"\n{}",
                &config[..end],
                &config[end..]
            )
        }
        None => format!("[supervisor]\nhttp_listen = \"off\"\n\n{config}"),
    }
}

/// The body of `[program.NAME]` in an imported config, up to the next table.
pub fn table<'a>(toml: &'a str, program: &str) -> &'a str {
    let head = format!("\n[program.{program}]\n");
    let at = toml
        .find(&head)
        .unwrap_or_else(|| panic!("no {head} in\n{toml}"));
    let rest = &toml[at + head.len()..];
    &rest[..rest.find("\n[").unwrap_or(rest.len())]
}

/// Imports to `-o`, then `kelpie check`, `kelpie config`, and `check` on
/// what `config` printed: the round trip every import must survive.
/// Returns the import's outcome and the file it wrote (then removed).
pub fn import_and_round_trip(dir: &Path, args: &[&str]) -> (Ctl, String) {
    let mut with_output: Vec<&str> = args.to_vec();
    with_output.extend(["-o", "supervisor.toml"]);
    let out = import_in(dir, &with_output).expect(0);
    assert!(out.stdout.is_empty(), "{out:#?}");
    kelpie_in(dir, &["check", "-c", "supervisor.toml"]).expect(0);
    let printed = kelpie_in(dir, &["config", "-c", "supervisor.toml"]).expect(0);
    std::fs::write(dir.join("printed.toml"), &printed.stdout).unwrap();
    kelpie_in(dir, &["check", "-c", "printed.toml"]).expect(0);
    let written = std::fs::read_to_string(dir.join("supervisor.toml")).unwrap();
    std::fs::remove_file(dir.join("supervisor.toml")).unwrap();
    (out, written)
}
