//! The lifecycle of one program instance as a pure state machine.
//!
//! `Instance::step(event, now)` returns the actions to carry out; nothing
//! here touches the OS or a clock. Restart policy, backoff, restart
//! intensity, `start_seconds` and stop escalation all live here, and the
//! table tests at the bottom pin them down.
//!
//! Two ideas keep it honest:
//! - the desired state (`want_up`) is separate from the observed phase, so a
//!   `stop` sticks across crashes;
//! - a stop (or the clean-up after a crash) is done only when the whole
//!   process group is gone, not when the leader exits.

use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::Instant;

use crate::backoff::{BackoffConfig, Jitter, RestartWindow};
use crate::config::{ProgramConfig, ProgramKind, RestartPolicy};

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
}

impl ExitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ExitKind::Success => "success",
            ExitKind::Failure => "failure",
            ExitKind::Signal => "signal",
            ExitKind::Killed => "killed",
        }
    }
}

/// The part of a program's config the lifecycle needs.
#[derive(Debug, Clone)]
pub struct Policy {
    pub kind: ProgramKind,
    pub restart: RestartPolicy,
    pub success_codes: Vec<i32>,
    pub start_seconds: Duration,
    pub backoff: BackoffConfig,
    pub max_restarts: u32,
    pub restart_window: Duration,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
}

impl From<&ProgramConfig> for Policy {
    fn from(p: &ProgramConfig) -> Self {
        Self {
            kind: p.kind,
            restart: p.restart,
            success_codes: p.success_codes.clone(),
            start_seconds: p.start_seconds,
            backoff: p.backoff,
            max_restarts: p.max_restarts,
            restart_window: p.restart_window,
            stop_signal: p.stop_signal,
            stop_timeout: p.stop_timeout,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    /// `start_seconds` after the spawn: the instance counts as started.
    StartSeconds,
    /// The backoff delay has passed: start again.
    Backoff,
    /// `stop_timeout` passed with processes left: SIGKILL the group.
    StopTimeout,
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
    Timer {
        kind: TimerKind,
        generation: u64,
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
        generation: u64,
    },
    Emit(Note),
}

/// What happens once the clean-up after an unplanned exit is complete.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Restart(Duration),
    Exited,
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Instance {
    policy: Arc<Policy>,
    phase: Phase,
    want_up: bool,
    pid: Option<i32>,
    spawned_at: Option<Instant>,
    /// Bumped on every phase change; timers carry it so stale ones are ignored.
    generation: u64,
    /// Backoff exponent: consecutive short runs.
    attempt: u32,
    window: RestartWindow,
    restarts: u64,
    last_exit: Option<ExitStatus>,
    last_exit_kind: Option<ExitKind>,
    reason: Option<String>,
    backoff_delay: Duration,
    after_cleanup: Option<Outcome>,
    killed: bool,
    jitter: Jitter,
}

/// A read-only view for status, readiness and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub phase: Phase,
    pub pid: Option<i32>,
    pub ready: bool,
    pub restarts: u64,
    pub last_exit: Option<ExitStatus>,
    pub last_exit_kind: Option<ExitKind>,
    pub reason: Option<String>,
    pub backoff: Duration,
    pub want_up: bool,
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
            want_up: false,
        }
    }
}

impl Instance {
    pub fn new(policy: Arc<Policy>, jitter_seed: u64) -> Self {
        Self {
            policy,
            phase: Phase::Stopped,
            want_up: false,
            pid: None,
            spawned_at: None,
            generation: 0,
            attempt: 0,
            window: RestartWindow::default(),
            restarts: 0,
            last_exit: None,
            last_exit_kind: None,
            reason: None,
            backoff_delay: Duration::ZERO,
            after_cleanup: None,
            killed: false,
            jitter: Jitter::new(jitter_seed),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn pid(&self) -> Option<i32> {
        self.pid
    }

    /// Timers started with an older generation are stale.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            phase: self.phase,
            pid: self.pid,
            ready: self.phase == Phase::Running,
            restarts: self.restarts,
            last_exit: self.last_exit,
            last_exit_kind: self.last_exit_kind,
            reason: self.reason.clone(),
            backoff: if self.phase == Phase::Backoff {
                self.backoff_delay
            } else {
                Duration::ZERO
            },
            want_up: self.want_up,
        }
    }

    /// Feeds one event; returns what to do, in order.
    pub fn step(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Start => self.on_start(&mut out),
            Event::Stop => self.on_stop(false, &mut out),
            Event::Kill => self.on_stop(true, &mut out),
            Event::Drain => {
                self.want_up = false;
                match self.phase {
                    Phase::Backoff => {
                        self.enter(Phase::Stopped);
                        out.push(Action::Emit(Note::Stopped));
                    }
                    Phase::Stopping => self.after_cleanup = None,
                    _ => {}
                }
            }
            Event::Block(reason) => {
                if matches!(self.phase, Phase::Stopped | Phase::Exited | Phase::Failed) {
                    self.want_up = false;
                    self.enter(Phase::Failed);
                    self.reason = Some(reason.clone());
                    out.push(Action::Emit(Note::Failed { reason }));
                }
            }
            Event::Spawned { pid } => self.on_spawned(pid, now, &mut out),
            Event::SpawnFailed { error } => {
                if self.phase == Phase::Starting && self.pid.is_none() {
                    self.reason = Some(error.clone());
                    self.last_exit = None;
                    self.last_exit_kind = Some(ExitKind::Failure);
                    out.push(Action::Emit(Note::SpawnFailed {
                        error: error.clone(),
                    }));
                    let outcome = self.decide(false, now, Some(error));
                    self.apply(outcome, &mut out);
                }
            }
            Event::Exited {
                pid,
                status,
                group_alive,
            } => self.on_exited(pid, status, group_alive, now, &mut out),
            Event::GroupGone => {
                if self.phase == Phase::Stopping && self.pid.is_none() {
                    self.finish_stop(&mut out);
                }
            }
            Event::Timer { kind, generation } => {
                if generation == self.generation {
                    self.on_timer(kind, &mut out);
                }
            }
        }
        out
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.generation += 1;
    }

    fn timer(&self, kind: TimerKind, after: Duration) -> Action {
        Action::StartTimer {
            kind,
            after,
            generation: self.generation,
        }
    }

    fn spawn(&mut self, out: &mut Vec<Action>) {
        self.enter(Phase::Starting);
        self.killed = false;
        out.push(Action::Spawn);
    }

    fn on_start(&mut self, out: &mut Vec<Action>) {
        self.want_up = true;
        match self.phase {
            Phase::Stopped | Phase::Exited | Phase::Failed | Phase::Backoff => {
                self.attempt = 0;
                self.window.clear();
                self.reason = None;
                self.spawn(out);
            }
            Phase::Stopping => {
                // A crash clean-up that would end in `failed` or `exited`
                // now ends in a fresh start instead.
                if self.after_cleanup.is_some() {
                    self.after_cleanup = None;
                }
                self.attempt = 0;
                self.window.clear();
            }
            Phase::Starting | Phase::Running => {}
        }
    }

    fn on_stop(&mut self, kill: bool, out: &mut Vec<Action>) {
        self.want_up = false;
        match self.phase {
            Phase::Starting | Phase::Running => {
                self.enter(Phase::Stopping);
                self.after_cleanup = None;
                if kill {
                    self.killed = true;
                    out.push(Action::SignalGroup(Signal::SIGKILL));
                } else {
                    let signal = self.policy.stop_signal;
                    out.push(Action::Emit(Note::Stopping { signal }));
                    out.push(Action::SignalGroup(signal));
                    // A stopped (SIGSTOP) process only acts on the signal
                    // once continued.
                    out.push(Action::SignalGroup(Signal::SIGCONT));
                    out.push(self.timer(TimerKind::StopTimeout, self.policy.stop_timeout));
                }
            }
            Phase::Stopping => {
                // A stop during crash clean-up ends in `stopped`, not a restart.
                self.after_cleanup = None;
                if kill && !self.killed {
                    self.killed = true;
                    out.push(Action::SignalGroup(Signal::SIGKILL));
                }
            }
            Phase::Backoff => {
                self.enter(Phase::Stopped);
                out.push(Action::Emit(Note::Stopped));
            }
            Phase::Stopped | Phase::Exited | Phase::Failed => {}
        }
    }

    fn on_spawned(&mut self, pid: i32, now: Instant, out: &mut Vec<Action>) {
        if self.phase != Phase::Starting || self.pid.is_some() {
            return;
        }
        self.pid = Some(pid);
        self.spawned_at = Some(now);
        self.reason = None;
        out.push(Action::Emit(Note::Started { pid }));
        if self.policy.start_seconds.is_zero() {
            self.enter(Phase::Running);
            out.push(Action::Emit(Note::Running { pid }));
        } else {
            out.push(self.timer(TimerKind::StartSeconds, self.policy.start_seconds));
        }
    }

    fn on_timer(&mut self, kind: TimerKind, out: &mut Vec<Action>) {
        match (kind, self.phase) {
            (TimerKind::StartSeconds, Phase::Starting) => {
                if let Some(pid) = self.pid {
                    self.enter(Phase::Running);
                    out.push(Action::Emit(Note::Running { pid }));
                }
            }
            (TimerKind::Backoff, Phase::Backoff) => {
                self.restarts += 1;
                self.spawn(out);
            }
            (TimerKind::StopTimeout, Phase::Stopping) if !self.killed => {
                self.killed = true;
                out.push(Action::Emit(Note::StopTimedOut));
                out.push(Action::SignalGroup(Signal::SIGKILL));
            }
            _ => {}
        }
    }

    fn classify(&self, status: ExitStatus) -> ExitKind {
        match status {
            ExitStatus::Code(code) if self.policy.success_codes.contains(&code) => {
                ExitKind::Success
            }
            ExitStatus::Code(_) => ExitKind::Failure,
            ExitStatus::Signal(9) if self.killed => ExitKind::Killed,
            ExitStatus::Signal(_) => ExitKind::Signal,
        }
    }

    fn on_exited(
        &mut self,
        pid: i32,
        status: ExitStatus,
        group_alive: bool,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if self.pid != Some(pid) {
            return; // a previous generation's process
        }
        let kind = self.classify(status);
        let ran = self
            .spawned_at
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or_default();
        self.pid = None;
        self.last_exit = Some(status);
        self.last_exit_kind = Some(kind);
        out.push(Action::Emit(Note::Exited {
            pid,
            status,
            kind,
            ran,
        }));

        if self.phase == Phase::Stopping {
            if group_alive {
                out.push(Action::WatchGroup);
                if self.killed {
                    // Repeat the SIGKILL for members that may have been
                    // forked after it was sent.
                    out.push(Action::SignalGroup(Signal::SIGKILL));
                }
            } else {
                self.finish_stop(out);
            }
            return;
        }

        // An unplanned exit from starting or running.
        if ran >= self.policy.start_seconds {
            self.attempt = 0;
        }
        let success = kind == ExitKind::Success;
        let outcome = self.decide(success, now, None);
        if !success {
            self.reason = Some(format!("exited with {status}"));
        }
        if group_alive {
            // Leftover processes of a crashed instance are stopped like any
            // stop (signal, SIGCONT, deadline, SIGKILL) before the outcome
            // applies, so a restart never runs beside its predecessor's
            // children.
            self.enter(Phase::Stopping);
            self.after_cleanup = Some(outcome);
            let signal = self.policy.stop_signal;
            // Watch first: once the leader is reaped, the group is only
            // signalled while it is watched.
            out.push(Action::WatchGroup);
            out.push(Action::SignalGroup(signal));
            out.push(Action::SignalGroup(Signal::SIGCONT));
            out.push(self.timer(TimerKind::StopTimeout, self.policy.stop_timeout));
        } else {
            self.apply(outcome, out);
        }
    }

    /// What an unplanned end of a run leads to, by type and restart policy,
    /// and whether the restart intensity allows another restart.
    fn decide(&mut self, success: bool, now: Instant, spawn_error: Option<String>) -> Outcome {
        let restart = match (self.policy.kind, self.policy.restart) {
            (ProgramKind::Service, RestartPolicy::Always) => true,
            (_, RestartPolicy::OnFailure) => !success,
            (ProgramKind::Service, RestartPolicy::Never) => false,
            (ProgramKind::Oneshot, RestartPolicy::Always) => !success,
            (ProgramKind::Oneshot, RestartPolicy::Never) => false,
        };
        if !restart {
            let failed_oneshot = self.policy.kind == ProgramKind::Oneshot && !success;
            return match spawn_error {
                Some(error) => Outcome::Failed(error),
                None if failed_oneshot => Outcome::Failed(
                    self.last_exit
                        .map(|s| format!("exited with {s}"))
                        .unwrap_or_else(|| "failed".into()),
                ),
                None => Outcome::Exited,
            };
        }
        if !self
            .window
            .allows(now, self.policy.max_restarts, self.policy.restart_window)
        {
            return Outcome::Failed(format!(
                "restarted {} times within {}; giving up",
                self.policy.max_restarts,
                humantime::format_duration(self.policy.restart_window)
            ));
        }
        self.window.record(now);
        let delay = self.policy.backoff.delay(self.attempt, self.jitter.unit());
        self.attempt = self.attempt.saturating_add(1);
        Outcome::Restart(delay)
    }

    fn apply(&mut self, outcome: Outcome, out: &mut Vec<Action>) {
        match outcome {
            Outcome::Restart(_) if !self.want_up => {
                self.enter(Phase::Stopped);
                out.push(Action::Emit(Note::Stopped));
            }
            Outcome::Restart(delay) => {
                self.backoff_delay = delay;
                out.push(Action::Emit(Note::RestartScheduled {
                    delay,
                    attempt: self.attempt,
                }));
                if delay.is_zero() {
                    self.restarts += 1;
                    self.spawn(out);
                } else {
                    self.enter(Phase::Backoff);
                    out.push(self.timer(TimerKind::Backoff, delay));
                }
            }
            Outcome::Exited => {
                self.enter(Phase::Exited);
                if self.last_exit_kind == Some(ExitKind::Success) {
                    self.reason = None;
                    if self.policy.kind == ProgramKind::Oneshot {
                        out.push(Action::Emit(Note::Completed));
                    }
                }
            }
            Outcome::Failed(reason) => {
                self.want_up = false;
                self.enter(Phase::Failed);
                self.reason = Some(reason.clone());
                out.push(Action::Emit(Note::Failed { reason }));
            }
        }
    }

    fn finish_stop(&mut self, out: &mut Vec<Action>) {
        match self.after_cleanup.take() {
            Some(outcome) => self.apply(outcome, out),
            None => {
                self.enter(Phase::Stopped);
                out.push(Action::Emit(Note::Stopped));
                if self.want_up {
                    self.spawn(out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
