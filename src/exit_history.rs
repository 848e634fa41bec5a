//! Crash history: the last exits of one program, each with how it ended,
//! what kelpie decided next and the output lines that led up to it, for
//! `kelpie why` and `GET /v1/programs/NAME/history`.
//!
//! It is kept beside the status board, not in it: the board is cloned and
//! compared on every change, the history only read when someone asks. The
//! Program actor that owns an instance records its exits (it alone learns
//! them from the reaper, in order with everything else it does); the
//! program's output (`output.rs`) holds the ring, because the lines an exit
//! quotes come from its tail and may arrive after the exit itself.
//!
//! Memory is bounded: `EXITS_KEPT` exits of `LINES_KEPT` lines of at most
//! `LINE_BYTES_KEPT` bytes each (docs/benchmarks.md has the measured size
//! at the cap). The verdict (`verdict.rs`) and the kernel's OOM evidence
//! (`oom.rs`) have their own modules.

pub mod oom;
pub mod verdict;

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use crate::output_stream::Stream;
use crate::state::{ExitKind, ExitStatus};

/// Exits kept per program; older ones are dropped.
pub const EXITS_KEPT: usize = 20;
/// Output lines kept per exit: the last ones its process wrote.
pub const LINES_KEPT: usize = 20;
/// A kept line longer than this is cut (at a character boundary) and ends
/// in `…`.
pub const LINE_BYTES_KEPT: usize = 512;

/// What kelpie did after an exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not decided yet: processes the crashed leader left in its group are
    /// being stopped first.
    Pending,
    /// Started again after this delay.
    Restart { delay: Duration },
    /// The restart (after this delay) waited for the global restart budget.
    BudgetWait { delay: Duration },
    /// Given up on: the instance is `failed`.
    Failed { reason: String },
    /// Down on purpose (`kelpie stop`, a reload, a shutdown, a rolling
    /// restart's old instance): not started again.
    Stopped,
    /// Stopped on purpose and started again at once (`kelpie restart`).
    Restarted,
    /// Not restarted, as its restart policy says (a completed oneshot,
    /// `restart = "never"`, a success under `on-failure`).
    Exited,
}

impl Decision {
    /// `restart after 1.6s`, `failed: …`: for `kelpie why` and the API's
    /// `text`.
    pub fn text(&self) -> String {
        match self {
            Decision::Pending => "stopping its leftover processes first".into(),
            Decision::Restart { delay } => format!("restart after {}", duration_text(*delay)),
            Decision::BudgetWait { delay } => format!(
                "restart after {}, waiting for the restart budget",
                duration_text(*delay)
            ),
            Decision::Failed { reason } => format!("failed: {reason}"),
            Decision::Stopped => "none: stopped on purpose".into(),
            Decision::Restarted => "started again on request".into(),
            Decision::Exited => "none: exited for good".into(),
        }
    }

    /// The API's `action`.
    pub fn action(&self) -> &'static str {
        match self {
            Decision::Pending => "pending",
            Decision::Restart { .. } => "restart",
            Decision::BudgetWait { .. } => "budget_wait",
            Decision::Failed { .. } => "failed",
            Decision::Stopped => "stopped",
            Decision::Restarted => "restarted",
            Decision::Exited => "exited",
        }
    }

    pub fn delay(&self) -> Option<Duration> {
        match self {
            Decision::Restart { delay } | Decision::BudgetWait { delay } => Some(*delay),
            _ => None,
        }
    }
}

/// How the kernel's OOM killer was seen to end a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OomSource {
    /// The kernel log names the pid.
    KernelLog,
    /// The kernel log could not be read, and the `oom_kill` counter of
    /// kelpie's memory cgroup rose.
    CgroupCounter,
    /// The instance's own cgroup counted an OOM kill (`memory.events`).
    InstanceCgroup,
}

impl OomSource {
    pub fn as_str(self) -> &'static str {
        match self {
            OomSource::KernelLog => "kernel_log",
            OomSource::CgroupCounter => "cgroup_counter",
            OomSource::InstanceCgroup => "instance_cgroup",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oom {
    pub source: OomSource,
    /// The memory cgroup whose limit was reached (`/batch`), when the
    /// kernel says it was a cgroup's limit rather than the machine's memory.
    pub memcg: Option<String>,
}

/// One line a process wrote, as kept with its exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptLine {
    pub stream: Stream,
    pub text: Box<str>,
}

impl KeptLine {
    /// `text`, cut to `LINE_BYTES_KEPT`.
    pub fn new(stream: Stream, text: &str) -> Self {
        let text = if text.len() <= LINE_BYTES_KEPT {
            Box::from(text)
        } else {
            const MARK: &str = "…";
            let mut end = LINE_BYTES_KEPT - MARK.len();
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let mut cut = String::with_capacity(end + MARK.len());
            cut.push_str(&text[..end]);
            cut.push_str(MARK);
            cut.into_boxed_str()
        };
        Self { stream, text }
    }
}

/// One exit of one instance's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitRecord {
    /// Numbers the exits of one history, so a late update (the decision,
    /// the OOM check, lines read after the exit) finds its record.
    pub seq: u64,
    /// Wall-clock time kelpie learnt of the exit.
    pub at: SystemTime,
    pub instance: u32,
    pub pid: i32,
    pub status: ExitStatus,
    pub kind: ExitKind,
    /// kelpie had asked the process to end (its stop signal, or SIGKILL):
    /// a stop, restart, reload or shutdown, or a failed liveness probe or
    /// start_timeout; or it died of a signal kelpie relayed to it.
    pub by_kelpie: bool,
    /// Why kelpie ended the process when no stop was asked for (a failed
    /// liveness probe, start_timeout, a relayed signal).
    pub kelpie_reason: Option<String>,
    pub ran: Duration,
    pub decision: Decision,
    pub oom: Option<Oom>,
    /// The last lines the process wrote, oldest first.
    pub output: Vec<KeptLine>,
}

/// A program's exits in brief: see `ProgramOutput::exit_overview`.
#[derive(Debug, Clone, Default)]
pub struct ExitOverview {
    pub count: usize,
    pub verdict: String,
    /// The newest exit, without its output lines.
    pub newest: Option<ExitRecord>,
}

impl ExitRecord {
    /// A copy without the output lines (the costly part).
    pub fn without_output(&self) -> ExitRecord {
        ExitRecord {
            seq: self.seq,
            at: self.at,
            instance: self.instance,
            pid: self.pid,
            status: self.status,
            kind: self.kind,
            by_kelpie: self.by_kelpie,
            kelpie_reason: self.kelpie_reason.clone(),
            ran: self.ran,
            decision: self.decision.clone(),
            oom: self.oom.clone(),
            output: Vec::new(),
        }
    }
}

/// The ring of one program's exits.
#[derive(Debug, Default)]
pub struct ExitHistory {
    /// Oldest first.
    exits: VecDeque<ExitRecord>,
    last_seq: u64,
}

impl ExitHistory {
    /// Adds an exit (its `seq` is assigned here) and drops the oldest past
    /// `EXITS_KEPT`; returns the seq.
    pub fn push(&mut self, mut record: ExitRecord) -> u64 {
        self.last_seq += 1;
        record.seq = self.last_seq;
        record.output.truncate(LINES_KEPT);
        if self.exits.len() == EXITS_KEPT {
            self.exits.pop_front();
        }
        self.exits.push_back(record);
        self.last_seq
    }

    pub fn get_mut(&mut self, seq: u64) -> Option<&mut ExitRecord> {
        self.exits.iter_mut().rev().find(|r| r.seq == seq)
    }

    /// The newest exit of this process, if it is still kept.
    pub fn of_process(&mut self, instance: u32, pid: i32) -> Option<&mut ExitRecord> {
        self.exits
            .iter_mut()
            .rev()
            .find(|r| r.instance == instance && r.pid == pid)
    }

    /// Newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = &ExitRecord> {
        self.exits.iter().rev()
    }

    pub fn len(&self) -> usize {
        self.exits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exits.is_empty()
    }
}

/// `30ms`, `0.2s`, `1.6s`, `1m 30s`: a tenth of a second is enough
/// detail under ten seconds, and seconds above.
pub fn duration_text(duration: Duration) -> String {
    let millis = duration.as_millis() as u64;
    match millis {
        0 if duration.is_zero() => "0s".into(),
        0 => "<1ms".into(),
        1..=99 => format!("{millis}ms"),
        100..=9_999 => {
            let tenths = (millis + 50) / 100;
            match tenths % 10 {
                0 => format!("{}s", tenths / 10),
                t => format!("{}.{t}s", tenths / 10),
            }
        }
        _ => humantime::format_duration(Duration::from_secs((millis + 500) / 1000)).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn record(pid: i32) -> ExitRecord {
        ExitRecord {
            seq: 0,
            at: SystemTime::UNIX_EPOCH,
            instance: 0,
            pid,
            status: ExitStatus::Code(1),
            kind: ExitKind::Failure,
            by_kelpie: false,
            kelpie_reason: None,
            ran: Duration::from_millis(200),
            decision: Decision::Pending,
            oom: None,
            output: Vec::new(),
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_exits() {
        let mut history = ExitHistory::default();
        for pid in 1..=(EXITS_KEPT as i32 + 5) {
            history.push(record(pid));
        }
        assert_eq!(history.len(), EXITS_KEPT);
        let pids: Vec<i32> = history.newest_first().map(|r| r.pid).collect();
        let want: Vec<i32> = (6..=EXITS_KEPT as i32 + 5).rev().collect();
        assert_eq!(pids, want);
        // Dropped exits cannot be updated any more; kept ones can.
        assert!(history.get_mut(1).is_none());
        let newest = EXITS_KEPT as u64 + 5;
        assert_eq!(history.get_mut(newest).map(|r| r.pid), Some(newest as i32));
        assert!(history.of_process(0, 3).is_none());
        assert!(history.of_process(0, 7).is_some());
    }

    #[test]
    fn an_exit_keeps_at_most_its_last_lines() {
        let mut history = ExitHistory::default();
        let mut exit = record(1);
        exit.output = (0..LINES_KEPT + 3)
            .map(|n| KeptLine::new(Stream::Stdout, &n.to_string()))
            .collect();
        history.push(exit);
        assert_eq!(
            history.newest_first().next().map(|r| r.output.len()),
            Some(LINES_KEPT)
        );
    }

    #[test]
    fn long_lines_are_cut_at_a_character_boundary() {
        let short = KeptLine::new(Stream::Stderr, "boom");
        assert_eq!(&*short.text, "boom");
        let exact = "x".repeat(LINE_BYTES_KEPT);
        assert_eq!(
            KeptLine::new(Stream::Stdout, &exact).text.len(),
            LINE_BYTES_KEPT
        );
        // Two-byte characters: the cut must not split one.
        let long = "é".repeat(LINE_BYTES_KEPT);
        let cut = KeptLine::new(Stream::Stdout, &long);
        assert!(cut.text.len() <= LINE_BYTES_KEPT, "{}", cut.text.len());
        assert!(cut.text.ends_with('…'));
        assert!(cut.text.trim_end_matches('…').chars().all(|c| c == 'é'));
    }

    #[test]
    fn durations_read_like_the_rest_of_kelpie() {
        for (millis, text) in [
            (0, "0s"),
            (30, "30ms"),
            (213, "0.2s"),
            (960, "1s"),
            (1600, "1.6s"),
            (9_990, "10s"),
            (90_000, "1m 30s"),
        ] {
            assert_eq!(
                duration_text(Duration::from_millis(millis)),
                text,
                "{millis}"
            );
        }
        assert_eq!(duration_text(Duration::from_micros(115)), "<1ms");
    }
}
