//! What an exit leads to: its kind, the restart policy's decision
//! (restart after a backoff, exited for good, failed), and carrying it out
//! once the process group is gone.

use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::Instant;

use crate::restart_policy::ProgramKind;

use super::{Action, ExitKind, ExitStatus, Instance, Note, Phase, TimerKind};

/// What happens once the clean-up after an unplanned exit is complete.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Outcome {
    Restart(Duration),
    Exited,
    Failed(String),
}

impl Instance {
    pub(super) fn classify(&self, status: ExitStatus) -> ExitKind {
        match status {
            ExitStatus::Code(code) if self.policy.success_codes.contains(&code) => {
                ExitKind::Success
            }
            ExitStatus::Code(_) => ExitKind::Failure,
            ExitStatus::Signal(9) if self.killed => ExitKind::Killed,
            ExitStatus::Signal(_) => ExitKind::Signal,
        }
    }

    pub(super) fn on_exited(
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
        self.last_exit_pid = Some(pid);
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
                self.finish_stop(now, out);
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
            self.apply(outcome, now, out);
        }
    }

    /// The last exit was the OOM killer's: only that exit's kind and the
    /// reason it gave change, never the decision already taken on it.
    pub(super) fn on_oom_killed(&mut self, pid: i32) {
        let sigkill = Some(ExitStatus::Signal(libc::SIGKILL));
        if self.last_exit_pid != Some(pid)
            || self.last_exit != sigkill
            || self.last_exit_kind != Some(ExitKind::Signal)
        {
            return;
        }
        self.last_exit_kind = Some(ExitKind::Oom);
        if let Some(status) = self.last_exit {
            let said = format!("exited with {status}");
            if let Some(reason) = self.reason.as_mut().filter(|r| r.starts_with(&said)) {
                *reason = reason.replacen(
                    &said,
                    &format!("killed by the kernel OOM killer ({status})"),
                    1,
                );
            }
        }
    }

    /// What an unplanned end of a run leads to, by type and restart policy,
    /// and whether the restart intensity allows another restart.
    pub(super) fn decide(
        &mut self,
        success: bool,
        now: Instant,
        spawn_error: Option<String>,
    ) -> Outcome {
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

    pub(super) fn apply(&mut self, outcome: Outcome, now: Instant, out: &mut Vec<Action>) {
        match outcome {
            Outcome::Restart(_) if !self.want_up => {
                self.enter(Phase::Stopped);
                out.push(Action::Emit(Note::Stopped));
            }
            Outcome::Restart(delay) => {
                self.backoff_delay = delay;
                self.backoff_until = None;
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
                    self.backoff_until = Some(now + delay);
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
}
