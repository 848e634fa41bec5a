//! The sd_notify protocol from the programs' side: each instance that uses
//! `readiness.notify = true` gets its own datagram socket, passed as
//! `$NOTIFY_SOCKET`. A socket per instance means a message is attributed to
//! its instance by where it arrives, not by the sender's pid (which may be a
//! short-lived helper such as `systemd-notify`).

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tokio::net::UnixDatagram;
use tokio::task::JoinHandle;

/// The largest datagram read; sd_notify messages are a few short lines.
const MAX_MESSAGE: usize = 4096;

static SOCKET_DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// A directory for the sockets, created once: `$XDG_RUNTIME_DIR` or the
/// temp dir, `kelpie-<pid>`, mode 0711 (others may reach a socket by its
/// exact path, not list them; socket paths must stay under the 108-byte
/// limit, so names are short).
fn socket_dir() -> Result<&'static Path, String> {
    let dir = SOCKET_DIR.get_or_init(|| {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!("kelpie-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o711)
            .create(&dir)
            .map_err(|e| {
                format!(
                    "cannot create {}: {}",
                    dir.display(),
                    crate::os_lookup::io_reason(&e)
                )
            })?;
        Ok(dir)
    });
    dir.as_deref().map_err(Clone::clone)
}

/// Removes the socket directory (at exit).
pub fn remove_socket_dir() {
    if let Some(Ok(dir)) = SOCKET_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// One instance's socket and the task reading it. Dropping it stops the
/// task and removes the socket file.
pub struct NotifySocket {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl NotifySocket {
    /// Binds `n<incarnation>.sock` (unique per instance actor, so a rolling
    /// restart's replacement never takes over its predecessor's socket) and
    /// hands every message to `deliver` (until it returns false: nobody
    /// listens any more).
    pub fn bind(
        incarnation: u64,
        owner: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
        deliver: Box<dyn Fn(Vec<Notice>) -> bool + Send>,
    ) -> Result<Self, String> {
        let path = socket_dir()?.join(format!("n{incarnation}.sock"));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).map_err(|e| {
            format!(
                "cannot bind {}: {}",
                path.display(),
                crate::os_lookup::io_reason(&e)
            )
        })?;
        // Only the program's user (and root) may write to it.
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        if let Some((uid, gid)) = owner {
            let _ = nix::unistd::chown(&path, Some(uid), Some(gid));
        }
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_MESSAGE];
            loop {
                let n = match socket.recv(&mut buf).await {
                    Ok(n) => n,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return,
                };
                let message = parse(&buf[..n]);
                if message.is_empty() {
                    continue;
                }
                if !deliver(message) {
                    return;
                }
            }
        });
        Ok(Self { path, task })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What kelpie acts on in a notify message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Ready,
    Status(String),
}

/// `KEY=VALUE` lines; unknown keys are ignored, as systemd does.
pub fn parse(datagram: &[u8]) -> Vec<Notice> {
    let text = String::from_utf8_lossy(datagram);
    text.lines()
        .filter_map(|line| match line.split_once('=') {
            Some(("READY", "1")) => Some(Notice::Ready),
            Some(("STATUS", value)) => Some(Notice::Status(value.chars().take(256).collect())),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ready_and_status_and_ignores_the_rest() {
        assert_eq!(
            parse(b"STATUS=warming up\nMAINPID=12\nREADY=1\n"),
            vec![Notice::Status("warming up".into()), Notice::Ready]
        );
        assert_eq!(parse(b"READY=0"), vec![]);
        assert_eq!(parse(b"garbage\xff"), vec![]);
    }
}
