//! Program output: pipes → lines → relay to kelpie's stdout, a bounded
//! in-memory tail per program, and rotated log files. Each program's crash
//! history (`exit_history`) is kept here too, because the lines an exit
//! quotes come from the tail, some of them after the exit itself.
//!
//! Memory stays bounded everywhere: a pump holds one read buffer (80 KiB)
//! while its pipe has more to read and at most one partial line
//! (≤ 16 KiB) while it waits, the tail keeps ≤ 1000 lines / 256 KiB per
//! program in one ring, and the relay queue is a bounded channel. When kelpie's stdout
//! is slow the queue fills, pumps wait on it, stop reading their pipes, and
//! the kernel blocks the writing child: back-pressure, not loss.

mod lines;
mod pump;
mod relay;
mod rotating;
mod tail;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::broadcast;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::TryAcquireError;

use crate::config::{LogMode, ProgramConfig};
use crate::exit_history::{ExitHistory, ExitOverview, ExitRecord, KeptLine, LINES_KEPT};
use crate::output_stream::Stream;

pub use lines::{LineBatch, LineReader, LineSink, LineSplitter, MAX_LINE_BYTES};
pub use pump::PumpTracker;
pub use relay::{format_relay, Relay, RelayHandle};
use relay::{format_relay_into, RELAY_BUDGET_BYTES};
pub use rotating::RotatingFile;
pub use tail::{LineKind, Tail, TailLine, TAIL_BYTES, TAIL_LINES};

/// Lines a `logs -f` follower may fall behind before it skips some. A slow
/// follower is told how many it missed; it never slows the program down.
const FOLLOW_BUFFER: usize = 1024;

enum Destination {
    Relay(Relay),
    /// Boxed: a relayed program would otherwise carry a file's room.
    File(Box<Mutex<RotatingFile>>),
    Discard,
}

/// Called once when an instance prints a line matching the log probe.
pub type OnMatch = Box<dyn FnOnce() + Send>;

/// Which process wrote a line: the instance index (shown to users), the
/// actor incarnation (unique, so a rolling restart's replacement and the
/// instance it replaces never share a log-probe watcher) and the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub index: u32,
    pub incarnation: u64,
    pub pid: i32,
}

/// The `readiness.log` pattern, and per instance what to do on the first
/// match of the current run.
struct LogProbe {
    pattern: regex_lite::Regex,
    watchers: Mutex<HashMap<u64, OnMatch>>,
}

/// Where one program's output goes; shared by its instances.
pub struct ProgramOutput {
    program: String,
    destination: Destination,
    tail: Mutex<Tail>,
    /// Only for a `readiness.log` probe: boxed, so that the programs
    /// without one (most) carry a pointer for it.
    log_probe: Option<Box<LogProbe>>,
    /// `kelpie logs -f` subscribers; created on the first one.
    followers: Mutex<Option<broadcast::Sender<Arc<TailLine>>>>,
    /// The pid of each instance's latest process whose pipes this output
    /// reads, to mark in the stream where a new process takes over.
    pids: Mutex<HashMap<u32, i32>>,
    /// `kelpie_log_lines_total` for stdout and stderr.
    line_counters: [crate::metrics::LogLineCounter; 2],
    /// The program's last exits. Locked before the tail when both are.
    history: Mutex<ExitHistory>,
}

impl ProgramOutput {
    pub fn new(program: &ProgramConfig, relay: &Relay, metrics: &crate::metrics::Metrics) -> Self {
        let destination = match &program.log {
            LogMode::Inherit => Destination::Relay(relay.clone()),
            LogMode::File {
                path,
                max_size,
                keep,
            } => Destination::File(Box::new(Mutex::new(RotatingFile::new(
                path.clone(),
                *max_size,
                *keep,
            )))),
            LogMode::Discard => Destination::Discard,
        };
        let log_probe = match program.readiness.as_ref().map(|p| &p.kind) {
            Some(crate::config::ProbeKind::Log(pattern)) => {
                regex_lite::Regex::new(pattern).ok().map(|pattern| {
                    Box::new(LogProbe {
                        pattern,
                        watchers: Mutex::new(HashMap::new()),
                    })
                })
            }
            _ => None,
        };
        Self {
            program: program.name.clone(),
            destination,
            tail: Mutex::new(Tail::default()),
            log_probe,
            followers: Mutex::new(None),
            pids: Mutex::new(HashMap::new()),
            line_counters: [
                metrics.log_line_counter(&program.name, Stream::Stdout),
                metrics.log_line_counter(&program.name, Stream::Stderr),
            ],
            history: Mutex::new(ExitHistory::default()),
        }
    }

    /// Arms the log probe for one actor incarnation: `on_match` runs on the
    /// first matching line (replacing a watcher of an earlier run).
    pub fn watch_for_match(&self, incarnation: u64, on_match: OnMatch) {
        if let Some(probe) = &self.log_probe {
            probe
                .watchers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(incarnation, on_match);
        }
    }

    /// Drops the log-probe watcher of an incarnation that ended.
    pub fn forget(&self, incarnation: u64) {
        if let Some(probe) = &self.log_probe {
            probe
                .watchers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&incarnation);
        }
    }

    /// Runs the watcher of `incarnation` on the first of `lines` that
    /// matches the log probe's pattern. One lock per batch: once matched,
    /// the watcher is gone and the lines are not looked at.
    fn check_pattern(&self, incarnation: u64, lines: LineBatch<'_>) {
        let Some(LogProbe { pattern, watchers }) = self.log_probe.as_deref() else {
            return;
        };
        let mut watchers = watchers.lock().unwrap_or_else(|p| p.into_inner());
        if !watchers.contains_key(&incarnation) {
            return;
        }
        if lines.iter().any(|line| pattern.is_match(line)) {
            if let Some(on_match) = watchers.remove(&incarnation) {
                drop(watchers);
                on_match();
            }
        }
    }

    /// Whether the instance's stdout/stderr need pipes at all.
    pub fn wants_pipes(&self) -> bool {
        !matches!(self.destination, Destination::Discard)
    }

    /// The program whose output this is.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// Takes over from the output this one replaces (a program rebuilt by
    /// a reload): its recent lines, so `kelpie logs` still shows what led
    /// up to the change; its `logs -f` followers, who go on with the new
    /// program's lines; its instances' pids, so the rebuilt program's
    /// first processes are marked as restarts; and its crash history.
    pub fn adopt_tail(&self, previous: &ProgramOutput) {
        let exits = std::mem::take(&mut *previous.history());
        *self.history() = exits;
        let lines = std::mem::take(&mut *previous.tail());
        let mut tail = self.tail();
        *tail = lines;
        let followers = previous.followers().take();
        if followers.is_some() {
            *self.followers() = followers;
        }
        drop(tail);
        let pids = std::mem::take(&mut *previous.pids());
        self.pids().extend(pids);
    }

    /// The program was removed by a reload: its followers get a last
    /// `Removed` entry and see their stream end. An output whose followers
    /// a rebuilt program adopted has none left to tell.
    pub fn removed(&self) {
        if let Some(sender) = self.followers().take() {
            let _ = sender.send(Arc::new(TailLine {
                time: SystemTime::now(),
                instance: 0,
                kind: LineKind::Removed,
            }));
        }
    }

    pub fn tail(&self) -> MutexGuard<'_, Tail> {
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn history(&self) -> MutexGuard<'_, ExitHistory> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last lines process `pid` of `instance` wrote, as kept with its
    /// exit. Called with the history locked, so that a pipe's end
    /// (`pipe_closed`) and the exit never miss each other's lines.
    fn kept_lines(&self, instance: u32, pid: i32) -> Vec<KeptLine> {
        let latest = self.pids().get(&instance).copied();
        self.tail()
            .lines_of_process(instance, pid, latest, LINES_KEPT)
            .into_iter()
            .map(|(stream, line)| KeptLine::new(stream, &line))
            .collect()
    }

    /// Adds an exit to the program's history, with the last lines its
    /// process wrote so far (lines still in the pipe are added when the
    /// pipe ends); returns its number for `amend_exit`.
    pub fn record_exit(&self, mut record: ExitRecord) -> u64 {
        let mut history = self.history();
        record.output = self.kept_lines(record.instance, record.pid);
        history.push(record)
    }

    /// Changes a recorded exit (its decision, its OOM evidence), if it is
    /// still kept.
    pub fn amend_exit(&self, seq: u64, change: impl FnOnce(&mut ExitRecord)) {
        if let Some(record) = self.history().get_mut(seq) {
            change(record);
        }
    }

    /// The kept exits, newest first.
    pub fn exits(&self) -> Vec<ExitRecord> {
        self.history().newest_first().cloned().collect()
    }

    /// How many exits are kept, the verdict on them for a program in
    /// `state`, and the newest without its lines: what a list of every
    /// program shows, read without copying the history.
    pub fn exit_overview(&self, state: crate::state::Phase, now: SystemTime) -> ExitOverview {
        let history = self.history();
        let exits: Vec<&ExitRecord> = history.newest_first().collect();
        ExitOverview {
            count: exits.len(),
            verdict: crate::exit_history::verdict::verdict(&exits, state, now),
            newest: exits.first().map(|e| e.without_output()),
        }
    }

    /// A pump of `source` read its pipe to the end: an exit of that process
    /// recorded before its last lines were read now gets them.
    pub(super) fn pipe_closed(&self, source: Source) {
        let mut history = self.history();
        let Some(record) = history.of_process(source.index, source.pid) else {
            return;
        };
        let lines = self.kept_lines(source.index, source.pid);
        // Fewer lines means the tail has dropped some since: keep the
        // earlier ones.
        if lines.len() >= record.output.len() {
            record.output = lines;
        }
    }

    fn followers(&self) -> MutexGuard<'_, Option<broadcast::Sender<Arc<TailLine>>>> {
        self.followers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pids(&self) -> MutexGuard<'_, HashMap<u32, i32>> {
        self.pids.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last `lines` lines of the tail (of one instance, or all) and a
    /// subscription to every line after them, taken under the tail lock so
    /// none is lost or repeated.
    pub fn follow(
        &self,
        lines: usize,
        instance: Option<u32>,
    ) -> (Vec<TailLine>, broadcast::Receiver<Arc<TailLine>>) {
        let tail = self.tail();
        let receiver = self
            .followers()
            .get_or_insert_with(|| broadcast::channel(FOLLOW_BUFFER).0)
            .subscribe();
        (tail.last_of(lines, instance), receiver)
    }

    /// A pump for `source` is about to read: when it is the first pump of a
    /// new process of an instance that had one before, the stream gets a
    /// `Restarted` mark here, ahead of any line of the new process.
    pub(super) fn pipe_opened(&self, source: Source) {
        let previous = self.pids().insert(source.index, source.pid);
        let Some(previous_pid) = previous.filter(|&pid| pid != source.pid) else {
            return;
        };
        let mark = TailLine {
            time: SystemTime::now(),
            instance: source.index,
            kind: LineKind::Restarted {
                previous_pid,
                pid: source.pid,
            },
        };
        let mut tail = self.tail();
        if let Some(sender) = self.followers().as_ref() {
            let _ = sender.send(Arc::new(mark.clone()));
        }
        tail.push(mark);
    }

    /// Delivers the lines of one pipe read together: one lock of the tail,
    /// one write to the log file, one relay record.
    pub(super) async fn deliver(&self, source: Source, stream: Stream, lines: LineBatch<'_>) {
        if lines.is_empty() {
            return;
        }
        let instance = source.index;
        // One clock read for the whole read: the time of its relay records
        // and tail lines.
        let time = SystemTime::now();
        self.line_counters[stream as usize].inc_by(lines.len() as u64);
        self.check_pattern(source.incarnation, lines);
        match &self.destination {
            Destination::Relay(relay) => {
                let mut record = Vec::new();
                format_relay_into(
                    &mut record,
                    relay.format,
                    &self.program,
                    instance,
                    stream,
                    lines,
                    time,
                );
                // Waiting here is the back-pressure: the pump stops reading
                // until the writer catches up. The waits are boxed: their
                // futures would otherwise be part of every pump task (two
                // per instance) for its whole life, while most deliveries
                // find room at once.
                let cost = record.len().clamp(1, RELAY_BUDGET_BYTES) as u32;
                match relay.budget.clone().try_acquire_many_owned(cost) {
                    Ok(permit) => {
                        if let Err(TrySendError::Full(item)) =
                            relay.queue.try_send((record, permit))
                        {
                            let _ = Box::pin(relay.queue.send(item)).await;
                        }
                    }
                    Err(TryAcquireError::NoPermits) => {
                        Box::pin(async {
                            if let Ok(permit) = relay.budget.clone().acquire_many_owned(cost).await
                            {
                                let _ = relay.queue.send((record, permit)).await;
                            }
                        })
                        .await;
                    }
                    Err(TryAcquireError::Closed) => {}
                }
            }
            Destination::File(file) => {
                let result = file
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .write_batch(&lines);
                if let Err(err) = result {
                    tracing::warn!(
                        event = "log_write_failed",
                        program = %self.program,
                        error = %err,
                        "cannot write program output to its log file"
                    );
                }
            }
            Destination::Discard => {}
        }
        let mut tail = self.tail();
        let followers = self.followers();
        if let Some(sender) = followers.as_ref().filter(|s| s.receiver_count() > 0) {
            for line in lines.iter() {
                let _ = sender.send(Arc::new(TailLine {
                    time,
                    instance,
                    kind: LineKind::Output {
                        stream,
                        line: line.to_string(),
                    },
                }));
            }
        }
        tail.push_batch(time, instance, stream, &lines);
    }
}

/// Every program's output (tail, crash history), published by the
/// Supervisor whenever a program is built or discarded, so readers on other
/// threads (the dashboard's poll) need not message it: a poll then wakes
/// only the HTTP thread.
pub type OutputsSender = tokio::sync::watch::Sender<Arc<[Arc<ProgramOutput>]>>;
pub type OutputsReceiver = tokio::sync::watch::Receiver<Arc<[Arc<ProgramOutput>]>>;

pub fn outputs_channel() -> (OutputsSender, OutputsReceiver) {
    tokio::sync::watch::channel(Arc::from(Vec::new()))
}
