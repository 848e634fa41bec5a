//! The read-only routes: `/programs`, `/programs/NAME`, `/ready`,
//! `/ready/NAME` (or `/ready/NAME:N`), `/health` and `/config`. They
//! answer from the latest status board or running config the Supervisor
//! published (or, for health, from what the API itself knows) and never
//! message the
//! Supervisor.

use std::time::SystemTime;

use hyper::StatusCode;

use super::{no_such_program, ControlApi};
use crate::control::protocol::{
    ConfigReply, HealthReply, InstanceInfo, LastExit, ProgramInfo, ProgramsReply, ReadyReply,
};
use crate::control::server::ControlResponse;
use crate::state::ExitStatus;
use crate::status::{InstanceStatus, ProgramStatus};

impl ControlApi {
    pub(super) fn programs(&self) -> ControlResponse {
        let board = self.board();
        let now = SystemTime::now();
        ControlResponse::json(
            StatusCode::OK,
            &ProgramsReply {
                shutting_down: board.shutting_down,
                programs: board
                    .programs
                    .iter()
                    .map(|p| program_info(p, now))
                    .collect(),
            },
        )
    }

    pub(super) fn program(&self, name: &str, id: &str) -> ControlResponse {
        match self.board().program(name) {
            Some(program) => {
                ControlResponse::json(StatusCode::OK, &program_info(program, SystemTime::now()))
            }
            None => no_such_program(name, id),
        }
    }

    pub(super) fn ready(&self) -> ControlResponse {
        let board = self.board();
        let (ready, reason) = match board.ready() {
            Ok(()) => (true, None),
            Err(reason) => (false, Some(reason)),
        };
        ControlResponse::json(StatusCode::OK, &ReadyReply { ready, reason })
    }

    /// `/v1/ready/web`, or `/v1/ready/web:0` for one instance.
    pub(super) fn program_ready(&self, name: &str, id: &str) -> ControlResponse {
        let board = self.board();
        match board.lookup(name) {
            Some((program, instance)) => {
                let reason = if board.shutting_down {
                    Some("shutting down".to_string())
                } else {
                    match instance {
                        Some(n) => program.instance_reason(n),
                        None => program.reason(),
                    }
                };
                ControlResponse::json(
                    StatusCode::OK,
                    &ReadyReply {
                        ready: reason.is_none(),
                        reason,
                    },
                )
            }
            None => no_such_program(name, id),
        }
    }

    pub(super) fn health(&self) -> ControlResponse {
        ControlResponse::json(
            StatusCode::OK,
            &HealthReply {
                status: "ok".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                pid: std::process::id(),
                uptime_seconds: self.started.elapsed().as_secs(),
                config: self.config_path.display().to_string(),
            },
        )
    }

    pub(super) fn running_config(&self) -> ControlResponse {
        // Rendered here rather than by the Supervisor: only a request pays
        // for it, and the Supervisor's mailbox never waits on it.
        let running = self.running_config.borrow().clone();
        ControlResponse::json(
            StatusCode::OK,
            &ConfigReply {
                path: running.config.path.display().to_string(),
                loaded_at: running
                    .loaded_at
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64(),
                toml: crate::config::print::to_toml(&running.config),
            },
        )
    }
}

pub fn program_info(program: &ProgramStatus, now: SystemTime) -> ProgramInfo {
    ProgramInfo {
        name: program.name.clone(),
        state: program.state().as_str().to_string(),
        ready: program.ready(),
        required: program.required,
        kind: if program.oneshot {
            "oneshot"
        } else {
            "service"
        }
        .to_string(),
        restarts: program.restarts(),
        reason: program.reason(),
        stopped_by_user: program.stopped_by_user,
        enabled: program.enabled,
        instances: program
            .instances
            .iter()
            .enumerate()
            .map(|(n, instance)| {
                instance_info(&program.name, n as u32, instance, program.oneshot, now)
            })
            .collect(),
    }
}

fn instance_info(
    program: &str,
    index: u32,
    instance: &InstanceStatus,
    oneshot: bool,
    now: SystemTime,
) -> InstanceInfo {
    let s = &instance.snapshot;
    let started = instance.started_at.filter(|_| s.pid.is_some());
    InstanceInfo {
        name: format!("{program}:{index}"),
        index,
        slot: instance.slot,
        state: s.phase.as_str().to_string(),
        pid: s.pid,
        ready: instance.is_ready(oneshot),
        uptime_seconds: started.map(|t| now.duration_since(t).unwrap_or_default().as_secs()),
        started_at: started
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs_f64()),
        restarts: s.restarts,
        last_exit: s.last_exit.map(|exit| LastExit {
            code: code_of(exit),
            signal: signal_of(exit),
            kind: s
                .last_exit_kind
                .map(|k| k.as_str())
                .unwrap_or("failure")
                .to_string(),
            text: exit.to_string(),
        }),
        // The core's hold says more than the actor's last word ("stopped").
        reason: if instance.stopped_by_user() {
            Some("stopped by `kelpie stop`".to_string())
        } else {
            s.reason.clone()
        },
        // The time left, not the delay scheduled when the backoff began.
        backoff_seconds: (s.phase == crate::state::Phase::Backoff).then(|| {
            s.backoff_until
                .map_or(s.backoff, |until| {
                    until.saturating_duration_since(tokio::time::Instant::now())
                })
                .as_secs_f64()
        }),
        status_text: s.status_text.clone(),
        stopped_by_user: instance.stopped_by_user(),
    }
}

/// The exit code, when the process exited.
pub(super) fn code_of(exit: ExitStatus) -> Option<i32> {
    match exit {
        ExitStatus::Code(code) => Some(code),
        ExitStatus::Signal(_) => None,
    }
}

/// The signal's name without `SIG` (or its number), when one ended it.
pub(super) fn signal_of(exit: ExitStatus) -> Option<String> {
    match exit {
        ExitStatus::Signal(n) => Some(
            nix::sys::signal::Signal::try_from(n)
                .map(|sig| crate::signals::short_name(sig).to_string())
                .unwrap_or_else(|_| n.to_string()),
        ),
        ExitStatus::Code(_) => None,
    }
}
