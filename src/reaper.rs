//! The one owner of every exit status.
//!
//! Linux hands out each child's exit status once. If two parts of kelpie
//! waited (say tokio's `Child::wait` and a `waitpid(-1)` loop for orphans),
//! one would steal the other's statuses; and std's own `spawn` waits on a
//! failed exec, which a concurrent `waitpid(-1)` can make panic. So:
//!
//! - every spawn happens *while holding the table lock* and registers the
//!   new pid before the lock is released, so a SIGCHLD pass can never reap a
//!   pid it does not know yet;
//! - on SIGCHLD, one pass reaps with `waitpid(-1, WNOHANG)` under the same
//!   lock and routes each status to its owner by pid. Unknown pids are
//!   orphans (kelpie is PID 1 or a subreaper) and are simply reaped;
//! - signals go only to groups still in the table, so a recycled pid is
//!   never hit;
//! - a stop is complete when the *group* is empty, which is re-checked after
//!   every reap pass: the last member of a group is always a child of kelpie
//!   (its leader, or an orphan reparented to the subreaper), so its exit
//!   raises SIGCHLD here. No polling.

use std::collections::HashMap;
use std::io;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::state::ExitStatus;

/// Called once with the leader's pid, its status and whether other members
/// of its process group are still alive.
pub type OnExit = Box<dyn FnOnce(i32, ExitStatus, bool) + Send>;
/// Called once when a watched process group has no members left.
pub type OnGroupGone = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Table {
    leaders: HashMap<i32, OnExit>,
    watched: HashMap<i32, OnGroupGone>,
    orphans_reaped: u64,
}

#[derive(Clone, Default)]
pub struct Reaper {
    table: Arc<Mutex<Table>>,
}

impl Reaper {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding this lock is a kelpie bug; the table itself
        // stays consistent (every mutation is a single insert or remove), so
        // keep going rather than lose track of every child.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Spawns `command` (which must put the child in its own process group)
    /// and registers `on_exit` for its pid, atomically with respect to
    /// `reap`.
    pub fn spawn(&self, command: &mut Command, on_exit: OnExit) -> io::Result<Child> {
        let mut table = self.lock();
        let child = command.spawn()?;
        table.leaders.insert(child.id() as i32, on_exit);
        Ok(child)
    }

    /// Reaps every exited child and delivers the statuses. Call on every
    /// SIGCHLD (signals coalesce, so one pass drains all that are ready).
    pub fn reap(&self) {
        let mut table = self.lock();
        let mut any = false;
        loop {
            let (pid, status) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, ExitStatus::Code(code)),
                Ok(WaitStatus::Signaled(pid, signal, _core)) => {
                    (pid, ExitStatus::Signal(signal as i32))
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(err) => {
                    tracing::error!(event = "reap_failed", error = %err, "waitpid failed");
                    break;
                }
            };
            any = true;
            match table.leaders.remove(&pid.as_raw()) {
                Some(on_exit) => on_exit(pid.as_raw(), status, group_alive(pid.as_raw())),
                None => table.orphans_reaped += 1,
            }
        }
        if any && !table.watched.is_empty() {
            let gone: Vec<i32> = table
                .watched
                .keys()
                .copied()
                .filter(|&pgid| !group_alive(pgid))
                .collect();
            for pgid in gone {
                if let Some(on_gone) = table.watched.remove(&pgid) {
                    on_gone();
                }
            }
        }
    }

    /// Calls `on_gone` once the group `pgid` is empty (immediately if it
    /// already is).
    pub fn watch_group(&self, pgid: i32, on_gone: OnGroupGone) {
        let mut table = self.lock();
        if group_alive(pgid) {
            table.watched.insert(pgid, on_gone);
        } else {
            drop(table);
            on_gone();
        }
    }

    /// Signals a process group kelpie owns. Returns false when the group is
    /// unknown or already empty.
    pub fn signal_group(&self, pgid: i32, signal: Signal) -> bool {
        let table = self.lock();
        if !table.leaders.contains_key(&pgid) && !table.watched.contains_key(&pgid) {
            return false;
        }
        killpg(Pid::from_raw(pgid), signal).is_ok()
    }

    pub fn orphans_reaped(&self) -> u64 {
        self.lock().orphans_reaped
    }

    /// Groups kelpie still owns (leaders not yet reaped, or draining).
    pub fn live_groups(&self) -> usize {
        let table = self.lock();
        table.leaders.len() + table.watched.len()
    }
}

/// Does any process (zombies included) remain in the group?
fn group_alive(pgid: i32) -> bool {
    match killpg(Pid::from_raw(pgid), None) {
        Ok(()) => true,
        // EPERM: members exist but changed credentials; still alive.
        Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}
