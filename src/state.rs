//! The lifecycle of one program instance as a pure state machine.
//!
//! `Instance::step(event, now)` returns the actions to carry out; nothing
//! here touches the OS or a clock. Restart policy, backoff, restart
//! intensity, `start_seconds`, stop escalation and the timing of the
//! escaped-daemon sweep all live here; the phase × event matrix
//! (`state/matrix.rs`) and the scenario tables (`state/tests.rs`) pin them
//! down. The vocabulary is in `state/phase.rs` (what is seen), `policy.rs`
//! (what is configured) and `messages.rs` (what goes in and comes out);
//! how exits and probe results move an instance is in `exits.rs` and
//! `probing.rs`.
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

use crate::backoff::{Jitter, RestartWindow};

mod exits;
mod messages;
mod phase;
mod policy;
mod probing;

pub use messages::{Action, Event, Note, TimerKind};
pub use phase::{ExitKind, ExitStatus, Phase, Snapshot};
pub use policy::{Policy, ProbeRole, Thresholds};

use exits::Outcome;

/// After a SIGKILL, the group's emptiness is looked at again after 50 ms,
/// 100 ms, … (doubling), this many times: about 12 s in all. Only a group
/// with a member whose parent never reaps it needs more than the first.
const KILL_RECHECKS: u32 = 8;
const FIRST_KILL_RECHECK: Duration = Duration::from_millis(50);

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
    /// The process `last_exit` is about.
    last_exit_pid: Option<i32>,
    reason: Option<String>,
    backoff_delay: Duration,
    /// When the backoff's timer fires (the delay counted from the step
    /// that scheduled it); `None` while waiting for the restart budget.
    backoff_until: Option<Instant>,
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
            last_exit_pid: None,
            reason: None,
            backoff_delay: Duration::ZERO,
            backoff_until: None,
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
            backoff_until: self.backoff_until.filter(|_| self.phase == Phase::Backoff),
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
                    self.last_exit_pid = None;
                    out.push(Action::Emit(Note::SpawnFailed {
                        error: error.clone(),
                    }));
                    let outcome = self.decide(false, now, Some(error));
                    self.apply(outcome, now, &mut out);
                }
            }
            Event::Exited {
                pid,
                status,
                group_alive,
            } => self.on_exited(pid, status, group_alive, now, &mut out),
            Event::GroupGone => {
                if self.phase == Phase::Stopping && self.pid.is_none() {
                    self.finish_stop(now, &mut out);
                }
            }
            Event::OomKilled { pid } => self.on_oom_killed(pid),
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

    /// Once a run has ended (no leader, group empty: stopped, exited,
    /// failed, or in backoff before a restart), daemons it left outside
    /// the process group get the stop signal, and SIGKILL after
    /// `stop_timeout`. Each run is swept once. The lookup reads only
    /// kelpie's own children (`/proc/self/task/*/children`), so a crash
    /// loop pays little for it. The run id belongs to the actor, so one
    /// sweep also catches what earlier runs left; shutdown sweeps whatever
    /// remains.
    fn sweep_if_down(&mut self, out: &mut Vec<Action>) {
        // In backoff the group is already gone: the run has ended.
        if self.pid.is_some() || !(self.phase.is_down() || self.phase == Phase::Backoff) {
            return;
        }
        self.sweep_ended_run(out);
    }

    fn sweep_ended_run(&mut self, out: &mut Vec<Action>) {
        if self.run == 0 || self.run == self.swept_run {
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
        // A restart ends the previous run too: what it left behind goes
        // before the next run starts (the lookup happens before the spawn,
        // so it cannot catch the new run's own daemons).
        self.sweep_ended_run(out);
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

    fn finish_stop(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.after_cleanup.take() {
            Some(outcome) => self.apply(outcome, now, out),
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
