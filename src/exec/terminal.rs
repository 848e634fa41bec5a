//! The controlling terminal: kelpie's place on it, and the child's side of
//! the hand-over (plus the parent-death signal) between fork and exec.

use std::io::{self, IsTerminal};
use std::os::fd::BorrowedFd;

use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::unistd::{getpgrp, getsid, tcgetpgrp, Pid};

/// kelpie's place on its controlling terminal (stdin), when it has one.
/// Whether the child gets the terminal is decided at each start: only when
/// kelpie (or the child before it) is in the foreground.
pub(super) struct Terminal {
    pub(super) own_pgrp: Pid,
    /// A job-control shell above kelpie can resume it after a suspend.
    /// Not so when kelpie's group is the session leader's (kelpie as PID 1
    /// of `docker run -t`, or under a shell without job control).
    pub(super) job_control: bool,
}

pub(super) fn stdin_fd() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for kelpie's whole life (kelpie never closes
    // it), so borrowing it for 'static is sound.
    unsafe { BorrowedFd::borrow_raw(libc::STDIN_FILENO) }
}

impl Terminal {
    /// stdin is kelpie's controlling terminal (tcgetpgrp fails with ENOTTY
    /// for any other terminal).
    pub(super) fn detect() -> Option<Self> {
        if !io::stdin().is_terminal() {
            return None;
        }
        tcgetpgrp(stdin_fd()).ok()?;
        let own_pgrp = getpgrp();
        let session = getsid(None).ok()?;
        Some(Self {
            own_pgrp,
            job_control: session != own_pgrp,
        })
    }

    pub(super) fn foreground(&self) -> Option<Pid> {
        tcgetpgrp(stdin_fd()).ok()
    }
}

/// Runs in the child between fork and exec: async-signal-safe calls only.
pub(super) fn prepare_child(parent: libc::pid_t, foreground: bool) -> io::Result<()> {
    if foreground {
        // Done here rather than in kelpie so the program owns the terminal
        // before it runs (no window where it reads the terminal from the
        // background and is stopped). SIGTTOU is still ignored, inherited
        // from kelpie, so this works from a background group. Best effort:
        // without the terminal the program still runs.
        // SAFETY: tcsetpgrp and getpgrp are async-signal-safe system calls.
        unsafe {
            libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpgrp());
        }
    }
    #[cfg(target_os = "linux")]
    {
        // If kelpie is SIGKILLed, the child must not run on unsupervised.
        // The signal fires when the forking *thread* exits: kelpie spawns
        // from its main thread, which lives as long as kelpie.
        // SAFETY: prctl(PR_SET_PDEATHSIG) changes only this process's own
        // attribute; getppid cannot fail.
        unsafe {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            // kelpie died between fork and prctl: do not start at all.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = parent;
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    crate::process::reset_signal_dispositions();
    Ok(())
}
