//! The I/O of `memory_restart`: one task for the whole fleet that samples
//! every watched instance's memory on a tick and sends what
//! `MemoryWatch::observe` decides to the Supervisor. The Supervisor starts
//! it while the running config has a program with `memory_restart` and
//! drops it (which ends it) when a reload leaves none, so a kelpie without
//! the key has no tick at all.
//!
//! Each tick reads the running config (which programs are watched, with
//! which limits, and so the interval) and the latest status board (which
//! instances run, with which pid), so a reload needs no message. The
//! `/proc` pass is blocking file I/O and runs off the reactor, on one
//! thread, with no stat file kept open between ticks (the `/metrics`
//! scanner keeps its own).

use std::collections::HashMap;
use std::sync::Arc;

use ractor::ActorRef;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{sampling_interval, MemoryWatch, Sample};
use crate::limits::MemoryRestart;
use crate::metrics::GroupScanner;
use crate::status::{Board, ConfigReceiver, StatusReceiver};
use crate::supervisor::SupervisorMsg;

/// The running sampler; dropping it ends the task.
pub struct Sampler {
    task: JoinHandle<()>,
}

impl Sampler {
    /// Starts the task on the current runtime.
    pub fn spawn(
        config: ConfigReceiver,
        board: StatusReceiver,
        supervisor: ActorRef<SupervisorMsg>,
    ) -> Self {
        Self {
            task: tokio::spawn(run(config, board, supervisor)),
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(config: ConfigReceiver, board: StatusReceiver, supervisor: ActorRef<SupervisorMsg>) {
    let mut scanner = None;
    let mut watch = MemoryWatch::default();
    loop {
        let limits = watched(&config);
        let Some(interval) = sampling_interval(limits.values()) else {
            // The Supervisor ends this task when no program is watched.
            return;
        };
        tokio::time::sleep(interval).await;
        let latest = Arc::clone(&board.borrow());
        if latest.shutting_down {
            continue;
        }
        let limits = watched(&config);
        let watched_board = Board {
            shutting_down: false,
            programs: latest
                .programs
                .iter()
                .filter(|p| limits.contains_key(&p.name))
                .cloned()
                .collect(),
        };
        let mut scan_with = scanner
            .take()
            .unwrap_or_else(|| GroupScanner::keeping_no_files().on_one_thread());
        let scan = tokio::task::spawn_blocking(move || {
            let usage = scan_with.scan_instances(&watched_board);
            (scan_with, watched_board, usage)
        });
        // A panicked scan loses its scanner; the next tick makes another.
        let Ok((scan_with, watched_board, usage)) = scan.await else {
            continue;
        };
        scanner = Some(scan_with);
        let samples = watched_board
            .programs
            .iter()
            .zip(&usage)
            .filter_map(|(program, usage)| {
                let limit = *limits.get(&program.name)?;
                Some(program.instances.iter().zip(usage).enumerate().map(
                    move |(index, (instance, usage))| Sample {
                        program: &program.name,
                        index: index as u32,
                        limit,
                        phase: instance.snapshot.phase,
                        pid: instance.snapshot.pid,
                        rss_bytes: usage.rss_bytes,
                    },
                ))
            })
            .flatten();
        for due in watch.observe(samples, Instant::now()) {
            if supervisor.cast(SupervisorMsg::MemoryRestart(due)).is_err() {
                return;
            }
        }
    }
}

/// The watched programs of the running config, by name.
fn watched(config: &ConfigReceiver) -> HashMap<String, MemoryRestart> {
    config
        .borrow()
        .config
        .programs
        .iter()
        .filter_map(|p| Some((p.name.clone(), p.limits.memory_restart?)))
        .collect()
}
