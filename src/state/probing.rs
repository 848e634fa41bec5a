//! Probe results: how readiness and liveness reports move an instance
//! (ready, not ready, a failed run).

use nix::sys::signal::Signal;
use tokio::time::Instant;

use super::{Action, Instance, Note, Phase, ProbeRole, TimerKind};

impl Instance {
    pub(super) fn on_probe(
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
    pub(super) fn fail_run(&mut self, reason: String, now: Instant, out: &mut Vec<Action>) {
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
}
