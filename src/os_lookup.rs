//! What kelpie asks the operating system about, apart from spawning: users
//! and groups by name or id, where `exec` would find a program, and the
//! wording of the OS's errors in kelpie's messages.
//!
//! Not part of `process`: config validation runs these same lookups (a
//! missing user or binary is reported with its position in the file), and
//! `process` builds children from a validated `ProgramConfig`, so config
//! cannot depend on process. Both depend on this module instead.

use std::path::{Path, PathBuf};

/// `io::Error` without the `(os error 2)` suffix users do not need.
pub fn io_reason(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

pub fn resolve_user(name: &str) -> Option<nix::unistd::User> {
    match name.parse::<u32>() {
        Ok(uid) => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten(),
        Err(_) => nix::unistd::User::from_name(name).ok().flatten(),
    }
}

pub fn resolve_group(name: &str) -> Option<nix::unistd::Group> {
    match name.parse::<u32>() {
        Ok(gid) => nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
            .ok()
            .flatten(),
        Err(_) => nix::unistd::Group::from_name(name).ok().flatten(),
    }
}

/// Where `exec` would find `program`, mirroring execvp: a name with a slash is
/// a path (relative to the working directory), anything else is searched in
/// PATH.
pub fn find_executable(
    program: &str,
    directory: Option<&Path>,
    path_var: Option<&str>,
) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let check = |candidate: &Path| -> Result<(), String> {
        let meta = std::fs::metadata(candidate)
            .map_err(|e| format!("\"{}\": {}", candidate.display(), io_reason(&e)))?;
        if meta.is_dir() {
            return Err(format!("\"{}\" is a directory", candidate.display()));
        }
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(format!("\"{}\" is not executable", candidate.display()));
        }
        Ok(())
    };
    if program.contains('/') {
        let candidate = match directory {
            Some(dir) if !program.starts_with('/') => dir.join(program),
            _ => PathBuf::from(program),
        };
        return check(&candidate).map(|()| candidate);
    }
    let search = path_var.unwrap_or("/usr/local/bin:/usr/bin:/bin");
    // Only the verdict matters for PATH entries: formatting why each
    // earlier entry lacks the program was most of what validating 10,000
    // programs cost.
    let executable = |candidate: &Path| {
        std::fs::metadata(candidate)
            .is_ok_and(|meta| !meta.is_dir() && meta.permissions().mode() & 0o111 != 0)
    };
    for dir in search.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(program);
        if executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(format!("command \"{program}\" not found in PATH"))
}
