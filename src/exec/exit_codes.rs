//! How `kelpie exec` reports what happened, as a shell would: the exit code
//! of a status, and what a failed spawn ends with (127, 126, or a
//! transient failure a restart policy may retry).

use std::io;

use crate::state::ExitStatus;

/// Like a shell: the command was not found.
pub const EXIT_NOT_FOUND: i32 = 127;
/// Like a shell: the command exists but cannot be executed.
pub const EXIT_NOT_EXECUTABLE: i32 = 126;

/// The exit code that reports `status`, as a shell would.
pub fn exit_code(status: ExitStatus) -> i32 {
    match status {
        ExitStatus::Code(code) => code,
        ExitStatus::Signal(signal) => 128 + signal,
    }
}

/// How a failed spawn ends: a final exit code with its message, or a
/// transient failure (no process could be created) that a restart policy
/// may retry.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SpawnFailure {
    Final(i32, String),
    Transient(String),
}

pub(super) fn classify_spawn_error(name: &str, err: &io::Error) -> SpawnFailure {
    let reason = crate::os_lookup::io_reason(err);
    match err.kind() {
        io::ErrorKind::NotFound if name.contains('/') => {
            // The file exists, so the missing one is its interpreter (#!).
            let what = if std::path::Path::new(name).exists() {
                "bad interpreter: no such file or directory"
            } else {
                "no such file or directory"
            };
            SpawnFailure::Final(EXIT_NOT_FOUND, format!("kelpie: {name}: {what}"))
        }
        io::ErrorKind::NotFound => {
            SpawnFailure::Final(EXIT_NOT_FOUND, format!("kelpie: {name}: command not found"))
        }
        io::ErrorKind::PermissionDenied => SpawnFailure::Final(
            EXIT_NOT_EXECUTABLE,
            format!("kelpie: {name}: permission denied"),
        ),
        _ if matches!(
            err.raw_os_error(),
            Some(libc::ENOEXEC | libc::EISDIR | libc::ENOTDIR | libc::ELOOP | libc::ENAMETOOLONG)
        ) =>
        {
            SpawnFailure::Final(
                EXIT_NOT_EXECUTABLE,
                format!("kelpie: {name}: {}", reason.to_lowercase()),
            )
        }
        _ => SpawnFailure::Transient(format!("kelpie: cannot start {name}: {reason}")),
    }
}
