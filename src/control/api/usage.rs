//! `GET /v1/usage`: CPU and memory of every program and instance, for
//! `kelpie top`. Nothing is sampled in the background: each request makes
//! one pass over `/proc` (the scanner of `/metrics`, with each instance
//! counted on its own), so a kelpie that nobody watches does no work for
//! it.

use std::sync::{Arc, Mutex, PoisonError};

use hyper::StatusCode;

use super::ControlApi;
use crate::control::protocol::{code, InstanceUsage, ProcessUsage, ProgramUsage, UsageReply};
use crate::control::server::ControlResponse;
use crate::metrics::{GroupScanner, Usage};
use crate::status::Board;

/// The scanner behind `/v1/usage`, shared by concurrent requests. It keeps
/// per-instance totals between requests (what makes `cpu_seconds` a
/// counter) but no open files: those would be held while nobody watches.
#[derive(Clone)]
pub struct UsageScanner(Arc<Mutex<GroupScanner>>);

impl Default for UsageScanner {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(GroupScanner::keeping_no_files())))
    }
}

impl ControlApi {
    pub(super) async fn usage(&self, id: &str) -> ControlResponse {
        let board = self.board();
        let scanner = self.usage.0.clone();
        // The reads are blocking file I/O: off the reactor.
        let scan = tokio::task::spawn_blocking(move || {
            let usage = scanner
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .scan_instances(&board);
            usage_reply(&board, &usage)
        });
        match scan.await {
            Ok(reply) => ControlResponse::json(StatusCode::OK, &reply),
            Err(err) => ControlResponse::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                code::INTERNAL,
                &format!("the usage scan failed: {err}"),
                id,
            ),
        }
    }
}

/// The reply for `board` from a scan of it (`[program][instance]`).
pub fn usage_reply(board: &Board, usage: &[Vec<Usage>]) -> UsageReply {
    let programs = board
        .programs
        .iter()
        .zip(usage)
        .map(|(program, usage)| {
            let instances: Vec<InstanceUsage> = program
                .instances
                .iter()
                .zip(usage)
                .enumerate()
                .map(|(index, (instance, usage))| InstanceUsage {
                    name: format!("{}:{index}", program.name),
                    index: index as u32,
                    pid: instance.snapshot.pid,
                    usage: process_usage(usage),
                })
                .collect();
            let total = instances
                .iter()
                .fold(ProcessUsage::default(), |sum, i| ProcessUsage {
                    cpu_seconds: sum.cpu_seconds + i.usage.cpu_seconds,
                    rss_bytes: sum.rss_bytes.saturating_add(i.usage.rss_bytes),
                    processes: sum.processes.saturating_add(i.usage.processes),
                });
            ProgramUsage {
                name: program.name.clone(),
                usage: total,
                instances,
            }
        })
        .collect();
    UsageReply { programs }
}

fn process_usage(usage: &Usage) -> ProcessUsage {
    ProcessUsage {
        cpu_seconds: usage.cpu_seconds,
        rss_bytes: usage.rss_bytes,
        processes: usage.processes,
    }
}
