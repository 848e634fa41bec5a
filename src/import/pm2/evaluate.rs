//! An `ecosystem.config.js` is a program: only node can say what it
//! exports. It is run with a small inline script that imports the file
//! (CommonJS or ES module) and prints the export as JSON; the path goes
//! to node as an argument, never into a shell line or the script text.
//! node runs in its own process group, which is killed once it has
//! exited or after `TIMEOUT`, so a config that hangs (or leaves a child
//! holding the pipes) cannot hang the import.

use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;

use super::super::draft::Origin;
use super::super::source::MAX_INPUT_BYTES;
use super::super::ImportError;

/// How long a config may take to evaluate.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Imports `process.argv[1]` and prints what it exports as JSON
/// (`export default` for an ES module, `module.exports` for CommonJS).
///
/// Configs print (dotenv announces itself with `console.log`), so while
/// the file is evaluated stdout's `write` goes to stderr, and stdout
/// carries only the JSON. Then node exits: pm2 `require`s the file inside
/// its daemon, where a timer or an open handle the config leaves behind
/// does not matter, so it must not keep the import waiting either.
const SCRIPT: &str = r#"
const out = process.stdout.write.bind(process.stdout);
process.stdout.write = process.stderr.write.bind(process.stderr);
const file = require('path').resolve(process.argv[1]);
import(require('url').pathToFileURL(file).href).then((m) => {
  const value = m.default !== undefined ? m.default : m;
  out(JSON.stringify(value === undefined ? null : value), () => process.exit(0));
}, (err) => {
  process.stderr.write(String((err && err.stack) || err));
  process.exit(1);
});
"#;

/// `node` on `path_var`, the way a shell would find it.
pub fn find_node(path_var: Option<&str>) -> Option<PathBuf> {
    find_program("node", path_var)
}

pub fn find_program(name: &str, path_var: Option<&str>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    path_var?
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The JSON text `file` (absolute) exports, evaluated by `node` in
/// `dir`. `shown` is the path as the user gave it, for messages.
pub fn evaluate(node: &Path, file: &Path, dir: &Path, shown: &Path) -> Result<String, ImportError> {
    let at = |line: usize, message: String| ImportError::data(Origin::new(shown, line), message);
    let mut child = Command::new(node)
        .arg("-e")
        .arg(SCRIPT)
        .arg(file)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| {
            at(
                0,
                format!(
                    "cannot run {}: {}",
                    node.display(),
                    crate::os_lookup::io_reason(&e)
                ),
            )
        })?;
    let pid = Pid::from_raw(child.id() as i32);
    let stdout = child.stdout.take().map(reader);
    let stderr = child.stderr.take().map(reader);

    // Wait for the exit without reaping it: until `child.wait()` below the
    // pid (and so the group id) cannot be reused, so killing the group is
    // safe either way.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(waitid(
            Id::Pid(pid),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
        ));
    });
    let timed_out = rx.recv_timeout(TIMEOUT).is_err();
    let _ = killpg(pid, Signal::SIGKILL);
    // `kelpie import` is a one-shot command with no reaper (the reaper
    // owns waits only inside `kelpie run` and `kelpie exec`), so this is
    // the one wait for node's status in its process.
    #[allow(clippy::disallowed_methods)]
    let status = child.wait().map_err(|e| {
        at(
            0,
            format!("waiting for node: {}", crate::os_lookup::io_reason(&e)),
        )
    })?;
    let out = stdout.map(collect).unwrap_or_default();
    let err = stderr.map(collect).unwrap_or_default();
    if timed_out {
        return Err(at(
            0,
            format!(
                "node did not finish evaluating it within {}s; export the config as JSON and import that",
                TIMEOUT.as_secs()
            ),
        ));
    }
    if !status.success() {
        let err = String::from_utf8_lossy(&err);
        let (line, message) = describe_failure(&err, file);
        return Err(at(line, format!("node could not evaluate it: {message}")));
    }
    if out.len() as u64 > MAX_INPUT_BYTES {
        return Err(at(
            0,
            format!("node printed more than {MAX_INPUT_BYTES} bytes of config"),
        ));
    }
    String::from_utf8(out).map_err(|_| at(0, "node printed text that is not UTF-8".into()))
}

type Reading = std::thread::JoinHandle<Vec<u8>>;

fn reader(mut pipe: impl Read + Send + 'static) -> Reading {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        // One byte past the cap tells "too long" from "exactly the cap".
        let _ = pipe
            .by_ref()
            .take(MAX_INPUT_BYTES + 1)
            .read_to_end(&mut bytes);
        bytes
    })
}

fn collect(handle: Reading) -> Vec<u8> {
    handle.join().unwrap_or_default()
}

/// node's error as one line, and the line of the config it points at
/// (`/abs/ecosystem.config.js:12` in the stack), or 0.
pub fn describe_failure(stderr: &str, file: &Path) -> (usize, String) {
    let prefix = format!("{}:", file.display());
    let line = stderr
        .split_whitespace()
        .chain(stderr.lines())
        .filter_map(|word| {
            let at = word.find(&prefix)?;
            let digits: String = word[at + prefix.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .next()
        .unwrap_or(0);
    let message = stderr
        .lines()
        .map(str::trim)
        .find(|l| {
            l.split(':')
                .next()
                .is_some_and(|head| head.ends_with("Error") && !head.contains(' '))
        })
        .or_else(|| stderr.lines().map(str::trim).find(|l| !l.is_empty()))
        .unwrap_or("it exited with an error and printed nothing");
    (line, message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_errors_become_one_line_with_the_config_line() {
        let file = Path::new("/app/ecosystem.config.js");
        let syntax = "/app/ecosystem.config.js:4\n  }\n  ^\n\nSyntaxError: Unexpected token '}'\n    at wrapSafe (node:internal/modules/cjs/loader:1378:20)\n";
        assert_eq!(
            describe_failure(syntax, file),
            (4, "SyntaxError: Unexpected token '}'".to_string())
        );
        let thrown = "ReferenceError: nope is not defined\n    at Object.<anonymous> (/app/ecosystem.config.js:7:11)\n    at Module._compile (node:internal)\n";
        assert_eq!(
            describe_failure(thrown, file),
            (7, "ReferenceError: nope is not defined".to_string())
        );
        assert_eq!(
            describe_failure("", file),
            (0, "it exited with an error and printed nothing".to_string())
        );
    }

    #[test]
    fn programs_are_found_on_path() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let bin = dir.path().join("node");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap_or_else(|e| panic!("write: {e}"));
        let path = format!("/nonexistent:{}", dir.path().display());
        assert_eq!(find_node(Some(&path)), None, "not executable yet");
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod: {e}"));
        assert_eq!(find_node(Some(&path)), Some(bin));
        assert_eq!(find_node(None), None);
    }
}
