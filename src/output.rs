//! Program output: pipes → lines → relay to kelpie's stdout, a bounded
//! in-memory tail per program, and rotated log files.
//!
//! Memory stays bounded everywhere: a pump holds at most one partial line
//! (≤ 16 KiB) between reads, the tail keeps ≤ 1000 lines / 256 KiB per
//! program, and the relay queue is a bounded channel. When kelpie's stdout
//! is slow the queue fills, pumps wait on it, stop reading their pipes, and
//! the kernel blocks the writing child: back-pressure, not loss.

mod lines;
mod pump;
mod relay;
mod rotating;
mod tail;

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;

use crate::config::{LogMode, ProgramConfig};
use crate::output_stream::Stream;

pub use lines::{LineBatch, LineSink, LineSplitter, MAX_LINE_BYTES};
pub use pump::PumpTracker;
pub use relay::{format_relay, Relay, RelayHandle};
use relay::{format_relay_into, RELAY_BUDGET_BYTES};
pub use rotating::RotatingFile;
pub use tail::{Tail, TailLine, TAIL_BYTES, TAIL_LINES};

/// Lines a `logs -f` follower may fall behind before it skips some. A slow
/// follower is told how many it missed; it never slows the program down.
const FOLLOW_BUFFER: usize = 1024;

enum Destination {
    Relay(Relay),
    File(Mutex<RotatingFile>),
    Discard,
}

/// Called once when an instance prints a line matching the log probe.
pub type OnMatch = Box<dyn FnOnce() + Send>;

/// Which process wrote a line: the instance index (shown to users) and the
/// actor incarnation (unique, so a rolling restart's replacement and the
/// instance it replaces never share a log-probe watcher).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub index: u32,
    pub incarnation: u64,
}

/// Where one program's output goes; shared by its instances.
pub struct ProgramOutput {
    program: String,
    destination: Destination,
    tail: Mutex<Tail>,
    /// The `readiness.log` pattern, and per instance what to do on the
    /// first match of the current run.
    pattern: Option<regex_lite::Regex>,
    watchers: Mutex<std::collections::HashMap<u64, OnMatch>>,
    /// `kelpie logs -f` subscribers; created on the first one.
    followers: Mutex<Option<broadcast::Sender<Arc<TailLine>>>>,
    /// `kelpie_log_lines_total` for stdout and stderr.
    line_counters: [crate::metrics::LogLineCounter; 2],
}

impl ProgramOutput {
    pub fn new(program: &ProgramConfig, relay: &Relay, metrics: &crate::metrics::Metrics) -> Self {
        let destination = match &program.log {
            LogMode::Inherit => Destination::Relay(relay.clone()),
            LogMode::File {
                path,
                max_size,
                keep,
            } => Destination::File(Mutex::new(RotatingFile::new(
                path.clone(),
                *max_size,
                *keep,
            ))),
            LogMode::Discard => Destination::Discard,
        };
        let pattern = match program.readiness.as_ref().map(|p| &p.kind) {
            Some(crate::config::ProbeKind::Log(pattern)) => regex_lite::Regex::new(pattern).ok(),
            _ => None,
        };
        Self {
            program: program.name.clone(),
            destination,
            tail: Mutex::new(Tail::default()),
            pattern,
            watchers: Mutex::new(std::collections::HashMap::new()),
            followers: Mutex::new(None),
            line_counters: [
                metrics.log_line_counter(&program.name, Stream::Stdout),
                metrics.log_line_counter(&program.name, Stream::Stderr),
            ],
        }
    }

    /// Arms the log probe for one actor incarnation: `on_match` runs on the
    /// first matching line (replacing a watcher of an earlier run).
    pub fn watch_for_match(&self, incarnation: u64, on_match: OnMatch) {
        if self.pattern.is_some() {
            self.watchers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(incarnation, on_match);
        }
    }

    /// Drops the log-probe watcher of an incarnation that ended.
    pub fn forget(&self, incarnation: u64) {
        if self.pattern.is_some() {
            self.watchers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&incarnation);
        }
    }

    fn check_pattern(&self, incarnation: u64, line: &str) {
        let Some(pattern) = &self.pattern else { return };
        let mut watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        if watchers.contains_key(&incarnation) && pattern.is_match(line) {
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

    /// Takes over the recent lines of the output this one replaces (a
    /// program rebuilt by a reload), so `kelpie logs` still shows what led
    /// up to the change.
    pub fn adopt_tail(&self, previous: &ProgramOutput) {
        let lines = std::mem::take(&mut *previous.tail());
        *self.tail() = lines;
    }

    pub fn tail(&self) -> MutexGuard<'_, Tail> {
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last `lines` lines of the tail and a subscription to every line
    /// after them, taken under the tail lock so none is lost or repeated.
    pub fn follow(&self, lines: usize) -> (Vec<TailLine>, broadcast::Receiver<Arc<TailLine>>) {
        let tail = self.tail();
        let mut followers = self.followers.lock().unwrap_or_else(|p| p.into_inner());
        let receiver = followers
            .get_or_insert_with(|| broadcast::channel(FOLLOW_BUFFER).0)
            .subscribe();
        (tail.last(lines), receiver)
    }

    /// Delivers the lines of one pipe read together: one lock of the tail,
    /// one write to the log file, one relay record.
    pub(super) async fn deliver(&self, source: Source, stream: Stream, lines: LineBatch) {
        if lines.is_empty() {
            return;
        }
        let instance = source.index;
        self.line_counters[stream as usize].inc_by(lines.len() as u64);
        if self.pattern.is_some() {
            for line in lines.iter() {
                self.check_pattern(source.incarnation, line);
            }
        }
        match &self.destination {
            Destination::Relay(relay) => {
                let mut record = String::new();
                for line in lines.iter() {
                    format_relay_into(
                        &mut record,
                        relay.format,
                        &self.program,
                        instance,
                        stream,
                        line,
                    );
                }
                // Waiting here is the back-pressure: the pump stops reading
                // until the writer catches up.
                let cost = record.len().clamp(1, RELAY_BUDGET_BYTES) as u32;
                if let Ok(permit) = relay.budget.clone().acquire_many_owned(cost).await {
                    let _ = relay.queue.send((record, permit)).await;
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
        let followers = self.followers.lock().unwrap_or_else(|p| p.into_inner());
        let sender = followers.as_ref().filter(|s| s.receiver_count() > 0);
        // Lines the tail would evict at once are only counted, not kept.
        let keep_from = if sender.is_some() {
            0
        } else {
            lines.len().saturating_sub(TAIL_LINES)
        };
        for line in lines.iter().skip(keep_from) {
            let line = TailLine {
                instance,
                stream,
                line: line.to_string(),
            };
            if let Some(sender) = sender {
                let _ = sender.send(Arc::new(line.clone()));
            }
            tail.push(line);
        }
    }
}
