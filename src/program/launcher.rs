//! The Program actor's seam to the OS: starting a run's process,
//! everything the actor does to process groups and escaped daemons, and
//! asking the kernel whether its OOM killer ended a process. The
//! real `ReaperLauncher` is a thin wrapper around `process::command` and
//! the `Reaper`; tests put a fake in its place to drive an actor on a
//! paused clock without processes.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::config::ProgramConfig;
use crate::exit_history::oom::{self, OnOom};
use crate::process::{self, Identity, Launch};
use crate::reaper::{kill_with_group, OnExit, OnGroupGone, Reaper};
use crate::spawn::{Spawned, Stdio};

/// What the actor knows about one run's process when it is launched.
pub struct LaunchSpec<'a> {
    pub program: &'a ProgramConfig,
    pub index: u32,
    /// `KELPIE_SLOT` (see `process::Launch`).
    pub slot: u32,
    /// `$NOTIFY_SOCKET` for programs using the notify readiness probe.
    pub notify_socket: Option<&'a Path>,
    pub identity: Option<&'a Identity>,
    /// `KELPIE_RUN_ID` (see `process::run_id`).
    pub run_id: &'a str,
    /// Pipe stdout and stderr to kelpie (else /dev/null).
    pub piped: bool,
}

pub trait Launcher: Send + Sync {
    /// Starts the program; `on_exit` runs once when its leader exits. The
    /// error is the message to show the user.
    fn launch(&self, spec: LaunchSpec<'_>, on_exit: OnExit) -> Result<Spawned, String>;
    /// Signals a group this launcher started; false when it is unknown or
    /// already empty.
    fn signal_group(&self, pgid: i32, signal: Signal) -> bool;
    /// Calls `on_gone` once the group `pgid` is empty.
    fn watch_group(&self, pgid: i32, on_gone: OnGroupGone);
    /// Looks again whether watched groups are empty.
    fn recheck(&self);
    /// Escaped daemons (kelpie's children outside their program's group)
    /// whose environment holds `variable` (`NAME=value`).
    fn escaped_with(&self, variable: &str) -> Vec<i32>;
    /// Signals one escaped daemon, and its own group when it leads one.
    fn signal_escaped(&self, pid: i32, signal: Signal);
    /// Asks whether the kernel's OOM killer ended `pid` (which ran for
    /// `ran` and died of a SIGKILL kelpie did not send); `answer` is called
    /// when that is known, possibly on another thread.
    fn check_oom(&self, pid: i32, ran: Duration, answer: OnOom);
}

/// Launches through `process::command` and the reaper.
pub struct ReaperLauncher(pub Reaper);

impl Launcher for ReaperLauncher {
    fn launch(&self, spec: LaunchSpec<'_>, on_exit: OnExit) -> Result<Spawned, String> {
        let config = spec.program;
        let stdio = || {
            if spec.piped {
                Stdio::piped()
            } else {
                Stdio::null()
            }
        };
        let mut command = process::command(Launch {
            program: config,
            argv: &config.command,
            index: spec.index,
            slot: spec.slot,
            notify_socket: spec.notify_socket,
            identity: spec.identity,
            run_id: spec.run_id,
            stdout: stdio(),
            stderr: stdio(),
        });
        self.0.spawn(&mut command, on_exit).map_err(|err| {
            process::spawn_error(&config.command[0], &err, config.directory.as_deref())
        })
    }

    fn signal_group(&self, pgid: i32, signal: Signal) -> bool {
        self.0.signal_group(pgid, signal)
    }

    fn watch_group(&self, pgid: i32, on_gone: OnGroupGone) {
        self.0.watch_group(pgid, on_gone);
    }

    fn recheck(&self) {
        self.0.recheck();
    }

    fn escaped_with(&self, variable: &str) -> Vec<i32> {
        self.0.escaped_with(variable)
    }

    fn signal_escaped(&self, pid: i32, signal: Signal) {
        kill_with_group(pid, signal);
    }

    fn check_oom(&self, pid: i32, ran: Duration, answer: OnOom) {
        oom::check(pid, ran, answer);
    }
}
