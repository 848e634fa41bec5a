//! `GET /dashboard.json`: what the page shows, computed on demand from the
//! board, the programs' outputs (crash history and log tail) and one pass
//! over `/proc` for CPU and RSS.
//!
//! Only what a viewer needs leaves kelpie: names, states, pids, counters,
//! exit records and output lines. No environment value, command line or
//! config path is read here, so none can leak into the page.

use std::time::SystemTime;

use serde::Serialize;

use crate::exit_history::{verdict, ExitOverview, ExitRecord};
use crate::metrics::proc::Usage;
use crate::output::{LineKind, TailLine};
use crate::status::{Board, ProgramStatus};

/// Log lines of the selected program.
pub(crate) const LOG_LINES: usize = 100;

/// The selected program's details.
pub(crate) struct Selected {
    pub(crate) name: String,
    /// Newest first, with their output lines.
    pub(crate) exits: Vec<ExitRecord>,
    pub(crate) log: Vec<TailLine>,
}

/// Everything one answer is made of; `overviews` and `usage` are in board
/// order (`None`/default where a program has none yet). Every program
/// comes with its exit count, verdict and newest exit; the whole history,
/// with output lines, only for the selected one, so the reply stays small
/// however many programs crash.
pub(crate) struct Inputs<'a> {
    pub(crate) board: &'a Board,
    pub(crate) usage: &'a [Usage],
    pub(crate) overviews: &'a [Option<ExitOverview>],
    pub(crate) selected: Option<Selected>,
    pub(crate) actions: bool,
    pub(crate) uptime_seconds: u64,
    pub(crate) now: SystemTime,
}

#[derive(Serialize)]
struct Reply<'a> {
    version: &'static str,
    uptime_seconds: u64,
    /// Seconds since the epoch, for the page's CPU rates.
    time: f64,
    actions: bool,
    shutting_down: bool,
    programs: Vec<ProgramJson<'a>>,
    selected: Option<SelectedJson<'a>>,
}

#[derive(Serialize)]
struct ProgramJson<'a> {
    name: &'a str,
    state: &'static str,
    ready: bool,
    enabled: bool,
    restarts: u64,
    reason: Option<String>,
    cpu_seconds: f64,
    rss_bytes: u64,
    processes: u32,
    verdict: String,
    /// Exits kept (at most `EXITS_KEPT`).
    exit_count: usize,
    last_exit: Option<ExitJson<'a>>,
    instances: Vec<InstanceJson<'a>>,
}

#[derive(Serialize)]
struct InstanceJson<'a> {
    name: String,
    state: &'static str,
    ready: bool,
    pid: Option<i32>,
    uptime_seconds: Option<u64>,
    restarts: u64,
    reason: Option<&'a str>,
}

#[derive(Serialize)]
struct ExitJson<'a> {
    time: String,
    instance: u32,
    pid: i32,
    text: String,
    by_kelpie: bool,
    oom: bool,
    ran_seconds: f64,
    decision: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<Vec<LineJson<'a>>>,
}

#[derive(Serialize)]
struct LineJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<u32>,
    stream: &'static str,
    line: std::borrow::Cow<'a, str>,
}

#[derive(Serialize)]
struct SelectedJson<'a> {
    name: &'a str,
    exits: Vec<ExitJson<'a>>,
    log: Vec<LineJson<'a>>,
}

/// The answer's body.
pub(crate) fn render(inputs: &Inputs<'_>) -> Vec<u8> {
    let programs = inputs
        .board
        .programs
        .iter()
        .enumerate()
        .map(|(n, program)| {
            let usage = inputs.usage.get(n).copied().unwrap_or_default();
            let overview = inputs.overviews.get(n).and_then(Option::as_ref);
            program_json(program, usage, overview, inputs.now)
        })
        .collect();
    let selected = inputs.selected.as_ref().map(|s| SelectedJson {
        name: &s.name,
        exits: s.exits.iter().map(|e| exit_json(e, true)).collect(),
        log: s.log.iter().filter_map(log_line).collect(),
    });
    let reply = Reply {
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: inputs.uptime_seconds,
        time: seconds_since_epoch(inputs.now),
        actions: inputs.actions,
        shutting_down: inputs.board.shutting_down,
        programs,
        selected,
    };
    // Plain structs with string keys: serializing cannot fail; the
    // fallback keeps a bug from becoming a panic.
    serde_json::to_vec(&reply)
        .unwrap_or_else(|_| br#"{"error":"internal error","code":"internal_error"}"#.to_vec())
}

fn program_json<'a>(
    program: &'a ProgramStatus,
    usage: Usage,
    overview: Option<&'a ExitOverview>,
    now: SystemTime,
) -> ProgramJson<'a> {
    let state = program.state();
    ProgramJson {
        name: &program.name,
        state: state.as_str(),
        ready: program.ready(),
        enabled: program.enabled,
        restarts: program.restarts(),
        reason: program.reason(),
        cpu_seconds: usage.cpu_seconds,
        rss_bytes: usage.rss_bytes,
        processes: usage.processes,
        verdict: match overview {
            Some(overview) => overview.verdict.clone(),
            None => verdict::verdict::<ExitRecord>(&[], state, now),
        },
        exit_count: overview.map_or(0, |o| o.count),
        last_exit: overview
            .and_then(|o| o.newest.as_ref())
            .map(|e| exit_json(e, false)),
        instances: program
            .instances
            .iter()
            .enumerate()
            .map(|(n, instance)| {
                let snapshot = &instance.snapshot;
                InstanceJson {
                    name: format!("{}:{n}", program.name),
                    state: snapshot.phase.as_str(),
                    ready: instance.is_ready(program.oneshot),
                    pid: snapshot.pid,
                    uptime_seconds: snapshot
                        .pid
                        .and(instance.started_at)
                        .and_then(|at| now.duration_since(at).ok())
                        .map(|d| d.as_secs()),
                    restarts: snapshot.restarts,
                    reason: snapshot.reason.as_deref(),
                }
            })
            .collect(),
    }
}

fn exit_json(exit: &ExitRecord, with_output: bool) -> ExitJson<'_> {
    ExitJson {
        time: humantime::format_rfc3339_millis(exit.at).to_string(),
        instance: exit.instance,
        pid: exit.pid,
        text: exit.status.to_string(),
        by_kelpie: exit.by_kelpie,
        oom: exit.oom.is_some(),
        ran_seconds: exit.ran.as_secs_f64(),
        decision: exit.decision.text(),
        output: with_output.then(|| {
            exit.output
                .iter()
                .map(|line| LineJson {
                    time: None,
                    instance: None,
                    stream: line.stream.as_str(),
                    line: std::borrow::Cow::Borrowed(&line.text),
                })
                .collect()
        }),
    }
}

fn log_line(line: &TailLine) -> Option<LineJson<'_>> {
    let time = Some(humantime::format_rfc3339_millis(line.time).to_string());
    match &line.kind {
        LineKind::Output { stream, line: text } => Some(LineJson {
            time,
            instance: Some(line.instance),
            stream: stream.as_str(),
            line: std::borrow::Cow::Borrowed(text),
        }),
        LineKind::Restarted { previous_pid, pid } => Some(LineJson {
            time,
            instance: Some(line.instance),
            stream: "kelpie",
            line: std::borrow::Cow::Owned(format!(
                "--- process {previous_pid} replaced by {pid} ---"
            )),
        }),
        LineKind::Removed => None,
    }
}

fn seconds_since_epoch(now: SystemTime) -> f64 {
    now.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
