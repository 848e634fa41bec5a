//! The log line of each lifecycle `Note` (SPEC §7): one event per fact,
//! with the fields the `event` name promises.

use super::ProgramState;
use crate::state::Note;

impl ProgramState {
    pub(super) fn log(&self, note: &Note) {
        let program = self.args.config.name.as_str();
        let instance = self.args.index;
        let name = self.name();
        let event = note.event_name();
        let request_id = self.cause.as_deref();
        match note {
            Note::Started { pid } => {
                tracing::info!(
                    event,
                    program,
                    instance,
                    request_id,
                    pid,
                    "{name} started (pid {pid})"
                )
            }
            Note::Running { pid } => {
                tracing::info!(
                    event,
                    program,
                    instance,
                    request_id,
                    pid,
                    "{name} is running"
                )
            }
            Note::SpawnFailed { error } => {
                tracing::error!(event, program, instance, request_id, error = %error, "{name}: {error}")
            }
            Note::Exited {
                pid,
                status,
                kind,
                ran,
            } => tracing::info!(
                event,
                program,
                instance,
                request_id,
                pid,
                status = %status,
                reason = kind.as_str(),
                ran_ms = ran.as_millis() as u64,
                "{name} exited with {status} after {}",
                humantime::format_duration(std::time::Duration::from_millis(ran.as_millis() as u64))
            ),
            Note::RestartScheduled { delay, attempt } => tracing::info!(
                event,
                program,
                instance,
                request_id,
                delay_ms = delay.as_millis() as u64,
                attempt,
                "{name} restarts in {}",
                humantime::format_duration(std::time::Duration::from_millis(
                    delay.as_millis() as u64
                ))
            ),
            Note::Completed => {
                tracing::info!(event, program, instance, request_id, "{name} completed")
            }
            Note::Failed { reason } => {
                tracing::error!(event, program, instance, request_id, reason = %reason, "{name} failed: {reason}")
            }
            Note::Stopping { signal } => tracing::info!(
                event,
                program,
                instance,
                request_id,
                signal = crate::signals::short_name(*signal),
                "stopping {name} with SIG{}",
                crate::signals::short_name(*signal)
            ),
            Note::StopTimedOut => tracing::warn!(
                event,
                program,
                instance,
                request_id,
                "{name} did not stop within {}; sending SIGKILL to its process group",
                humantime::format_duration(self.args.policy.stop_timeout)
            ),
            Note::Stopped => tracing::info!(event, program, instance, request_id, "{name} stopped"),
            Note::Ready => tracing::info!(event, program, instance, request_id, "{name} is ready"),
            Note::NotReady { reason } => tracing::warn!(
                event,
                program,
                instance,
                request_id,
                reason = %reason,
                "{name} is no longer ready: {reason}"
            ),
            Note::ProbeFailed {
                role,
                detail,
                streak,
            } => tracing::warn!(
                event,
                program,
                instance,
                request_id,
                probe = role.as_str(),
                streak,
                detail = %detail,
                "{name} {} probe failed ({streak} in a row): {detail}",
                role.as_str()
            ),
            Note::LivenessFailed { detail } => tracing::warn!(
                event,
                program,
                instance,
                request_id,
                detail = %detail,
                "{name} failed its liveness probe; restarting it"
            ),
            Note::StartTimedOut => tracing::warn!(
                event,
                program,
                instance,
                request_id,
                "{name} was not ready within start_timeout ({}); restarting it",
                humantime::format_duration(self.args.policy.start_timeout)
            ),
        }
    }
}
