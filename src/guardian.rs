//! No survivors even when kelpie is SIGKILLed.
//!
//! `PR_SET_PDEATHSIG` does not do it: it reaches only direct children, it
//! fires when the *thread* that forked exits (not the process), and the
//! posix_spawn fast path cannot set it. Instead `kelpie run` starts a
//! guardian at startup: a second, tiny `kelpie` process (a fresh exec of
//! the same binary, with an empty environment) whose stdin is the read end
//! of a pipe only kelpie holds the write end of. When kelpie dies, however
//! it dies, the kernel closes that end, the guardian's read returns EOF,
//! and it kills every process whose environment carries kelpie's
//! `KELPIE_RUN_ID=<kelpie pid>.` prefix — every program, probe and daemon
//! kelpie started, in or out of their process groups — then exits. After a
//! clean shutdown it finds nothing and exits at once.
//!
//! The guardian runs in a session of its own and ignores the signals a
//! terminal or a container runtime sends to a group, so it outlives kelpie
//! long enough to do its job.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{self, SigHandler, Signal};
use nix::unistd::Pid;

use crate::process::RUN_ID_VARIABLE;

/// The hidden subcommand the guardian runs as.
pub const SUBCOMMAND: &str = "__guardian";

static GUARDIAN_PID: AtomicI32 = AtomicI32::new(0);

/// The guardian's pid, so the reaper does not take it for an escaped
/// daemon.
pub fn pid() -> Option<i32> {
    match GUARDIAN_PID.load(Ordering::Relaxed) {
        0 => None,
        pid => Some(pid),
    }
}

/// Starts the guardian. The returned write end must live as long as
/// kelpie (it is close-on-exec, so no program inherits it).
pub fn start() -> Result<OwnedFd, String> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| format!("cannot create the guardian's pipe: {e}"))?;
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find kelpie's own executable: {e}"))?;
    // Spawned without a wait: the reaper reaps it like any child once it
    // exits (after kelpie's own exit, normally).
    #[allow(clippy::zombie_processes)]
    let child = Command::new(exe)
        .arg(SUBCOMMAND)
        .arg(std::process::id().to_string())
        .env_clear()
        .stdin(Stdio::from(read))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the guardian: {e}"))?;
    GUARDIAN_PID.store(child.id() as i32, Ordering::Relaxed);
    Ok(write)
}

/// The guardian's body: wait for kelpie to go, then kill what it left.
pub fn watch(kelpie: &str) -> i32 {
    let Ok(kelpie_pid) = kelpie.parse::<u32>() else {
        eprintln!("kelpie: {SUBCOMMAND} is internal to kelpie run");
        return 2;
    };
    let _ = nix::unistd::setsid();
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
        // SAFETY: SIG_IGN installs no handler code; this runs at the start
        // of a single-threaded process.
        unsafe {
            let _ = signal::signal(sig, SigHandler::SigIgn);
        }
    }
    let mut stdin = std::io::stdin();
    let mut buf = [0u8; 64];
    loop {
        match stdin.read(&mut buf) {
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
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, rest)| rest.trim_start().starts_with('Z'))
                })
                .unwrap_or(true);
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
