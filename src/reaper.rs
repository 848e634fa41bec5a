//! The one owner of every exit status.
//!
//! Linux hands out each child's exit status once. If two parts of kelpie
//! waited (say tokio's `Child::wait` and a `waitpid(-1)` loop for orphans),
//! one would steal the other's statuses; and std's own `spawn` and glibc's
//! `posix_spawn` wait on a failed exec, which a concurrent `waitpid(-1)`
//! would race (std panics when it loses). So:
//!
//! - every spawn happens while holding a gate shared (spawns run in
//!   parallel) and registers the new pid before releasing it; a reap pass
//!   holds the gate exclusively, so it can never reap a pid it does not know
//!   yet, nor race std's or glibc's own wait for a failed exec;
//! - on SIGCHLD, one pass reaps with `waitpid(-1, WNOHANG)` under the same
//!   lock and routes each status to its owner by pid. Unknown pids are
//!   orphans (kelpie is PID 1 or a subreaper) and are simply reaped;
//! - signals go only to groups still in the table, so a recycled pid is
//!   never hit;
//! - when a leader exits while its group lives on, the group moves to the
//!   `draining` table in the same locked pass, so it stays signalable with no
//!   gap;
//! - a stop is complete when the *group* has no live member, which is
//!   re-checked after every reap pass: the last member of a group is almost
//!   always a child of kelpie (its leader, or an orphan reparented to the
//!   subreaper), so its exit raises SIGCHLD here. The exception (a member
//!   whose parent lives outside the group and never waits) is covered by
//!   `recheck`, which the owner calls a few times after a SIGKILL (the
//!   lifecycle's `Action::RecheckGroup`).

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::procfs::read_stat;
use crate::spawn::{Command, Spawned};
use crate::state::ExitStatus;

/// Called once with the leader's pid, its status and whether other members
/// of its process group are still alive.
pub type OnExit = Box<dyn FnOnce(i32, ExitStatus, bool) + Send>;
/// Called once when a watched process group has no members left.
pub type OnGroupGone = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Table {
    leaders: HashMap<i32, OnExit>,
    /// Groups whose leader is gone but whose members live on. The entry is
    /// created by the reap pass itself (callback `None`), so the group stays
    /// signalable without a gap until its owner registers a callback.
    draining: HashMap<i32, Option<OnGroupGone>>,
    orphans_reaped: u64,
}

impl Table {
    /// Fires and forgets every draining group that has become empty.
    fn settle_draining(&mut self) {
        if self.draining.is_empty() {
            return;
        }
        let gone: Vec<i32> = self
            .draining
            .keys()
            .copied()
            .filter(|&pgid| !group_alive(pgid))
            .collect();
        if !gone.is_empty() {
            group_ended();
        }
        for pgid in gone {
            if let Some(Some(on_gone)) = self.draining.remove(&pgid) {
                on_gone();
            }
        }
    }
}

#[derive(Clone, Default)]
pub struct Reaper {
    /// Spawns hold it shared (they may run in parallel), a reap pass holds
    /// it exclusively: no status can be collected for a pid whose spawn has
    /// not registered it yet.
    gate: Arc<RwLock<()>>,
    table: Arc<Mutex<Table>>,
    children: Arc<Mutex<Option<ChildrenRead>>>,
}

/// Counts the process groups found empty. When many instances stop at
/// once, each asks which daemons its run left among kelpie's children; the
/// list is O(children) to read (and the kernel's walk of it is itself
/// quadratic), so 10,000 stopping instances reading it each was O(n²).
/// One read serves every ask until the next group is found empty: a daemon
/// of a run is reparented to kelpie when its last ancestor in the run's
/// group dies, which is before that group is found empty, which is before
/// the run's owner asks. So a read begun after the last group ended holds
/// the daemons of every run that has ended.
static GROUPS_ENDED: AtomicU64 = AtomicU64::new(0);

/// kelpie's children that are not leaders as last read, and the
/// `GROUPS_ENDED` count when that read began.
type ChildrenRead = (u64, Arc<Vec<i32>>);

fn group_ended() {
    GROUPS_ENDED.fetch_add(1, Ordering::SeqCst);
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
    pub fn spawn(&self, command: &mut Command, on_exit: OnExit) -> io::Result<Spawned> {
        let _spawning = self.gate.read().unwrap_or_else(|p| p.into_inner());
        let child = command.spawn()?;
        self.lock().leaders.insert(child.pid, on_exit);
        Ok(child)
    }

    /// Reaps every exited child and delivers the statuses. Call on every
    /// SIGCHLD (signals coalesce, so one pass drains all that are ready).
    pub fn reap(&self) {
        let _exclusive = self.gate.write().unwrap_or_else(|p| p.into_inner());
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
            let pid = pid.as_raw();
            match table.leaders.remove(&pid) {
                Some(on_exit) => {
                    let alive = group_alive(pid);
                    if alive {
                        table.draining.insert(pid, None);
                    } else {
                        group_ended();
                    }
                    on_exit(pid, status, alive);
                }
                None => table.orphans_reaped += 1,
            }
        }
        if any {
            table.settle_draining();
        }
    }

    /// Calls `on_gone` once the group `pgid` is empty (immediately if it
    /// already is).
    pub fn watch_group(&self, pgid: i32, on_gone: OnGroupGone) {
        let mut table = self.lock();
        if group_alive(pgid) {
            table.draining.insert(pgid, Some(on_gone));
        } else {
            table.draining.remove(&pgid);
            drop(table);
            group_ended();
            on_gone();
        }
    }

    /// Re-checks draining groups outside a reap pass. Needed after SIGKILL:
    /// a member whose parent is not kelpie dies without a SIGCHLD here.
    pub fn recheck(&self) {
        self.lock().settle_draining();
    }

    /// Signals a process group kelpie owns. Returns false when the group is
    /// unknown or already empty.
    pub fn signal_group(&self, pgid: i32, signal: Signal) -> bool {
        let table = self.lock();
        if !table.leaders.contains_key(&pgid) && !table.draining.contains_key(&pgid) {
            return false;
        }
        killpg(Pid::from_raw(pgid), signal).is_ok()
    }

    pub fn orphans_reaped(&self) -> u64 {
        self.lock().orphans_reaped
    }

    /// Live children of kelpie that it did not spawn as program leaders:
    /// descendants that left their program's process group (a double fork,
    /// `setsid`) and were reparented to kelpie as subreaper. Read afresh.
    pub fn escaped_children(&self) -> Vec<i32> {
        live_children_among(&self.unknown_children(false))
    }

    /// kelpie's children that are not program leaders (nor the guardian),
    /// read afresh, or with `shared` from a read begun after the last
    /// process group ended (see `GROUPS_ENDED`).
    fn unknown_children(&self, shared: bool) -> Arc<Vec<i32>> {
        let mut memo = self
            .children
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let ended = GROUPS_ENDED.load(Ordering::SeqCst);
        if let (true, Some((read_at, unknown))) = (shared, memo.as_ref()) {
            if *read_at == ended {
                return unknown.clone();
            }
        }
        // Kelpie's own children list is O(its children) to read; the
        // fallback, every process's stat, cost a shutdown of 100 programs
        // 100 scans of the whole /proc (~1 ms each on a busy host).
        let candidates = own_children().unwrap_or_else(all_pids);
        let unknown: Arc<Vec<i32>> = {
            let table = self.lock();
            Arc::new(
                candidates
                    .into_iter()
                    .filter(|pid| !table.leaders.contains_key(pid))
                    .filter(|pid| Some(*pid) != crate::guardian::pid())
                    .collect(),
            )
        };
        *memo = Some((ended, unknown.clone()));
        unknown
    }
}

/// Those of `candidates` that are still live children of kelpie: a child
/// may have exited since, and its pid been reused.
fn live_children_among(candidates: &[i32]) -> Vec<i32> {
    let me = std::process::id() as i32;
    candidates
        .iter()
        .copied()
        .filter(|&pid| read_stat(pid).is_some_and(|s| s.ppid == me && s.state != 'Z'))
        .collect()
}

/// kelpie's children, from `/proc/self/task/*/children` (an orphan
/// reparented to a subreaper becomes the child of one of its threads).
/// `None` where the kernel lacks that file (CONFIG_PROC_CHILDREN).
fn own_children() -> Option<Vec<i32>> {
    let mut children = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        match std::fs::read_to_string(task.path().join("children")) {
            Ok(list) => children.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            ),
            // A thread that exited meanwhile.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && task.path().exists() => {
                return None
            }
            Err(_) => {}
        }
    }
    children.sort_unstable();
    children.dedup();
    Some(children)
}

fn all_pids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .collect()
}

impl Reaper {
    /// Escaped children (see `escaped_children`) whose environment holds
    /// `variable` exactly (`NAME=value`): the daemons one instance left.
    /// One instance's ask, after its run ended: it may share a children
    /// list read since the last group ended (see `GROUPS_ENDED`).
    pub fn escaped_with(&self, variable: &str) -> Vec<i32> {
        live_children_among(&self.unknown_children(true))
            .into_iter()
            .filter(|&pid| environ_has(pid, variable))
            .collect()
    }
}

/// Whether `/proc/PID/environ` holds `variable` (`NAME=value`) exactly.
pub fn environ_has(pid: i32, variable: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|b| *b == 0).any(|v| v == variable.as_bytes()))
        .unwrap_or(false)
}

/// Does any live (non-zombie) process remain in the group? A zombie whose
/// parent never waits (a parent outside kelpie's reach) must not keep a
/// stop pending forever, so when `kill(-pgid, 0)` says "members exist",
/// /proc decides whether any of them is more than a zombie.
fn group_alive(pgid: i32) -> bool {
    match killpg(Pid::from_raw(pgid), None) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(_) => return false,
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if read_stat(pid).is_some_and(|s| s.pgrp == pgid && s.state != 'Z') {
            return true;
        }
    }
    false
}

/// Signals a process that left its program's process group, and its own
/// group when it leads one (a daemon that called `setsid`). Only for pids
/// just read as kelpie's children: a child cannot be recycled before
/// kelpie reaps it.
pub fn kill_with_group(pid: i32, signal: Signal) {
    let target = Pid::from_raw(pid);
    if nix::unistd::getpgid(Some(target)).ok() == Some(target) {
        let _ = killpg(target, signal);
    }
    let _ = nix::sys::signal::kill(target, signal);
}

#[cfg(test)]
// The reaper under test does the waiting, which clippy cannot see.
#[allow(clippy::zombie_processes)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;
    use std::sync::mpsc;
    use std::time::Duration;

    const ALONE_ENV: &str = "KELPIE_REAPER_TEST_ALONE";

    /// `Reaper::reap` waits for any child of the process, so beside other
    /// tests it would take their children's statuses (and another reaper
    /// test would take its own). Each reaper test therefore runs its body
    /// in a fresh copy of the test binary in which it is the only test.
    #[allow(clippy::disallowed_methods)]
    fn alone(test: &str, body: impl FnOnce()) {
        if std::env::var_os(ALONE_ENV).is_some() {
            body();
            return;
        }
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(ALONE_ENV, "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{test} failed in its own process:\n{out}");
        assert!(out.contains("1 passed"), "{test} did not run:\n{out}");
    }

    /// Reaps until `rx` yields, like SIGCHLD-driven passes would, plus the
    /// re-checks a Program schedules after a SIGKILL: a killed member
    /// whose zombie belongs to init (it was orphaned) sends kelpie no
    /// SIGCHLD, and init may be slow to reap it.
    fn reap_until<T>(reaper: &Reaper, rx: &mpsc::Receiver<T>, what: &str) -> T {
        for _ in 0..1000 {
            reaper.reap();
            reaper.recheck();
            if let Ok(value) = rx.recv_timeout(Duration::from_millis(10)) {
                return value;
            }
        }
        panic!("timed out waiting for {what}");
    }

    /// The leader exits while a member (ignoring TERM) lives on. Between the
    /// reap and the owner's watch registration the group must stay
    /// signalable, or a SIGKILL sent in that window is lost.
    #[test]
    fn group_stays_signalable_between_leader_exit_and_watch() {
        alone(
            "reaper::tests::group_stays_signalable_between_leader_exit_and_watch",
            group_stays_signalable,
        );
    }

    fn group_stays_signalable() {
        let reaper = Reaper::new();
        let (exited_tx, exited_rx) = mpsc::channel();
        let mut command = Command::new("sh");
        command
            .args(["-c", "trap '' TERM; sleep 1000 & exit 3"])
            .process_group(0);
        let child = reaper
            .spawn(
                &mut command.into(),
                Box::new(move |pid, status, alive| {
                    let _ = exited_tx.send((pid, status, alive));
                }),
            )
            .unwrap();
        let pgid = child.pid;
        let (pid, status, alive) = reap_until(&reaper, &exited_rx, "the leader's exit");
        assert_eq!((pid, status, alive), (pgid, ExitStatus::Code(3), true));
        assert!(
            reaper.signal_group(pgid, Signal::SIGKILL),
            "the SIGKILL was dropped"
        );
        let (gone_tx, gone_rx) = mpsc::channel();
        reaper.watch_group(
            pgid,
            Box::new(move || {
                let _ = gone_tx.send(());
            }),
        );
        reap_until(&reaper, &gone_rx, "the group to empty");
        assert!(
            !reaper.signal_group(pgid, Signal::SIGTERM),
            "an empty group is forgotten"
        );
    }

    #[test]
    fn statuses_are_routed_by_pid_and_orphans_counted() {
        alone(
            "reaper::tests::statuses_are_routed_by_pid_and_orphans_counted",
            statuses_are_routed,
        );
    }

    fn statuses_are_routed() {
        let reaper = Reaper::new();
        let (tx, rx) = mpsc::channel();
        let mut pids = Vec::new();
        for code in [0, 1, 7] {
            let tx = tx.clone();
            let mut command = Command::new("sh");
            command
                .args(["-c", &format!("exit {code}")])
                .process_group(0);
            let child = reaper
                .spawn(
                    &mut command.into(),
                    Box::new(move |pid, status, _| {
                        let _ = tx.send((pid, status));
                    }),
                )
                .unwrap();
            pids.push((child.pid, code));
        }
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(reap_until(&reaper, &rx, "an exit"));
        }
        seen.sort_by_key(|(pid, _)| *pid);
        pids.sort();
        let expected: Vec<(i32, ExitStatus)> = pids
            .into_iter()
            .map(|(pid, code)| (pid, ExitStatus::Code(code)))
            .collect();
        assert_eq!(seen, expected);
    }
}
