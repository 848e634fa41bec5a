//! One configured program as the fleet core sees it: its blueprint (config,
//! policy, resolved identity), one slot per instance, what it shows to the
//! outside world, and what has been asked of it. Actors are named only by
//! their incarnation; every message to one is a `FleetAction::Send`.

use std::sync::Arc;

use super::core::{Command, EntryId, FleetAction, Incarnation};
use super::rolling::Roll;
use super::Cause;
use crate::config::ProgramConfig;
use crate::process::Identity;
use crate::state::{Phase, Policy, Snapshot};
use crate::status::ProgramStatus;

/// What a program is built from: its config and the identity its processes
/// run as, resolved (an OS lookup) before the core ever sees it.
#[derive(Clone)]
pub struct Blueprint {
    pub config: Arc<ProgramConfig>,
    /// `Err` when `user`/`group` cannot be resolved: the program is
    /// blocked with that reason instead of started.
    pub identity: Result<Option<Arc<Identity>>, String>,
}

impl Blueprint {
    /// A blueprint whose processes run as kelpie's own user.
    pub fn unprivileged(config: Arc<ProgramConfig>) -> Self {
        Self {
            config,
            identity: Ok(None),
        }
    }
}

pub(super) struct Slot {
    pub incarnation: Incarnation,
    /// False when its actor could not be created (or was never asked for).
    pub live: bool,
    /// Told to come up (or go down) and not heard from since: the core's
    /// expectation, kept apart from what the actor reported.
    pub expect_up: Option<bool>,
}

impl Slot {
    pub fn new(incarnation: Incarnation) -> Self {
        Self {
            incarnation,
            live: true,
            expect_up: None,
        }
    }
}

/// An instance actor on its way out (replaced by a rolling restart, or an
/// aborted replacement): told to stop, and ended once its process group is
/// gone.
/// Only ever judged right after its own report, so no expectation is kept.
pub(super) struct Retiring {
    pub incarnation: Incarnation,
    pub snapshot: Snapshot,
}

impl Retiring {
    pub fn is_down(&self) -> bool {
        is_down(&self.snapshot, None)
    }
}

/// No process, and none wanted: by the actor's last report, unless it was
/// told otherwise since.
fn is_down(snapshot: &Snapshot, expect_up: Option<bool>) -> bool {
    snapshot.phase.is_down() && snapshot.pid.is_none() && !expect_up.unwrap_or(snapshot.want_up)
}

pub(super) struct Entry {
    /// Names this entry's resources (output, log files) in the shell; a
    /// program rebuilt by a reload is a new entry.
    pub id: EntryId,
    pub config: Arc<ProgramConfig>,
    pub policy: Arc<Policy>,
    pub identity: Result<Option<Arc<Identity>>, String>,
    pub slots: Vec<Slot>,
    /// What the outside world sees; shared with published boards.
    pub status: Arc<ProgramStatus>,
    pub launched: bool,
    /// Shutdown sent this program its stop.
    pub stop_sent: bool,
    /// Programs that depend on this one (indices into the entries).
    pub dependents: Vec<usize>,
    /// A control `start`/`restart` waiting for the dependency gate: its
    /// sequence number and cause, sent along with the start.
    pub launch: Option<(u64, Cause)>,
    /// Started by request although `autostart = false`.
    pub start_requested: bool,
    /// A requested stop (control `stop`, reload) not sent yet: it goes out
    /// once every program being stopped that depends on this one is down.
    pub stop_queued: Option<(u64, Cause)>,
    /// A requested stop went out and the program is not down yet.
    pub stopping: bool,
    /// A reload changed this program: it is rebuilt from this blueprint
    /// once it is down.
    pub pending: Option<Blueprint>,
    pub roll: Option<Roll>,
    pub retiring: Vec<Retiring>,
    /// The next launch is a group restart's: `Relaunch`, not `Start`.
    pub relaunch: bool,
}

impl Entry {
    /// The program's bookkeeping, without actors yet.
    /// `budgeted`: a global restart budget applies to its restarts.
    pub fn new(id: EntryId, blueprint: Blueprint, budgeted: bool) -> Self {
        let config = blueprint.config;
        Self {
            id,
            policy: Arc::new(Policy {
                budgeted,
                ..Policy::from(config.as_ref())
            }),
            identity: blueprint.identity,
            slots: Vec::new(),
            status: Arc::new(ProgramStatus::new(
                &config.name,
                config.required,
                config.kind == crate::restart_policy::ProgramKind::Oneshot,
                config.instances as usize,
            )),
            launched: false,
            stop_sent: false,
            dependents: Vec::new(),
            launch: None,
            start_requested: false,
            stop_queued: None,
            stopping: false,
            pending: None,
            roll: None,
            retiring: Vec::new(),
            relaunch: false,
            config,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// No process, none wanted, and nothing in flight: an instance told to
    /// start counts as up until it reports otherwise, so a stop right after
    /// a start never mistakes it for stopped.
    pub fn is_down(&self) -> bool {
        self.snapshots()
            .enumerate()
            .all(|(n, s)| is_down(s, self.slots.get(n).and_then(|slot| slot.expect_up)))
            && self.roll.as_ref().is_none_or(|r| !r.has_replacement())
            && self.retiring.is_empty()
    }

    pub fn snapshots(&self) -> impl Iterator<Item = &Snapshot> {
        self.status.instances.iter().map(|i| &i.snapshot)
    }

    pub fn stopped_by_user(&self) -> bool {
        self.status.stopped_by_user
    }

    pub fn set_stopped_by_user(&mut self, stopped: bool) {
        if self.status.stopped_by_user != stopped {
            Arc::make_mut(&mut self.status).stopped_by_user = stopped;
        }
    }

    /// Whether `incarnation` is one of this program's actors.
    pub fn holds(&self, incarnation: Incarnation) -> bool {
        self.slots
            .iter()
            .any(|s| s.live && s.incarnation == incarnation)
            || self.retiring.iter().any(|r| r.incarnation == incarnation)
            || self
                .roll
                .as_ref()
                .is_some_and(|r| r.replacement() == Some(incarnation))
    }

    /// Records that every instance was told to come up (or down), until
    /// their own reports say otherwise. The board keeps showing what they
    /// reported.
    pub fn expect_up(&mut self, up: bool) {
        for slot in &mut self.slots {
            slot.expect_up = Some(up);
        }
    }

    /// Starts every instance and records that in the snapshots at once.
    pub fn start_all(&mut self, out: &mut Vec<FleetAction>, cause: &Cause, ack: Option<u64>) {
        let relaunch = std::mem::take(&mut self.relaunch);
        for (slot, instance) in self.slots.iter_mut().zip(&self.status.instances) {
            // A relaunch leaves a failed instance failed.
            if !(relaunch && instance.snapshot.phase == Phase::Failed) {
                slot.expect_up = Some(true);
            }
        }
        self.set_reason(None);
        let command = if relaunch {
            Command::Relaunch
        } else {
            Command::Start
        };
        self.command(out, cause, &[command], ack);
    }

    pub fn set_reason(&mut self, reason: Option<String>) {
        if self.status.reason != reason {
            Arc::make_mut(&mut self.status).reason = reason;
        }
    }

    fn live_slots(&self) -> impl Iterator<Item = Incarnation> + '_ {
        self.slots.iter().filter(|s| s.live).map(|s| s.incarnation)
    }

    /// A command to every slot actor.
    pub fn cast_all(&self, out: &mut Vec<FleetAction>, command: &Command) {
        for to in self.live_slots() {
            out.push(FleetAction::Send {
                to,
                command: command.clone(),
            });
        }
    }

    /// A command to every actor of the program, including a rolling
    /// restart's replacement and retiring instances (shutdown, signals).
    pub fn cast_everywhere(&self, out: &mut Vec<FleetAction>, command: &Command) {
        self.cast_all(out, command);
        let replacement = self.roll.as_ref().and_then(Roll::replacement);
        for to in replacement
            .into_iter()
            .chain(self.retiring.iter().map(|r| r.incarnation))
        {
            out.push(FleetAction::Send {
                to,
                command: command.clone(),
            });
        }
    }

    /// A control command to every slot: the cause first (so the events it
    /// causes carry its request id), then the commands, then the ack that
    /// tells a waiting request its outcome is visible.
    pub fn command(
        &self,
        out: &mut Vec<FleetAction>,
        cause: &Cause,
        commands: &[Command],
        ack: Option<u64>,
    ) {
        for to in self.live_slots() {
            if cause.is_some() {
                out.push(FleetAction::Send {
                    to,
                    command: Command::Cause(cause.clone()),
                });
            }
            for command in commands {
                out.push(FleetAction::Send {
                    to,
                    command: command.clone(),
                });
            }
            if let Some(seq) = ack {
                out.push(FleetAction::Send {
                    to,
                    command: Command::Ack(seq),
                });
            }
        }
    }

    /// Ends every actor of the program (its processes are gone).
    pub fn stop_actors(&mut self, out: &mut Vec<FleetAction>) {
        for slot in &mut self.slots {
            if std::mem::take(&mut slot.live) {
                out.push(FleetAction::StopActor {
                    incarnation: slot.incarnation,
                });
            }
        }
        for retiring in self.retiring.drain(..) {
            out.push(FleetAction::StopActor {
                incarnation: retiring.incarnation,
            });
        }
    }
}
