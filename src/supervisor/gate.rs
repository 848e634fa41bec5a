//! The dependency gate: when a program that should run may start, must
//! wait (and why), or never can.

use super::core::{Command, Fleet};
use super::entry::Stage;
use crate::config::DependencyCondition;
use crate::state::{ExitKind, Phase};

enum Gate {
    Open,
    Wait(String),
    Blocked(String),
}

impl Fleet {
    /// Whether program `i` may start now, must wait, or never can.
    fn gate(&self, i: usize) -> Gate {
        let mut waiting: Option<String> = None;
        for (dep, condition) in &self.entries[i].config.depends_on {
            let Some(&d) = self.index.get(dep) else {
                continue;
            };
            let target = &self.entries[d];
            if target.snapshots().any(|s| s.phase == Phase::Failed) {
                return Gate::Blocked(format!("dependency \"{dep}\" failed"));
            }
            let met = target.stage.pending().is_none()
                && target.snapshots().all(|s| match condition {
                    DependencyCondition::Started => {
                        s.pid.is_some() && matches!(s.phase, Phase::Starting | Phase::Running)
                    }
                    DependencyCondition::Ready => s.ready,
                    DependencyCondition::Completed => {
                        s.phase == Phase::Exited && s.last_exit_kind == Some(ExitKind::Success)
                    }
                });
            if !met {
                let ended = target.snapshots().all(|s| s.phase == Phase::Exited);
                if ended && *condition != DependencyCondition::Completed {
                    return Gate::Blocked(format!(
                        "dependency \"{dep}\" exited and will not be restarted"
                    ));
                }
                if *condition == DependencyCondition::Completed
                    && target.snapshots().any(|s| {
                        s.phase == Phase::Exited && s.last_exit_kind != Some(ExitKind::Success)
                    })
                {
                    return Gate::Blocked(format!(
                        "dependency \"{dep}\" did not complete successfully"
                    ));
                }
                if waiting.is_none() {
                    waiting = Some(format!(
                        "waiting for dependency \"{dep}\" to be {}",
                        condition.as_str()
                    ));
                }
            }
        }
        match waiting {
            Some(reason) => Gate::Wait(reason),
            None => Gate::Open,
        }
    }

    pub(super) fn launch_ready_programs(&mut self) {
        if self.shutdown.is_some() {
            return;
        }
        for i in 0..self.entries.len() {
            let entry = &self.entries[i];
            let blocked_before = matches!(entry.stage, Stage::Blocked);
            if !(matches!(entry.stage, Stage::Gated { .. }) || blocked_before)
                || !entry.should_run()
                || self.held_by_group(entry.name())
            {
                continue;
            }
            let blocked = match self.gate(i) {
                // A blocked program keeps showing why it was blocked until
                // its dependency is back.
                Gate::Wait(_) | Gate::Blocked(_) if blocked_before => continue,
                Gate::Wait(reason) => {
                    self.entries[i].set_reason(Some(reason));
                    continue;
                }
                Gate::Open => None,
                Gate::Blocked(reason) => Some(reason),
            };
            let entry = &mut self.entries[i];
            let (request, relaunch) = match std::mem::replace(&mut entry.stage, Stage::Launched) {
                Stage::Gated { request, relaunch } => (request, relaunch),
                _ => {
                    tracing::info!(event = "program_unblocked", program = %entry.config.name, "{}: its dependencies are back; starting it", entry.config.name);
                    (None, false)
                }
            };
            let (ack, cause) = match request {
                Some((seq, cause)) => (Some(seq), cause),
                None => (None, None),
            };
            let block = match (blocked, &entry.identity) {
                (None, Ok(_)) => {
                    entry.start_all(&mut self.out, &cause, ack, relaunch);
                    continue;
                }
                (None, Err(reason)) => reason.clone(),
                (Some(reason), _) => {
                    tracing::error!(event = "program_blocked", program = %entry.config.name, reason = %reason, "{} cannot start: {reason}", entry.config.name);
                    entry.set_reason(None);
                    entry.stage = Stage::Blocked;
                    reason
                }
            };
            entry.cast_all(&mut self.out, &Command::Block(block));
            if let Some(seq) = ack {
                entry.cast_all(&mut self.out, &Command::Ack(seq));
            }
        }
    }
}
