//! `memory_restart`: an instance whose memory stays above the threshold for
//! `memory_restart_after` is restarted gracefully.
//!
//! Three parts, two of them pure:
//! - `MemoryWatch::observe` decides: it takes one sampling tick's memory
//!   per instance and the time, remembers since when each instance (by its
//!   pid) has been above its threshold, and returns the instances that
//!   have been above for `after` (table-tested in `memory_watch/tests.rs`).
//! - The fleet core carries a decision out (`Fleet::on_memory_restart`,
//!   below): the stop signal, `stop_timeout`, SIGKILL, as for `kelpie stop
//!   web:0`, and once the instance is down a `Relaunch`, so the restart
//!   counts in `restarts` like one kelpie decides after a crash.
//! - `sampler.rs` is the I/O: one task for the whole fleet, which exists
//!   only while some program sets `memory_restart`, samples every
//!   `sampling_interval` with the `/proc` scanner of `/metrics` (each
//!   instance counted on its own: its main process, its group and their
//!   descendants) and sends the decisions to the Supervisor.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::core::{Command, Fleet};
use super::entry::Stage;
use crate::limits::MemoryRestart;
use crate::state::Phase;

mod sampler;

pub use sampler::Sampler;

/// The sampling interval never exceeds this, so a restart comes at most
/// this long after `after` has passed.
pub const MAX_INTERVAL: Duration = Duration::from_secs(5);
/// Nor drops below this, however short `memory_restart_after` is.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// How often the sampler looks: a quarter of the shortest
/// `memory_restart_after`, between `MIN_INTERVAL` and `MAX_INTERVAL`.
/// `None` when no program sets `memory_restart` (then there is no sampler).
pub fn sampling_interval<'a>(
    limits: impl IntoIterator<Item = &'a MemoryRestart>,
) -> Option<Duration> {
    limits
        .into_iter()
        .map(|limit| limit.after / 4)
        .min()
        .map(|interval| interval.clamp(MIN_INTERVAL, MAX_INTERVAL))
}

/// One instance at one sampling tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample<'a> {
    pub program: &'a str,
    pub index: u32,
    pub limit: MemoryRestart,
    pub phase: Phase,
    pub pid: Option<i32>,
    /// The resident memory of the instance's processes.
    pub rss_bytes: u64,
}

/// An instance that has been above its `memory_restart` for its `after`:
/// the Supervisor restarts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryRestartDue {
    pub program: String,
    pub index: u32,
    /// The process that used the memory: the restart applies to it only.
    pub pid: i32,
    pub rss_bytes: u64,
    pub threshold: u64,
    pub after: Duration,
}

/// Since when an instance's process has been above its threshold.
#[derive(Debug, Clone, Copy)]
struct Above {
    pid: i32,
    since: Instant,
}

/// Since when each instance has been above its threshold, across ticks.
#[derive(Debug, Default)]
pub struct MemoryWatch {
    above: HashMap<(String, u32), Above>,
}

impl MemoryWatch {
    /// One tick: the instances to restart now. An instance counts while its
    /// process runs (`starting` or `running`) above the threshold; a sample
    /// at or below it, another pid, no process or any other phase starts
    /// the count over, and so does a decision. A restart is decided only
    /// for a `running` instance, never one that is starting or stopping.
    /// Instances missing from `samples` are forgotten.
    pub fn observe<'a>(
        &mut self,
        samples: impl IntoIterator<Item = Sample<'a>>,
        now: Instant,
    ) -> Vec<MemoryRestartDue> {
        let mut due = Vec::new();
        let mut above = HashMap::with_capacity(self.above.len());
        for sample in samples {
            let Some(pid) = sample.pid else { continue };
            let up = matches!(sample.phase, Phase::Starting | Phase::Running);
            if !up || sample.rss_bytes <= sample.limit.threshold {
                continue;
            }
            let key = (sample.program.to_string(), sample.index);
            let since = match self.above.get(&key) {
                Some(previous) if previous.pid == pid => previous.since,
                _ => now,
            };
            if sample.phase == Phase::Running
                && now.saturating_duration_since(since) >= sample.limit.after
            {
                due.push(MemoryRestartDue {
                    program: key.0,
                    index: sample.index,
                    pid,
                    rss_bytes: sample.rss_bytes,
                    threshold: sample.limit.threshold,
                    after: sample.limit.after,
                });
                continue;
            }
            above.insert(key, Above { pid, since });
        }
        self.above = above;
        due
    }
}

impl Fleet {
    /// The sampler found `due`: restart that instance gracefully, unless it
    /// is no longer the process that was measured or it is not simply
    /// running (stopping, starting, held, mid-restart, in a rolling
    /// restart or a reload, or kelpie is shutting down).
    pub(super) fn on_memory_restart(&mut self, due: MemoryRestartDue) {
        let Some(&i) = self.index.get(&due.program) else {
            return;
        };
        let shutting_down = self.shutdown.is_some();
        let entry = &mut self.entries[i];
        let n = due.index as usize;
        let name = entry.config.instance_name(due.index);
        let settled = entry
            .slots
            .get(n)
            .is_some_and(|s| s.live && !s.held && s.expect_up.is_none() && s.relaunch.is_none());
        let measured =
            entry.status.instances.get(n).is_some_and(|i| {
                i.snapshot.pid == Some(due.pid) && i.snapshot.phase == Phase::Running
            });
        if shutting_down
            || entry.config.limits.memory_restart.is_none()
            || !matches!(entry.stage, Stage::Launched)
            || entry.roll.is_some()
            || !settled
            || !measured
        {
            tracing::debug!(
                event = "memory_restart_skipped",
                program = %due.program,
                instance = due.index,
                pid = due.pid,
                "{name} is no longer the running process that was measured; not restarting it"
            );
            return;
        }
        tracing::warn!(
            event = "memory_restart",
            program = %due.program,
            instance = due.index,
            pid = due.pid,
            rss_bytes = due.rss_bytes,
            threshold_bytes = due.threshold,
            after_ms = due.after.as_millis() as u64,
            "{name} (pid {}) has used more than memory_restart ({} bytes) for {}: {} bytes; restarting it",
            due.pid,
            due.threshold,
            humantime::format_duration(due.after),
            due.rss_bytes
        );
        self.next_seq += 1;
        let seq = self.next_seq;
        entry.slots[n].relaunch = Some(seq);
        entry.command_slot(&mut self.out, n, &None, &[Command::Stop], Some(seq));
    }

    /// After instance `n` of entry `i` reported: once a memory restart's
    /// stop is through (the instance is `stopped`), start it again, unless
    /// it was stopped, started, held or reloaded meanwhile.
    pub(super) fn settle_memory_restart(&mut self, i: usize, n: usize) {
        let shutting_down = self.shutdown.is_some();
        let entry = &mut self.entries[i];
        let Some(seq) = entry.slots.get(n).and_then(|s| s.relaunch) else {
            return;
        };
        let Some(status) = entry.status.instances.get(n) else {
            return;
        };
        if status.ack < seq || status.snapshot.phase == Phase::Stopping {
            // A report from before the stop, or the stop is under way.
            return;
        }
        let stopped = status.snapshot.phase == Phase::Stopped && status.snapshot.pid.is_none();
        entry.slots[n].relaunch = None;
        let relaunch = stopped
            && !shutting_down
            && matches!(entry.stage, Stage::Launched)
            && entry.roll.is_none()
            && !entry.slots[n].held
            && entry.should_run();
        if relaunch {
            entry.slots[n].expect_up = Some(true);
            entry.cast_slot(&mut self.out, n, &Command::Relaunch);
        }
    }
}

#[cfg(test)]
mod tests;
