//! No survivors even when kelpie is SIGKILLed.
//!
//! `PR_SET_PDEATHSIG` does not do it: it reaches only direct children, it
//! fires when the *thread* that forked exits (not the process), and the
//! posix_spawn fast path cannot set it. Instead `kelpie run` forks a
//! guardian at startup, while it is still one thread: a copy of kelpie that
//! holds one end of a socket pair while kelpie holds the other. When kelpie
//! dies, however it dies, the kernel closes kelpie's end, the guardian's
//! read returns EOF, and it kills every process whose environment carries
//! kelpie's `KELPIE_RUN_ID=<kelpie pid>.` prefix — every program, probe and
//! daemon kelpie started, in or out of their process groups — then exits.
//!
//! A fork rather than a fresh exec of the binary: no second exec and
//! dynamic link at startup, and the guardian maps only the pages it
//! touches, nearly all shared with kelpie (about 1.9 MiB of RSS against
//! 2.6 MiB for a fresh `kelpie` process; docs/benchmarks.md). It is forked
//! before the config is parsed, so it holds no copy of a large config.
//!
//! On a clean exit kelpie closes its end itself and waits (bounded) until
//! the guardian has made its sweep and gone, so when `kelpie run` returns
//! no process of its own is left, not even the guardian.
//!
//! The guardian runs in a session of its own and ignores the signals a
//! terminal or a container runtime sends to a group, so it outlives kelpie
//! long enough to do its job.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use nix::sys::signal::{self, SigHandler, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid};

use crate::process::RUN_ID_VARIABLE;

/// The guardian's process name (`comm`, at most 15 bytes), so `ps` tells
/// it from kelpie itself.
pub const PROCESS_NAME: &str = "kelpie-guardian";

/// How long a clean exit waits for the guardian's final sweep.
const FINAL_SWEEP_TIMEOUT: Duration = Duration::from_secs(2);

static GUARDIAN_PID: AtomicI32 = AtomicI32::new(0);

/// The guardian's pid, so the reaper does not take it for an escaped
/// daemon.
pub fn pid() -> Option<i32> {
    match GUARDIAN_PID.load(Ordering::Relaxed) {
        0 => None,
        pid => Some(pid),
    }
}

/// kelpie's end of the link. Dropping it ends the guardian's watch and
/// waits until the guardian has swept and exited.
pub struct Guardian {
    link: UnixStream,
    pid: Pid,
}

impl Drop for Guardian {
    fn drop(&mut self) {
        let _ = self.link.shutdown(std::net::Shutdown::Write);
        // EOF here means the guardian's end was closed by its exit. A
        // timeout (a stopped guardian, say) leaves it to finish on its own;
        // SIGCHLDs from orphans reaped meanwhile interrupt the read.
        let deadline = tokio::time::Instant::now() + FINAL_SWEEP_TIMEOUT;
        let mut byte = [0u8; 1];
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || self.link.set_read_timeout(Some(left)).is_err() {
                return;
            }
            match self.link.read(&mut byte) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
        // Reaps it, unless the reaper already did (ECHILD).
        let _ = waitpid(self.pid, None);
    }
}

/// Forks the guardian. Must be called while kelpie is single-threaded.
pub fn start() -> Result<Guardian, String> {
    let threads = thread_count();
    if threads != Some(1) {
        return Err(format!(
            "cannot start the guardian: kelpie must be single-threaded to fork it (threads: {})",
            threads.map_or_else(|| "unknown".to_string(), |n| n.to_string())
        ));
    }
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| format!("cannot create the guardian's socket pair: {e}"))?;
    let kelpie_pid = std::process::id();
    // SAFETY: kelpie has exactly one thread here (checked above), so no
    // other thread can hold a lock (allocator, stdio) that the child would
    // inherit locked; the child ends with `_exit` and never returns into
    // the caller.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            drop(ours);
            let code = watch(theirs, kelpie_pid);
            // SAFETY: `_exit` skips atexit handlers and the flush of stdio
            // buffers, which belong to kelpie and would otherwise run twice.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => {
            GUARDIAN_PID.store(child.as_raw(), Ordering::Relaxed);
            Ok(Guardian {
                link: ours,
                pid: child,
            })
        }
        Err(e) => Err(format!("cannot start the guardian: fork failed: {e}")),
    }
}

fn thread_count() -> Option<usize> {
    std::fs::read_dir("/proc/self/task")
        .ok()
        .map(|tasks| tasks.count())
}

/// The guardian's body: wait for kelpie to go, then kill what it left.
fn watch(mut link: UnixStream, kelpie_pid: u32) -> i32 {
    let _ = nix::unistd::setsid();
    if let Ok(name) = std::ffi::CString::new(PROCESS_NAME) {
        let _ = nix::sys::prctl::set_name(&name);
    }
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGTSTP,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGPIPE,
    ] {
        // SAFETY: SIG_IGN installs no handler code; the guardian is a
        // single-threaded process.
        unsafe {
            let _ = signal::signal(sig, SigHandler::SigIgn);
        }
    }
    release_inherited_descriptors(link.as_raw_fd());
    let mut buf = [0u8; 64];
    loop {
        match link.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let prefix = format!("{RUN_ID_VARIABLE}={kelpie_pid}.");
    // Killing may race with forks of the dying processes: repeat until a
    // scan finds nobody (bounded, so a process we cannot kill does not
    // keep the guardian around forever).
    for _ in 0..50 {
        let found = survivors(&prefix);
        if found.is_empty() {
            break;
        }
        for pid in found {
            let target = Pid::from_raw(pid);
            if nix::unistd::getpgid(Some(target)).ok() == Some(target) {
                let _ = signal::killpg(target, Signal::SIGKILL);
            }
            let _ = signal::kill(target, Signal::SIGKILL);
        }
    }
    0
}

/// The fork copied kelpie's descriptors. Holding them would keep kelpie's
/// stdin, its stdout and stderr (pipes someone reads to EOF: `kelpie run |
/// tee`, a container runtime) and anything kelpie inherited open after
/// kelpie is gone. The guardian has nothing to say.
fn release_inherited_descriptors(keep: i32) {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    // Collected first: the directory listing holds a descriptor of its own.
    let open: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .collect();
    for fd in open {
        if fd > 2 && fd != keep {
            let _ = nix::unistd::close(fd);
        }
    }
}

/// Live processes whose environment carries `prefix` (zombies are dead
/// already and only wait for their parent).
fn survivors(prefix: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            // Unreadable counts as dead: gone since the listing, most likely.
            let zombie = crate::procfs::read_stat(pid).is_none_or(|s| s.state == 'Z');
            !zombie
                && std::fs::read(format!("/proc/{pid}/environ"))
                    .map(|env| {
                        env.split(|b| *b == 0)
                            .any(|v| v.starts_with(prefix.as_bytes()))
                    })
                    .unwrap_or(false)
        })
        .collect()
}
