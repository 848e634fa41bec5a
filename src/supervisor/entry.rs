//! One configured program as the fleet core sees it: its blueprint (config,
//! policy, resolved identity), its `Stage`, one slot per instance, what it
//! shows to the outside world, and what the operator asked of it (`Want`).
//! Actors are named only by their incarnation; every message to one is a
//! `FleetAction::Send`.

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

/// A control request waiting on a program: its sequence number (the ack
/// that tells the caller the outcome is visible) and its cause.
pub(super) type Request = (u64, Cause);

/// Where a program is in its life as the core drives it. Each stage
/// carries what it needs, so a combination the core never means (a
/// queued start on a stopping program, a rebuild that is also launched)
/// cannot be written down.
pub(super) enum Stage {
    /// Not started: the dependency gate starts it once it is wanted and
    /// its dependencies allow. `request`: a control start waiting for the
    /// gate, acknowledged by the launch. `relaunch`: a group restart's
    /// launch, which keeps each instance's backoff and intensity.
    Gated {
        request: Option<Request>,
        relaunch: bool,
    },
    /// The gate let it through (or its identity cannot be resolved); its
    /// instances follow their own policies from here.
    Launched,
    /// A dependency failed or ended for good: its instances were told so
    /// (they show as failed with the reason). The gate keeps looking, and
    /// starts it once the dependency is back (started again by hand, or
    /// rebuilt by a reload).
    Blocked,
    /// A requested stop that goes out once every program being stopped
    /// that depends on this one is down.
    StopQueued { request: Request, then: AfterStop },
    /// The requested stop went out; not down yet.
    Stopping { then: AfterStop },
    /// Stopped on request; only a new request starts it.
    Stopped,
    /// Changed by a reload and down: rebuilt from `blueprint` once no
    /// changed dependency is waiting to be rebuilt. `start`: a control
    /// start that the rebuilt program acknowledges.
    Rebuilding {
        blueprint: Blueprint,
        start: Option<Request>,
    },
    /// Kelpie is shutting down; `stop_sent`: this program's stop (or
    /// kill) went out.
    ShuttingDown { stop_sent: bool },
}

/// What follows a requested stop once the program is down.
pub(super) enum AfterStop {
    Stay,
    /// A reload changed it (see `Stage::Rebuilding`).
    Rebuild {
        blueprint: Blueprint,
        start: Option<Request>,
    },
}

/// What the operator asked of a program, beyond its config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Want {
    /// As configured: started when `autostart` says so.
    Configured,
    /// `kelpie start`/`restart`, also with `autostart = false`.
    Started,
    /// `kelpie stop`: stays down, through reloads and group restarts.
    Stopped,
}

impl Stage {
    /// The blueprint a reload is waiting to rebuild the program from.
    pub fn pending(&self) -> Option<&Blueprint> {
        match self {
            Stage::StopQueued {
                then: AfterStop::Rebuild { blueprint, .. },
                ..
            }
            | Stage::Stopping {
                then: AfterStop::Rebuild { blueprint, .. },
            }
            | Stage::Rebuilding { blueprint, .. } => Some(blueprint),
            _ => None,
        }
    }

    /// For tables and logs: the stage without its data.
    #[cfg(test)]
    pub fn name(&self) -> &'static str {
        match self {
            Stage::Gated {
                request: None,
                relaunch: false,
            } => "gated",
            Stage::Gated {
                request: Some(_), ..
            } => "gated (start waiting)",
            Stage::Gated { relaunch: true, .. } => "gated (relaunch)",
            Stage::Launched => "launched",
            Stage::Blocked => "blocked",
            Stage::StopQueued {
                then: AfterStop::Stay,
                ..
            } => "stop queued",
            Stage::StopQueued { .. } => "stop queued (then rebuild)",
            Stage::Stopping {
                then: AfterStop::Stay,
            } => "stopping",
            Stage::Stopping { .. } => "stopping (then rebuild)",
            Stage::Stopped => "stopped",
            Stage::Rebuilding { start: None, .. } => "rebuilding",
            Stage::Rebuilding { start: Some(_), .. } => "rebuilding (start waiting)",
            Stage::ShuttingDown { stop_sent: false } => "shutting down",
            Stage::ShuttingDown { stop_sent: true } => "shutting down (stop sent)",
        }
    }

    /// A requested stop is queued or on its way.
    pub fn stop_requested(&self) -> bool {
        matches!(self, Stage::StopQueued { .. } | Stage::Stopping { .. })
    }
}

pub(super) struct Slot {
    pub incarnation: Incarnation,
    /// False when its actor could not be created (or was never asked for).
    pub live: bool,
    /// Told to come up (or go down) and not heard from since: the core's
    /// expectation, kept apart from what the actor reported.
    pub expect_up: Option<bool>,
    /// `kelpie stop web:1`: this instance stays down until it (or the
    /// program) is started again; the program itself is not marked.
    pub held: bool,
    /// `KELPIE_SLOT` of its actor: the index at first, switched only by a
    /// rolling replacement, kept by every other restart of the instance.
    pub kelpie_slot: u32,
    /// A memory restart's stop went out with this ack: the instance is
    /// started again once it is down (`memory_watch.rs`), and counts as up
    /// until then.
    pub relaunch: Option<u64>,
}

impl Slot {
    pub fn new(incarnation: Incarnation, kelpie_slot: u32) -> Self {
        Self {
            incarnation,
            live: true,
            expect_up: None,
            held: false,
            kelpie_slot,
            relaunch: None,
        }
    }

    /// What the core expects of its instance, over what the actor last
    /// reported: `Some(true)` while a memory restart is under way.
    pub fn expectation(&self) -> Option<bool> {
        self.expect_up.or(self.relaunch.map(|_| true))
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
    pub stage: Stage,
    /// What the operator asked of it; `status.stopped_by_user` mirrors it.
    want: Want,
    /// Programs that depend on this one (indices into the entries).
    pub dependents: Vec<usize>,
    pub roll: Option<Roll>,
    pub retiring: Vec<Retiring>,
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
            status: Arc::new(ProgramStatus {
                enabled: config.autostart,
                ..ProgramStatus::new(
                    &config.name,
                    config.required,
                    config.kind == crate::restart_policy::ProgramKind::Oneshot,
                    config.instances as usize,
                )
            }),
            stage: Stage::Gated {
                request: None,
                relaunch: false,
            },
            want: Want::Configured,
            dependents: Vec::new(),
            roll: None,
            retiring: Vec::new(),
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
            .all(|(n, s)| is_down(s, self.slots.get(n).and_then(Slot::expectation)))
            && self.roll.as_ref().is_none_or(|r| !r.has_replacement())
            && self.retiring.is_empty()
    }

    pub fn snapshots(&self) -> impl Iterator<Item = &Snapshot> {
        self.status.instances.iter().map(|i| &i.snapshot)
    }

    pub fn stopped_by_user(&self) -> bool {
        self.want == Want::Stopped
    }

    pub fn want(&self) -> Want {
        self.want
    }

    pub fn set_want(&mut self, want: Want) {
        self.want = want;
        let stopped = want == Want::Stopped;
        if self.status.stopped_by_user != stopped {
            Arc::make_mut(&mut self.status).stopped_by_user = stopped;
        }
        self.refresh_enabled();
    }

    /// Meant to run, and not every instance held down one by one.
    fn refresh_enabled(&mut self) {
        let all_held = !self.slots.is_empty() && self.slots.iter().all(|s| s.held);
        let enabled = self.should_run() && !all_held;
        if self.status.enabled != enabled {
            Arc::make_mut(&mut self.status).enabled = enabled;
        }
    }

    /// Holds instance `n` down (`kelpie stop web:1`) or lets it go.
    pub fn hold(&mut self, n: usize, held: bool) {
        let Some(slot) = self.slots.get_mut(n) else {
            return;
        };
        slot.held = held;
        self.show_hold(n);
        self.refresh_enabled();
    }

    /// Lets every held instance go (the program is started as a whole).
    fn release_holds(&mut self) {
        for n in 0..self.slots.len() {
            self.hold(n, false);
        }
    }

    /// Puts the slot's hold on the board: what the actor reports replaces
    /// the instance's status, so this follows every report.
    pub fn show_hold(&mut self, n: usize) {
        let held = self.slots.get(n).is_some_and(|s| s.held);
        if self.status.instances.get(n).is_some_and(|i| i.held != held) {
            Arc::make_mut(&mut self.status).instances[n].held = held;
        }
    }

    /// A `kelpie stop` no longer holds it down (a rolling restart, a
    /// removal); a start it was given before stays.
    pub fn lift_stop(&mut self) {
        if self.want == Want::Stopped {
            self.set_want(Want::Configured);
        }
    }

    /// Meant to run: by config or by request (even if stopped since).
    pub fn wanted(&self) -> bool {
        self.config.autostart || self.want == Want::Started
    }

    /// Meant to run and not held down by a `kelpie stop`.
    pub fn should_run(&self) -> bool {
        self.wanted() && self.want != Want::Stopped
    }

    /// Past the dependency gate (including every stage after it).
    pub fn launched(&self) -> bool {
        !matches!(self.stage, Stage::Gated { .. })
    }

    /// The config the program runs, or is on its way to: a reload's
    /// pending rebuild or roll.
    pub fn target_config(&self) -> &Arc<ProgramConfig> {
        if let Some(blueprint) = self.stage.pending() {
            return &blueprint.config;
        }
        match self.roll.as_ref().and_then(|r| r.renewal.as_ref()) {
            Some(renewal) => &renewal.config,
            None => &self.config,
        }
    }

    /// Takes over a config equal to `target_config` in everything that
    /// affects how the program runs.
    pub fn refresh_config(&mut self, config: Arc<ProgramConfig>) {
        if let Some(renewal) = self.roll.as_mut().and_then(|r| r.renewal.as_mut()) {
            renewal.config = config;
            return;
        }
        match &mut self.stage {
            Stage::StopQueued {
                then: AfterStop::Rebuild { blueprint, .. },
                ..
            }
            | Stage::Stopping {
                then: AfterStop::Rebuild { blueprint, .. },
            }
            | Stage::Rebuilding { blueprint, .. } => blueprint.config = config,
            _ => self.config = config,
        }
    }

    /// Every instance runs under a launched program: a roll keeps serving.
    pub fn can_roll(&self) -> bool {
        matches!(self.stage, Stage::Launched)
            && !self.stopped_by_user()
            && self.snapshots().all(|s| s.pid.is_some())
    }

    /// Shutting down, and its stop has not gone out yet.
    pub fn awaits_shutdown_stop(&self) -> bool {
        matches!(self.stage, Stage::ShuttingDown { stop_sent: false })
    }

    /// Queues a requested stop; a rebuild a reload is waiting for still
    /// follows it, without the start that was waiting on the rebuild.
    pub fn queue_stop(&mut self, request: Request) {
        let then = match std::mem::replace(&mut self.stage, Stage::Launched) {
            Stage::StopQueued {
                then: AfterStop::Rebuild { blueprint, .. },
                ..
            }
            | Stage::Stopping {
                then: AfterStop::Rebuild { blueprint, .. },
            }
            | Stage::Rebuilding { blueprint, .. } => AfterStop::Rebuild {
                blueprint,
                start: None,
            },
            _ => AfterStop::Stay,
        };
        self.stage = Stage::StopQueued { request, then };
    }

    /// A reload changed the program: it stops (unless down already) and
    /// is rebuilt from `blueprint`.
    pub fn rebuild_from(&mut self, blueprint: Blueprint, cause: &Cause) {
        self.stage = if self.is_down() {
            Stage::Rebuilding {
                blueprint,
                start: None,
            }
        } else {
            Stage::StopQueued {
                request: (0, cause.clone()),
                then: AfterStop::Rebuild {
                    blueprint,
                    start: None,
                },
            }
        };
    }

    /// A control start that the rebuild a reload is waiting for will
    /// acknowledge; false when no rebuild is waiting.
    pub fn start_after_rebuild(&mut self, request: Request) -> bool {
        match &mut self.stage {
            Stage::StopQueued {
                then: AfterStop::Rebuild { start, .. },
                ..
            }
            | Stage::Stopping {
                then: AfterStop::Rebuild { start, .. },
            }
            | Stage::Rebuilding { start, .. } => {
                *start = Some(request);
                true
            }
            _ => false,
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
    /// `relaunch`: a group restart's launch (`Relaunch`, not `Start`).
    pub fn start_all(
        &mut self,
        out: &mut Vec<FleetAction>,
        cause: &Cause,
        ack: Option<u64>,
        relaunch: bool,
    ) {
        self.stage = Stage::Launched;
        self.release_holds();
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

    /// A command to instance `n`'s actor alone.
    pub fn cast_slot(&self, out: &mut Vec<FleetAction>, n: usize, command: &Command) {
        if let Some(slot) = self.slots.get(n).filter(|s| s.live) {
            out.push(FleetAction::Send {
                to: slot.incarnation,
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
        let all: Vec<Incarnation> = self.live_slots().collect();
        command_to(out, &all, cause, commands, ack);
    }

    /// `command`, to instance `n` alone.
    pub fn command_slot(
        &self,
        out: &mut Vec<FleetAction>,
        n: usize,
        cause: &Cause,
        commands: &[Command],
        ack: Option<u64>,
    ) {
        let one: Vec<Incarnation> = self
            .slots
            .get(n)
            .filter(|s| s.live)
            .map(|s| s.incarnation)
            .into_iter()
            .collect();
        command_to(out, &one, cause, commands, ack);
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

/// The cause, the commands and the ack, to each of `to` in turn.
fn command_to(
    out: &mut Vec<FleetAction>,
    to: &[Incarnation],
    cause: &Cause,
    commands: &[Command],
    ack: Option<u64>,
) {
    for &to in to {
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
