//! What an instance looks like from outside: its phase, how its last run
//! ended, and the snapshot status, readiness and metrics read.

use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::Instant;

/// The coarse states users see in `status`, `/ready` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Stopped,
    Starting,
    Running,
    Stopping,
    Backoff,
    Exited,
    Failed,
}

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::Stopped,
        Phase::Starting,
        Phase::Running,
        Phase::Stopping,
        Phase::Backoff,
        Phase::Exited,
        Phase::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Stopped => "stopped",
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Stopping => "stopping",
            Phase::Backoff => "backoff",
            Phase::Exited => "exited",
            Phase::Failed => "failed",
        }
    }

    /// No process exists and none is about to be started by itself.
    pub fn is_down(self) -> bool {
        matches!(self, Phase::Stopped | Phase::Exited | Phase::Failed)
    }
}

/// How a process ended, decoded from the wait status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exit code {code}"),
            ExitStatus::Signal(n) => match Signal::try_from(*n) {
                Ok(sig) => write!(f, "signal {}", crate::signals::short_name(sig)),
                Err(_) => write!(f, "signal {n}"),
            },
        }
    }
}

/// The `reason` label of `kelpie_program_exits_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    Success,
    Failure,
    Signal,
    /// SIGKILLed by kelpie after `stop_timeout` or on a forced shutdown.
    Killed,
    /// SIGKILLed by the kernel's OOM killer (known after the exit, see
    /// `Event::OomKilled`).
    Oom,
}

impl ExitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ExitKind::Success => "success",
            ExitKind::Failure => "failure",
            ExitKind::Signal => "signal",
            ExitKind::Killed => "killed",
            ExitKind::Oom => "oom",
        }
    }
}

/// A read-only view for status, readiness and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub phase: Phase,
    pub pid: Option<i32>,
    pub ready: bool,
    pub restarts: u64,
    pub last_exit: Option<ExitStatus>,
    pub last_exit_kind: Option<ExitKind>,
    pub reason: Option<String>,
    /// The scheduled delay of the backoff in progress (zero otherwise).
    pub backoff: Duration,
    /// When that backoff ends, for showing the time left; `None` outside
    /// a backoff and while waiting for the restart budget.
    pub backoff_until: Option<Instant>,
    pub want_up: bool,
    /// The current run (spawn count).
    pub run: u64,
    /// The program's own status line (sd_notify `STATUS=`).
    pub status_text: Option<String>,
    /// Unplanned exits (crashes, failed liveness or start_timeout) so far.
    pub crashes: u64,
}

impl Snapshot {
    /// An instance that was never started.
    pub fn initial() -> Self {
        Self {
            phase: Phase::Stopped,
            pid: None,
            ready: false,
            restarts: 0,
            last_exit: None,
            last_exit_kind: None,
            reason: None,
            backoff: Duration::ZERO,
            backoff_until: None,
            want_up: false,
            run: 0,
            status_text: None,
            crashes: 0,
        }
    }
}
