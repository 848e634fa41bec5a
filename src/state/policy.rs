//! The part of a program's config the lifecycle needs, and the probe
//! thresholds it judges results by.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::backoff::BackoffConfig;
use crate::config::ProgramConfig;
use crate::restart_policy::{ProgramKind, RestartPolicy};

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
