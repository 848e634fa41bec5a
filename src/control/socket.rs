//! Creating the control socket's file safely, and removing it again.
//!
//! The path comes from the config and may sit in a shared directory
//! (`/tmp`, `/run`), so [`bind`] never follows a symbolic link, never
//! deletes anything but a stale socket, and never lets the socket be more
//! permissive than its mode, not even for an instant. [`ControlSocket`]'s
//! `Drop` removes the file only while it is still the one kelpie created.

use std::fs::{self, Metadata, Permissions};
use std::future::Future;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use nix::sys::stat::{umask, Mode};
use tokio::net::{UnixListener, UnixStream};

/// Bytes of `sockaddr_un.sun_path`, the terminating NUL included.
#[cfg(any(target_os = "linux", target_os = "android"))]
const SUN_PATH_BYTES: usize = 108;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SUN_PATH_BYTES: usize = 104;

/// The longest socket path the kernel accepts.
pub const MAX_PATH_BYTES: usize = SUN_PATH_BYTES - 1;

/// A listening control socket. Dropping it closes the listener and removes
/// the socket file, unless someone has replaced the file meanwhile.
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
    /// (device, inode) of the socket file `bind` created.
    identity: (u64, u64),
}

impl ControlSocket {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn listener(&self) -> &UnixListener {
        &self.listener
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        // A newer kelpie may have taken over the path (after deciding that
        // ours was stale), or an operator may have put something else
        // there: only our own socket inode is ours to remove.
        match fs::symlink_metadata(&self.path) {
            Ok(meta) if is_socket(&meta) && identity(&meta) == self.identity => {
                if let Err(err) = fs::remove_file(&self.path) {
                    tracing::debug!(
                        event = "control_socket_remove_failed",
                        path = %self.path.display(),
                        error = %err,
                    );
                }
            }
            _ => {}
        }
    }
}

/// Creates the control socket at `path` with permission bits `mode`
/// (e.g. `0o600`) and listens on it. Must be called inside a tokio runtime.
///
/// Refuses (with one line naming the path) when the path is a symbolic
/// link, anything other than a socket, or a socket another process still
/// serves; a stale socket (connection refused) is replaced. The parent
/// directory must exist.
pub fn bind(path: &Path, mode: u32) -> Result<ControlSocket, String> {
    let shown = path.display();
    check_path(path)?;
    if mode & !0o777 != 0 {
        return Err(format!(
            "control socket {shown}: mode {mode:o} has bits outside 0777"
        ));
    }
    match fs::symlink_metadata(path) {
        Ok(meta) => remove_if_stale(path, &meta)?,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(create_error(path, &err)),
    }

    // umask is process-wide. This runs once at startup, before any program
    // is spawned and before other threads create files; a file another
    // thread did create in this window would only get narrower permissions.
    // The umask holds every bit `mode` lacks and every group/other bit, so
    // the socket is born with at most `mode & 0600`; chmod below widens it
    // to exactly `mode` where asked.
    let restrictive = Mode::from_bits_truncate(0o777 & !(mode & 0o600));
    let bound = {
        // Concurrent binds (tests) would otherwise restore each other's
        // umask and could leave the restrictive one in place.
        static UMASK_LOCK: Mutex<()> = Mutex::new(());
        let _serialized = UMASK_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
        let _umask = UmaskGuard(umask(restrictive));
        UnixListener::bind(path)
    };
    let listener = bound.map_err(|err| create_error(path, &err))?;

    // What we just created, recorded before anything else can replace it
    // (tokio's bind has no way to hand back the inode).
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) if is_socket(&meta) => meta,
        Ok(_) => {
            return Err(format!(
                "control socket {shown} was replaced by something else while kelpie created it"
            ))
        }
        Err(err) => {
            return Err(format!(
                "control socket {shown} vanished while kelpie created it: {}",
                describe(&err)
            ))
        }
    };
    let socket = ControlSocket {
        listener,
        path: path.to_path_buf(),
        identity: identity(&meta),
    };
    // Needed when `mode` grants group/other access, and when a default ACL
    // on the directory overrode the umask. set_permissions follows
    // symlinks, but the path was a socket we own a moment ago and only
    // someone allowed to rename entries in the directory could swap it.
    if meta.mode() & 0o7777 != mode {
        fs::set_permissions(path, Permissions::from_mode(mode)).map_err(|err| {
            format!(
                "control socket {shown}: cannot set mode {mode:o}: {}",
                describe(&err)
            )
        })?;
    }
    Ok(socket)
}

/// Restores the previous umask, also if bind panics (outside a runtime).
struct UmaskGuard(Mode);

impl Drop for UmaskGuard {
    fn drop(&mut self) {
        umask(self.0);
    }
}

fn check_path(path: &Path) -> Result<(), String> {
    let bytes = path.as_os_str().as_bytes();
    let shown = path.display();
    if bytes.is_empty() {
        return Err("the control socket path is empty".into());
    }
    if bytes.contains(&0) {
        return Err(format!("control socket path {shown:?} contains a NUL byte"));
    }
    if bytes.len() > MAX_PATH_BYTES {
        return Err(format!(
            "control socket path {shown} is {} bytes long; Unix sockets allow at most {MAX_PATH_BYTES}. Choose a shorter control_socket",
            bytes.len()
        ));
    }
    Ok(())
}

/// Removes a stale socket at `path`; refuses everything else.
fn remove_if_stale(path: &Path, meta: &Metadata) -> Result<(), String> {
    let shown = path.display();
    let kind = meta.file_type();
    if kind.is_symlink() {
        return Err(format!(
            "control socket {shown} is a symbolic link; refusing to follow it. Remove it or choose another control_socket"
        ));
    }
    if !kind.is_socket() {
        let what = if kind.is_file() {
            "a regular file"
        } else if kind.is_dir() {
            "a directory"
        } else {
            "not a socket"
        };
        return Err(format!(
            "control socket {shown} already exists and is {what}; refusing to replace it. Remove it or choose another control_socket"
        ));
    }
    match probe(path) {
        Probe::Stale => {}
        Probe::Gone => return Ok(()),
        Probe::Live => {
            return Err(format!(
                "another kelpie is already serving the control socket {shown}; stop it first or choose another control_socket"
            ))
        }
        Probe::Unknown(err) => {
            return Err(format!(
                "control socket {shown} already exists and kelpie cannot tell whether it is in use ({}); remove it or choose another control_socket",
                describe(&err)
            ))
        }
    }
    // Narrows the window in which two kelpies starting together could
    // remove each other's fresh socket: only the inode probed goes.
    match fs::symlink_metadata(path) {
        Ok(now) if is_socket(&now) && identity(&now) == identity(meta) => {}
        Ok(_) => {
            return Err(format!(
                "control socket {shown} was replaced by another process while kelpie started"
            ))
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(create_error(path, &err)),
    }
    match fs::remove_file(path) {
        Ok(()) => {
            tracing::info!(
                event = "control_socket_stale_removed",
                path = %shown,
                "removed the stale control socket {shown} left by an earlier kelpie"
            );
            Ok(())
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(format!(
            "cannot remove the stale control socket {shown}: {}",
            describe(&err)
        )),
    }
}

enum Probe {
    /// Something accepted (or queued) our connection.
    Live,
    /// Nobody listens: left behind by a process that is gone.
    Stale,
    /// Removed while we looked.
    Gone,
    Unknown(io::Error),
}

/// Tries to connect to the socket at `path` without ever blocking: a
/// blocking connect to a live but wedged listener with a full backlog
/// would hang kelpie's startup forever.
///
/// tokio's connect issues the (non-blocking) connect(2) on its first poll
/// and reports a refusal right there; a connection the kernel accepted only
/// waits for the reactor, i.e. is pending. So one poll decides.
fn probe(path: &Path) -> Probe {
    let mut connect = pin!(UnixStream::connect(path));
    let mut cx = Context::from_waker(Waker::noop());
    match connect.as_mut().poll(&mut cx) {
        Poll::Pending | Poll::Ready(Ok(_)) => Probe::Live,
        Poll::Ready(Err(err)) => match err.raw_os_error() {
            Some(libc::ECONNREFUSED) => Probe::Stale,
            Some(libc::ENOENT) => Probe::Gone,
            // The backlog is full: someone listens but is busy.
            Some(libc::EAGAIN) => Probe::Live,
            _ => Probe::Unknown(err),
        },
    }
}

/// Why the socket could not be created, naming the path.
fn create_error(path: &Path, err: &io::Error) -> String {
    let shown = path.display();
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let parent = parent.display();
    match err.raw_os_error() {
        Some(libc::ENOENT) => format!(
            "cannot create control socket {shown}: directory {parent} does not exist"
        ),
        Some(libc::ENOTDIR) => format!(
            "cannot create control socket {shown}: a component of {parent} is not a directory"
        ),
        Some(libc::EACCES | libc::EPERM) => format!(
            "cannot create control socket {shown}: permission denied (kelpie's user needs write access to {parent})"
        ),
        Some(libc::EADDRINUSE) => format!(
            "cannot create control socket {shown}: another process created it while kelpie started"
        ),
        Some(libc::EROFS) => format!(
            "cannot create control socket {shown}: {parent} is on a read-only file system"
        ),
        _ => format!("cannot create control socket {shown}: {}", describe(err)),
    }
}

fn is_socket(meta: &Metadata) -> bool {
    meta.file_type().is_socket()
}

fn identity(meta: &Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// An OS error as a short lower-case phrase without "(os error N)".
pub fn describe(err: &io::Error) -> String {
    let text = err.to_string();
    let text = text.split(" (os error").next().unwrap_or_default();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "unknown error".into(),
    }
}

#[cfg(test)]
// The helper process is reaped with waitpid by pid, which clippy's zombie
// lint does not know about.
#[allow(clippy::zombie_processes)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::os::unix::net::UnixListener as StdListener;

    fn mode_of(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.sock");
        // Bound and closed without unlinking: what a killed kelpie leaves.
        drop(StdListener::bind(&path).unwrap());
        assert_eq!(
            UnixStream::connect(&path).await.unwrap_err().raw_os_error(),
            Some(libc::ECONNREFUSED)
        );
        let socket = bind(&path, 0o600).unwrap();
        assert_eq!(socket.path(), path);
        // Served again: the stale one was replaced (the file system may
        // well reuse its inode number, so that proves nothing).
        UnixStream::connect(&path).await.unwrap();
    }

    #[tokio::test]
    async fn a_live_socket_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.sock");
        let first = bind(&path, 0o600).unwrap();
        let before = identity(&fs::symlink_metadata(&path).unwrap());
        let err = bind(&path, 0o600).unwrap_err();
        assert_eq!(
            err,
            format!(
                "another kelpie is already serving the control socket {}; stop it first or choose another control_socket",
                path.display()
            )
        );
        assert_eq!(identity(&fs::symlink_metadata(&path).unwrap()), before);
        // The first one still serves.
        UnixStream::connect(&path).await.unwrap();
        drop(first);
    }

    #[tokio::test]
    async fn a_live_socket_with_a_full_backlog_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.sock");
        // A listener that never accepts, its backlog filled up.
        let std = StdListener::bind(&path).unwrap();
        std.set_nonblocking(true).unwrap();
        let listener = UnixListener::from_std(std).unwrap();
        let mut queued = Vec::new();
        loop {
            let mut connect = pin!(UnixStream::connect(&path));
            match connect
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
            {
                Poll::Ready(Err(err)) if err.raw_os_error() == Some(libc::EAGAIN) => break,
                Poll::Ready(Err(err)) => panic!("unexpected connect error: {err}"),
                Poll::Ready(Ok(stream)) => queued.push(stream),
                Poll::Pending => {
                    // Connected; keep the stream alive by finishing it.
                    queued.push(connect.await.unwrap());
                }
            }
            assert!(queued.len() < 100_000, "the backlog never filled");
        }
        let err = bind(&path, 0o600).unwrap_err();
        assert!(
            err.starts_with("another kelpie is already serving"),
            "{err}"
        );
        drop(listener);
    }

    #[tokio::test]
    async fn a_symlink_is_refused_and_neither_it_nor_its_target_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious.txt");
        fs::write(&target, "keep me").unwrap();
        fs::set_permissions(&target, Permissions::from_mode(0o640)).unwrap();
        let path = dir.path().join("k.sock");
        symlink(&target, &path).unwrap();
        let err = bind(&path, 0o666).unwrap_err();
        assert_eq!(
            err,
            format!(
                "control socket {} is a symbolic link; refusing to follow it. Remove it or choose another control_socket",
                path.display()
            )
        );
        assert!(fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_link(&path).unwrap(), target);
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep me");
        assert_eq!(mode_of(&target), 0o640);

        // A dangling symlink is not followed either (bind would create the
        // socket at its target).
        let dangling = dir.path().join("dangling.sock");
        let nowhere = dir.path().join("nowhere");
        symlink(&nowhere, &dangling).unwrap();
        assert!(bind(&dangling, 0o600)
            .unwrap_err()
            .contains("symbolic link"));
        assert!(fs::symlink_metadata(&nowhere).is_err());

        // A symlink to a stale socket is not "cleaned up" through the link.
        let real = dir.path().join("real.sock");
        drop(StdListener::bind(&real).unwrap());
        let link = dir.path().join("link.sock");
        symlink(&real, &link).unwrap();
        assert!(bind(&link, 0o600).unwrap_err().contains("symbolic link"));
        assert!(fs::symlink_metadata(&real).unwrap().file_type().is_socket());
    }

    #[tokio::test]
    async fn other_files_are_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.sock");
        fs::write(&path, "data").unwrap();
        let err = bind(&path, 0o600).unwrap_err();
        assert_eq!(
            err,
            format!(
                "control socket {} already exists and is a regular file; refusing to replace it. Remove it or choose another control_socket",
                path.display()
            )
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "data");

        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        let err = bind(&sub, 0o600).unwrap_err();
        assert!(err.ends_with("is a directory; refusing to replace it. Remove it or choose another control_socket"), "{err}");
        assert!(sub.is_dir());
    }

    #[tokio::test]
    async fn the_socket_has_exactly_the_mode_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o660, 0o666, 0o700, 0o400] {
            let path = dir.path().join(format!("{mode:o}.sock"));
            let socket = bind(&path, mode).unwrap();
            assert_eq!(mode_of(&path), mode, "{mode:o}");
            drop(socket);
        }
        let err = bind(&dir.path().join("x.sock"), 0o4600).unwrap_err();
        assert!(err.ends_with("mode 4600 has bits outside 0777"), "{err}");
    }

    const UMASK_HELPER_ENV: &str = "KELPIE_CONTROL_TEST_UMASK_HELPER";

    /// Not a test of its own: run alone in a process of its own by
    /// `the_umask_is_restored`, because the umask is process-wide and
    /// other tests bind sockets concurrently.
    #[test]
    #[ignore = "helper run by the_umask_is_restored (alone in its process)"]
    fn umask_helper() {
        let Some(dir) = std::env::var_os(UMASK_HELPER_ENV) else {
            return;
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _ = umask(Mode::from_bits_truncate(0o022));
        let socket = runtime.block_on(async { bind(&Path::new(&dir).join("k.sock"), 0o660) });
        let after = umask(Mode::from_bits_truncate(0o022));
        let mode = mode_of(&Path::new(&dir).join("k.sock"));
        println!(
            "UMASK-RESULT ok={} umask={:o} mode={mode:o}",
            socket.is_ok(),
            after.bits()
        );
    }

    #[test]
    fn the_umask_is_restored() {
        use std::io::Read as _;
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "control::socket::tests::umask_helper",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(UMASK_HELPER_ENV, dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        // Reaped by pid: clippy.toml leaves every wait to the reaper.
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child.id() as i32), None);
        let result = out
            .lines()
            .find_map(|line| line.split_once("UMASK-RESULT "))
            .map(|(_, result)| result)
            .unwrap_or_else(|| panic!("the helper did not report:\n{out}"));
        assert_eq!(result, "ok=true umask=22 mode=660");
    }

    #[tokio::test]
    async fn drop_removes_our_socket_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.sock");
        drop(bind(&path, 0o600).unwrap());
        assert!(fs::symlink_metadata(&path).is_err(), "not removed");

        // Replaced by someone else (a new inode): left alone.
        let socket = bind(&path, 0o600).unwrap();
        fs::remove_file(&path).unwrap();
        let other = StdListener::bind(&path).unwrap();
        let theirs = identity(&fs::symlink_metadata(&path).unwrap());
        drop(socket);
        assert_eq!(identity(&fs::symlink_metadata(&path).unwrap()), theirs);
        drop(other);

        // Replaced by a regular file: left alone.
        fs::remove_file(&path).unwrap();
        let socket = bind(&path, 0o600).unwrap();
        fs::remove_file(&path).unwrap();
        fs::write(&path, "mine").unwrap();
        drop(socket);
        assert_eq!(fs::read_to_string(&path).unwrap(), "mine");
    }

    #[tokio::test]
    async fn path_problems_are_one_clear_line() {
        let dir = tempfile::tempdir().unwrap();
        let long = dir.path().join("x".repeat(120));
        let err = bind(&long, 0o600).unwrap_err();
        assert!(
            err.ends_with(&format!(
                "bytes long; Unix sockets allow at most {MAX_PATH_BYTES}. Choose a shorter control_socket"
            )),
            "{err}"
        );
        assert!(err.starts_with(&format!("control socket path {}", long.display())));

        // Exactly at the limit works.
        let base = dir.path().as_os_str().len() + 1;
        let fits = dir.path().join("y".repeat(MAX_PATH_BYTES - base));
        assert_eq!(fits.as_os_str().len(), MAX_PATH_BYTES);
        drop(bind(&fits, 0o600).unwrap());

        let missing = dir.path().join("no/such/dir/k.sock");
        let err = bind(&missing, 0o600).unwrap_err();
        assert_eq!(
            err,
            format!(
                "cannot create control socket {}: directory {} does not exist",
                missing.display(),
                dir.path().join("no/such/dir").display()
            )
        );
        assert!(!dir.path().join("no").exists(), "created a directory");

        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        let err = bind(&file.join("k.sock"), 0o600).unwrap_err();
        assert!(err.contains("is not a directory"), "{err}");
        assert!(!err.contains('\n'));
    }
}
