//! `kelpie import` as a child process, and making its output runnable in a
//! test (no fixed HTTP port).

use std::path::Path;
use std::process::{Command, Stdio};

use super::{collect_child, secs, Ctl, BIN};

/// Runs `kelpie import ARGS…` in `dir` to completion.
pub fn import_in(dir: &Path, args: &[&str]) -> Ctl {
    let mut child = Command::new(BIN)
        .arg("import")
        .args(args)
        .current_dir(dir)
        .env_remove("KELPIE_CONFIG")
        .env_remove("KELPIE_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kelpie import");
    let (stdout, stderr, status) =
        collect_child(&mut child, secs(60.0), &format!("kelpie import {args:?}"));
    Ctl {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
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
