//! The Program actor's seam to the OS: starting a run's process,
//! everything the actor does to process groups, cgroups and escaped
//! daemons, and asking the kernel whether its OOM killer ended a process.
//! The real `ReaperLauncher` is a thin wrapper around `process::command`,
//! the `Reaper` and (when kelpie manages one) the cgroup tree; tests put a
//! fake in its place to drive an actor on a paused clock without processes.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::cgroup::{CgroupTree, RunCgroup};
use crate::config::ProgramConfig;
use crate::exit_history::oom::{self, OnOom};
use crate::exit_history::{Oom, OomSource};
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

/// The cgroup of each run whose processes may live on, by the run's
/// process group id (its leader's pid).
type Runs = Arc<Mutex<HashMap<i32, Arc<RunCgroup>>>>;

/// Launches through `process::command` and the reaper. With a cgroup tree
/// every run gets its own cgroup, and the run's "group" is the process
/// group and the cgroup together: alive while either has a process,
/// signalled as one, SIGKILLed with `cgroup.kill` as well.
pub struct ReaperLauncher {
    reaper: Reaper,
    cgroups: Option<Arc<CgroupTree>>,
    runs: Runs,
    /// The cgroup of each exited run whose cgroup counted OOM kills, by
    /// pid, until `check_oom` asks.
    oom_killed: Arc<Mutex<HashMap<i32, PathBuf>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// An instance run's cgroup: `NAME.SLOT` (a slot is never shared by two
/// live instances of a program, see `process::Launch`).
pub fn cgroup_name(program: &str, slot: u32) -> String {
    format!("{program}.{slot}")
}

impl ReaperLauncher {
    pub fn new(reaper: Reaper, cgroups: Option<Arc<CgroupTree>>) -> Self {
        Self {
            reaper,
            cgroups,
            runs: Arc::default(),
            oom_killed: Arc::default(),
        }
    }

    fn run(&self, pgid: i32) -> Option<Arc<RunCgroup>> {
        lock(&self.runs).get(&pgid).cloned()
    }

    /// Wraps `on_exit` so that "group alive" includes the cgroup, and an
    /// empty cgroup is removed at once.
    fn contained_exit(&self, cgroup: Arc<RunCgroup>, on_exit: OnExit) -> OnExit {
        let runs = self.runs.clone();
        let oom_killed = self.oom_killed.clone();
        Box::new(move |pid, status, group_alive| {
            // Read before the cgroup can go: the answer to check_oom.
            if cgroup.oom_kills().is_some_and(|kills| kills > 0) {
                let mut killed = lock(&oom_killed);
                // Bounded: an exit kelpie caused itself is never asked about.
                if killed.len() >= 16 {
                    killed.clear();
                }
                killed.insert(pid, cgroup.dir().to_path_buf());
            }
            let contained = cgroup.populated();
            if !group_alive && !contained {
                // Under the lock `launch` registers the run with, so a run
                // that ends before it is registered is never registered.
                let mut runs = lock(&runs);
                runs.remove(&pid);
                cgroup.finish();
                drop(runs);
                cgroup.remove();
            }
            on_exit(pid, status, group_alive || contained);
        })
    }
}

impl Launcher for ReaperLauncher {
    fn launch(&self, spec: LaunchSpec<'_>, on_exit: OnExit) -> Result<Spawned, String> {
        let config = spec.program;
        let cgroup = match &self.cgroups {
            Some(tree) => Some(Arc::new(
                tree.create(&cgroup_name(&config.name, spec.slot), &config.limits.cgroup)?,
            )),
            None => None,
        };
        // Open only while spawning (see `RunCgroup::entry`).
        let entry = match &cgroup {
            Some(cgroup) => match cgroup.entry() {
                Ok(entry) => Some(entry),
                Err(why) => {
                    cgroup.remove();
                    return Err(why);
                }
            },
            None => None,
        };
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
            cgroup_procs: entry.as_ref().map(|e| e.as_raw_fd()),
        });
        let on_exit = match &cgroup {
            Some(cgroup) => self.contained_exit(cgroup.clone(), on_exit),
            None => on_exit,
        };
        let spawned = self.reaper.spawn(&mut command, on_exit);
        drop(entry);
        match (spawned, cgroup) {
            (Ok(spawned), Some(cgroup)) => {
                let mut runs = lock(&self.runs);
                if !cgroup.finished() {
                    runs.insert(spawned.pid, cgroup);
                }
                Ok(spawned)
            }
            (Ok(spawned), None) => Ok(spawned),
            (Err(err), cgroup) => {
                if let Some(cgroup) = cgroup {
                    cgroup.remove();
                }
                Err(process::spawn_error(
                    &config.command[0],
                    &err,
                    config.directory.as_deref(),
                ))
            }
        }
    }

    fn signal_group(&self, pgid: i32, signal: Signal) -> bool {
        let signalled = self.reaper.signal_group(pgid, signal);
        let Some(cgroup) = self.run(pgid) else {
            return signalled;
        };
        if signal == Signal::SIGKILL {
            cgroup.kill();
        } else {
            // Members that left the process group (setsid, a double fork)
            // get the signal too, once: the group's own members got it
            // from killpg, and a second SIGINT means "force" to some
            // programs. A member may exit and its pid be reused between
            // the read and the kill; the window is the same as systemd's.
            let group = Pid::from_raw(pgid);
            for pid in cgroup.members() {
                let pid = Pid::from_raw(pid);
                if nix::unistd::getpgid(Some(pid)).is_ok_and(|g| g != group) {
                    let _ = nix::sys::signal::kill(pid, signal);
                }
            }
        }
        signalled || cgroup.populated()
    }

    fn watch_group(&self, pgid: i32, on_gone: OnGroupGone) {
        let (Some(tree), Some(cgroup)) = (self.cgroups.clone(), self.run(pgid)) else {
            self.reaper.watch_group(pgid, on_gone);
            return;
        };
        let runs = self.runs.clone();
        // The process group first (the reaper's answer), then the cgroup,
        // which holds whatever left the group.
        self.reaper.watch_group(
            pgid,
            Box::new(move || {
                let emptied = cgroup.clone();
                tree.when_empty(
                    &cgroup,
                    Box::new(move || {
                        lock(&runs).remove(&pgid);
                        emptied.finish();
                        emptied.remove();
                        on_gone();
                    }),
                );
            }),
        );
    }

    fn recheck(&self) {
        self.reaper.recheck();
    }

    fn escaped_with(&self, variable: &str) -> Vec<i32> {
        self.reaper.escaped_with(variable)
    }

    fn signal_escaped(&self, pid: i32, signal: Signal) {
        kill_with_group(pid, signal);
    }

    fn check_oom(&self, pid: i32, ran: Duration, answer: OnOom) {
        if let Some(cgroup) = lock(&self.oom_killed).remove(&pid) {
            answer(Some(Oom {
                source: OomSource::InstanceCgroup,
                memcg: Some(cgroup.display().to_string()),
            }));
            return;
        }
        oom::check(pid, ran, answer);
    }
}
