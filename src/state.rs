//! The lifecycle of one program instance as a pure state machine.
//!
//! `Instance::step(event, now)` returns the actions to carry out; nothing
//! here touches the OS or a clock. Restart policy, backoff, restart
//! intensity, `start_seconds`, stop escalation and the timing of the
//! escaped-daemon sweep all live here, and the
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
use crate::config::ProgramConfig;
use crate::restart_policy::{ProgramKind, RestartPolicy};

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
    pub start_timeout: Duration,
    pub backoff: BackoffConfig,
    pub max_restarts: u32,
    pub restart_window: Duration,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    /// Consecutive results that flip readiness; `None` without a readiness
    /// probe (then ready means running for `start_seconds`).
    pub readiness: Option<Thresholds>,
    pub liveness: Option<Thresholds>,
    /// A global restart budget is configured: every restart waits for the
    /// Supervisor's grant (`Action::AskRestart`, `Event::RestartGranted`).
    pub budgeted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub success: u32,
    pub failure: u32,
}

impl Thresholds {
    fn of(probe: &crate::config::ProbeConfig) -> Self {
        Self {
            success: probe.success_threshold.max(1),
            failure: probe.failure_threshold.max(1),
        }
    }
}

/// Which probe a result belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeRole {
    Readiness,
    Liveness,
}

impl ProbeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeRole::Readiness => "readiness",
            ProbeRole::Liveness => "liveness",
        }
    }
}

impl From<&ProgramConfig> for Policy {
    fn from(p: &ProgramConfig) -> Self {
        Self {
            kind: p.kind,
            restart: p.restart,
            success_codes: p.success_codes.clone(),
            start_seconds: p.start_seconds,
            start_timeout: p.start_timeout,
            backoff: p.backoff,
            max_restarts: p.max_restarts,
            restart_window: p.restart_window,
            stop_signal: p.stop_signal,
            stop_timeout: p.stop_timeout,
            readiness: p.readiness.as_ref().map(Thresholds::of),
            liveness: p.liveness.as_ref().map(Thresholds::of),
            budgeted: false,
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

/// After a SIGKILL, the group's emptiness is looked at again after 50 ms,
/// 100 ms, … (doubling), this many times: about 12 s in all. Only a group
/// with a member whose parent never reaps it needs more than the first.
const KILL_RECHECKS: u32 = 8;
const FIRST_KILL_RECHECK: Duration = Duration::from_millis(50);

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
    /// Counts spawns; probe results carry it so a late result for a
    /// previous process is ignored.
    run: u64,
    /// Readiness as the probe sees it (without a probe: unused).
    probe_ready: bool,
    ready_streak: u32,
    unready_streak: u32,
    liveness_streak: u32,
    status_text: Option<String>,
    /// Unplanned ends of a run that the policy answers with a restart, or
    /// that failed: what supervision groups react to.
    crashes: u64,
    /// Looks again at a SIGKILLed group so far (`KILL_RECHECKS`).
    kill_rechecks: u32,
    /// Probes of the current run are running (`StartProbes` without its
    /// `StopProbes` yet).
    probing: bool,
    /// The last run whose end was followed by a sweep for escaped daemons.
    swept_run: u64,
    /// Sweeps whose SIGKILL is still to come: sequence number, pids.
    sweeps: Vec<(u64, Vec<i32>)>,
    /// The last sweep sequence number handed out (the first is 1).
    sweep_seq: u64,
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
    pub backoff: Duration,
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
            want_up: false,
            run: 0,
            status_text: None,
            crashes: 0,
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
            run: 0,
            probe_ready: false,
            ready_streak: 0,
            unready_streak: 0,
            liveness_streak: 0,
            status_text: None,
            crashes: 0,
            kill_rechecks: 0,
            probing: false,
            swept_run: 0,
            sweeps: Vec::new(),
            sweep_seq: 0,
        }
    }

    /// Ready: the readiness probe holds (or, without one, running for
    /// `start_seconds`), and a process exists.
    fn is_ready(&self) -> bool {
        match self.policy.readiness {
            Some(_) => self.probe_ready && matches!(self.phase, Phase::Starting | Phase::Running),
            None => self.phase == Phase::Running,
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

    /// Whether a timer started as `StartTimer { kind, generation, .. }`
    /// would still act when it fires.
    pub fn timer_is_live(&self, kind: TimerKind, generation: u64) -> bool {
        if kind.is_generation_bound() {
            generation == self.generation
        } else {
            self.sweeps.iter().any(|(seq, _)| *seq == generation)
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            phase: self.phase,
            pid: self.pid,
            ready: self.is_ready(),
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
            run: self.run,
            status_text: self.status_text.clone(),
            crashes: self.crashes,
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
            Event::Probe {
                role,
                run,
                ok,
                detail,
            } => {
                if self.is_current_run(run) {
                    self.on_probe(role, ok, detail, now, &mut out);
                }
            }
            Event::Announced { run } => {
                if self.is_current_run(run) && self.policy.readiness.is_some() && !self.probe_ready
                {
                    self.probe_ready = true;
                    self.reason = None;
                    out.push(Action::Emit(Note::Ready));
                }
            }
            Event::StatusText { run, text } => {
                if self.is_current_run(run) {
                    self.status_text = Some(text);
                }
            }
            Event::Timer {
                kind: TimerKind::SweepKill,
                generation: seq,
            } => {
                if let Some(at) = self.sweeps.iter().position(|(s, _)| *s == seq) {
                    let (_, pids) = self.sweeps.remove(at);
                    out.push(Action::KillEscaped { pids });
                }
            }
            Event::Timer { kind, generation } => {
                if generation == self.generation {
                    self.on_timer(kind, now, &mut out);
                }
            }
            Event::Relaunch if self.phase != Phase::Failed => {
                self.want_up = true;
                if matches!(self.phase, Phase::Stopped | Phase::Exited | Phase::Backoff) {
                    self.restarts += 1;
                    self.spawn(&mut out);
                }
            }
            Event::Relaunch => {}
            Event::RestartGranted => {
                // A grant that arrives after a stop or start is moot.
                if self.phase == Phase::Backoff && self.want_up {
                    self.restarts += 1;
                    self.spawn(&mut out);
                }
            }
            Event::BudgetExhausted => {
                if self.phase == Phase::Backoff {
                    self.reason = Some("restart budget exhausted".into());
                }
            }
            // Whatever the phase now: the stop signal went out, so the
            // SIGKILL must follow.
            Event::EscapedSignalled { pids } => {
                if !pids.is_empty() {
                    self.sweep_seq += 1;
                    self.sweeps.push((self.sweep_seq, pids));
                    out.push(Action::StartTimer {
                        kind: TimerKind::SweepKill,
                        after: self.policy.stop_timeout,
                        generation: self.sweep_seq,
                    });
                }
            }
        }
        // Probes watch a live, not-stopping process only.
        if self.probing && (self.pid.is_none() || self.phase == Phase::Stopping) {
            self.probing = false;
            out.push(Action::StopProbes);
        }
        self.sweep_if_down(&mut out);
        out
    }

    /// Once the instance is down for good (stopped, exited, failed: no
    /// leader, group empty, no restart coming), daemons its runs left
    /// outside the process group get the stop signal, and SIGKILL after
    /// `stop_timeout`. Not on the way through backoff: a crash loop must
    /// not pay a /proc scan per exit. The run id belongs to the actor, so
    /// one sweep also catches what earlier runs left; shutdown sweeps
    /// whatever remains.
    fn sweep_if_down(&mut self, out: &mut Vec<Action>) {
        if self.run == 0
            || self.run == self.swept_run
            || self.pid.is_some()
            || !self.phase.is_down()
        {
            return;
        }
        self.swept_run = self.run;
        out.push(Action::SweepEscaped(self.policy.stop_signal));
    }

    /// A probe or announcement about run `run` still concerns a live process.
    fn is_current_run(&self, run: u64) -> bool {
        run == self.run
            && self.pid.is_some()
            && matches!(self.phase, Phase::Starting | Phase::Running)
    }

    fn on_probe(
        &mut self,
        role: ProbeRole,
        ok: bool,
        detail: String,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        match role {
            ProbeRole::Readiness => {
                let Some(thresholds) = self.policy.readiness else {
                    return;
                };
                let was_ready = self.is_ready();
                if ok {
                    self.ready_streak += 1;
                    self.unready_streak = 0;
                    if self.ready_streak >= thresholds.success {
                        self.probe_ready = true;
                    }
                } else {
                    self.unready_streak += 1;
                    self.ready_streak = 0;
                    out.push(Action::Emit(Note::ProbeFailed {
                        role,
                        detail: detail.clone(),
                        streak: self.unready_streak,
                    }));
                    if self.unready_streak >= thresholds.failure {
                        self.probe_ready = false;
                    }
                    if !self.probe_ready {
                        self.reason = Some(format!("readiness probe failed: {detail}"));
                    }
                }
                match (was_ready, self.is_ready()) {
                    (false, true) => {
                        self.reason = None;
                        out.push(Action::Emit(Note::Ready));
                    }
                    (true, false) => out.push(Action::Emit(Note::NotReady { reason: detail })),
                    _ => {}
                }
            }
            ProbeRole::Liveness => {
                let Some(thresholds) = self.policy.liveness else {
                    return;
                };
                if ok {
                    self.liveness_streak = 0;
                    return;
                }
                self.liveness_streak += 1;
                out.push(Action::Emit(Note::ProbeFailed {
                    role,
                    detail: detail.clone(),
                    streak: self.liveness_streak,
                }));
                if self.liveness_streak >= thresholds.failure {
                    out.push(Action::Emit(Note::LivenessFailed {
                        detail: detail.clone(),
                    }));
                    let reason = format!(
                        "liveness probe failed {} times: {detail}",
                        self.liveness_streak
                    );
                    self.fail_run(reason, now, out);
                }
            }
        }
    }

    /// The running process is judged failed (liveness, start_timeout): it is
    /// stopped like any stop, and the restart policy then applies as for a
    /// crash, counting toward backoff and restart intensity.
    fn fail_run(&mut self, reason: String, now: Instant, out: &mut Vec<Action>) {
        let ran = self
            .spawned_at
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or_default();
        if ran >= self.policy.start_seconds {
            self.attempt = 0;
        }
        let outcome = self.decide(false, now, None);
        self.reason = Some(reason);
        self.enter(Phase::Stopping);
        self.after_cleanup = Some(outcome);
        let signal = self.policy.stop_signal;
        out.push(Action::Emit(Note::Stopping { signal }));
        out.push(Action::SignalGroup(signal));
        out.push(Action::SignalGroup(Signal::SIGCONT));
        out.push(self.timer(TimerKind::StopTimeout, self.policy.stop_timeout));
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.generation += 1;
    }

    /// SIGKILL to the group, and a first look again at whether it is
    /// empty (`KILL_RECHECKS`).
    fn kill_group(&mut self, out: &mut Vec<Action>) {
        out.push(Action::SignalGroup(Signal::SIGKILL));
        self.kill_rechecks = 0;
        out.push(self.timer(TimerKind::KillRecheck, FIRST_KILL_RECHECK));
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
                    self.kill_group(out);
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
                    self.kill_group(out);
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
        self.run += 1;
        self.probe_ready = false;
        self.ready_streak = 0;
        self.unready_streak = 0;
        self.liveness_streak = 0;
        self.status_text = None;
        out.push(Action::Emit(Note::Started { pid }));
        if self.policy.readiness.is_some() || self.policy.liveness.is_some() {
            self.probing = true;
            out.push(Action::StartProbes { run: self.run });
        }
        out.push(self.timer(TimerKind::StartTimeout, self.policy.start_timeout));
        if self.policy.start_seconds.is_zero() {
            self.become_running(pid, out);
        } else {
            out.push(self.timer(TimerKind::StartSeconds, self.policy.start_seconds));
        }
    }

    /// Starting → running keeps the generation: the `start_timeout` timer
    /// started with the spawn must survive it.
    fn become_running(&mut self, pid: i32, out: &mut Vec<Action>) {
        let was_ready = self.is_ready();
        self.phase = Phase::Running;
        out.push(Action::Emit(Note::Running { pid }));
        if !was_ready && self.is_ready() && self.policy.readiness.is_none() {
            out.push(Action::Emit(Note::Ready));
        }
    }

    fn on_timer(&mut self, kind: TimerKind, now: Instant, out: &mut Vec<Action>) {
        match (kind, self.phase) {
            (TimerKind::StartSeconds, Phase::Starting) => {
                if let Some(pid) = self.pid {
                    self.become_running(pid, out);
                }
            }
            (TimerKind::StartTimeout, Phase::Starting | Phase::Running)
                if self.pid.is_some() && !self.is_ready() =>
            {
                out.push(Action::Emit(Note::StartTimedOut));
                let reason = format!(
                    "not ready within start_timeout ({})",
                    humantime::format_duration(self.policy.start_timeout)
                );
                self.fail_run(reason, now, out);
            }
            (TimerKind::Backoff, Phase::Backoff) if self.policy.budgeted => {
                out.push(Action::AskRestart);
            }
            (TimerKind::Backoff, Phase::Backoff) => {
                self.restarts += 1;
                self.spawn(out);
            }
            (TimerKind::StopTimeout, Phase::Stopping) if !self.killed => {
                self.killed = true;
                out.push(Action::Emit(Note::StopTimedOut));
                self.kill_group(out);
            }
            (TimerKind::KillRecheck, Phase::Stopping) if self.killed => {
                out.push(Action::RecheckGroup);
                self.kill_rechecks += 1;
                if self.kill_rechecks < KILL_RECHECKS {
                    let after = FIRST_KILL_RECHECK * (1 << self.kill_rechecks.min(10));
                    out.push(self.timer(TimerKind::KillRecheck, after));
                }
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
                    self.kill_group(out);
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
        let restart = self.policy.restart.restarts(self.policy.kind, success);
        if restart || !success {
            self.crashes += 1;
        }
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
            let last = match (&spawn_error, self.last_exit) {
                (Some(error), _) => format!("{error}; "),
                (None, Some(exit)) => format!("exited with {exit}; "),
                (None, None) => String::new(),
            };
            return Outcome::Failed(format!(
                "{last}restarted {} times within {}; giving up",
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
                if delay.is_zero() && self.policy.budgeted {
                    self.enter(Phase::Backoff);
                    out.push(Action::AskRestart);
                } else if delay.is_zero() {
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
mod matrix;
#[cfg(test)]
mod tests;
