//! The read model: what kelpie tells the outside world about its programs.
//!
//! The Supervisor publishes a new `Board` on a `tokio::sync::watch` channel
//! after every change it learns of; the HTTP endpoints and the control API
//! read the latest board and never call into an actor on their hot path.
//! A board is immutable once published (readers hold an `Arc`), and
//! programs are shared between consecutive boards, so publishing costs one
//! pointer copy per program.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::watch;

use crate::config::Config;
use crate::state::{ExitKind, Phase, Snapshot};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStatus {
    pub snapshot: Snapshot,
    /// Wall-clock start of the current process (for display and the
    /// `start_time_seconds` metric only; every timeout uses the monotonic
    /// clock).
    pub started_at: Option<SystemTime>,
    /// The last control command sequence number the instance processed: a
    /// waiting control request reads the outcome only from a status with
    /// `ack` at or past its own number.
    pub ack: u64,
    /// Held down by `kelpie stop NAME:N`: set by the fleet core, which
    /// alone knows it was asked for (the actor's report never carries it).
    pub held: bool,
    /// `KELPIE_SLOT` of the actor behind it: 0 to 2 × `instances` − 1, the
    /// index at first, another one after each rolling replacement.
    pub slot: u32,
}

impl InstanceStatus {
    pub fn new() -> Self {
        Self::in_slot(0)
    }

    /// Nothing reported yet by an actor in `slot`.
    pub fn in_slot(slot: u32) -> Self {
        Self {
            snapshot: Snapshot::initial(),
            started_at: None,
            ack: 0,
            held: false,
            slot,
        }
    }

    /// Ready, or a oneshot that finished its job.
    pub fn is_ready(&self, oneshot: bool) -> bool {
        self.snapshot.ready
            || (oneshot
                && self.snapshot.phase == Phase::Exited
                && self.snapshot.last_exit_kind == Some(ExitKind::Success))
    }

    /// Held down by `kelpie stop NAME:N` and down: it does not count
    /// against its program's readiness.
    pub fn stopped_by_user(&self) -> bool {
        self.held && self.snapshot.pid.is_none() && self.snapshot.phase.is_down()
    }
}

impl Default for InstanceStatus {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramStatus {
    pub name: String,
    pub required: bool,
    pub oneshot: bool,
    pub instances: Vec<InstanceStatus>,
    /// A reason for the program as a whole, e.g. the dependency it waits for.
    pub reason: Option<String>,
    /// `kelpie stop` holds it down until `kelpie start`.
    pub stopped_by_user: bool,
    /// Meant to run: `autostart`, or started by request, and not held
    /// down by `kelpie stop`. A program that is not does not count
    /// against the aggregated readiness.
    pub enabled: bool,
}

impl ProgramStatus {
    pub fn new(name: &str, required: bool, oneshot: bool, instances: usize) -> Self {
        Self {
            name: name.to_string(),
            required,
            oneshot,
            instances: (0..instances as u32).map(InstanceStatus::in_slot).collect(),
            reason: None,
            stopped_by_user: false,
            enabled: true,
        }
    }

    /// One state for the program: the most pressing of its instances'
    /// (failed, then backoff, stopping, starting; running only when every
    /// instance runs).
    pub fn state(&self) -> Phase {
        const PRECEDENCE: [Phase; 7] = [
            Phase::Failed,
            Phase::Backoff,
            Phase::Stopping,
            Phase::Starting,
            Phase::Stopped,
            Phase::Exited,
            Phase::Running,
        ];
        PRECEDENCE
            .into_iter()
            .find(|p| self.instances.iter().any(|i| i.snapshot.phase == *p))
            .unwrap_or(Phase::Stopped)
    }

    /// Every instance ready, except those stopped one by one on purpose
    /// (at least one instance must be left to be ready).
    pub fn ready(&self) -> bool {
        let mut counted = self.instances.iter().filter(|i| !i.stopped_by_user());
        let mut any = false;
        counted.all(|i| {
            any = true;
            i.is_ready(self.oneshot)
        }) && any
    }

    /// Instances with a live process.
    pub fn running(&self) -> usize {
        self.instances
            .iter()
            .filter(|i| i.snapshot.pid.is_some())
            .count()
    }

    pub fn restarts(&self) -> u64 {
        self.instances.iter().map(|i| i.snapshot.restarts).sum()
    }

    /// Why the program is not ready, if it is not.
    pub fn reason(&self) -> Option<String> {
        if self.ready() {
            return None;
        }
        if let Some(reason) = &self.reason {
            return Some(reason.clone());
        }
        if self.stopped_by_user {
            return Some(format!("{} was stopped by `kelpie stop`", self.name));
        }
        let not_ready = (0..self.instances.len()).find_map(|n| {
            let instance = &self.instances[n];
            (!instance.stopped_by_user() && !instance.is_ready(self.oneshot))
                .then(|| self.instance_reason(n))
                .flatten()
        });
        Some(match not_ready {
            Some(reason) => reason,
            None if self.instances.is_empty() => format!("{} has no instances", self.name),
            None => format!(
                "every instance of {} was stopped by `kelpie stop`",
                self.name
            ),
        })
    }

    /// Why instance `n` is not ready, if it is not (`None` also when there
    /// is no such instance).
    pub fn instance_reason(&self, n: usize) -> Option<String> {
        let instance = self.instances.get(n)?;
        if instance.is_ready(self.oneshot) {
            return None;
        }
        let name = format!("{}:{n}", self.name);
        let phase = instance.snapshot.phase.as_str();
        Some(if instance.stopped_by_user() {
            format!("{name} was stopped by `kelpie stop`")
        } else {
            match &instance.snapshot.reason {
                Some(reason) => format!("{name} is {phase}: {reason}"),
                None => format!("{name} is {phase}"),
            }
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Board {
    pub shutting_down: bool,
    pub programs: Vec<Arc<ProgramStatus>>,
}

impl Board {
    pub fn program(&self, name: &str) -> Option<&ProgramStatus> {
        self.programs
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.as_ref())
    }

    /// `web`, or `web:0` for one instance: the program and the instance's
    /// index. `None` when there is no such program or instance (program
    /// names never contain `:`).
    pub fn lookup(&self, name: &str) -> Option<(&ProgramStatus, Option<usize>)> {
        if let Some(program) = self.program(name) {
            return Some((program, None));
        }
        let (program, n) = name.rsplit_once(':')?;
        let program = self.program(program)?;
        let n: usize = n.parse().ok()?;
        (n < program.instances.len()).then_some((program, Some(n)))
    }

    /// The aggregated readiness: not shutting down and every required
    /// program that is meant to run ready (one stopped on purpose, or not
    /// started with `autostart = false`, is not waited for). `Err` carries
    /// the first reason.
    pub fn ready(&self) -> Result<(), String> {
        if self.shutting_down {
            return Err("shutting down".into());
        }
        for program in self.programs.iter().filter(|p| p.required && p.enabled) {
            if let Some(reason) = program.reason() {
                return Err(reason);
            }
        }
        Ok(())
    }
}

/// The config the supervisor runs: what it started with, or the file of
/// the last reload it applied, with the `[supervisor]` keys that only take
/// effect at a restart of kelpie still at their running values. Published
/// on its own channel because it changes only on a reload, while the board
/// changes with every state change.
#[derive(Debug, Clone)]
pub struct RunningConfig {
    pub config: Config,
    /// Wall-clock time it was loaded (for display only).
    pub loaded_at: SystemTime,
}

pub type ConfigSender = watch::Sender<Arc<RunningConfig>>;
pub type ConfigReceiver = watch::Receiver<Arc<RunningConfig>>;

pub type StatusSender = watch::Sender<Arc<Board>>;
pub type StatusReceiver = watch::Receiver<Arc<Board>>;

pub fn channel(board: Board) -> (StatusSender, StatusReceiver) {
    watch::channel(Arc::new(board))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(phase: Phase, ready: bool) -> InstanceStatus {
        let mut snapshot = Snapshot::initial();
        snapshot.phase = phase;
        snapshot.ready = ready;
        InstanceStatus {
            snapshot,
            started_at: None,
            ack: 0,
            held: false,
            slot: 0,
        }
    }

    fn program(name: &str, required: bool, instances: Vec<InstanceStatus>) -> Arc<ProgramStatus> {
        Arc::new(ProgramStatus {
            name: name.into(),
            required,
            oneshot: false,
            instances,
            reason: None,
            stopped_by_user: false,
            enabled: true,
        })
    }

    #[test]
    fn program_state_picks_the_most_pressing_instance() {
        let p = program(
            "web",
            true,
            vec![
                instance(Phase::Running, true),
                instance(Phase::Backoff, false),
            ],
        );
        assert_eq!(p.state(), Phase::Backoff);
        let p = program(
            "web",
            true,
            vec![
                instance(Phase::Running, true),
                instance(Phase::Running, true),
            ],
        );
        assert_eq!(p.state(), Phase::Running);
        assert!(p.ready());
        let p = program(
            "web",
            true,
            vec![
                instance(Phase::Running, true),
                instance(Phase::Failed, false),
            ],
        );
        assert_eq!(p.state(), Phase::Failed);
    }

    #[test]
    fn readiness_needs_every_required_program() {
        let board = Board {
            shutting_down: false,
            programs: vec![
                program("web", true, vec![instance(Phase::Running, true)]),
                program("batch", false, vec![instance(Phase::Backoff, false)]),
            ],
        };
        assert_eq!(board.ready(), Ok(()));
        let board = Board {
            shutting_down: false,
            programs: vec![program(
                "web",
                true,
                vec![
                    instance(Phase::Running, true),
                    instance(Phase::Starting, false),
                ],
            )],
        };
        assert_eq!(board.ready(), Err("web:1 is starting".into()));
        let board = Board {
            shutting_down: true,
            programs: vec![program("web", true, vec![instance(Phase::Running, true)])],
        };
        assert_eq!(board.ready(), Err("shutting down".into()));
    }

    #[test]
    fn readiness_does_not_wait_for_programs_not_meant_to_run() {
        let stopped = ProgramStatus {
            stopped_by_user: true,
            enabled: false,
            ..(*program("admin", true, vec![instance(Phase::Stopped, false)])).clone()
        };
        let board = Board {
            shutting_down: false,
            programs: vec![
                program("web", true, vec![instance(Phase::Running, true)]),
                Arc::new(stopped.clone()),
            ],
        };
        assert_eq!(board.ready(), Ok(()));
        // The program itself still says why it is not ready.
        assert_eq!(
            stopped.reason().as_deref(),
            Some("admin was stopped by `kelpie stop`")
        );
    }

    #[test]
    fn a_completed_oneshot_is_ready() {
        let mut done = instance(Phase::Exited, false);
        done.snapshot.last_exit_kind = Some(ExitKind::Success);
        let p = ProgramStatus {
            name: "migrate".into(),
            required: true,
            oneshot: true,
            instances: vec![done.clone()],
            reason: None,
            stopped_by_user: false,
            enabled: true,
        };
        assert!(p.ready());
        let service = ProgramStatus {
            oneshot: false,
            ..p
        };
        assert!(!service.ready(), "an exited service is not ready");
    }

    #[test]
    fn an_instance_stopped_on_purpose_does_not_hold_its_program_down() {
        let mut held = instance(Phase::Stopped, false);
        held.held = true;
        let p = program(
            "web",
            true,
            vec![instance(Phase::Running, true), held.clone()],
        );
        assert!(p.ready());
        assert_eq!(p.instance_reason(0), None);
        assert_eq!(
            p.instance_reason(1).as_deref(),
            Some("web:1 was stopped by `kelpie stop`")
        );
        let all = program("web", true, vec![held.clone(), held.clone()]);
        assert!(!all.ready());
        assert_eq!(
            all.reason().as_deref(),
            Some("every instance of web was stopped by `kelpie stop`")
        );
        // The mark counts only while the instance is down.
        held.snapshot.phase = Phase::Starting;
        assert!(!held.stopped_by_user());

        let board = Board {
            shutting_down: false,
            programs: vec![p],
        };
        assert_eq!(board.lookup("web").map(|(_, n)| n), Some(None));
        assert_eq!(board.lookup("web:1").map(|(_, n)| n), Some(Some(1)));
        for missing in ["web:2", "web:", "web:x", "db:0", "web:1:0"] {
            assert!(board.lookup(missing).is_none(), "{missing}");
        }
    }

    #[test]
    fn reasons_name_the_instance_and_its_cause() {
        let mut failing = instance(Phase::Backoff, false);
        failing.snapshot.reason = Some("exited with exit code 1".into());
        let p = program("api", true, vec![failing]);
        assert_eq!(
            p.reason().as_deref(),
            Some("api:0 is backoff: exited with exit code 1")
        );
    }
}
