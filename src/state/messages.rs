//! What goes into the state machine (`Event`, timers) and what comes out
//! (`Action`, and the `Note`s the actor logs and reports).

use std::time::Duration;

use nix::sys::signal::Signal;

use super::{ExitKind, ExitStatus, ProbeRole};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    /// `start_seconds` after the spawn: the instance counts as started.
    StartSeconds,
    /// The backoff delay has passed: start again.
    Backoff,
    /// `stop_timeout` passed with processes left: SIGKILL the group.
    StopTimeout,
    /// `start_timeout` after the spawn: not ready by now is a failed start.
    StartTimeout,
    /// A SIGKILLed group has not reported empty yet: look again.
    KillRecheck,
    /// `stop_timeout` after an escaped-daemon sweep's stop signal: SIGKILL
    /// the daemons still there. Not bound to the generation (its timer
    /// carries the sweep's own sequence number instead): the instance may
    /// have been started again meanwhile, and the daemons of its previous
    /// run must die all the same.
    SweepKill,
}

impl TimerKind {
    /// Dies with the phase it was started in (every kind but `SweepKill`).
    pub fn is_generation_bound(self) -> bool {
        self != TimerKind::SweepKill
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Want the instance up. Clears `failed` and resets the backoff.
    Start,
    /// Want the instance down, gracefully.
    Stop,
    /// Want the instance down now: SIGKILL to the group.
    Kill,
    /// kelpie is shutting down: no more starts or restarts, but a running
    /// process keeps running until its own `Stop` (reverse dependency order).
    Drain,
    /// A dependency can never be satisfied; the instance cannot start.
    Block(String),
    Spawned {
        pid: i32,
    },
    SpawnFailed {
        error: String,
    },
    /// The group leader exited. `group_alive`: other members remain.
    Exited {
        pid: i32,
        status: ExitStatus,
        group_alive: bool,
    },
    /// No process of the group remains.
    GroupGone,
    /// The kernel's OOM killer ended process `pid` (the answer to the OOM
    /// question about an exit comes after the exit itself).
    OomKilled {
        pid: i32,
    },
    /// A probe result for run number `run` (see `Snapshot::run`).
    Probe {
        role: ProbeRole,
        run: u64,
        ok: bool,
        detail: String,
    },
    /// The program declared itself ready (sd_notify `READY=1`, or its log
    /// matched the readiness pattern).
    Announced {
        run: u64,
    },
    /// sd_notify `STATUS=…`.
    StatusText {
        run: u64,
        text: String,
    },
    Timer {
        kind: TimerKind,
        generation: u64,
    },
    /// Start again as part of a group restart: unlike `Start`, this keeps
    /// the backoff and the restart-intensity window, never revives a
    /// `failed` instance, and counts as a restart.
    Relaunch,
    /// The global restart budget allows the restart asked for.
    RestartGranted,
    /// The global restart budget is spent: the restart waits its turn.
    BudgetExhausted,
    /// `Action::SweepEscaped` found these daemons and sent them the stop
    /// signal (not sent when it found none).
    EscapedSignalled {
        pids: Vec<i32>,
    },
}

/// Lifecycle facts worth one log event each (SPEC §7 `event` names).
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    Started {
        pid: i32,
    },
    Running {
        pid: i32,
    },
    SpawnFailed {
        error: String,
    },
    Exited {
        pid: i32,
        status: ExitStatus,
        kind: ExitKind,
        ran: Duration,
    },
    RestartScheduled {
        delay: Duration,
        attempt: u32,
    },
    Completed,
    Failed {
        reason: String,
    },
    Stopping {
        signal: Signal,
    },
    StopTimedOut,
    Stopped,
    Ready,
    NotReady {
        reason: String,
    },
    ProbeFailed {
        role: ProbeRole,
        detail: String,
        streak: u32,
    },
    LivenessFailed {
        detail: String,
    },
    StartTimedOut,
}

impl Note {
    /// The stable `event` field for kelpie's own logs.
    pub fn event_name(&self) -> &'static str {
        match self {
            Note::Started { .. } => "program_started",
            Note::Running { .. } => "program_running",
            Note::SpawnFailed { .. } => "program_spawn_failed",
            Note::Exited { .. } => "program_exited",
            Note::RestartScheduled { .. } => "program_restart_scheduled",
            Note::Completed => "program_completed",
            Note::Failed { .. } => "program_failed",
            Note::Stopping { .. } => "program_stopping",
            Note::StopTimedOut => "program_stop_timeout",
            Note::Stopped => "program_stopped",
            Note::Ready => "program_ready",
            Note::NotReady { .. } => "program_not_ready",
            Note::ProbeFailed { .. } => "probe_failed",
            Note::LivenessFailed { .. } => "program_liveness_failed",
            Note::StartTimedOut => "program_start_timeout",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Spawn,
    /// Signal every process of the instance's group.
    SignalGroup(Signal),
    /// Report `GroupGone` once the group is empty.
    WatchGroup,
    StartTimer {
        kind: TimerKind,
        after: Duration,
        /// The generation, or for `SweepKill` the sweep's sequence number:
        /// what the timer's `Event::Timer` must carry back.
        generation: u64,
    },
    /// Ask the Supervisor for a restart under the global budget.
    AskRestart,
    /// Look again whether the group is empty (after a SIGKILL, a member
    /// whose parent never reaps it keeps the group alive as a zombie until
    /// that parent exits; nothing signals kelpie when that happens).
    RecheckGroup,
    /// Start the configured probes (and arm the log pattern) for run
    /// `run`. Only for a program with a readiness or liveness probe.
    StartProbes {
        run: u64,
    },
    /// The probed process is gone or being stopped: end its probes.
    StopProbes,
    /// Find the daemons the instance's runs left behind by leaving their
    /// process group (double fork, setsid): kelpie's children carrying its
    /// run id. Send them this signal and SIGCONT, and answer
    /// `EscapedSignalled` with their pids.
    SweepEscaped(Signal),
    /// SIGKILL those of `pids` that are still escaped daemons of the
    /// instance (a pid may have exited, or been reused, meanwhile).
    KillEscaped {
        pids: Vec<i32>,
    },
    Emit(Note),
}
